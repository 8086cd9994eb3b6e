"""The ASGI host: serves an Engine.IO/Socket.IO endpoint under hypercorn's trio worker.

The server's nursery is hosted by the ASGI *lifespan*, which hypercorn runs in a task that
outlives every connection, so ``hypercorn -k trio module:app`` needs no other code. Sessions
never become children of a request's task.

Two things about hypercorn (0.18) shape the WebSocket side:

- Its reader hands messages to the application through a bounded queue and waits when the
  queue is full; it only finishes the connection after queueing ``websocket.disconnect``. An
  application that returns while that queue is full leaves the reader waiting for good, with
  the connection's socket. So a WebSocket handler here returns only after draining the queue
  (see :meth:`_AsgiWebSocket.finish`).
- It accepts ``permessage-deflate`` whenever a client offers it, and wsproto inflates without
  a size limit (hypercorn's ``websocket_max_message_size`` is checked on the inflated data), so
  255 KiB on the wire cost 256 MiB of memory. The offer is withdrawn before the handshake is
  answered (see :func:`_refuse_compression`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote

import trio

from .._engine import (
    BodyTooLarge,
    HttpRequest,
    HttpResponse,
    WebSocketClosed,
    decode_headers,
)
from .._protocol import Outgoing
from ._common import Endpoint, Route, close_endpoints, content_type, find_static_file

__all__ = ["ASGIApp", "ASGIApplication"]

logger = logging.getLogger("trio_sio.hosts.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApplication = Callable[[Scope, Receive, Send], Awaitable[None]]


class _ClientGone(Exception):
    """The HTTP client went away before its response."""


class ASGIApp:
    """An ASGI application serving ``endpoint`` at ``/<path>/``.

    Args:
        endpoint: the Socket.IO server (or a bare Engine.IO server).
        path: where the endpoint is mounted (``"socket.io"`` gives ``/socket.io/``).
        static_files: URL path -> file or directory to serve as it is (for example
            ``{"/": "index.html"}``), for pages that use the endpoint.
        routes: URL path -> :data:`~trio_sio.hosts.Route`, an ``async`` function that answers
            the HTTP requests for that exact path (for example
            ``{"/metrics": trio_sio.metrics.metrics_route(sio)}``).
        other_asgi_app: an application for every other request; its lifespan runs too.
        websocket_close_timeout: how long a WebSocket's closing handshake may take (our close
            frame out, the client's back) before the connection is handed back to the ASGI
            server, which then closes it.
        websocket_compression: let hypercorn accept ``permessage-deflate`` when a client
            offers it (hypercorn's own behaviour). Off by default: hypercorn inflates compressed
            messages without a size limit, so one small frame can cost hundreds of MiB. Off
            applies to every WebSocket this application sees, ``other_asgi_app``'s included.

    The lifespan runs ``endpoint.run`` unless the endpoint is already running (because the
    program started it in its own nursery).

    It needs a Trio ASGI server (``hypercorn -k trio``). Under another (hypercorn's default
    asyncio worker, uvicorn) the lifespan fails at start-up, and requests get a 500, with a
    message that says so.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        path: str = "socket.io",
        static_files: Mapping[str, str | Path] | None = None,
        routes: Mapping[str, Route] | None = None,
        other_asgi_app: ASGIApplication | None = None,
        websocket_close_timeout: float = 2.0,
        websocket_compression: bool = False,
    ) -> None:
        if websocket_close_timeout <= 0:
            raise ValueError("websocket_close_timeout must be positive")
        self.endpoint = endpoint
        self.prefix = "/" + path.strip("/") + "/"
        self.static_files = {url: Path(file) for url, file in (static_files or {}).items()}
        self.routes = dict(routes or {})
        self.other_asgi_app = other_asgi_app
        self.websocket_close_timeout = websocket_close_timeout
        self.websocket_compression = websocket_compression
        self._compression_guard = _CompressionGuard()
        #: How long the lifespan's shutdown waits for sessions to close gracefully (``None``:
        #: the endpoint's ``shutdown_grace``, its disconnect handlers' timeout plus a second).
        self.shutdown_grace: float | None = None
        self._said_wrong_loop = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if not _on_trio():
            if kind != "lifespan" and not self._said_wrong_loop:
                # The lifespan's failure the ASGI server reports; requests, only their clients.
                self._said_wrong_loop = True
                logger.error(_WRONG_LOOP)
            await _refuse_other_loop(scope, receive, send)
            return
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind == "websocket" and not self.websocket_compression:
            self._compression_guard(scope, send)
        path: str = scope["path"]
        if path == self.prefix or path == self.prefix[:-1]:
            if kind == "http":
                await self._http(scope, receive, send, self.endpoint.handle_http)
            elif kind == "websocket":
                await self._websocket(scope, receive, send)
            return
        route = self.routes.get(path)
        if route is not None and kind == "http":
            await self._http(scope, receive, send, route)
            return
        if kind == "http" and scope["method"] in ("GET", "HEAD"):
            file = find_static_file(self.static_files, path)
            if file is not None:
                await _send_file(send, file, head=scope["method"] == "HEAD")
                return
        if self.other_asgi_app is not None:
            await self.other_asgi_app(scope, receive, send)
        elif kind == "http":
            await _send_response(send, HttpResponse(404, b"Not Found"))
        elif kind == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1000})

    # --- lifespan ------------------------------------------------------------------------

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        async with trio.open_nursery() as nursery:
            try:
                if not self.endpoint.running:
                    await nursery.start(self.endpoint.run)
                other = None
                if self.other_asgi_app is not None:
                    other = await nursery.start(_run_lifespan, self.other_asgi_app, scope)
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                raise
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            await close_endpoints([self.endpoint], grace=self.shutdown_grace)
            if other is not None:
                await other.shutdown()
            nursery.cancel_scope.cancel()
        await send({"type": "lifespan.shutdown.complete"})

    # --- HTTP ----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send, handle: Route) -> None:
        request = _request_from_scope(scope)
        if request.method == "GET":
            # A long-poll watches the connection while it waits.
            async def wait_disconnected() -> NoReturn:
                while (await receive())["type"] != "http.disconnect":
                    pass
                raise _ClientGone

            request.wait_disconnected = wait_disconnected
            body = None
        else:
            body = _Body(receive, request.headers)
            request.read_body = body.read
        try:
            response = await handle(request)
        except _ClientGone:
            return
        await _send_response(send, response)
        if body is not None and not body.complete:
            await body.discard_rest()

    # --- WebSocket -----------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        ws = _AsgiWebSocket(scope, receive, send)
        try:
            await self.endpoint.handle_websocket(_request_from_scope(scope), ws)
        except Exception:
            await ws.finish(self.websocket_close_timeout, code=1011)
            raise
        # Nothing may run between the end of the drain and the return (see finish).
        await ws.finish(self.websocket_close_timeout)


