"""A server-side WebSocket on a Trio stream, for the Engine.IO session runtime."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import trio

from ..._engine import HttpResponse, WebSocketClosed
from ..._protocol import Outgoing
from ..._protocol.websocket import (
    OP_PONG,
    Close,
    CloseCode,
    PerMessageDeflate,
    Ping,
    WebSocketDecoder,
    WebSocketError,
    encode_close,
    encode_frame,
    encode_messages,
)
from ._io import Reader, raw_socket, send_raw

__all__ = ["DirectWebSocket", "NativeWebSocket"]

logger = logging.getLogger("trio_sio")

_DISCONNECTED = (trio.BrokenResourceError, trio.ClosedResourceError)

#: Messages the reader may return in a row, when they were already received, before it lets
#: other tasks run.
_MAX_UNYIELDED = 32


class NativeWebSocket:
    """:class:`~trio_sio._engine.WebSocketConnection` over a Trio stream.

    The HTTP side (``accept_response`` and ``reject_response``) is provided by the HTTP
    connection, which owns the h11 state; this object takes over the stream once the
    handshake is accepted.

    One task reads (:meth:`receive`) while another writes (:meth:`send`); writes, including
    the pongs and close frames the reader sends, are serialised by a lock. A write that fails
    or is cancelled leaves the stream in an unknown state, so nothing more is written on it
    (not even a close frame).

    On plain TCP without compression, :class:`DirectWebSocket` can also be written from any
    task without waiting.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_message_size: int,
        deflate: PerMessageDeflate | None,
        receive_size: int,
        close_timeout: float,
        accept_response: Callable[[list[tuple[str, str]]], Awaitable[bytes]],
        reject_response: Callable[[HttpResponse], Awaitable[None]],
    ) -> None:
        self._stream = stream
        self._decoder = WebSocketDecoder(max_message_size=max_message_size, deflate=deflate)
        self._deflate = deflate
        self._close_timeout = close_timeout
        self._accept_response = accept_response
        self._reject_response = reject_response
        self._send_lock = trio.Lock()
        self._read_lock = trio.Lock()
        self.accepted = False
        self.rejected = False
        self._write_broken = False  # a write failed or was cancelled midway
        self._eof = False  # nothing more to read
        self._close_sent = False
        self._close_received = False
        self._finished = False  # close() ran
        self._unyielded = 0  # messages returned in a row without waiting
        self._raw = raw_socket(stream)
        self._tail = b""  # what the kernel did not take of a write_nowait, sent first next
        self._reader = Reader(stream, receive_size)

    # --- handshake ---------------------------------------------------------------------

    async def accept(self, headers: list[tuple[str, str]]) -> None:
        if self.accepted or self.rejected:
            raise RuntimeError("the handshake is already answered")
        leftover = await self._accept_response(headers)
        self.accepted = True
        self._accept_response = _answered
        if leftover:
            self._decoder.receive_data(leftover)

    async def reject(self, response: HttpResponse) -> None:
        if self.accepted or self.rejected:
            raise RuntimeError("the handshake is already answered")
        self.rejected = True
        self._finished = True
        await self._reject_response(response)

    # --- writing -----------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        lock = self._send_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if self._write_broken:
                raise WebSocketClosed(CloseCode.ABNORMAL)
            if self._tail:
                data = self._tail + data
                self._tail = b""
            self._write_broken = True
            try:
                if self._raw is not None:
                    await send_raw(self._raw, data)
                else:
                    await self._stream.send_all(data)
            except (*_DISCONNECTED, OSError) as exc:
                raise WebSocketClosed(CloseCode.ABNORMAL) from exc
            self._write_broken = False
        finally:
            lock.release()

    async def send(self, items: Sequence[Outgoing]) -> None:
        """The frames of all ``items`` in one write."""
        if self._close_sent or not self.accepted:
            raise WebSocketClosed(CloseCode.ABNORMAL)
        if self._deflate is None:
            data = _wire_bytes(items)
        else:
            data = encode_messages([f for item in items for f in item.frames], self._deflate)
        await self._write(data)

    async def _send_close(self, code: int) -> None:
        if self._close_sent or self._write_broken:
            return
        self._close_sent = True
        await self._write(encode_close(code))

    # --- reading -----------------------------------------------------------------------

    async def _recv(self) -> tuple[bytes, bool]:
        """Bytes from the peer (``b""`` at EOF or on error), and whether this waited.

        Only one task reads at a time: normally the session's reader, but while a session
        ends, its cancelled reader and the closing handshake may overlap for a moment."""
        lock = self._read_lock
        waited = False
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
            waited = True
        try:
            data = self._reader.receive_nowait()
            if data is not None:
                return data, waited
            return await self._reader.receive(), True
        finally:
            lock.release()

    async def _read(self) -> bool:
        """Read once into the decoder; raises :class:`WebSocketClosed` at EOF.

        Returns whether this waited (and so let other tasks run)."""
        if self._eof:
            raise WebSocketClosed(CloseCode.ABNORMAL)
        data, waited = await self._recv()
        if not data:
            self._eof = True
            raise WebSocketClosed(CloseCode.ABNORMAL)
        self._decoder.receive_data(data)
        return waited

    async def receive(self) -> str | bytes:
        """The next message; answers pings, completes a close the peer starts."""
        if not self.accepted or self._close_received:
            raise WebSocketClosed(CloseCode.ABNORMAL)
        decoder = self._decoder
        waited = False
        while True:
            try:
                event = decoder.next_event()
            except WebSocketError as exc:
                logger.debug("websocket protocol error: %s", exc)
                # Our close frame says why; close() then waits for the peer's (lingering).
                with contextlib.suppress(WebSocketClosed):
                    await self._send_close(exc.close_code)
                raise WebSocketClosed(exc.close_code) from None
            if event is None:
                waited = await self._read() or waited
                continue
            if isinstance(event, str | bytes):
                if waited:
                    self._unyielded = 0
                else:
                    # Messages that were already there: no need to go through the scheduler
                    # for each, but now and then let others run (and notice cancellation).
                    self._unyielded += 1
                    if self._unyielded >= _MAX_UNYIELDED:
                        self._unyielded = 0
                        await trio.lowlevel.checkpoint()
                    else:
                        await trio.lowlevel.checkpoint_if_cancelled()
                return event
            if isinstance(event, Ping):
                await self._write(encode_frame(OP_PONG, event.payload))
            elif isinstance(event, Close):
                self._close_received = True
                # Echo the code (RFC 6455 §5.5.1); the caller then closes the connection.
                echo = event.code if event.code != CloseCode.NO_STATUS else None
                with contextlib.suppress(WebSocketClosed):
                    await self._send_close(echo or CloseCode.NORMAL)
                raise WebSocketClosed(event.code)
            # Pongs need no answer.

    # --- closing -----------------------------------------------------------------------

    async def close(self, code: int = 1000) -> None:
        """Closing handshake, bounded by the close timeout; never raises."""
        if self._finished:
            return
        self._finished = True
        if not self.accepted:
            return
        with trio.move_on_after(self._close_timeout):
            try:
                await self._send_close(code)
            except WebSocketClosed:
                return
            await self._linger()

    async def _linger(self) -> None:
        """Wait for the peer's close frame (or EOF), discarding what comes before it.

        Closing the socket with unread data in it would make the kernel send a reset, and
        the peer could lose our close frame (and its code) with it.
        """
        decoder = self._decoder
        broken = False
        while not self._close_received:
            if not broken:
                try:
                    while (event := decoder.next_event()) is not None:
                        if isinstance(event, Close):
                            self._close_received = True
                            return
                except WebSocketError:
                    broken = True
            if broken:
                data, _ = await self._recv()
                if not data:
                    return
            else:
                try:
                    await self._read()
                except WebSocketClosed:
                    return


