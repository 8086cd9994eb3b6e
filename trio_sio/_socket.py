"""A Socket: one client's connection to one namespace.

A socket runs as a task in its Engine.IO session's nursery, with a nursery of its own
(:attr:`Socket.nursery`). That task runs ``on_connect``, then the socket's handlers, one event
at a time by default, so events are handled in the order they arrived. A socket left with
nothing to do once connected, or idle for a heartbeat interval, lets its task end (it
*parks*: see ``Socket._park``) and its next event starts another, so an idle connection holds
no task of its socket. When the socket disconnects its nursery is cancelled: running handlers
and background tasks end, and pending acknowledgements fail with
:class:`~trio_sio.Disconnected` at once. The disconnecting and disconnect handlers run after
that, shielded, within ``disconnect_handler_timeout``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ._acks import ack_arguments, ack_value
from ._adapter import BroadcastOptions
from ._engine import Alarm, Session, random_id
from ._errors import ConnectionRefused, Disconnected, DisconnectReason, RefusalCause
from ._protocol import Outgoing, PacketType, SocketPacket
from ._recovery import PersistedSession, RestoredSession

if TYPE_CHECKING:
    from ._broadcast import AckCollector, BroadcastOperator
    from ._namespace import EventHandler, Namespace, OutgoingHandler, PacketMiddleware
    from ._server import _Client

    EventH = TypeVar("EventH", bound=EventHandler)
    OutgoingH = TypeVar("OutgoingH", bound=OutgoingHandler)
    PacketMiddlewareH = TypeVar("PacketMiddlewareH", bound=PacketMiddleware)

__all__ = ["Handshake", "Socket", "SocketStatistics"]

logger = logging.getLogger("trio_sio.socketio")

#: The reasons to disconnect a socket can recover from (Node's list, plus ours: a slow
#: consumer gets what it missed, within the store's bounds); not those where a side chose to
#: leave, nor a client that broke the protocol.
RECOVERABLE_REASONS = frozenset(
    {
        DisconnectReason.TRANSPORT_ERROR,
        DisconnectReason.TRANSPORT_CLOSE,
        DisconnectReason.FORCED_CLOSE,
        DisconnectReason.PING_TIMEOUT,
        DisconnectReason.SERVER_SHUTTING_DOWN,
        DisconnectReason.SLOW_CONSUMER,
    }
)


@dataclass(frozen=True)
class Handshake:
    """What the client sent when it connected.

    Attributes:
        headers: request headers of the Engine.IO handshake (lower-case names).
        query: its query parameters.
        auth: the CONNECT packet's payload (``{}`` when the client sent none).
        address: the client's IP address, when known.
        time: when the Engine.IO session was opened (seconds since the epoch).
        url: the handshake's path and query.
        secure: whether it came over TLS.
    """

    headers: Mapping[str, str]
    query: Mapping[str, str]
    auth: Any
    address: str | None
    time: float
    url: str
    secure: bool


def node_handshake(handshake: Handshake) -> dict[str, Any]:
    """``handshake`` as Node's socket.io builds ``socket.handshake``: how a cluster adapter
    describes a socket to the other nodes, and the Admin UI shows it."""
    headers = dict(handshake.headers)
    return {
        "headers": headers,
        "time": time.strftime(
            "%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)",
            time.gmtime(handshake.time),
        ),
        "address": handshake.address,
        "xdomain": "origin" in headers,
        "secure": handshake.secure,
        "issued": int(handshake.time * 1000),
        "url": handshake.url,
        "query": dict(handshake.query),
        "auth": handshake.auth,
    }


@dataclass(frozen=True)
class SocketStatistics:
    """A snapshot of a socket (trio's ``statistics()`` convention)."""

    connected: bool
    rooms: int
    queued_events: int
    pending_acks: int
    outbound_packets: int
    outbound_bytes: int
    dropped_volatile: int


class _AckWaiter:
    """One awaited acknowledgement: for :meth:`Socket.call`, or one recipient of a broadcast
    (then it reports to the broadcast's collector instead of waking a task)."""

    __slots__ = ("args", "collector", "done", "sid")

    def __init__(self, collector: AckCollector | None = None, sid: str = "") -> None:
        self.done = trio.Event()
        self.args: list[Any] | None = None
        self.collector = collector
        self.sid = sid

    def settle(self, args: list[Any] | None) -> None:
        """Record the answer (``None``: the socket disconnected first)."""
        self.args = args
        self.done.set()
        if self.collector is not None:
            self.collector._settle(self.sid, args)


class InboundBudget:
    """How many of one client's events may be queued or being handled at once, across all
    its namespaces: ``handler_queue_size`` waiting plus ``max_concurrent_handlers`` running.
    When it is used up, the session's reader waits here, and so stops reading from that
    client: the bound on what a client can make the server hold does not grow with the
    number of namespaces it joins."""

    __slots__ = ("_reader", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._reader: trio.lowlevel.Task | None = None  # one reader per session

    def acquire_nowait(self) -> bool:
        """Take one event's place if one is free; whether it was."""
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    async def acquire(self) -> None:
        """Take one event's place, waiting for one; a checkpoint only if it must wait (the
        reader's next read from the client is one)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self.used >= self.limit:
            self._reader = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
        self.used += 1

    def release(self, count: int = 1) -> None:
        """Events handled (or dropped): their places are free."""
        self.used -= count
        task = self._reader
        if task is not None:
            self._reader = None
            trio.lowlevel.reschedule(task)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._reader = None
        return trio.lowlevel.Abort.SUCCEEDED


class _EventQueue:
    """A socket's incoming events, from its session's reader to its task: in order,
    closable, bounded by the client's :class:`InboundBudget` (each event holds a place from
    before it is queued until its handler has returned).

    A memory channel does this for any number of tasks, at about 1.7 KiB per socket; this is
    a list and one task slot.
    """

    __slots__ = ("_budget", "_closed", "_consumer", "_in_hand", "_items", "_letting_go")

    def __init__(self, budget: InboundBudget) -> None:
        self._items: list[SocketPacket] = []
        self._budget = budget
        self._closed = False
        self._in_hand = 0  # taken with get(), not done() yet
        self._consumer: trio.lowlevel.Task | None = None
        self._letting_go = False  # see let_go

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        """Whether the queue takes no more packets."""
        return self._closed

    def put_nowait(self, packet: SocketPacket) -> bool:
        """Queue ``packet`` (which holds a place of the budget); ``False``, and its place
        given back, if the queue is closed."""
        if self._closed:
            self._budget.release()
            return False
        self._items.append(packet)
        if self._consumer is not None:
            task, self._consumer = self._consumer, None
            trio.lowlevel.reschedule(task)
        return True

    async def get(self) -> SocketPacket | None:
        """The next packet, waiting for one; ``None`` once closed and drained, or when
        :meth:`let_go` woke the wait. The caller gives its place back (:meth:`done`) once it
        is handled."""
        if self._items:
            await trio.lowlevel.checkpoint()
        while not self._items:
            if self._closed:
                await trio.lowlevel.checkpoint()
                return None
            if self._letting_go:  # the wait below was the checkpoint
                self._letting_go = False
                return None
            self._consumer = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort_get)
        self._letting_go = False  # an event came first: no longer idle
        self._in_hand += 1
        return self._items.pop(0)

    def let_go(self) -> bool:
        """End the consumer's wait with no packet (:meth:`get` returns ``None``), if it waits
        with nothing queued and nothing in hand; say whether it did."""
        task = self._consumer
        if task is None or self._items or self._in_hand:
            return False
        self._consumer = None
        self._letting_go = True
        trio.lowlevel.reschedule(task)
        return True

    def done(self) -> None:
        """One event taken with :meth:`get` has been handled."""
        self._in_hand -= 1
        if not self._closed:  # close() gave back the places of everything left
            self._budget.release()

    def close(self) -> None:
        """Refuse further packets, and give back the places of everything not handled yet:
        the consumer is being cancelled, and may still get those already queued."""
        if self._closed:
            return
        self._closed = True
        self._budget.release(len(self._items) + self._in_hand)
        if self._consumer is not None:
            trio.lowlevel.reschedule(self._consumer)
        self._consumer = None

    def _abort_get(self, _: object) -> trio.lowlevel.Abort:
        self._consumer = None
        return trio.lowlevel.Abort.SUCCEEDED


class _Holder:
    """Where a socket's packets wait while on_connect runs: the client has not been told it
    is connected yet, so everything sent to it (its own emits, broadcasts to its rooms) must
    follow the CONNECT packet, and a refused client must get none of it. Bounded like the
    session's queue (plus the packets a recovered socket replays, which are there first);
    past it the socket is closed as a slow consumer."""

    __slots__ = ("_held", "_limit", "_socket")

    def __init__(self, socket: Socket, held: deque[Outgoing]) -> None:
        self._socket = socket
        self._held = held
        self._limit = socket.namespace.server.engine_options.outbound_queue_packets + len(held)

    def offer(self, item: Outgoing, *, volatile: bool = False) -> bool:
        socket = self._socket
        if len(self._held) >= self._limit:
            if not volatile:
                lifecycle = socket.namespace.server.engine.lifecycle
                held = self._held
                lifecycle.slow_consumer(
                    socket.session.sid, len(held), sum(item.nbytes for item in held)
                )
                socket._close(DisconnectReason.SLOW_CONSUMER)
            return False
        self._held.append(item)
        return True


class _Listeners:
    """What is registered on one socket (Socket.on, on_any, use...), made on the first
    registration: most sockets have none, and keep one ``None`` instead."""

    __slots__ = ("any", "any_outgoing", "counted", "events", "middlewares")

    def __init__(self) -> None:
        self.events: dict[str, EventHandler] = {}
        # Tuples, as in Handlers: replaced on change, so a listener may add or remove
        # listeners while they run.
        self.any: tuple[EventHandler, ...] = ()
        self.any_outgoing: tuple[OutgoingHandler, ...] = ()
        self.middlewares: tuple[PacketMiddleware, ...] = ()
        self.counted = False  # in the namespace's count of sockets watching outgoing events


class Socket:
    """A client's connection to one namespace; the first argument of every handler.

    Attributes:
        id: this socket's id (also the name of a room only it is in).
        namespace: the :class:`~trio_sio.Namespace` it is connected to.
        handshake: what the client sent when connecting.
        data: free-form per-socket data for the application.
        disconnect_reason: why it disconnected, once it has.
        recovered: whether this socket came back after a lost connection, with the id,
            rooms and ``data`` it had, the packets it missed replayed before new ones (see
            :class:`~trio_sio.ConnectionStateRecovery`).
    """

    def __init__(
        self,
        namespace: Namespace,
        client: _Client,
        auth: Any,
        restored: RestoredSession[Outgoing] | None = None,
    ) -> None:
        self.recovered = restored is not None
        #: What the socket comes back with, until it is registered (see _register).
        self._restored = restored
        if restored is not None:
            self.id = restored.session.sid
            self._pid: str | None = restored.session.pid
            self.data: dict[str, Any] = restored.session.data
        else:
            self.id = random_id()
            # The private session id a client recovers with; only where it can.
            recovers = namespace.adapter.recovery_store is not None
            self._pid = random_id() if recovers else None
            self.data = {}
        self.namespace = namespace
        self._client = client
        #: The Engine.IO session carrying this socket (shared by its other namespaces).
        self.session: Session = client.session
        session = client.session
        request = session.request
        self.handshake = Handshake(
            headers=request.headers,
            query=client.query,
            auth=auth,
            address=request.client[0] if request.client else None,
            time=request.time,
            url=request.url,
            secure=request.scheme == "https",
        )
        self.connected = False
        self.disconnect_reason: DisconnectReason | None = None
        # The socket's task and its nursery, while it has them (see _park).
        self._nursery: trio.Nursery | None = None
        self._task: trio.lowlevel.Task | None = None
        self._parked = False  # connected, with no task (see _park)
        self._nursery_lent = False  # the nursery property was read: the task must stay
        self._active = False  # had an event since the last idleness check (see _check_idle)
        self._idle_check: Alarm | None = None
        # While on_connect runs (the client has no CONNECT yet): what the socket sends, to
        # follow the CONNECT packet. None before and after.
        self._held: deque[Outgoing] | None = None
        #: Where broadcasts to this socket go: its session, or while on_connect runs, a
        #: holder that keeps them for after the CONNECT packet (see _Holder).
        self._sink: Session | _Holder = session
        self._refusal: ConnectionRefused | None = None
        self._finished = False
        self._events = _EventQueue(client.inbound)
        self._pending_acks: dict[int, _AckWaiter] = {}
        self._rooms_at_disconnect: frozenset[str] | None = None
        self._listeners: _Listeners | None = None
        self._gone: trio.Event | None = None  # made by wait_disconnected(), set by _close()
        namespace._enter()

    def __repr__(self) -> str:
        return f"<Socket {self.id} {self.namespace.name}>"

    @property
    def nursery(self) -> trio.Nursery:
        """A nursery for tasks that must end when this socket disconnects.

        It is there while the socket's task runs: in ``on_connect``, in the socket's event
        handlers and in the tasks started in it. A socket idle since it connected, or for a
        heartbeat interval (``ping_interval``), holds no task (an idle connection costs less
        memory that way), so reading this property from elsewhere raises
        :class:`RuntimeError` for it: to run a task elsewhere for as long as a socket stays,
        end it with :meth:`wait_disconnected`. Once read, the nursery stays until the socket
        disconnects.
        """
        nursery = self._nursery
        if nursery is None:
            if self._parked:
                raise RuntimeError(
                    f"{self!r} has no task to own a nursery now: it has been idle. "
                    "sock.nursery is there in the socket's handlers and the tasks they start; "
                    "elsewhere, end your task with sock.wait_disconnected()"
                )
            raise RuntimeError("the socket is not running")
        self._nursery_lent = True
        return nursery

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this socket is in (still visible in ``disconnecting`` handlers)."""
        if self._rooms_at_disconnect is not None:
            return self._rooms_at_disconnect
        return self.namespace.adapter.socket_rooms(self.id)

    # --- rooms ---------------------------------------------------------------------------

    def join(self, *rooms: str) -> None:
        """Join rooms (immediately: the registry is in memory). From ``on_connect`` too:
        broadcasts reach the socket once it has connected."""
        if self.connected or self._held is not None:
            adapter = self.namespace.adapter
            lifecycle = self.namespace.server.lifecycle
            # The listeners hear of the rooms it was not in (Node's "join-room").
            joined = (
                _changed(rooms, adapter.socket_rooms(self.id), present=False)
                if lifecycle.listeners
                else ()
            )
            adapter.add_all(self.id, rooms)
            if joined:
                lifecycle.joined(self, joined)

    def leave(self, *rooms: str) -> None:
        """Leave rooms."""
        adapter = self.namespace.adapter
        lifecycle = self.namespace.server.lifecycle
        left = (
            _changed(rooms, adapter.socket_rooms(self.id), present=True)
            if lifecycle.listeners
            else ()
        )
        for room in rooms:
            adapter.delete(self.id, room)
        if left:
            lifecycle.left(self, left)

    def to(self, *rooms: str) -> BroadcastOperator:
        """Broadcast to rooms, except to this socket."""
        return self.broadcast.to(*rooms)

    in_ = to

    def except_(self, *rooms: str) -> BroadcastOperator:
        """Broadcast to every socket of the namespace but those in ``rooms`` and this one."""
        return self.broadcast.except_(*rooms)

    @property
    def broadcast(self) -> BroadcastOperator:
        """Broadcast to every other socket of the namespace."""
        return self.namespace.except_(self.id)

    # --- this socket's own handlers and listeners ----------------------------------------
    #
    # Registered on one socket, they end with it: for state that lives with one connection.
    # They are checked as the namespace's decorators check theirs, and take the same
    # parameters (the socket first), so one function can be registered at either level.

    def _own(self) -> _Listeners:
        if self._listeners is None:
            self._listeners = _Listeners()
        return self._listeners

    def on(self, event: str) -> Callable[[EventH], EventH]:
        """Register ``async def h(sock, *args)`` as this socket's handler of ``event``. It
        runs instead of the namespace's handler of that event, if there is one (Node has only
        per-socket handlers; this keeps the namespace's as the default)."""
        from ._namespace import _check_event_handler, _check_handled_event  # import cycle

        event = _check_handled_event(event, owner="sock")

        def register(handler: EventH) -> EventH:
            _check_event_handler(handler)
            self._own().events[event] = handler
            return handler

        return register

    def off(self, event: str) -> None:
        """Remove this socket's handler of ``event``: the namespace's handles it again."""
        if self._listeners is not None:
            self._listeners.events.pop(event, None)

    def on_any(self, handler: EventH) -> EventH:
        """Add ``async def h(sock, event, *args)``, run for every event this socket receives,
        after the namespace's :meth:`~trio_sio.Namespace.on_any` listeners and this socket's
        added before it, and before the event's handler (Node's ``socket.onAny``)."""
        from ._namespace import _check_any  # import cycle

        _check_any(handler, "on_any")
        own = self._own()
        own.any = (*own.any, handler)
        return handler

    def prepend_any(self, handler: EventH) -> EventH:
        """Like :meth:`on_any`, but run before this socket's listeners added so far."""
        from ._namespace import _check_any  # import cycle

        _check_any(handler, "prepend_any")
        own = self._own()
        own.any = (handler, *own.any)
        return handler

    def off_any(self, handler: EventHandler | None = None) -> None:
        """Remove ``handler`` from this socket's :meth:`on_any` listeners, or all of them
        without an argument."""
        from ._namespace import _without  # import cycle

        if self._listeners is not None:
            self._listeners.any = _without(self._listeners.any, handler)

    def on_any_outgoing(self, handler: OutgoingH) -> OutgoingH:
        """Add ``def h(sock, event, *args)`` (synchronous), called for every event sent to
        this socket, broadcasts included, after the namespace's outgoing listeners (Node's
        ``socket.onAnyOutgoing``)."""
        from ._namespace import _check_any_outgoing  # import cycle

        _check_any_outgoing(handler, "on_any_outgoing")
        self._set_any_outgoing((*self._own().any_outgoing, handler))
        return handler

    def prepend_any_outgoing(self, handler: OutgoingH) -> OutgoingH:
        """Like :meth:`on_any_outgoing`, but called before this socket's listeners added so
        far."""
        from ._namespace import _check_any_outgoing  # import cycle

        _check_any_outgoing(handler, "prepend_any_outgoing")
        self._set_any_outgoing((handler, *self._own().any_outgoing))
        return handler

    def off_any_outgoing(self, handler: OutgoingHandler | None = None) -> None:
        """Remove ``handler`` from this socket's :meth:`on_any_outgoing` listeners, or all of
        them."""
        from ._namespace import _without  # import cycle

        if self._listeners is not None:
            self._set_any_outgoing(_without(self._listeners.any_outgoing, handler))

    def _set_any_outgoing(self, listeners: tuple[OutgoingHandler, ...]) -> None:
        own = self._own()
        own.any_outgoing = listeners
        # Broadcasts look for per-socket listeners only while some socket has them.
        watched = bool(listeners) and not self._finished
        if watched != own.counted:
            own.counted = watched
            self.namespace._watched_outgoing += 1 if watched else -1

    def use(self, middleware: PacketMiddlewareH) -> PacketMiddlewareH:
        """Add packet middleware ``async def m(sock, event, args)`` for this socket's
        events, run after the namespace's (:meth:`~trio_sio.Namespace.use_packet`) in the
        order added (Node's ``socket.use``). It may edit ``args`` in place; raising drops the
        event, and the error is logged on the server (as Node hands it to the socket's
        ``"error"`` listeners): the client is not told."""
        from ._namespace import _check_packet_middleware  # import cycle

        _check_packet_middleware(middleware, "use")
        own = self._own()
        own.middlewares = (*own.middlewares, middleware)
        return middleware

    async def wait_disconnected(self) -> DisconnectReason:
        """Wait until this socket has disconnected (at once if it has), and return why.

        The socket's own tasks are cancelled when it disconnects, so this is for a task
        elsewhere that follows a socket; within the socket's nursery it never returns.
        """
        if self._finished:
            await trio.lowlevel.checkpoint()
        else:
            if self._gone is None:
                self._gone = trio.Event()
            await self._gone.wait()
        assert self.disconnect_reason is not None
        return self.disconnect_reason

    # --- emitting ------------------------------------------------------------------------

    def _packet(self, event: str, args: tuple[Any, ...], ack_id: int | None) -> SocketPacket:
        return SocketPacket(PacketType.EVENT, self.namespace.name, [event, *args], ack_id)

    def _encode(self, packet: SocketPacket) -> Outgoing:
        """``packet`` ready for this client's session; counted as sent (and traced). With
        recovery, an event is kept as Node keeps ``socket.emit``: as a broadcast to this
        socket's own room."""
        adapter = self.namespace.adapter
        if packet.type is PacketType.EVENT and adapter.recovery_store is not None:
            own_room = BroadcastOptions(rooms=frozenset((self.id,)))
            return self._count_out(packet, adapter.record(packet, own_room, adapter.encode))
        return self._count_out(packet, adapter.encode(packet))

    async def _encode_emitted(self, packet: SocketPacket) -> Outgoing:
        """:meth:`_encode` for :meth:`emit`, whose event the adapter may store before it goes
        (:meth:`Adapter.record_emit <trio_sio.Adapter.record_emit>`)."""
        adapter = self.namespace.adapter
        if adapter.recovery_store is None:
            return self._encode(packet)
        own_room = BroadcastOptions(rooms=frozenset((self.id,)))
        outgoing = await adapter.record_emit(packet, own_room, adapter.encode)
        return self._count_out(packet, outgoing)

    def _count_out(self, packet: SocketPacket, outgoing: Outgoing) -> Outgoing:
        """``outgoing``, counted as sent (and traced)."""
        lifecycle = self.namespace.server.lifecycle
        lifecycle.bytes_out += outgoing.nbytes
        if packet.type is PacketType.EVENT:
            lifecycle.events_out += 1
        if lifecycle.trace:
            lifecycle.trace_out(self.id, outgoing)
        return outgoing

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to this client, waiting while its outbound queue is full.

        Raises:
            Disconnected: the socket is (or becomes) disconnected.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        packet = self._packet(event, args, None)
        if self._held is not None:
            self._hold(packet)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if not self.connected:
            raise Disconnected(self.disconnect_reason)
        self.namespace._notify_outgoing(self, packet)
        try:
            await self.session.send(await self._encode_emitted(packet))
        except Disconnected:
            raise await _disconnected(self.disconnect_reason) from None

    def emit_nowait(self, event: str, *args: Any) -> None:
        """Send an event without waiting.

        Raises:
            trio.WouldBlock: the client's outbound queue is full.
            Disconnected: the socket is disconnected.
        """
        packet = self._packet(event, args, None)
        if self._held is not None:
            self._hold(packet)
            return
        if not self.connected:
            raise Disconnected(self.disconnect_reason)
        self.namespace._notify_outgoing(self, packet)
        try:
            self.session.send_nowait(self._encode(packet))
        except Disconnected:
            raise Disconnected(self.disconnect_reason) from None

    async def call(self, event: str, *args: Any) -> Any:
        """Send an event and wait for the client's acknowledgement.

        Returns the client's answer the way a Python function returns: ``None`` for no
        arguments, the value for one, a tuple for several. The timeout is the caller's cancel
        scope (``with trio.fail_after(5): await sock.call(...)``).

        Raises:
            Disconnected: at once when the socket disconnects, not at the timeout.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._held is not None and trio.lowlevel.current_task() is self._task:
            raise RuntimeError(
                "on_connect cannot wait for the client's answer: the client connects when "
                "on_connect returns (start the call in a task of sock.nursery)"
            )
        if not self.connected and self._held is None:
            raise Disconnected(self.disconnect_reason)
        server = self.namespace.server
        if len(self._pending_acks) >= server.max_pending_acks:
            raise RuntimeError(f"more than {server.max_pending_acks} acknowledgements pending")
        ack_id = self.namespace._next_ack_id()
        waiter = self._pending_acks[ack_id] = _AckWaiter()
        try:
            packet = self._packet(event, args, ack_id)
            if self._held is not None:
                self._hold(packet)
            else:
                self.namespace._notify_outgoing(self, packet)
                try:
                    await self.session.send(self._encode(packet))
                except Disconnected:
                    raise await _disconnected(self.disconnect_reason) from None
            await waiter.done.wait()
        finally:
            self._pending_acks.pop(ack_id, None)
        if waiter.args is None:
            raise await _disconnected(self.disconnect_reason)
        return ack_value(waiter.args)

    def _hold(self, packet: SocketPacket) -> None:
        """Keep a packet sent while on_connect runs, to follow the CONNECT packet."""
        self.namespace._notify_outgoing(self, packet)
        if not self._sink.offer(self._encode(packet)):
            raise Disconnected(self.disconnect_reason)

    def _deliver(self, outgoing: Outgoing, packet: SocketPacket, *, volatile: bool) -> bool:
        """Fan-out path: hand an already encoded broadcast to this socket's session."""
        self.namespace._notify_outgoing(self, packet)
        return self._sink.offer(outgoing, volatile=volatile)

    def _deliver_expecting_ack(
        self,
        outgoing: Outgoing,
        packet: SocketPacket,
        collector: AckCollector,
        *,
        volatile: bool,
    ) -> bool:
        """Fan-out path of a broadcast with acks: the answer goes to ``collector``."""
        assert packet.id is not None
        if not self._deliver(outgoing, packet, volatile=volatile):
            return False
        collector._waiting_for(self.id)
        self._pending_acks[packet.id] = _AckWaiter(collector, self.id)
        return True

    def _resolve_ack(self, ack_id: int | None, args: list[Any]) -> None:
        waiter = self._pending_acks.pop(ack_id, None) if ack_id is not None else None
        if waiter is None:
            self._client.unknown_acks += 1
            return
        waiter.settle(args)

    # --- disconnecting -------------------------------------------------------------------

    async def disconnect(self, *, close: bool = False) -> None:
        """Disconnect this socket; the client sees reason ``"io server disconnect"``.

        With ``close=True`` the whole Engine.IO connection closes too (all its namespaces).
        Called from one of this socket's own handlers, that handler is cancelled at its next
        checkpoint, like every other task of the socket.
        """
        await trio.lowlevel.checkpoint()
        if self._held is not None:
            # From on_connect: the client has not connected yet, so this is a refusal.
            self._refusal = ConnectionRefused()
            self._close(DisconnectReason.IO_SERVER_DISCONNECT)
            return
        if not self.connected:
            return
        packet = SocketPacket(PacketType.DISCONNECT, self.namespace.name)
        # Closed before the packet goes: a client that answers it by closing its connection
        # at once must not make the reason "transport close" (and nothing more is sent to
        # the socket after its DISCONNECT).
        self._close(DisconnectReason.IO_SERVER_DISCONNECT)
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(1),
            contextlib.suppress(Disconnected),
        ):
            await self.session.send(self._encode(packet))
        if close:
            self.session.close(DisconnectReason.IO_SERVER_DISCONNECT, graceful=True)

    def _close(self, reason: DisconnectReason) -> None:
        """Mark disconnected (or no longer connecting) and release everything at once
        (synchronous)."""
        if self._finished:
            return
        self._finished = True
        self._held = None
        self._sink = self.session
        was_connected = self.connected
        self.connected = False
        self.disconnect_reason = reason
        self._rooms_at_disconnect = self.rooms
        if was_connected and self._pid is not None and reason in RECOVERABLE_REASONS:
            self.namespace.adapter.persist_session(
                PersistedSession(
                    self.namespace.name, self.id, self._pid, self._rooms_at_disconnect, self.data
                )
            )
        if self._listeners is not None and self._listeners.counted:
            self._listeners.counted = False
            self.namespace._watched_outgoing -= 1
        self.namespace.adapter.delete_all(self.id)
        self.namespace.sockets.pop(self.id, None)
        self._client.sockets.pop(self.namespace.name, None)
        self._events.close()
        self.namespace._vacate()
        pending = list(self._pending_acks.values())
        self._pending_acks.clear()
        for waiter in pending:
            waiter.settle(None)
        if self._idle_check is not None:
            self._idle_check.cancel()
            self._idle_check = None
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        elif self._parked:
            # No task of the socket's to run the disconnect handlers: one of their own, in
            # the session's nursery (still open: a session closes its sockets before it
            # cancels that nursery).
            self._parked = False
            self.session.nursery.start_soon(
                self._run_disconnect_handlers, name="trio_sio.socket_disconnect"
            )
        if self._gone is not None:
            self._gone.set()
        if was_connected:
            self.namespace.server.lifecycle.disconnected(self, reason)

    # --- the socket task -----------------------------------------------------------------

    async def _run(self, resumed: bool = False) -> None:
        """The socket's task: on_connect, then the events, in order. With ``resumed``, the
        task again after the socket parked (see :meth:`_park`), started by its next event."""
        namespace = self.namespace
        accepted = resumed
        parked = False
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._task = trio.lowlevel.current_task()
                if not resumed:
                    if not self.recovered:  # a recovered socket is registered already
                        self._register()
                    accepted = await self._connect()
                    if not accepted:
                        return
                limiter = namespace.server.max_concurrent_handlers
                events = self._events
                # Each time round (just connected or resumed, or let go idle: see
                # _check_idle) the task ends if the socket is going, parks if nothing is left
                # for it, or else handles events until one of those.
                while not events.closed and not (parked := self._park(nursery)):
                    self._watch_idleness()
                    if limiter > 1:
                        await self._process_events_concurrently(limiter)
                    else:
                        # In order, one at a time, the default: inline rather than in a
                        # coroutine of its own, which every socket with a task would keep.
                        while (packet := await events.get()) is not None:
                            try:
                                await self._handle_event(packet)
                            finally:
                                events.done()
        finally:
            # A parked task leaves the socket as it is: connected, and its own no longer.
            if not parked:
                self._nursery = self._task = None
                self._close(
                    self._client.session.close_reason or DisconnectReason.SERVER_SHUTTING_DOWN
                )
                if self._refusal is not None:
                    await self._client.refuse(
                        namespace.name, self._refusal, RefusalCause.ON_CONNECT
                    )
                elif accepted:
                    await self._run_disconnect_handlers()

    def _park(self, nursery: trio.Nursery) -> bool:
        """Just connected, or idle for a while (see :meth:`_check_idle`): if nothing is left
        for the socket's task to do (no event waiting, no task in its nursery, and the
        nursery never handed out, so no task can be started in it later), let the task end,
        and say so. An idle connection then holds no task of the socket (about 3 KB less).
        Its next event starts one again (see :meth:`_queue_event`). Its close runs the
        disconnect handlers in a task of their own (see :meth:`_close`)."""
        if not self._may_park(nursery):
            return False
        self._parked = True
        self._nursery = self._task = None
        return True

    def _may_park(self, nursery: trio.Nursery) -> bool:
        """Whether nothing is left for the socket's task (see :meth:`_park`)."""
        return not (self._events or nursery.child_tasks or self._nursery_lent)

    def _watch_idleness(self) -> None:
        """Check in a heartbeat interval whether the socket's task has been idle since."""
        if self._idle_check is None and not self._nursery_lent:
            server = self.namespace.server
            deadline = trio.current_time() + server.engine_options.ping_interval
            self._idle_check = server.engine.call_at(deadline, self._check_idle)

    def _check_idle(self) -> None:
        """On the server's timer: a socket with no event for a whole heartbeat interval lets
        its task go (it parks), if the task waits for an event and may park. So a task start
        costs a socket at most one per interval, however its events come."""
        self._idle_check = None
        nursery = self._nursery
        if self._finished or nursery is None or self._nursery_lent:
            return  # gone, parked, or its nursery handed out: nothing to watch
        if not self._active and self._may_park(nursery) and self._events.let_go():
            return
        self._active = False
        self._watch_idleness()

    def _queue_event(self, packet: SocketPacket) -> bool:
        """From the session's reader: queue an event for the socket's task, starting that task
        if the socket parked. ``False`` if the socket no longer takes events."""
        if not self._events.put_nowait(packet):
            return False
        self._active = True
        if self._parked:
            self._parked = False
            self.session.nursery.start_soon(self._run, True, name="trio_sio.socket")
        return True

    def _register(self) -> None:
        """Broadcasts reach this socket from now on, held until it has connected. A
        recovered socket is back in its rooms, the packets it missed first in line."""
        namespace = self.namespace
        restored, self._restored = self._restored, None
        self._held = deque(restored.missed if restored is not None else ())
        self._sink = _Holder(self, self._held)
        self._client.sockets[namespace.name] = self
        namespace.sockets[self.id] = self
        rooms = restored.session.rooms if restored is not None else (self.id,)
        namespace.adapter.add_all(self.id, rooms)

    async def _connect(self) -> bool:
        """Run on_connect, which may refuse; then send CONNECT and what on_connect sent, and
        become connected. Returns whether the socket connected."""
        handler = self.namespace.handlers.connect
        if handler is not None:
            try:
                accepted = await handler(self, self.handshake.auth)
            except ConnectionRefused as refusal:
                self._refusal = refusal
                return False
            except Exception as exc:
                if self._finished and isinstance(exc, Disconnected):
                    return False  # the connection went away meanwhile
                if self.namespace.server.handler_errors == "raise":
                    raise
                logger.exception(
                    "socket=%s on_connect_failed namespace=%s: refusing it",
                    self.id,
                    self.namespace.name,
                )
                self._refusal = ConnectionRefused("Internal server error")
                return False
            if accepted is False:  # python-socketio's idiom
                self._refusal = ConnectionRefused()
                return False
        if self._finished:
            return False
        accepted_payload = {"sid": self.id}
        if self._pid is not None:
            accepted_payload["pid"] = self._pid
        connect = SocketPacket(PacketType.CONNECT, self.namespace.name, accepted_payload)
        held = self._held
        assert held is not None
        held.appendleft(self._encode(connect))
        try:
            # Packets sent meanwhile join the queue, so they keep their order.
            while held:
                await self.session.send(held.popleft())
        except Disconnected:
            return False
        self._held = None
        self._sink = self.session
        self.connected = True
        self._client.connected(self)
        self.namespace.server.lifecycle.connected(self)
        return True

    async def _process_events_concurrently(self, limiter: int) -> None:
        events = self._events
        # A semaphore, not a CapacityLimiter: the token is taken here, released by the
        # handler's task.
        capacity = trio.Semaphore(limiter)
        async with trio.open_nursery() as handlers:
            while (packet := await events.get()) is not None:
                await capacity.acquire()

                async def run(packet: SocketPacket = packet) -> None:
                    try:
                        await self._handle_event(packet)
                    finally:
                        events.done()
                        capacity.release()

                handlers.start_soon(run)

    async def _handle_event(self, packet: SocketPacket) -> None:
        event: str = packet.data[0]
        args: list[Any] = packet.data[1:]
        handlers = self.namespace.handlers
        own = self._listeners
        if handlers.packet_middlewares and not await self._admits(
            handlers.packet_middlewares, event, args
        ):
            return
        if (
            own is not None
            and own.middlewares
            and not await self._admits(own.middlewares, event, args)
        ):
            return
        lifecycle = self.namespace.server.lifecycle
        if lifecycle.event_listeners:
            lifecycle.received(self, event, args)
        for listener in handlers.any:
            await self._run_handler(listener, (self, event, *args))
        handler = None
        if own is not None:
            for listener in own.any:
                await self._run_handler(listener, (self, event, *args))
            # The socket's own handler, if it has one, instead of the namespace's.
            handler = own.events.get(event)
        if handler is None:
            handler = handlers.events.get(event)
            if handler is None:
                return
        # The handler itself, called here rather than through _run_handler: a coroutine
        # and two tuples less for every event.
        try:
            result = await handler(self, *args)
        except Exception as exc:
            self._handler_failed(handler, exc)
            return
        if packet.id is None or not self.connected:
            return
        arguments = ack_arguments(result)
        if arguments is None:
            return  # NO_ACK
        reply = SocketPacket(PacketType.ACK, self.namespace.name, arguments, packet.id)
        try:
            encoded = self._encode(reply)
        except TypeError as exc:
            # The handler's mistake: reported as its failure, and this socket carries on.
            if self.namespace.server.handler_errors == "raise":
                raise
            logger.error(
                "socket=%s ack_not_encodable namespace=%s event=%r error=%s: no ack sent",
                self.id,
                self.namespace.name,
                event,
                exc,
            )
            return
        pending = self.namespace.adapter.rooms_pending()
        if pending is not None:
            # A room the handler joined is not yet subscribed to by this node (sharded
            # Redis): acknowledged now, the client could ask another node to broadcast to it
            # and miss the broadcast.
            await pending.wait()
        # The handler has just run (and checkpointed): queue without another trip through
        # the scheduler unless the queue is full. (try/except, not contextlib.suppress: this
        # runs for every acknowledged event, and the context manager costs three calls.)
        try:
            try:
                self.session.send_nowait(encoded)
            except trio.WouldBlock:
                await self.session.send(encoded)
        except Disconnected:
            pass  # the client is gone: nobody to acknowledge

    async def _admits(
        self, middlewares: Sequence[PacketMiddleware], event: str, args: list[Any]
    ) -> bool:
        """Run packet middleware; ``False`` if one refused the event (by raising)."""
        for middleware in middlewares:
            try:
                await middleware(self, event, args)
            except Exception as exc:
                # Refusing is what packet middleware is for, so not an error with a traceback;
                # as in Node, the client is not told.
                logger.info(
                    "socket=%s packet_middleware refused namespace=%s event=%r error=%s",
                    self.id,
                    self.namespace.name,
                    event,
                    exc,
                )
                return False
        return True

    async def _run_handler(self, handler: Any, args: tuple[Any, ...]) -> tuple[bool, Any]:
        try:
            return True, await handler(*args)
        except Exception as exc:
            self._handler_failed(handler, exc)
            return False, None

    def _handler_failed(self, handler: Any, exc: Exception) -> None:
        """``handler`` raised ``exc``: logged, or raised again (``handler_errors="raise"``);
        nothing to report if this socket went away under it. Called in the ``except``
        block that caught ``exc``, so that the log record has its traceback."""
        if isinstance(exc, Disconnected) and not self.connected:
            return
        if self.namespace.server.handler_errors == "raise":
            raise exc
        logger.exception(
            "socket=%s handler_failed namespace=%s handler=%s",
            self.id,
            self.namespace.name,
            getattr(handler, "__qualname__", handler),
        )

    async def _run_disconnect_handlers(self) -> None:
        handlers = self.namespace.handlers
        if handlers.disconnecting is None and handlers.disconnect is None:
            return
        reason = self.disconnect_reason or DisconnectReason.SERVER_SHUTTING_DOWN
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.namespace.server.disconnect_handler_timeout
            if handlers.disconnecting is not None:
                await self._run_handler(handlers.disconnecting, (self, reason))
            self._rooms_at_disconnect = frozenset()
            if handlers.disconnect is not None:
                await self._run_handler(handlers.disconnect, (self, reason))

    def statistics(self) -> SocketStatistics:
        """Queue sizes and counters of this socket and its session."""
        packets, nbytes = self.session.delivery.queued()
        return SocketStatistics(
            connected=self.connected,
            rooms=len(self.rooms),
            queued_events=len(self._events),
            pending_acks=len(self._pending_acks),
            outbound_packets=packets,
            outbound_bytes=nbytes,
            dropped_volatile=self.session.dropped_volatile,
        )


def _changed(rooms: tuple[str, ...], current: frozenset[str], *, present: bool) -> tuple[str, ...]:
    """The rooms of ``rooms`` (each once) that are in ``current`` (``present``) or not."""
    return tuple(room for room in dict.fromkeys(rooms) if (room in current) is present)


async def _disconnected(reason: DisconnectReason | None) -> Disconnected:
    """The exception for an operation the socket's disconnection interrupted.

    Checkpoints first: a task of the socket's own nursery (cancelled along with it) then
    ends with ``Cancelled``, as it should, and not with an error its nursery would re-raise.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    return Disconnected(reason)