#: What every request answers, and the lifespan reports, under another event loop.
_WRONG_LOOP = "trio_sio runs on Trio: use `hypercorn -k trio`"


def _on_trio() -> bool:
    """Whether this task runs under Trio: not under hypercorn's asyncio or uvloop worker
    (its default), nor uvicorn, where every Trio call would fail."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


async def _refuse_other_loop(scope: Scope, receive: Receive, send: Send) -> None:
    """Say what is wrong, rather than the 503 of a server that never started.

    The lifespan fails at start-up (hypercorn and uvicorn print the message and exit); with
    the lifespan off, each request gets the message: a 500, for a WebSocket too where the
    ASGI server can send one, or else a close with the message as its reason.
    """
    kind = scope["type"]
    response = HttpResponse(500, _WRONG_LOOP.encode(), [("Content-Type", "text/plain")])
    if kind == "lifespan":
        await receive()  # lifespan.startup
        await send({"type": "lifespan.startup.failed", "message": _WRONG_LOOP})
    elif kind == "http":
        await _send_response(send, response)
    elif kind == "websocket":
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await _AsgiWebSocket(scope, receive, send).reject(response)
        else:
            await send({"type": "websocket.close", "code": 1011, "reason": _WRONG_LOOP})


def _request_from_scope(scope: Scope) -> HttpRequest:
    headers = decode_headers(scope.get("headers", ()))
    client = scope.get("client")
    scheme = str(scope.get("scheme") or "http")
    return HttpRequest(
        method=scope.get("method", "GET"),
        path=unquote(scope["path"]),
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        scheme={"ws": "http", "wss": "https"}.get(scheme, scheme),
        client=(client[0], client[1]) if client else None,
    )


class _Body:
    """A request body read through ASGI ``receive``."""

    #: After refusing a body, how much more of it is read and dropped, at most, and for how
    #: long: hypercorn resets a connection it closes with unread bytes, and the client would
    #: see the reset instead of the answer (engine.io keeps reading too).
    DISCARD_BYTES = 16 * 1024 * 1024
    DISCARD_SECONDS = 1.0

    def __init__(self, receive: Receive, headers: Mapping[str, str]) -> None:
        self._receive = receive
        self._headers = headers
        self.complete = False

    async def read(self, limit: int) -> bytes:
        """The whole body; :class:`BodyTooLarge` rather than more than ``limit`` bytes."""
        declared = self._headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.complete = True
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            total += len(chunk)
            self.complete = not message.get("more_body", False)
            if total > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if self.complete:
                return b"".join(chunks)

    async def discard_rest(self) -> None:
        """Read and drop what is left of the body, within bounds (see :attr:`DISCARD_BYTES`)."""
        total = 0
        with trio.move_on_after(self.DISCARD_SECONDS):
            while not self.complete and total <= self.DISCARD_BYTES:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    return
                total += len(message.get("body", b""))
                self.complete = not message.get("more_body", False)


async def _send_response(
    send: Send, response: HttpResponse, *, content_length: int | None = None
) -> None:
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
    ]
    length = len(response.body) if content_length is None else content_length
    headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _send_file(send: Send, file: Path, *, head: bool) -> None:
    body = await trio.Path(file).read_bytes()
    response = HttpResponse(200, b"" if head else body, [("Content-Type", content_type(file))])
    await _send_response(send, response, content_length=len(body))


#: After its closing handshake timed out, a WebSocket handler returns only once no message has
#: come for this long (seconds): see :meth:`_AsgiWebSocket.finish`.
_QUIET = 1.0

#: Set in a WebSocket scope whose compression offer was withdrawn, for applications inside.
_REFUSED = "trio_sio.compression_refused"


def _refuse_compression(scope: Scope, send: Send) -> bool:
    """Withdraw a client's ``permessage-deflate`` offer before hypercorn answers it; returns
    ``False`` if the client offered it and it cannot be withdrawn.

    ASGI has no say in extensions and hypercorn 0.18 has no setting for them: it negotiates
    from the request's headers, parsed before the application runs, when the application sends
    ``websocket.accept`` (headers the application adds are appended, not substituted). Its
    ``send`` is a method of the connection's stream object, which holds that parsed handshake,
    so the offer is removed there. A compressed frame is then a protocol error, refused from
    its header before any payload is read. If ``send`` is not hypercorn's (a middleware wrapped
    it), nothing can be done here.
    """
    if scope.get(_REFUSED):
        return True
    stream = getattr(send, "__self__", None)
    handshake: Any = getattr(stream, "handshake", None)
    if type(stream).__module__.startswith("hypercorn.") and hasattr(handshake, "extensions"):
        offered = handshake.extensions
        if isinstance(offered, list):
            kept = [e for e in offered if e.split(";")[0].strip().lower() != "permessage-deflate"]
            handshake.extensions = kept or None
        scope[_REFUSED] = True
        return True
    offer = decode_headers(scope.get("headers", ())).get("sec-websocket-extensions", "")
    return "permessage-deflate" not in offer.lower()


class _CompressionGuard:
    """Refuses compression for one application; warns once when it cannot."""

    def __init__(self) -> None:
        self._warned = False

    def __call__(self, scope: Scope, send: Send) -> None:
        if not _refuse_compression(scope, send) and not self._warned:
            self._warned = True
            logger.warning(
                "a client offered permessage-deflate and trio_sio cannot refuse it: the ASGI "
                "server is not hypercorn, or a middleware wraps send (see the deployment "
                "documentation on permessage-deflate)"
            )


def without_compression(app: ASGIApplication) -> ASGIApplication:
    """``app``, with every WebSocket's ``permessage-deflate`` offer refused as
    :class:`ASGIApp` does (for an application that is not one)."""
    guard = _CompressionGuard()

    async def refusing(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            guard(scope, send)
        await app(scope, receive, send)

    return refusing


class _AsgiWebSocket:
    """:class:`~trio_sio._engine.WebSocketConnection` over an ASGI websocket scope."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._accepted = False
        self._close_sent = False  # websocket.close (or a rejection) went out
        self._disconnected = False  # websocket.disconnect came in
        self._failed = False  # a send failed: the connection is gone

    async def accept(self, headers: list[tuple[str, str]]) -> None:
        encoded = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        await self._send({"type": "websocket.accept", "headers": encoded})
        self._accepted = True

    async def reject(self, response: HttpResponse) -> None:
        self._close_sent = True
        if "websocket.http.response" in self._scope.get("extensions", {}):
            headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response.headers]
            await self._send(
                {
                    "type": "websocket.http.response.start",
                    "status": response.status,
                    "headers": headers,
                }
            )
            await self._send({"type": "websocket.http.response.body", "body": response.body})
        else:
            await self._send({"type": "websocket.close", "code": 1008})

    async def receive(self) -> str | bytes:
        if self._disconnected:
            raise WebSocketClosed
        message = await self._receive()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            if text is not None:
                return str(text)
            return bytes(message.get("bytes") or b"")
        self._disconnected = True
        raise WebSocketClosed(message.get("code", 1005))

    async def send(self, items: Sequence[Outgoing]) -> None:
        if self._close_sent or self._disconnected or self._failed:
            raise WebSocketClosed
        try:
            for item in items:
                for frame in item.frames:
                    if isinstance(frame, str):
                        await self._send({"type": "websocket.send", "text": frame})
                    else:
                        await self._send({"type": "websocket.send", "bytes": frame})
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._failed = True
            raise WebSocketClosed from exc

    async def close(self, code: int = 1000) -> None:
        if self._close_sent or self._disconnected or self._failed:
            return
        self._close_sent = True
        try:
            await self._send({"type": "websocket.close", "code": code})
        except Exception:  # the peer is gone already; nothing to close
            self._failed = True
            logger.debug("websocket close after disconnect", exc_info=True)

    async def finish(self, close_timeout: float, *, code: int = 1000) -> None:
        """Close (if not done yet) and read until ``websocket.disconnect``, discarding what
        comes: the last thing the handler does before returning.

        hypercorn finishes a connection only after queueing ``websocket.disconnect`` for the
        application (when the client answers our close frame, or hangs up, or the handler
        returns), and its reader waits while the application's queue is full. A session that
        stopped reading (its event handlers were behind) leaves that queue full; returning then
        would leave the reader, the connection's task and its socket waiting for good.

        Reading goes on until the disconnect, or for ``close_timeout`` (a client that answers
        neither close frame nor pings); past it, until no message has come for ``_QUIET``
        seconds. hypercorn's reader parses everything one socket read brought before reading
        again, and a handler that returned in the middle of that would leave it blocked on
        the rest; quiet means it is waiting for its socket, so the queue stays empty until
        hypercorn, on our return, queues the disconnect and closes the connection (nothing
        between the end of this loop and the return lets another task run). A client that
        keeps sending keeps the handler reading, at its own cost, until it stops.
        """
        if not self._accepted or self._disconnected or self._failed:
            return
        await self.close(code)
        deadline = trio.current_time() + close_timeout
        last = -math.inf
        while True:
            with trio.move_on_at(max(deadline, last + _QUIET)):
                message = await self._receive()
                if message["type"] == "websocket.disconnect":
                    self._disconnected = True
                    return
                last = trio.current_time()
                continue
            return