class DirectWebSocket(NativeWebSocket):
    """A :class:`NativeWebSocket` on plain TCP without compression, which can also be written
    without waiting (the engine's
    :class:`~trio_sio._engine.host.WritesWithoutWaiting`): another task (the broadcast
    flusher, or a task sending to this client alone) writes into an idle connection's socket
    with one ``send`` syscall, instead of waking this connection's writer task (a trip
    through the scheduler per recipient)."""

    def write_nowait(self, items: Sequence[Outgoing]) -> bool:
        """Write ``items`` now unless another write is under way (see the class)."""
        raw = self._raw
        assert raw is not None
        if (
            self._tail
            or self._close_sent
            or self._write_broken
            or self._send_lock.locked()
            or not self.accepted
        ):
            return False
        data = _wire_bytes(items)
        try:
            sent = raw.send(data)
        except OSError:  # BlockingIOError, or broken: the writer sends it or finds out which
            sent = 0
        if sent < len(data):
            self._tail = data[sent:]
        return True

    @property
    def unsent(self) -> bool:
        return bool(self._tail)


async def _answered(headers: list[tuple[str, str]]) -> bytes:
    raise RuntimeError("the handshake is already answered")


def _wire_bytes(items: Sequence[Outgoing]) -> bytes:
    """Uncompressed WebSocket messages for ``items``, each encoded once for all recipients."""
    if len(items) == 1:  # a single event or ack: its cached bytes as they are
        return items[0].websocket_bytes()
    return b"".join([item.websocket_bytes() for item in items])
