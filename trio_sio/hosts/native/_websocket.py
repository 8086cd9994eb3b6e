"""A server-side WebSocket on a Trio stream, for the Engine.IO session runtime."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

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

logger = logging.getLogger("trio_sio.hosts.native")

_DISCONNECTED = (trio.BrokenResourceError, trio.ClosedResourceError)
_TOO_MANY_CONTROL_FRAMES = WebSocketError(
    "too many control frames", close_code=CloseCode.POLICY_VIOLATION
)

# A peer whose input is always there already (a flood, or just a burst) never makes the
# reader wait, so the reader takes turns: after a bounded amount of work it lets the other
# tasks run, as a wait would have. One checkpoint costs about 3 µs.

#: Frames the reader handles per turn: messages returned (each also costs the session's
#: handling), control frames, and fragments. Decoding a small frame costs about 1 µs, so a
#: flood of them gets turns of some 40 µs; a burst of small messages, one checkpoint per 32.
_FRAMES_PER_TURN = 32
#: Bytes received per turn. The reader stops after the read that reaches it, so a turn reads
#: one buffer (``receive_size``, 64 KiB by default) at most; a large message received at once
#: costs a checkpoint per 64 KiB, next to the copying and unmasking of those 64 KiB.
_BYTES_PER_TURN = 64 * 1024


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

    Pings, pongs and empty fragments are limited to ``control_frame_rate`` per second (a
    token bucket holding one second's worth; ``None``: no limit), since no backpressure
    slows them down: they never reach the session.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_message_size: int,
        deflate: PerMessageDeflate | None,
        receive_size: int,
        close_timeout: float,
        control_frame_rate: float | None,
        accept_response: Callable[[list[tuple[str, str]]], tuple[bytes, bytes]],
        reject_response: Callable[[HttpResponse], Awaitable[None]],
    ) -> None:
        self._stream = stream
        self._decoder = WebSocketDecoder(
            max_message_size=max_message_size, deflate=deflate, pause_after=_FRAMES_PER_TURN
        )
        self._deflate = deflate
        self._close_timeout = close_timeout
        self._accept_response = accept_response
        self._reject_response = reject_response
        self._send_lock = _Lock()
        self._read_lock = _Lock()
        self.accepted = False
        self.rejected = False
        self._write_broken = False  # a write failed or was cancelled midway
        self._eof = False  # nothing more to read
        self._close_sent = False
        self._close_received = False
        self._finished = False  # close() ran
        self._unyielded = 0  # frames handled since the reader last let others run
        self._turn_bytes = 0  # bytes received since then
        self._pong: bytes | None = None  # the payload of the latest ping not answered yet
        # Control frames and empty fragments: a token bucket holding one second's worth.
        self._control_rate = control_frame_rate
        self._overhead_seen = 0  # the decoder's overhead_frames already counted
        self._allowance = control_frame_rate or 0.0
        self._allowance_at = trio.current_time()
        self._raw = raw_socket(stream)
        self._tail = b""  # what the kernel did not take of a write_nowait, sent first next
        self._head_unsent = False  # the tail is the 101 response, not written yet
        self._reader = Reader(stream, receive_size)

    # --- handshake ---------------------------------------------------------------------

    async def accept(self, headers: list[tuple[str, str]]) -> None:
        if self.accepted or self.rejected:
            raise RuntimeError("the handshake is already answered")
        await trio.lowlevel.checkpoint_if_cancelled()
        head, leftover = self._accept_response(headers)
        # The 101 response goes out with the first frames written (the Engine.IO open packet,
        # at once), or before this side first waits for the peer (an upgrade's probe).
        self._tail = head
        self._head_unsent = True
        self.accepted = True
        # Not kept for the connection's lifetime: they hold the HTTP connection's state.
        self._accept_response = self._reject_response = _answered
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
        # No turn-taking here: a write that the kernel takes at once does not let others run,
        # but every caller takes turns itself. The writer task's take() checkpoints per batch
        # (at most the outbound queue), the reader answers pings within its own turns, and a
        # close frame is written once.
        lock = self._send_lock
        if not lock.acquire_nowait():
            await lock.acquire()
        try:
            if self._write_broken:
                raise WebSocketClosed(CloseCode.ABNORMAL)
            if self._tail:
                data = self._tail + data
                self._tail = b""
                self._head_unsent = False
            if not data:  # the tail was all there was, and another write took it
                return
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

    async def _next_turn(self) -> None:
        """Let the other tasks run: this connection's turn is used up."""
        self._unyielded = 0
        self._turn_bytes = 0
        await trio.lowlevel.checkpoint()

    async def _read(self) -> bool:
        """Read once into the decoder; raises :class:`WebSocketClosed` at EOF (or on error).
        Returns whether other tasks ran meanwhile (this waited, or the turn was used up).

        Only one task reads at a time: normally the session's reader, but while a session
        ends, its cancelled reader and the closing handshake may overlap for a moment."""
        if self._eof:
            raise WebSocketClosed(CloseCode.ABNORMAL)
        waited = False
        if self._head_unsent:  # the peer waits for the 101 before it sends anything
            await self._write(b"")
        if self._turn_bytes >= _BYTES_PER_TURN:
            await self._next_turn()
            waited = True
        lock = self._read_lock
        if not lock.acquire_nowait():
            await lock.acquire()
            waited = True
        try:
            data = self._reader.receive_nowait()
            if data is None:
                data = await self._reader.receive()
                waited = True
        finally:
            lock.release()
        if not data:
            self._eof = True
            raise WebSocketClosed(CloseCode.ABNORMAL)
        if waited:
            self._unyielded = 0
            self._turn_bytes = len(data)
        else:
            self._turn_bytes += len(data)
        self._decoder.receive_data(data)
        return waited

    async def _refuse(self, exc: WebSocketError) -> NoReturn:
        """Close for a protocol error or a broken limit, with the code that says which."""
        logger.debug("websocket protocol error: %s", exc)
        # Our close frame says why; close() then waits for the peer's (lingering).
        with contextlib.suppress(WebSocketClosed):
            await self._send_close(exc.close_code)
        raise WebSocketClosed(exc.close_code) from None

    def _over_control_rate(self) -> bool:
        """Count the frames that carried nothing for the application (pings, pongs, empty
        fragments) decoded since the last call; whether they went over the rate limit."""
        count = self._decoder.overhead_frames
        new = count - self._overhead_seen
        self._overhead_seen = count
        rate = self._control_rate
        if rate is None or not new:
            return False
        now = trio.current_time()
        refill = (now - self._allowance_at) * rate
        self._allowance = min(rate, self._allowance + refill) - new
        self._allowance_at = now
        return self._allowance < 0

    async def _answer_ping(self) -> None:
        """Pong the latest ping. When several came in together, the others are not answered,
        which RFC 6455 (§5.5.3) allows; a ping flood costs one pong per read, not per ping."""
        payload = self._pong
        self._pong = None
        if payload is not None:
            await self._write(encode_frame(OP_PONG, payload))

    async def receive(self) -> str | bytes:
        """The next message; answers pings (the latest of those read together), completes a
        close the peer starts, closes with 1008 when control frames come too fast. Lets other
        tasks run after each turn's worth of input (see ``_FRAMES_PER_TURN``)."""
        if not self.accepted or self._close_received:
            raise WebSocketClosed(CloseCode.ABNORMAL)
        decoder = self._decoder
        waited = False
        while True:
            try:
                event = decoder.next_event()
            except WebSocketError as exc:
                await self._refuse(exc)
            if event is None:
                if decoder.overhead_frames != self._overhead_seen and self._over_control_rate():
                    await self._refuse(_TOO_MANY_CONTROL_FRAMES)
                if decoder.paused:  # a run of fragments as long as a turn
                    await self._next_turn()
                    waited = True
                    continue
                if self._pong is not None:  # all that arrived is handled: answer now
                    await self._answer_ping()
                waited = await self._read() or waited
                continue
            self._unyielded += 1
            if isinstance(event, str | bytes):
                if self._pong is not None:
                    await self._answer_ping()
                if self._unyielded >= _FRAMES_PER_TURN:
                    await self._next_turn()
                elif not waited:
                    await trio.lowlevel.checkpoint_if_cancelled()
                return event
            if isinstance(event, Close):
                self._close_received = True
                # Echo the code (RFC 6455 §5.5.1); the caller then closes the connection.
                echo = event.code if event.code != CloseCode.NO_STATUS else None
                with contextlib.suppress(WebSocketClosed):
                    await self._send_close(echo or CloseCode.NORMAL)
                raise WebSocketClosed(event.code)
            if self._over_control_rate():
                await self._refuse(_TOO_MANY_CONTROL_FRAMES)
            if isinstance(event, Ping):
                self._pong = event.payload  # answered once what is here is handled
            # Pongs need no answer.
            if self._unyielded >= _FRAMES_PER_TURN:
                await self._next_turn()
                waited = True

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
        """Wait for the peer's close frame (or EOF), discarding what comes before it; in
        turns, like :meth:`receive`.

        Closing the socket with unread data in it would make the kernel send a reset, and
        the peer could lose our close frame (and its code) with it.
        """
        decoder = self._decoder
        while not self._close_received:
            try:
                event = decoder.next_event()
            except WebSocketError:
                # The peer broke the protocol: no close frame will be found in what follows.
                # The failed decoder keeps raising and drops what it is given: read to EOF.
                event = None
            if event is None:
                if decoder.paused:
                    await self._next_turn()
                    continue
                try:
                    await self._read()
                except WebSocketClosed:
                    return
                continue
            if isinstance(event, Close):
                self._close_received = True
                return
            self._unyielded += 1
            if self._unyielded >= _FRAMES_PER_TURN:
                await self._next_turn()


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


