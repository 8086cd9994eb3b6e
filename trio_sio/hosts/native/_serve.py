"""serve_native: listeners, connections, TLS and graceful shutdown."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import NoReturn

import trio

from ..._engine.alarms import Alarms
from .._common import Endpoint, Route, close_endpoints
from ._config import NativeConfig
from ._http import HttpConnection, Mount, Router

__all__ = ["Connections", "make_router", "serve_host", "serve_native"]

logger = logging.getLogger("trio_sio.hosts.native")


def _url(sockname: tuple[str, int] | tuple[str, int, int, int], scheme: str) -> str:
    host, port = sockname[0], sockname[1]
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class Connections:
    """The connections of one :func:`serve_native` call (or of one worker of the workers mode:
    then ``owned_elsewhere`` and ``hand_back`` send a request of another worker's session to
    the supervisor, see :mod:`._workers`)."""

    def __init__(
        self,
        router: Router,
        config: NativeConfig,
        ssl_context: ssl.SSLContext | None,
        *,
        owned_elsewhere: Callable[[bytes], bool] | None = None,
        hand_back: Callable[[trio.SocketStream, bytes], Awaitable[None]] | None = None,
    ) -> None:
        self.router = router
        self.config = config
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context is not None else "http"
        self.websockets = 0
        self._websockets_changed = trio.Event()
        #: The deadlines of connections waiting for a request (one timer task for all).
        self.alarms = Alarms()
        self._owned_elsewhere = owned_elsewhere
        self._hand_back = hand_back

    def track_websocket(self, delta: int) -> None:
        self.websockets += delta
        self._websockets_changed.set()
        self._websockets_changed = trio.Event()

    async def wait_no_websockets(self) -> None:
        while self.websockets:
            await self._websockets_changed.wait()

    async def handle(self, tcp: trio.SocketStream, received: bytes = b"") -> None:
        """Serve one accepted connection; ``received`` is what was read from it already."""
        stream: trio.abc.Stream = tcp
        try:
            client = _peer(tcp)
            if self.ssl_context is not None:
                # Not "https_compatible": we send close_notify when closing (strict clients
                # report a truncation attack otherwise), and a peer's missing one is a plain EOF
                # to us anyway.
                tls = trio.SSLStream(tcp, self.ssl_context, server_side=True)
                with trio.move_on_after(self.config.request_timeout) as scope:
                    await tls.do_handshake()
                if scope.cancelled_caught:
                    return
                stream = tls
            connection = HttpConnection(
                stream,
                self.router,
                self.config,
                scheme=self.scheme,
                client=client,
                track_websocket=self.track_websocket,
                alarms=self.alarms,
                owned_elsewhere=self._owned_elsewhere,
            )
            if received:
                connection.parser.feed(received)
            await connection.serve()
            if connection.hand_back is not None and self._hand_back is not None:
                await self._hand_back(tcp, connection.hand_back)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            # One connection's failure must not take the server down (security.md §4).
            logger.exception("native host: connection failed")
        finally:
            # A graceful close (TLS: close_notify), briefly; trio closes forcefully when the
            # time is up or the host is shutting down. (A connection handed back is only
            # closed here: the supervisor holds it.)
            with trio.move_on_after(1):
                await stream.aclose()


def _peer(stream: trio.SocketStream) -> tuple[str, int] | None:
    try:
        name = stream.socket.getpeername()
    except OSError:
        return None
    if isinstance(name, tuple) and len(name) >= 2:
        return (str(name[0]), int(name[1]))
    return None


async def serve_native(
    server: Endpoint,
    host: str = "127.0.0.1",
    port: int = 5001,
    *,
    ssl_context: ssl.SSLContext | None = None,
    static_files: Mapping[str, str | Path] | None = None,
    path: str = "socket.io",
    endpoints: Mapping[str, Endpoint] | None = None,
    routes: Mapping[str, Route] | None = None,
    config: NativeConfig | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``server`` over HTTP/1.1 and WebSocket on Trio streams until cancelled.

    The native host: no ASGI server in between, so each message costs far less CPU than under
    hypercorn. Compatible with ``nursery.start``, which returns the bound URLs (``port=0``
    picks a free port)::

        async with trio.open_nursery() as nursery:
            urls = await nursery.start(trio_sio.serve_native, sio, "127.0.0.1", 0)
            ...
            nursery.cancel_scope.cancel()  # graceful shutdown, then stop

    Args:
        server: the :class:`~trio_sio.Server` (or a bare Engine.IO server) to serve at
            ``/<path>/``; started here unless it is already running.
        ssl_context: serve HTTPS/WSS with this context (``trio.SSLStream``).
        static_files: URL path -> file or directory served as it is (``GET``/``HEAD``).
        path: where ``server`` is mounted (``"socket.io"`` gives ``/socket.io/``).
        endpoints: more endpoints, by path (for example a bare Engine.IO server at
            ``"engine.io"``); each is started unless already running.
        routes: URL path -> :data:`~trio_sio.hosts.Route`, an ``async`` function that answers
            the HTTP requests for that exact path (for example
            ``{"/metrics": trio_sio.metrics.metrics_route(sio)}``).
        config: limits and timeouts (:class:`~trio_sio.NativeConfig`).

    On cancellation: no new connections; every session of the endpoints started here closes
    with ``"server shutting down"`` (disconnect handlers run, within their timeout), and
    WebSockets close with 1001, before the remaining connections are cancelled.
    """
    await trio.lowlevel.checkpoint()
    config = config or NativeConfig()
    router, owned = make_router(server, static_files, path, endpoints, routes)
    listeners = await trio.open_tcp_listeners(port, host=host)
    the_host = Connections(router, config, ssl_context)
    urls = [_url(listener.socket.getsockname(), the_host.scheme) for listener in listeners]
    for listener in listeners:
        listener.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    async def accept(nursery: trio.Nursery) -> None:
        try:
            await trio.serve_listeners(the_host.handle, listeners, handler_nursery=nursery)
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    def close_listeners() -> None:
        for listener in listeners:
            listener.socket.close()

    await serve_host(the_host, owned, accept, close_listeners, urls, task_status=task_status)