class _LifespanHandle:
    def __init__(
        self,
        to_app: trio.MemorySendChannel[Message],
        events: trio.MemoryReceiveChannel[Message],
        *,
        supported: bool,
    ) -> None:
        self._to_app = to_app
        self._events = events
        self._supported = supported

    async def shutdown(self) -> None:
        if self._supported:
            await self._to_app.send({"type": "lifespan.shutdown"})
            await self._events.receive()


async def _run_lifespan(
    app: ASGIApplication, scope: Scope, *, task_status: trio.TaskStatus[_LifespanHandle]
) -> None:
    """Drive another application's lifespan from ours (startup now, shutdown on request)."""
    to_app, app_inbox = trio.open_memory_channel[Message](1)
    from_app, events = trio.open_memory_channel[Message](1)

    replied = False

    async def send(message: Message) -> None:
        nonlocal replied
        replied = True
        await from_app.send(message)

    async with trio.open_nursery() as nursery:

        async def run_app() -> None:
            try:
                await app(scope, app_inbox.receive, send)
            except Exception:
                if replied:
                    raise  # it did speak lifespan, then failed: a real error, not a refusal
                # An app without lifespan support raises on the scope type: that is allowed.
                await from_app.send({"type": "lifespan.unsupported"})

        nursery.start_soon(run_app)
        await to_app.send({"type": "lifespan.startup"})
        reply = await events.receive()
        if reply["type"] == "lifespan.startup.failed":
            raise RuntimeError(reply.get("message", "other application failed to start"))
        supported = reply["type"] == "lifespan.startup.complete"
        task_status.started(_LifespanHandle(to_app, events, supported=supported))
