"""The client's two Engine.IO transports: WebSocket over trio-websocket, and long-polling over
:class:`~trio_sio._client._http.HttpConnection`. Each reads packets into a callback and writes
batches of :class:`Outgoing`; the engine connection decides which one is current."""

from __future__ import annotations

import abc
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import trio
import trio_websocket

from .._protocol import (
    EnginePacket,
    Outgoing,
    ProtocolError,
    decode_packet,
    decode_payload,
    encode_payload,
)
from ._http import Endpoint, HttpConnection, TransportFailure, open_stream

__all__ = [
    "Deliver",
    "MessageOpener",
    "MessageTransport",
    "PacketPerMessage",
    "PollingTransport",
    "WebSocketTransport",
    "open_websocket",
]

#: Messages trio-websocket may hold that nobody has read yet: reading stops beyond them.
WEBSOCKET_QUEUE = 4
#: "Message too big", trio-websocket's close code when a message exceeds its limit.
MESSAGE_TOO_BIG = 1009

#: Receives each packet as it is read; reading waits for it (that is the backpressure).
Deliver = Callable[[EnginePacket], Awaitable[None]]


class MessageTransport(Protocol):
    """One Engine.IO packet per message, both ways: :class:`WebSocketTransport`, or the
    in-memory WebSocket of :mod:`trio_sio.testing`."""

    name: str

    async def receive(self) -> EnginePacket:
        """The next packet (raises :class:`TransportFailure` once closed)."""

    async def read(self, deliver: Deliver) -> None:
        """Deliver packets until closed (raising :class:`TransportFailure`)."""

    async def write(self, batch: Sequence[Outgoing]) -> None: ...

    async def send_text(self, text: str) -> None: ...

    async def finish(self) -> None:
        """Close from this side, in order (after what was written)."""

    async def aclose(self) -> None:
        """Close at once."""


#: Opens a message transport to the server, for a new session (``None``) or to upgrade the
#: session of that sid; instead of a WebSocket over TCP, it is how the in-memory client
#: connects.
MessageOpener = Callable[[str | None], Awaitable[MessageTransport]]


class _ReaderNursery:
    """What trio-websocket starts its reader task in: the real nursery, with the task wrapped
    so that a refused handshake (which trio-websocket raises in that task) becomes a message
    for the opener instead of an error that would take the whole nursery down."""

    def __init__(self, nursery: trio.Nursery, on_done: Callable[[], None]) -> None:
        self._nursery = nursery
        self._on_done = on_done
        self.rejection: trio_websocket.ConnectionRejected | None = None

    def start_soon(self, reader: Callable[[], Awaitable[None]], *args: Any) -> None:
        async def guarded() -> None:
            try:
                await reader(*args)
            except trio_websocket.ConnectionRejected as exc:
                self.rejection = exc
            finally:
                self._on_done()

        self._nursery.start_soon(guarded)


async def open_websocket(
    nursery: trio.Nursery,
    endpoint: Endpoint,
    ssl_context: ssl.SSLContext | None,
    headers: Sequence[tuple[str, str]],
    *,
    sid: str | None,
    max_message: int,
) -> WebSocketTransport:
    """Open a WebSocket to the Engine.IO endpoint (for a new session, or to upgrade ``sid``);
    its reader task runs in ``nursery``.

    Raises:
        TransportFailure: the connection failed or the server refused the handshake.
    """
    stream = await open_stream(endpoint, ssl_context)
    try:
        with trio.CancelScope() as handshake:
            reader = _ReaderNursery(nursery, handshake.cancel)
            ws = await trio_websocket.wrap_client_stream(
                cast(trio.Nursery, reader),
                stream,
                endpoint.host_header,
                endpoint.target("websocket", sid),
                extra_headers=[(name.encode(), value.encode()) for name, value in headers],
                message_queue_size=WEBSOCKET_QUEUE,
                max_message_size=max_message,
            )
            return WebSocketTransport(ws, stream)
        rejection = reader.rejection
        if rejection is not None:
            body = (rejection.body or b"")[:200].decode(errors="replace")
            raise TransportFailure(f"WebSocket refused: HTTP {rejection.status_code} {body}")
        raise TransportFailure("the connection closed during the WebSocket handshake", closed=True)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


