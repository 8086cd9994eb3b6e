"""Serving a Socket.IO server from a Trio program, with hypercorn as the HTTP server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ._asgi import ASGIApp, ASGIApplication, without_compression
from ._common import Endpoint, close_endpoints

if TYPE_CHECKING:
    from hypercorn.config import Config

__all__ = ["serve_hypercorn"]


async def serve_hypercorn(
    server: Endpoint,
    host: str = "127.0.0.1",
    port: int = 5001,
    *,
    app: ASGIApplication | None = None,
    config: Config | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``server`` over HTTP and WebSocket with hypercorn until cancelled.

    Compatible with ``nursery.start``, which returns the bound URLs (``port=0`` picks a free
    port)::

        async with trio.open_nursery() as nursery:
            urls = await nursery.start(trio_sio.serve_hypercorn, sio, "127.0.0.1", 0)
            ...
            nursery.cancel_scope.cancel()  # graceful shutdown, then stop

    Args:
        app: the ASGI application to serve (default: ``ASGIApp(server)``), for static files
            or another application beside Socket.IO. WebSocket compression is refused unless
            ``app`` is an :class:`ASGIApp` made with ``websocket_compression=True``
            (hypercorn would inflate compressed messages without a size limit).
        config: a hypercorn ``Config``; ``bind`` is set from ``host`` and ``port``, and its
            WebSocket message limit is lowered to the server's ``max_payload``.

    On cancellation every session is closed with ``"server shutting down"`` (disconnect
    handlers run, within ``disconnect_handler_timeout``) before the listener goes away.
    """
    await trio.lowlevel.checkpoint()
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = config or Config()
    config.bind = [f"{host}:{port}"]
    config.websocket_max_message_size = min(config.websocket_max_message_size, server.max_payload)
    # Shutdown goes in order: first the sessions close (clients get close frames, handlers
    # run) while hypercorn still carries their connections, then hypercorn stops, then the
    # server's nursery. So both run shielded from the caller's cancellation, and are stopped
    # explicitly, each within its deadline.
    # hypercorn types its ASGI callables with its own TypedDicts; ours are plain mappings.
    asgi_app: Any = app or ASGIApp(server)
    if not isinstance(asgi_app, ASGIApp):  # an ASGIApp refuses compression itself, if asked
        asgi_app = without_compression(asgi_app)
    http_stopped = trio.Event()
    server_scope = trio.CancelScope(shield=True)

    async def run_server(*, task_status: trio.TaskStatus[None]) -> None:
        with server_scope:
            await server.run(task_status=task_status)

    async def run_http(*, task_status: trio.TaskStatus[list[str]]) -> None:
        with trio.CancelScope(shield=True):
            await serve(
                asgi_app,
                config,
                shutdown_trigger=http_stopped.wait,
                task_status=task_status,
            )

    async with trio.open_nursery() as nursery:
        await nursery.start(run_server)
        try:
            urls: list[str] = await nursery.start(run_http)
            task_status.started(urls)
            await trio.sleep_forever()
        finally:
            await close_endpoints([server])
            http_stopped.set()
            server_scope.cancel()
