"""What a host (ASGI under hypercorn, or the native Trio host) hands the Engine.IO server.

The session runtime never sees ASGI types: a host turns its requests into :class:`HttpRequest`
objects and its WebSocket connections into :class:`WebSocketConnection` objects.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import NoReturn, Protocol, runtime_checkable

import trio

from .._protocol import Outgoing

__all__ = [
    "BodyTooLarge",
    "HttpRequest",
    "HttpResponse",
    "WebSocketClosed",
    "WebSocketConnection",
    "WritesWithoutWaiting",
    "decode_headers",
    "direct_writer",
]

#: Header names decoded once for every request rather than anew for each: a session keeps its
#: handshake's headers (``Socket.handshake``), and a string per name per idle connection adds
#: up. A fixed table, so what clients send cannot grow it.
_COMMON_NAMES = {
    name.encode("ascii"): name
    for name in (
        "accept",
        "accept-encoding",
        "accept-language",
        "authorization",
        "cache-control",
        "connection",
        "content-length",
        "content-type",
        "cookie",
        "host",
        "origin",
        "pragma",
        "referer",
        "sec-websocket-extensions",
        "sec-websocket-key",
        "sec-websocket-protocol",
        "sec-websocket-version",
        "upgrade",
        "user-agent",
        "x-forwarded-for",
    )
}


class BodyTooLarge(Exception):
    """The request body is larger than the limit the reader was given."""


class WebSocketClosed(Exception):
    """The WebSocket connection is closed (by the peer, or by a failure)."""

    def __init__(self, code: int = 1006) -> None:
        super().__init__(code)
        self.code = code


@dataclass(slots=True)
class HttpRequest:
    """A request as the host received it.

    Attributes:
        method: ``GET``, ``POST``, ...
        path: the URL path, percent-decoded.
        query_string: the raw query string, without ``?``.
        headers: header names in lower case; the first occurrence of a repeated name.
        scheme: ``http`` or ``https`` (``ws``/``wss`` are reported as ``http``/``https``).
        client: the peer's ``(host, port)``, when known.
        read_body: reads the whole body, raising :class:`BodyTooLarge` rather than reading
            more than the given number of bytes.
        body: the whole body, when the host had it already with the request's head (then
            ``read_body`` need not be called); ``None`` otherwise.
        wait_disconnected: waits until the client has gone away, then raises an exception
            of the host's choosing, which leaves ``handle_http`` for the host to catch. A
            long-poll waits in it, in the request's own task, until its answer is ready. The
            default, for hosts that cannot tell, waits forever.
        answer_nowait: for a long-poll, where the host can write from any task without
            waiting (the native host on plain TCP): writes the given response now and returns
            ``True``, or returns ``False`` (the socket would block, the connection must close
            after it, or the request was answered) and nothing happened. Once it returned
            ``True`` the request is answered: the host ends the ``handle_http`` call still
            waiting in ``wait_disconnected`` when the client's next request (or its going
            away) wakes it, and whatever that call would have returned is not sent.
        time: when the request arrived (``time.time()``).
    """

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    scheme: str = "http"
    client: tuple[str, int] | None = None
    read_body: Callable[[int], Awaitable[bytes]] | None = None
    body: bytes | None = None
    wait_disconnected: Callable[[], Awaitable[NoReturn]] = trio.sleep_forever
    answer_nowait: Callable[[HttpResponse], bool] | None = None
    time: float = field(default_factory=time.time)

    def without_host_callables(self) -> HttpRequest:
        """This request without ``read_body``, ``wait_disconnected`` and ``answer_nowait``, for
        keeping beyond the request: itself if it has none (a WebSocket's), else a copy (2.5 µs
        and 120 bytes more)."""
        if (
            self.read_body is None
            and self.answer_nowait is None
            and self.wait_disconnected is trio.sleep_forever
        ):
            return self
        return replace(
            self, read_body=None, wait_disconnected=trio.sleep_forever, answer_nowait=None
        )

    @property
    def url(self) -> str:
        """The request's path and query, as the client sent them."""
        return self.path + ("?" + self.query_string if self.query_string else "")


def decode_headers(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Raw header pairs as :attr:`HttpRequest.headers` has them: names in lower case, the
    first occurrence of a repeated name, Latin-1 decoded."""
    headers: dict[str, str] = {}
    common = _COMMON_NAMES
    for raw_name, raw_value in pairs:
        lowered = raw_name.lower()
        name = common.get(lowered) or lowered.decode("latin-1")
        if name not in headers:
            headers[name] = raw_value.decode("latin-1")
    return headers


@dataclass
class HttpResponse:
    """A response for the host to send."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


class WebSocketConnection(Protocol):
    """A server-side WebSocket as the host provides it."""

    async def accept(self, headers: list[tuple[str, str]]) -> None:
        """Complete the opening handshake."""
        ...

    async def reject(self, response: HttpResponse) -> None:
        """Refuse the opening handshake with an HTTP response (where the host can)."""
        ...

    async def receive(self) -> str | bytes:
        """The next message. Raises :class:`WebSocketClosed` once the connection is closed."""
        ...

    async def send(self, items: Sequence[Outgoing]) -> None:
        """Send the frames of ``items`` as messages, in order (a host may coalesce the writes).

        Raises :class:`WebSocketClosed` if the connection is closed."""
        ...

    async def close(self, code: int = 1000) -> None:
        """Start the closing handshake (no error if already closed)."""
        ...


@runtime_checkable
class WritesWithoutWaiting(Protocol):
    """An optional ability of a :class:`WebSocketConnection`: writing from any task, without
    waiting, when the socket can take the bytes at once. The engine looks for it once per
    connection; a host whose writes always go through the scheduler simply lacks it."""

    def write_nowait(self, items: Sequence[Outgoing]) -> bool:
        """Write ``items`` at once, in one write, unless that would have to wait for another
        write; returns whether they were taken.

        The engine only offers items when nothing else is being sent, so order holds. What the
        kernel does not take at once stays with the connection (:attr:`unsent` is then true)
        and goes out first on the next :meth:`~WebSocketConnection.send`, which the engine
        makes soon (``send([])`` just flushes).
        """
        ...

    @property
    def unsent(self) -> bool:
        """Whether bytes that :meth:`write_nowait` took are still waiting for ``send``."""
        ...


#: Per connection class, whether it can write without waiting: a runtime_checkable
#: isinstance walks the protocol's members each time, about 5 µs per connection.
_CAN_WRITE_NOWAIT: dict[type, bool] = {}


def direct_writer(connection: object) -> WritesWithoutWaiting | None:
    """``connection`` if it has the host ability to write without waiting, else ``None``."""
    kind = type(connection)
    able = _CAN_WRITE_NOWAIT.get(kind)
    if able is None:
        able = _CAN_WRITE_NOWAIT[kind] = isinstance(connection, WritesWithoutWaiting)
    return connection if able else None  # type: ignore[return-value]
