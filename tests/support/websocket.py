"""A WebSocket client on wsproto for tests: full control of frames, and a socket that is
always closed (trio-websocket 0.12 leaves its socket open when the server closes first)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio
import wsproto
import wsproto.events as ev
from wsproto.extensions import Extension


class Closed(Exception):
    """The server closed the connection (``code`` is its close code, 1006 if none)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Rejected(Exception):
    """The server refused the opening handshake with an HTTP response."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


class WebSocket:
    def __init__(self, stream: trio.SocketStream, conn: wsproto.WSConnection) -> None:
        self.stream = stream
        self.conn = conn
        self._pending: list[ev.Event] = []
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self.close_code: int | None = None
        #: The handshake response's headers (names in lower case).
        self.accept_headers: dict[str, str] = {}

    async def _flush(self, event: ev.Event) -> None:
        data = self.conn.send(event)
        if data:
            await self.stream.send_all(data)

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self._flush(ev.TextMessage(data=message))
        else:
            await self._flush(ev.BytesMessage(data=message))

    async def send_raw(self, data: bytes) -> None:
        """Bytes straight onto the socket (hand-made frames)."""
        await self.stream.send_all(data)

    async def _next_event(self) -> ev.Event:
        while not self._pending:
            self._pending.extend(self.conn.events())
            if self._pending:
                break
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset by the server: no close frame
                data = b""
            self.conn.receive_data(data or None)
        return self._pending.pop(0)

    async def receive(self) -> str | bytes:
        """The next message; raises :class:`Closed` when the server closes."""
        if self.close_code is not None:
            raise Closed(self.close_code)
        while True:
            event = await self._next_event()
            if isinstance(event, ev.TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    text = "".join(self._text)
                    self._text.clear()
                    return text
            elif isinstance(event, ev.BytesMessage):
                self._bytes.append(bytes(event.data))
                if event.message_finished:
                    data = b"".join(self._bytes)
                    self._bytes.clear()
                    return data
            elif isinstance(event, ev.Ping):
                await self._flush(event.response())
            elif isinstance(event, ev.CloseConnection):
                self.close_code = event.code
                if self.conn.state is wsproto.ConnectionState.REMOTE_CLOSING:
                    with contextlib.suppress(trio.BrokenResourceError):
                        await self._flush(event.response())  # the server may be gone already
                raise Closed(event.code)

    async def close(self, code: int = 1000) -> None:
        if self.conn.state is wsproto.ConnectionState.OPEN:
            await self._flush(ev.CloseConnection(code=code))


@asynccontextmanager
async def open_websocket(
    url: str,
    headers: Sequence[tuple[str, str]] = (),
    extensions: Sequence[Extension] = (),
) -> AsyncIterator[WebSocket]:
    """Connect to a ``ws://`` URL; raises :class:`Rejected` if the handshake is refused."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    target = parts.path + ("?" + parts.query if parts.query else "")
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream:
        conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        request = ev.Request(
            host=f"{parts.hostname}:{parts.port}",
            target=target,
            extra_headers=[(k.encode(), v.encode()) for k, v in headers],
            extensions=list(extensions),
        )
        await stream.send_all(conn.send(request))
        ws = WebSocket(stream, conn)
        event = await ws._next_event()
        if isinstance(event, ev.RejectConnection):
            body = b""
            while event.has_body:
                data_event = await ws._next_event()
                assert isinstance(data_event, ev.RejectData)
                body += data_event.data
                if data_event.body_finished:
                    break
            raise Rejected(event.status_code, body)
        assert isinstance(event, ev.AcceptConnection), event
        ws.accept_headers = {k.decode().lower(): v.decode() for k, v in event.extra_headers}
        yield ws
