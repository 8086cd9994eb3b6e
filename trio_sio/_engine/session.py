"""An Engine.IO session: one client, across HTTP requests and a transport upgrade.

Each session runs in a task that opens a nursery of its own: the host's task for the
WebSocket a session starts on, else a task in the server's nursery. That nursery owns
everything the session starts: the WebSocket writer (once one is needed), the layers above
(the Socket.IO sockets and their handlers). The heartbeat is actions on the server's timer, no
task. Closing a session cancels them and that nursery (and the reader of a WebSocket it was
upgraded to, which is that connection's task), so nothing it started outlives it.

The session keeps the lifecycle (state, heartbeat, close) and its outbound
:class:`~trio_sio._engine.delivery.Delivery`; its current transport
(:mod:`~trio_sio._engine.polling` or :mod:`~trio_sio._engine.websocket`) carries packets
both ways. An upgrade swaps the transport. The server that owns the session is seen only
through the small :class:`SessionHost` interface.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from .._errors import Disconnected, DisconnectReason
from .._protocol import EnginePacket, EnginePacketType, Outgoing, ProtocolError, Transport
from .alarms import Alarms
from .delivery import Delivery, DeliveryClosed
from .fanout import FanOut
from .heartbeat import Heartbeat
from .host import HttpRequest
from .lifecycle import EngineLifecycle
from .options import EngineOptions
from .states import SessionState, SessionTransport, UpgradeState

__all__ = ["EngineHandler", "Session", "SessionHost"]

_CLOSE = Outgoing.control(EnginePacketType.CLOSE)


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


class SessionHost(Protocol):
    """What a session needs from the server that owns it, and nothing more."""

    @property
    def options(self) -> EngineOptions: ...

    @property
    def handler(self) -> EngineHandler: ...

    @property
    def alarms(self) -> Alarms: ...

    @property
    def fanout(self) -> FanOut: ...

    @property
    def lifecycle(self) -> EngineLifecycle: ...

    def session_started(self) -> None:
        """A session's task started."""

    def session_closed(self, session: Session) -> None:
        """``session`` closed: no request may reach it any more."""

    def session_ended(self) -> None:
        """A session's task ended."""

    def survive_failure(self, session: Session, exc: Exception) -> bool:
        """``exc`` escaped ``session``'s code, which closed it: log it and return ``True``,
        or return ``False`` for the caller to re-raise it."""
        ...


