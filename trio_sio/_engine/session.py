"""An Engine.IO session: one client, across HTTP requests and a transport upgrade.

Each session is a task in the server's nursery that opens a nursery of its own. That nursery
owns everything the session starts: the WebSocket reader and writer, the layers above (the
Socket.IO sockets and their handlers). The session task itself runs the heartbeat. Closing a
session cancels that nursery, so nothing it started outlives it.

Long-polling requests are not children of the session (they belong to the host's request
tasks); they only take from the session's :class:`~trio_sio._engine.outbox.Outbox` and feed
packets in, and are released as soon as the session closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import trio

from .._errors import Disconnected, DisconnectReason
from .._protocol import (
    EngineErrorCode,
    EnginePacket,
    EnginePacketType,
    HandshakeError,
    Outgoing,
    ProtocolError,
    Transport,
    decode_packet,
    decode_payload,
    encode_payload,
)
from .host import HttpRequest, WebSocketClosed, WebSocketConnection
from .outbox import Outbox, OutboxClosed

if TYPE_CHECKING:
    from .server import EngineServer

__all__ = ["EngineHandler", "Session", "SessionState"]

logger = logging.getLogger("trio_sio")

PING = Outgoing.control(EnginePacketType.PING)
NOOP_PAYLOAD = EnginePacketType.NOOP.value
CLOSE_PAYLOAD = EnginePacketType.CLOSE.value
_CLOSE = Outgoing.control(EnginePacketType.CLOSE)
_PROBE_ANSWER = Outgoing.control(EnginePacketType.PONG, "probe")

#: How long a GET that arrives during an upgrade waits for it to settle (engine.io: 100 ms).
UPGRADE_CHECK_INTERVAL = 0.1

#: Most packets in one long-polling response. python-engineio's client drops the session
#: when a payload holds more than 16; what does not fit waits for the next GET.
MAX_PACKETS_PER_POLL = 16


class EngineHandler(Protocol):
    """The layer above Engine.IO (Socket.IO, or a bare Engine.IO application)."""

    def on_open(self, session: Session) -> None:
        """A session opened; ``session.nursery`` is ready for tasks that die with it."""
        ...

    async def on_message(self, session: Session, data: str | bytes) -> None:
        """A message arrived. May wait (that is backpressure on the client); may raise
        :class:`ProtocolError`, which closes the session with ``"parse error"``."""
        ...

    def on_close(self, session: Session, reason: DisconnectReason) -> None:
        """The session closed; called once, synchronously, before its nursery is cancelled."""
        ...


class SessionState(enum.Enum):
    """OPEN, then CLOSING while a graceful close drains the queue, then CLOSED."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Session:
    """One Engine.IO client session.

    Attributes:
        sid: the session id (random, from a CSPRNG).
        transport: the transport in use; changes once, from polling to WebSocket.
        request: the handshake request (headers, query, peer address, time).
        state: see :class:`SessionState`.
        close_reason: why it closed, once it has.
        app_state: slot for the layer above (the Socket.IO client state).
    """

    def __init__(
        self, server: EngineServer, sid: str, transport: Transport, request: HttpRequest
    ) -> None:
        options = server.options
        self.sid = sid
        self.transport = transport
        # Without the host's callables for reading and watching that request: they would keep
        # its connection's objects alive for as long as the session.
        self.request = dataclasses.replace(
            request, read_body=None, wait_disconnected=trio.sleep_forever
        )
        self.state = SessionState.OPEN
        self.close_reason: DisconnectReason | None = None
        self.app_state: Any = None
        self.outbox = Outbox(
            max_packets=options.outbound_queue_packets, max_bytes=options.outbound_queue_bytes
        )
        self.dropped_volatile = 0
        self._server = server
        self._options = options
        self._nursery: trio.Nursery | None = None
        self._task: trio.lowlevel.Task | None = None  # the session's task, once it runs
        self._pong_at = -math.inf  # when the last ping was answered
        self._closed: trio.Event | None = None  # made by wait_closed, rarely needed
        self._upgrading = False
        self._probed = False
        self._upgrade_settled: trio.Event | None = None  # set once an upgrade ends
        self._poll_scope: trio.CancelScope | None = None
        self._poll_reply_on_close = CLOSE_PAYLOAD
        self._post_active = False
        self._websocket: WebSocketConnection | None = None
        self._flush_pending = False  # queued for the server's flusher
        self._writer_scope: trio.CancelScope | None = None
        self._ws_close_code = 1000

    def __repr__(self) -> str:
        return f"<Session {self.sid} {self.transport.value} {self.state.value}>"

    @property
    def nursery(self) -> trio.Nursery:
        """The nursery that lives exactly as long as this session."""
        assert self._nursery is not None, "session not started"
        return self._nursery

    # --- sending -------------------------------------------------------------------------

    async def send(self, item: Outgoing) -> None:
        """Queue ``item``, waiting while the queue is full.

        Raises:
            Disconnected: the session is closing or closed (also while waiting).
        """
        try:
            await self.outbox.put(item)
        except OutboxClosed:
            raise Disconnected(self.close_reason) from None

    def send_nowait(self, item: Outgoing) -> None:
        """Queue ``item`` without waiting.

        Raises:
            trio.WouldBlock: the queue is full.
            Disconnected: the session is closing or closed.
        """
        try:
            self.outbox.put_nowait(item)
        except OutboxClosed:
            raise Disconnected(self.close_reason) from None

    def offer(self, item: Outgoing, *, volatile: bool = False) -> bool:
        """Queue ``item`` without waiting; the fan-out path of broadcasts.

        A volatile item is dropped when the client is behind (anything already queued). A
        non-volatile item that does not fit closes the session as a slow consumer: Socket.IO
        promises in-order delivery, so dropping it silently is not an option.

        Returns whether the item was queued.
        """
        outbox = self.outbox
        # Behind: something is queued that is not just this pass's broadcasts for the flusher.
        if volatile and outbox.queued()[0] and not self._flush_pending:
            self.dropped_volatile += 1
            return False
        try:
            if self._flush_pending:
                outbox.put_quietly(item)
            elif outbox.direct is not None and outbox.writer_idle:
                # An idle connection that can be written without waiting: rather than a
                # write per broadcast, queue quietly and let the server's flusher write
                # everything that arrives before it runs (a burst of broadcasts) at once.
                outbox.put_quietly(item)
                self._flush_pending = True
                self._server._flusher.add(self)
            else:
                outbox.put_nowait(item)
        except trio.WouldBlock:
            packets, nbytes = self.outbox.queued()
            logger.warning(
                "session %s is a slow consumer (%d packets, %d bytes queued): closing it",
                self.sid,
                packets,
                nbytes,
            )
            self.close(DisconnectReason.SLOW_CONSUMER)
            return False
        except OutboxClosed:
            return False
        return True

    # --- closing -------------------------------------------------------------------------

    def close(self, reason: DisconnectReason, *, graceful: bool = False) -> None:
        """Close the session.

        A graceful close first delivers what is queued (and, on long-polling, a close packet),
        for at most ``ping_timeout``; otherwise everything queued is dropped at once.
        """
        if self.state is SessionState.CLOSED:
            return
        if graceful and self.state is SessionState.OPEN and self._nursery is not None:
            self.state = SessionState.CLOSING
            self.close_reason = reason
            self.outbox.finish(_CLOSE if self.transport is Transport.POLLING else None)
            if self._task is not None:
                self._server._alarms.wake(self._task)  # from the heartbeat to the draining
            return
        self._terminate(reason)

    def _terminate(self, reason: DisconnectReason, *, poll_reply: str = CLOSE_PAYLOAD) -> None:
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        self.close_reason = self.close_reason or reason
        self._poll_reply_on_close = poll_reply
        self.outbox.close()
        self._server._forget(self)
        try:
            self._server.handler.on_close(self, self.close_reason)
        finally:
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
            if self._writer_scope is not None:
                self._writer_scope.cancel()
            if self._closed is not None:
                self._closed.set()

    async def wait_closed(self) -> None:
        """Wait until the session is closed."""
        if self.state is SessionState.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        if self._closed is None:
            self._closed = trio.Event()
        await self._closed.wait()

    # --- the session task ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The session's task: its nursery and heartbeat. Started by the server."""
        self._server._session_task_started()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                # The status holds the starter's nursery and task: not for this task's
                # lifetime.
                del task_status
                self._task = trio.lowlevel.current_task()
                self._server.handler.on_open(self)
                # The heartbeat, written out here rather than in a coroutine of its own that
                # every idle session would keep. Deadlines are computed from when each ping
                # was due, not from when this task woke up, so scheduling latency never
                # stretches the timeout the client was promised. A pong needs no wake-up of
                # its own: the reader notes when it came, and this task looks when the
                # timeout runs out, then sleeps until the next ping (interval after the pong,
                # as in engine.io). A graceful close wakes it (see close()).
                interval = self._options.ping_interval
                sleep_until = self._server._alarms.sleep_until
                ping_due = trio.current_time() + interval
                while self._open():
                    await sleep_until(ping_due)
                    if self._open():
                        self.outbox.put_control(PING)
                        await sleep_until(ping_due + self._options.ping_timeout)
                    if self._open() and self._pong_at < ping_due:  # no answer to this ping
                        self._terminate(DisconnectReason.PING_TIMEOUT)
                    ping_due = self._pong_at + interval
                if self.state is SessionState.CLOSING:
                    with trio.move_on_after(self._options.ping_timeout):
                        await self.outbox.wait_drained()
                self._terminate(self.close_reason or DisconnectReason.FORCED_CLOSE)
        except Exception:
            # (Not a context manager: one would stay allocated for the session's lifetime.)
            if not self._survive_failure():
                raise
        finally:
            self._terminate(DisconnectReason.SERVER_SHUTTING_DOWN)
            self._server._session_task_ended()

    def _survive_failure(self) -> bool:
        """Close this session after an exception in its code (being handled now): log it and
        return ``True``, or return ``False`` with ``supervise=False`` (the caller re-raises).

        Whatever breaks in a session's tasks ends that session only, logged once."""
        self._terminate(DisconnectReason.TRANSPORT_ERROR)
        if not self._server.supervise:
            return False
        logger.exception("session %s failed; closed it", self.sid)
        return True

    def _open(self) -> bool:
        # A method rather than a comparison inline: the state changes while the caller awaits.
        return self.state is SessionState.OPEN

    async def _receive(self, packet: EnginePacket) -> None:
        """Handle one packet from the client, whichever transport brought it."""
        packet_type = packet.type
        if packet_type is EnginePacketType.MESSAGE:
            await self._server.handler.on_message(self, packet.data)
        elif packet_type is EnginePacketType.PONG:
            self._pong_at = trio.current_time()
        elif packet_type is EnginePacketType.CLOSE:
            # The client closes: a pending long-poll is released with a noop, as engine.io does.
            self._terminate(DisconnectReason.TRANSPORT_CLOSE, poll_reply=NOOP_PAYLOAD)
        elif packet_type is not EnginePacketType.NOOP:
            raise ProtocolError("unexpected packet", packet_type.name)

    def _fail(self, exc: ProtocolError) -> None:
        logger.info("session %s: %s; closing it", self.sid, exc)
        self._ws_close_code = 1002
        self._terminate(DisconnectReason.PARSE_ERROR)

    # --- long-polling --------------------------------------------------------------------

    async def poll(
        self, wait_disconnected: Callable[[], Awaitable[NoReturn]] = trio.sleep_forever
    ) -> str:
        """Serve a long-polling GET: wait for packets and return them as one payload.

        While it waits, the calling task watches the client with ``wait_disconnected`` (see
        :class:`HttpRequest`), whose exception ends the poll; the outbox cancels that wait
        when packets arrive. One task per poll, not a second to watch the connection.

        Raises:
            ProtocolError: a second GET while one is pending (the session is closed).
            HandshakeError: the session moved to WebSocket meanwhile.
        """
        if self._upgrading and self._probed:
            # Like engine.io's 100 ms "check" during an upgrade: give the WebSocket a moment
            # to finish, so a late GET learns the truth (refused) rather than a noop.
            settled = self._upgrade_settled
            assert settled is not None
            with trio.move_on_after(UPGRADE_CHECK_INTERVAL):
                await settled.wait()
            if self.transport is not Transport.POLLING:
                raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Transport mismatch")
            return NOOP_PAYLOAD
        if self._poll_scope is not None:
            self._terminate(DisconnectReason.TRANSPORT_ERROR)
            raise ProtocolError("overlapping GET requests")
        outbox = self.outbox
        scope = self._poll_scope = trio.CancelScope()
        try:
            with scope:
                try:
                    batch = outbox.get_batch_nowait(max_packets=MAX_PACKETS_PER_POLL)
                except trio.WouldBlock:
                    outbox.call_when_ready(scope.cancel)
                    try:
                        await wait_disconnected()
                    finally:
                        outbox.call_when_ready(None)
                else:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return encode_payload(batch)
            # Packets arrived, the session closed, or an upgrade released this request.
            with contextlib.suppress(trio.WouldBlock):
                return encode_payload(outbox.get_batch_nowait(max_packets=MAX_PACKETS_PER_POLL))
        except OutboxClosed:
            return self._poll_reply_on_close
        finally:
            self._poll_scope = None
        # Only reached when an upgrade released this request.
        if self.transport is not Transport.POLLING:
            raise HandshakeError(EngineErrorCode.BAD_REQUEST, "Transport mismatch")
        return NOOP_PAYLOAD

    @contextlib.contextmanager
    def posting(self) -> Iterator[None]:
        """Hold for the whole of a long-polling POST, its body's arrival included.

        Raises:
            ProtocolError: another POST is in progress (the session is closed).
        """
        if self._post_active:
            self._terminate(DisconnectReason.TRANSPORT_ERROR)
            raise ProtocolError("overlapping POST requests")
        self._post_active = True
        try:
            yield
        finally:
            self._post_active = False

    async def post(self, body: str) -> None:
        """Deliver a long-polling POST's payload, packet by packet, in order (call it
        within :meth:`posting`).

        Raises:
            ProtocolError: a malformed payload (the session is closed).
        """
        try:
            packets = decode_payload(body, max_packets=self._options.max_packets_per_payload)
            for packet in packets:
                if self.state is SessionState.CLOSED:
                    return
                await self._receive(packet)
        except Disconnected:
            return  # closed while delivering: the rest of the payload has nowhere to go
        except ProtocolError as exc:
            self._fail(exc)
            raise

    # --- WebSocket -----------------------------------------------------------------------

    async def run_websocket(self, ws: WebSocketConnection) -> None:
        """Serve this session over ``ws`` until either ends, then close the WebSocket.

        The reader is a task of the session's nursery; the writer is the caller's own task
        (the host's task for this connection, which would otherwise only wait), one task less
        per connection. Whichever ends first closes the session, which cancels the other.
        """
        if self.state is SessionState.CLOSED:
            return
        self._websocket = ws
        if ws.writes_nowait:
            self.outbox.direct = self._write_nowait
        self.nursery.start_soon(self._read_websocket, ws, name="trio_sio.ws_reader")
        # Cancelled when the session ends, for a write stuck on a client that stopped reading.
        self._writer_scope = trio.CancelScope()
        try:
            with self._writer_scope:
                await self._write_websocket(ws)
        except Exception:
            if not self._survive_failure():
                raise
        except BaseException:
            # The host cancelled its task (it is shutting down, say): the session goes too.
            self._terminate(DisconnectReason.TRANSPORT_CLOSE)
            raise
        await ws.close(self._ws_close_code)

    def _write_nowait(self, item: Outgoing) -> bool:
        # The outbox's direct path: only called while the writer is parked with nothing queued.
        return self._write_batch_nowait([item])

    def _write_batch_nowait(self, batch: list[Outgoing]) -> bool:
        ws = self._websocket
        assert ws is not None
        if not ws.write_nowait(batch):
            return False
        if ws.unsent:
            self.outbox.wake_writer()
        return True

    def _flush_deferred(self) -> None:
        """Write what broadcasts queued for this idle connection since the flusher last ran,
        in one write (called by the server's flusher; see :meth:`offer`)."""
        self._flush_pending = False
        outbox = self.outbox
        if not outbox.writer_parked or outbox.closed:
            return  # something woke the writer meanwhile: it takes the queue
        batch = outbox.get_batch_nowait()  # not empty: offer() queued it
        if not self._write_batch_nowait(batch):
            outbox.unget(batch)  # another write is under way: the writer takes it after all
            outbox.wake_writer()

    async def _read_websocket(self, ws: WebSocketConnection) -> None:
        max_payload = self._options.max_payload
        on_message = self._server.handler.on_message
        try:
            while True:
                frame = await ws.receive()
                if len(frame) > max_payload:
                    self._ws_close_code = 1009
                    self._terminate(DisconnectReason.TRANSPORT_ERROR)
                    return
                packet = decode_packet(frame)
                if packet.type is EnginePacketType.MESSAGE:  # the hot path, one call shorter
                    await on_message(self, packet.data)
                else:
                    await self._receive(packet)
        except Disconnected:
            pass  # the session closed while the application handled a message
        except WebSocketClosed as closed:
            # 1009: the host refused a message over its size limit, like our check above.
            too_big = closed.code == 1009
            self._terminate(
                DisconnectReason.TRANSPORT_ERROR if too_big else DisconnectReason.TRANSPORT_CLOSE
            )
        except ProtocolError as exc:
            self._fail(exc)

    async def _write_websocket(self, ws: WebSocketConnection) -> None:
        try:
            while True:
                await ws.send(await self.outbox.get_batch())
        except OutboxClosed:
            # Graceful close finished draining (or the session is gone).
            self._terminate(self.close_reason or DisconnectReason.FORCED_CLOSE)
        except WebSocketClosed:
            self._terminate(DisconnectReason.TRANSPORT_CLOSE)

    async def upgrade(self, ws: WebSocketConnection) -> None:
        """Take over an accepted WebSocket that wants to upgrade this polling session.

        Expects ``2probe`` (answered ``3probe``, and any pending GET is released with a noop),
        then ``5``, within ``upgrade_timeout``. Otherwise the WebSocket is closed and the
        session goes on over long-polling.
        """
        if (
            self.transport is not Transport.POLLING
            or self._upgrading
            or (self.state is not SessionState.OPEN)
        ):
            await ws.close(1008)
            return
        self._upgrading = True
        settled = self._upgrade_settled = trio.Event()
        upgraded = False
        try:
            with trio.move_on_after(self._options.upgrade_timeout):
                while not upgraded:
                    frame = await ws.receive()
                    if frame == "2probe":
                        await ws.send([_PROBE_ANSWER])
                        self._probed = True
                        if self._poll_scope is not None:
                            # Release the pending GET with a noop soon (engine.io's "check"),
                            # unless the upgrade completes first.
                            self._poll_scope.deadline = min(
                                self._poll_scope.deadline,
                                trio.current_time() + UPGRADE_CHECK_INTERVAL,
                            )
                    elif frame == "5" and self._probed and self.state is SessionState.OPEN:
                        upgraded = True
                    else:
                        break
        except WebSocketClosed:
            pass
        finally:
            if upgraded:
                self.transport = Transport.WEBSOCKET
            self._upgrading = False
            self._probed = False
            self._upgrade_settled = None
            settled.set()
        if not upgraded:
            await ws.close(1002)
            return
        self._release_poll()
        await self.run_websocket(ws)

    def _release_poll(self) -> None:
        if self._poll_scope is not None:
            self._poll_scope.cancel()