class _Lock:
    """What :class:`trio.Lock` does here, in a fraction of its size (330 bytes, two per idle
    connection): mostly uncontended, so the parking lot is made on first contention. Fair like
    trio's: ``release`` hands the lock to the longest waiter."""

    __slots__ = ("_held", "_waiters")

    def __init__(self) -> None:
        self._held = False
        self._waiters: trio.lowlevel.ParkingLot | None = None

    def locked(self) -> bool:
        return self._held

    def acquire_nowait(self) -> bool:
        """Take the lock if it is free; whether it was."""
        if self._held:
            return False
        self._held = True
        return True

    async def acquire(self) -> None:
        """Wait for the lock; a checkpoint, as trio's."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.acquire_nowait():
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if self._waiters is None:
            self._waiters = trio.lowlevel.ParkingLot()
        await self._waiters.park()  # woken holding it (see release)

    def release(self) -> None:
        if not (self._waiters and self._waiters.unpark()):
            self._held = False


def _answered(_: object) -> NoReturn:
    raise RuntimeError("the handshake is already answered")


def _wire_bytes(items: Sequence[Outgoing]) -> bytes:
    """Uncompressed WebSocket messages for ``items``, each encoded once for all recipients."""
    if len(items) == 1:  # a single event or ack: its cached bytes as they are
        return items[0].websocket_bytes()
    return b"".join([item.websocket_bytes() for item in items])