class Session:
    """One Engine.IO client session.

    Attributes:
        sid: the session id (random, from a CSPRNG).
        request: the handshake request (headers, query, peer address, time).
        state: see :class:`SessionState`.
        close_reason: why it closed, once it has.
        delivery: its outbound packets and every way they leave.
        heartbeat: its pings' and pongs' deadlines (the WebSocket reader notes packets there).
        upgrade: see :class:`UpgradeState`.
        app_state: slot for the layer above (the Socket.IO client state).
    """

    def __init__(self, host: SessionHost, sid: str, request: HttpRequest) -> None:
        options = host.options
        self.sid = sid
        # Without the host's callables for reading, watching and answering that request: they
        # would keep its connection's objects alive for as long as the session.
        self.request = request.without_host_callables()
        self.state = SessionState.OPEN
        self.close_reason: DisconnectReason | None = None
        self.app_state: Any = None
        self.upgrade = UpgradeState.NONE
        self.delivery = Delivery(
            max_packets=options.outbound_queue_packets,
            max_bytes=options.outbound_queue_bytes,
            fanout=host.fanout,
            on_error=self._flush_failed,
        )
        self._host = host
        self._transport: SessionTransport | None = None
        self._nursery: trio.Nursery | None = None
        self._waiter: trio.lowlevel.Task | None = None  # run's task, parked while open
        self.heartbeat = Heartbeat(self, host.alarms)
        self._closed: trio.Event | None = None  # made by wait_closed, rarely needed

    def __repr__(self) -> str:
        return f"<Session {self.sid} {self.transport.value} {self.state.value}>"

    @property
    def options(self) -> EngineOptions:
        """The settings of the server that owns this session."""
        return self._host.options

    @property
    def handler(self) -> EngineHandler:
        """The layer above, which this session's messages go to."""
        return self._host.handler

    @property
    def transport(self) -> Transport:
        """The transport in use; changes once, from polling to WebSocket."""
        assert self._transport is not None, "no transport attached"
        return self._transport.name

    @property
    def current_transport(self) -> SessionTransport | None:
        """The transport object in use."""
        return self._transport

    @property
    def nursery(self) -> trio.Nursery:
        """The nursery that lives exactly as long as this session."""
        assert self._nursery is not None, "session not started"
        return self._nursery

    @property
    def dropped_volatile(self) -> int:
        """Volatile packets dropped because this client was behind."""
        return self.delivery.dropped_volatile

    def attach(self, transport: SessionTransport) -> None:
        """Carry the session over ``transport`` from now on; an upgrade detaches the old one
        first, in the same step, so the two never both take packets."""
        old = self._transport
        if old is not None:
            old.detach(None)
        self._transport = transport
        if old is not None:
            self._host.lifecycle.upgraded(self)

    # --- sending -------------------------------------------------------------------------

    async def send(self, item: Outgoing) -> None:
        """Queue ``item``, waiting while the queue is full. A checkpoint.

        Raises:
            Disconnected: the session is closing or closed (also while waiting).
        """
        try:
            await self.delivery.put(item)
        except DeliveryClosed:
            raise Disconnected(self.close_reason) from None

    def send_nowait(self, item: Outgoing) -> None:
        """Queue ``item`` without waiting.

        Raises:
            trio.WouldBlock: the queue is full.
            Disconnected: the session is closing or closed.
        """
        try:
            self.delivery.put_nowait(item)
        except DeliveryClosed:
            raise Disconnected(self.close_reason) from None

    def offer(self, item: Outgoing, *, volatile: bool = False) -> bool:
        """Queue ``item`` without waiting; the fan-out path of broadcasts.

        A volatile item is dropped when the client is behind. A non-volatile item that does
        not fit closes the session as a slow consumer: Socket.IO promises in-order delivery,
        so dropping it silently is not an option.

        Returns whether the item was queued.
        """
        try:
            return self.delivery.offer(item, volatile=volatile)
        except DeliveryClosed:
            return False
        except trio.WouldBlock:
            packets, nbytes = self.delivery.queued()
            self._host.lifecycle.slow_consumer(self.sid, packets, nbytes)
            self.close(DisconnectReason.SLOW_CONSUMER)
            return False

    # --- receiving -----------------------------------------------------------------------

    async def receive(self, packet: EnginePacket) -> None:
        """Handle one packet from the client, whichever transport brought it.

        Raises:
            ProtocolError: a packet a client may not send.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        packet_type = packet.type
        if self.heartbeat.refreshable and packet_type is not EnginePacketType.PONG:
            self.heartbeat.refresh()
        if packet_type is EnginePacketType.MESSAGE:
            await self._host.handler.on_message(self, packet.data)
        elif packet_type is EnginePacketType.PONG:
            self.heartbeat.pong()
        elif packet_type is EnginePacketType.CLOSE:
            self.close(DisconnectReason.TRANSPORT_CLOSE)
        elif packet_type is not EnginePacketType.NOOP:
            raise ProtocolError("unexpected packet", packet_type.name)

    def refuse(self, exc: ProtocolError) -> None:
        """The client broke the protocol: close with ``"parse error"``, logged once."""
        self._host.lifecycle.protocol_error(self.sid, exc)
        self.close(DisconnectReason.PARSE_ERROR)

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
            self.delivery.finish(_CLOSE if self.transport is Transport.POLLING else None)
            # From the heartbeat to the draining, which may take ping_timeout at most.
            self.heartbeat.then(trio.current_time() + self.options.ping_timeout, None)
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                trio.lowlevel.reschedule(waiter)
            return
        self.state = SessionState.CLOSED
        self.close_reason = self.close_reason or reason
        self.heartbeat.stop()
        self.delivery.close()
        self._host.session_closed(self)
        try:
            self._host.handler.on_close(self, self.close_reason)
        finally:
            if self._transport is not None:
                self._transport.detach(self.close_reason)
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
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

    def survive_failure(self, exc: Exception) -> bool:
        """Close this session after ``exc`` escaped its code, then log it and return
        ``True``, or return ``False`` when the server does not supervise (the caller
        re-raises). Whatever breaks in a session's tasks ends that session only."""
        self.close(DisconnectReason.TRANSPORT_ERROR)
        return self._host.survive_failure(self, exc)

    def _flush_failed(self, exc: Exception) -> None:
        # A write without waiting failed in the flusher's task: this session's failure.
        if not self.survive_failure(exc):
            raise exc

    # --- the session's task -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The session in a task of its own, started by the server (on long-polling)."""
        serving = self.serve(self._until_not_open, started=task_status.started)
        # The status holds the starter's nursery and task: not for this task's lifetime.
        del task_status
        await serving

    async def serve(
        self, body: Callable[[], Awaitable[None]], *, started: Callable[[], None] | None = None
    ) -> None:
        """The session in the calling task (the host's task for the WebSocket it starts on):
        its nursery, ``body`` (which writes to that WebSocket) in it; ``started`` is called
        once the nursery is open. The session closes when ``body`` returns."""
        host = self._host
        host.session_started()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if started is not None:
                    started()
                    del started  # (see run)
                if self._open():
                    self.heartbeat.start()
                host.handler.on_open(self)
                try:
                    await body()
                except BaseException as exc:
                    # Closed here, while the nursery still takes tasks (a socket with no task
                    # starts its disconnect handlers in it), not after. A cancel from outside
                    # is the host stopping; the nursery cancels itself when a task fails.
                    reason = DisconnectReason.SERVER_SHUTTING_DOWN
                    if isinstance(exc, Exception) or nursery.cancel_scope.cancel_called:
                        reason = DisconnectReason.TRANSPORT_ERROR
                    self.close(reason)
                    raise
                self.close(self.close_reason or DisconnectReason.FORCED_CLOSE)
        except Exception as exc:
            # (Not a context manager: one would stay allocated for the session's lifetime.)
            if not self.survive_failure(exc):
                raise
        finally:
            self.close(DisconnectReason.SERVER_SHUTTING_DOWN)
            host.session_ended()

    async def _until_not_open(self) -> None:
        """Wait while the session is open, then while a graceful close drains (its deadline
        closes the session, which cancels this wait)."""
        if self._open():
            self._waiter = trio.lowlevel.current_task()

            def abort(_: object) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        if self.state is SessionState.CLOSING:
            await self.delivery.wait_drained()

    def close_on_timer(self, reason: DisconnectReason | None) -> None:
        """Close from the server's timer task: what escapes the layer above's on_close ends
        this session only, as it would in the session's own task."""
        try:
            self.close(reason or self.close_reason or DisconnectReason.FORCED_CLOSE)
        except Exception as exc:
            if not self.survive_failure(exc):
                raise

    def _open(self) -> bool:
        # A method rather than a comparison inline: the state changes while the caller awaits.
        return self.state is SessionState.OPEN