def make_router(
    server: Endpoint,
    static_files: Mapping[str, str | Path] | None,
    path: str,
    endpoints: Mapping[str, Endpoint] | None,
    routes: Mapping[str, Route] | None,
) -> tuple[Router, list[Endpoint]]:
    """Where requests go, and the endpoints to start (those not running yet)."""
    mounts = [Mount("/" + path.strip("/") + "/", server)]
    for extra_path, endpoint in (endpoints or {}).items():
        mounts.append(Mount("/" + extra_path.strip("/") + "/", endpoint))
    router = Router(
        tuple(mounts),
        {url: Path(file) for url, file in (static_files or {}).items()},
        dict(routes or {}),
    )
    return router, [mount.endpoint for mount in mounts if not mount.endpoint.running]


async def serve_host(
    the_host: Connections,
    owned: list[Endpoint],
    accept: Callable[[trio.Nursery], Awaitable[None]],
    abandon: Callable[[], None],
    urls: list[str],
    *,
    task_status: trio.TaskStatus[list[str]],
) -> NoReturn:
    """Run the endpoints in ``owned`` and ``accept`` (which starts a task in the nursery it is
    given for each connection) until cancelled, then shut down in order. ``abandon`` closes
    the source of connections if starting fails before ``accept`` runs."""
    # Everything runs in a nursery shielded from the caller's cancellation, so that shutdown
    # happens in order (stop accepting, close sessions, let WebSockets close) and is bounded.
    inner_scope = trio.CancelScope(shield=True)
    accept_scope = trio.CancelScope()

    async def run_inner(*, task_status: trio.TaskStatus[None]) -> None:
        with inner_scope:
            async with trio.open_nursery() as nursery:
                for endpoint in owned:
                    await nursery.start(endpoint.run)
                await nursery.start(the_host.alarms.run)

                async def accept_until_cancelled() -> None:
                    with accept_scope:
                        await accept(nursery)

                nursery.start_soon(accept_until_cancelled)
                task_status.started()

    async with trio.open_nursery() as outer:
        try:
            await outer.start(run_inner)
        except BaseException:
            inner_scope.cancel()
            abandon()
            raise
        task_status.started(urls)
        try:
            await trio.sleep_forever()
        finally:
            accept_scope.cancel()
            await close_endpoints(owned, then=the_host.wait_no_websockets)
            inner_scope.cancel()
    raise AssertionError("unreachable")  # pragma: no cover