class PacketPerMessage(abc.ABC):
    """What every :class:`MessageTransport` does alike, one Engine.IO packet per message: a
    subclass says how one message is received and sent (raising :class:`TransportFailure`
    once closed) and how it closes."""

    name = "websocket"

    @abc.abstractmethod
    async def receive_message(self) -> str | bytes:
        """The next message."""

    @abc.abstractmethod
    async def send_message(self, message: str | bytes) -> None: ...

    async def receive(self) -> EnginePacket:
        """The next packet.

        Raises:
            TransportFailure: the transport closed.
            ProtocolError: the message is no Engine.IO packet.
        """
        return decode_packet(await self.receive_message())

    async def read(self, deliver: Deliver) -> None:
        """Deliver packets until the transport closes (raising :class:`TransportFailure`)."""
        while True:
            await deliver(await self.receive())

    async def write(self, batch: Sequence[Outgoing]) -> None:
        for outgoing in batch:
            for frame in outgoing.frames:
                await self.send_message(frame)

    async def send_text(self, text: str) -> None:
        """One text message (the upgrade's ``2probe`` and ``5``)."""
        await self.send_message(text)


class WebSocketTransport(PacketPerMessage):
    """A WebSocket over TCP (trio-websocket)."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, stream: trio.abc.Stream) -> None:
        self._ws = ws
        self._stream = stream

    async def receive_message(self) -> str | bytes:
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise _closed(exc) from None

    async def send_message(self, message: str | bytes) -> None:
        try:
            await self._ws.send_message(message)
        except trio_websocket.ConnectionClosed as exc:
            raise _closed(exc) from None

    async def finish(self) -> None:
        """The WebSocket's closing handshake (its reader must still be running)."""
        await self._ws.aclose()

    async def aclose(self) -> None:
        """Close the stream, without the closing handshake (its reader may be gone)."""
        await trio.aclose_forcefully(self._stream)


def _closed(exc: trio_websocket.ConnectionClosed) -> TransportFailure:
    code = exc.reason.code if exc.reason is not None else None
    if code == MESSAGE_TOO_BIG:
        return TransportFailure("a WebSocket message was larger than max_payload")
    return TransportFailure(f"the WebSocket closed (code {code})", closed=True)


class PollingTransport:
    """HTTP long-polling: a GET that the server answers with packets, and a POST per batch.

    Each runs on its own kept-alive connection, so a write never waits for a poll.
    """

    name = "polling"

    def __init__(
        self,
        endpoint: Endpoint,
        ssl_context: ssl.SSLContext | None,
        headers: Sequence[tuple[str, str]],
        *,
        max_body: int,
    ) -> None:
        self._endpoint = endpoint
        self._poll = HttpConnection(endpoint, ssl_context, headers, max_body=max_body)
        self._post = HttpConnection(endpoint, ssl_context, headers, max_body=max_body)
        self.sid: str | None = None
        #: Set to stop reading after the poll under way (the upgrade pauses polling).
        self.pausing = False
        self.paused = trio.Event()

    async def poll(self) -> list[EnginePacket]:
        """One GET: the packets the server had (the handshake's answer if there is no sid)."""
        response = await self._poll.request("GET", self._endpoint.target("polling", self.sid))
        body = _ok_text(response.status, response.body)
        # The body's size already bounds the packet count (max_body).
        return decode_payload(body, max_packets=len(body) + 1)

    async def read(self, deliver: Deliver) -> None:
        """Poll and deliver until paused (returns) or the session fails (raises)."""
        try:
            while not self.pausing:
                for packet in await self.poll():
                    await deliver(packet)
        finally:
            self.paused.set()

    async def write(self, batch: Sequence[Outgoing]) -> None:
        body = encode_payload(batch).encode()
        response = await self._post.request(
            "POST",
            self._endpoint.target("polling", self.sid),
            body,
            {"Content-Type": "text/plain;charset=UTF-8"},
        )
        _ok_text(response.status, response.body)

    async def finish(self) -> None:
        """Nothing more to say: the CLOSE packet went in the last POST."""
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await self._poll.aclose()
        await self._post.aclose()


def _ok_text(status: int, body: bytes) -> str:
    if status != 200:
        detail = body[:200].decode(errors="replace")
        raise TransportFailure(f"HTTP {status} {detail}".rstrip())
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise ProtocolError("invalid payload", "not UTF-8") from None
