"""The Socket.IO server: namespaces on top of an Engine.IO server."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn, cast

import trio

from ._adapter import Adapter
from ._engine import (
    Alarm,
    EngineOptions,
    EngineServer,
    EngineSettings,
    HttpRequest,
    HttpResponse,
    Session,
    SessionState,
    WebSocketConnection,
)
from ._errors import ConnectionRefused, Disconnected, DisconnectReason, RefusalCause
from ._lifecycle import ServerLifecycle
from ._namespace import Namespace, NamespaceMatcher, ParentNamespace, _Registry, _Targets
from ._protocol import (
    JsonCodec,
    JsonParser,
    Outgoing,
    PacketType,
    Parser,
    ProtocolError,
    SocketPacket,
    StdlibJson,
    parse_query,
)
from ._recovery import (
    ConnectionStateRecovery,
    RecoveryFailure,
    RecoveryStatistics,
    RecoveryStore,
    RestoredSession,
)
from ._socket import InboundBudget, Socket

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["NamespaceStatistics", "Server", "ServerStatistics"]

logger = logging.getLogger("trio_sio.socketio")

#: Added to the disconnect handlers' timeout: how long a shutdown waits for the transports to
#: close after the handlers ran.
SHUTDOWN_GRACE = 1.0

_INVALID_NAMESPACE = "Invalid namespace"
_SERVER_ERROR = "Internal server error"

#: CONNECT packets one client may have in progress (middleware and on_connect running); past
#: it the server stops reading from that client until one is done.
MAX_CONNECTS_IN_FLIGHT = 8


@dataclass(frozen=True)
class ServerStatistics:
    """A snapshot of a :class:`Server` (trio's ``statistics()`` convention): gauges of what
    is open now (``sessions`` to ``namespaces``), and counters of what happened since the
    server was made (the others).

    Attributes:
        sessions: open Engine.IO sessions.
        polling, websocket: of those, how many use each transport.
        sockets: connected sockets, all namespaces together.
        rooms: rooms in all namespaces (each socket's own room included).
        queued_bytes: bytes waiting in all outbound queues.
        namespaces: per namespace (dynamic children included), its sockets and rooms.
        connections: Engine.IO sessions opened (handshakes).
        upgrades: sessions upgraded from long-polling to WebSocket.
        disconnects: sessions closed, by reason (the :class:`~trio_sio.DisconnectReason`
            values, such as ``"transport close"``).
        socket_connects: sockets connected, all namespaces together.
        socket_disconnects: sockets disconnected, by reason.
        events_in, events_out: events received and sent (a broadcast counts once per
            recipient).
        bytes_in, bytes_out: the size of the Socket.IO packets received and sent, binary
            attachments included; heartbeats and transport framing are not counted.
        slow_consumers: clients cut because their outbound queue was full.
        protocol_errors: sessions closed because the client broke the protocol.
        refusals: refused handshakes and CONNECTs, by cause: the setting that refused a
            handshake (``cors_allowed_origins``, ``allow_request``, ``max_sessions``), or
            who refused a CONNECT (``middleware``, ``on_connect``, ``invalid_namespace``,
            ``max_namespaces_per_client``, ``server_error``).
        recovery: the connection state recovery store (``None`` when recovery is off):
            what it keeps now, and its counters.
    """

    sessions: int
    sockets: int
    rooms: int
    queued_bytes: int
    polling: int
    websocket: int
    namespaces: Mapping[str, NamespaceStatistics]
    connections: int
    upgrades: int
    disconnects: Mapping[str, int]
    socket_connects: int
    socket_disconnects: Mapping[str, int]
    events_in: int
    events_out: int
    bytes_in: int
    bytes_out: int
    slow_consumers: int
    protocol_errors: int
    refusals: Mapping[str, int]
    recovery: RecoveryStatistics | None = None


@dataclass(frozen=True)
class NamespaceStatistics:
    """One namespace in :attr:`ServerStatistics.namespaces`."""

    sockets: int
    rooms: int


class Server(_Registry, _Targets):
    """A Socket.IO v5 server.

    Register handlers with the decorators (on namespace ``/`` here, on others via
    :meth:`of`), then serve it: under hypercorn with :class:`~trio_sio.ASGIApp`, or inside
    your own Trio program with ``await nursery.start(sio.run)`` plus a host.

    Times are in seconds, sizes in bytes. The Engine.IO settings (``ping_interval``,
    ``max_payload``, ``cors_allowed_origins``, ``outbound_queue_bytes``, ...) are keyword
    arguments as well, described once, in :class:`~trio_sio.engineio.EngineOptions`; they
    end up in that one object, :attr:`engine_options`. The Socket.IO settings:

    Args:
        connect_timeout: close a connection that joins no namespace within this time.
        max_attachments: most binary attachments per packet.
        max_concurrent_handlers: event handlers running at once per socket. With the default,
            1, a socket's events are handled strictly in the order they arrived.
        handler_queue_size: events waiting per socket before the server stops reading from
            that client.
        max_pending_acks: most unanswered :meth:`Socket.call` per socket.
        max_namespaces_per_client: most namespaces one connection may join (or be joining);
            beyond it a CONNECT is refused with ``"Too many namespaces"``. Each costs up to
            ``handler_queue_size`` events in memory (see the memory bounds in the docs).
        max_dynamic_namespaces: most children of each :meth:`of_dynamic` family at once;
            beyond it a new name is refused as an invalid namespace. Empty children are
            forgotten.
        disconnect_handler_timeout: time allowed to disconnect handlers (they run shielded).
        handler_errors: ``"log"`` (default) logs a failing handler once and carries on;
            ``"raise"`` lets the exception end the server's nursery (for tests).
        json: the JSON codec (see :class:`~trio_sio._protocol.JsonCodec`): of the Engine.IO
            handshake, and of the packets unless ``parser`` says otherwise.
        parser: the format of the Socket.IO packets (Node's ``parser`` option), which the
            clients must share: :class:`~trio_sio.JsonParser` on ``json`` by default, or
            :class:`~trio_sio.MsgpackParser` (see :doc:`parsers`).
        adapter_factory: builds each namespace's :class:`Adapter` (a cluster adapter here).
        connection_state_recovery: turns recovery on (see
            :class:`~trio_sio.ConnectionStateRecovery`): a client that lost its connection
            and comes back in time gets its socket back, with its rooms, its ``data`` and
            the packets it missed.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 45.0,
        max_attachments: int = 10,
        max_concurrent_handlers: int = 1,
        handler_queue_size: int = 16,
        max_pending_acks: int = 1000,
        max_namespaces_per_client: int = 64,
        max_dynamic_namespaces: int = 10_000,
        disconnect_handler_timeout: float = 5.0,
        handler_errors: Literal["log", "raise"] = "log",
        json: JsonCodec | None = None,
        parser: Parser | None = None,
        adapter_factory: Callable[[Namespace], Adapter] = Adapter,
        connection_state_recovery: ConnectionStateRecovery | None = None,
        **engine_settings: Unpack[EngineSettings],
    ) -> None:
        if max_concurrent_handlers < 1 or handler_queue_size < 1:
            raise ValueError("max_concurrent_handlers and handler_queue_size must be >= 1")
        options = EngineOptions.from_settings(engine_settings)
        self.json: JsonCodec = json or StdlibJson()
        #: Encodes every packet sent and makes each session's decoder.
        self.parser: Parser = JsonParser(self.json) if parser is None else _checked(parser)
        self.engine = EngineServer(
            self, options, json=self.json, supervise=handler_errors != "raise"
        )
        self.connect_timeout = connect_timeout
        self.max_attachments = max_attachments
        self.max_concurrent_handlers = max_concurrent_handlers
        self.handler_queue_size = handler_queue_size
        self.max_pending_acks = max_pending_acks
        self.max_namespaces_per_client = max_namespaces_per_client
        self.max_dynamic_namespaces = max_dynamic_namespaces
        self.disconnect_handler_timeout = disconnect_handler_timeout
        self.handler_errors = handler_errors
        self.adapter_factory = adapter_factory
        self.connection_state_recovery = connection_state_recovery
        #: Where recoverable packets and disconnected sessions are kept (``None`` when
        #: recovery is off); the in-memory adapters of all namespaces share it.
        self.recovery_store: RecoveryStore[Outgoing] | None = (
            RecoveryStore(connection_state_recovery) if connection_state_recovery else None
        )
        #: The sockets' cumulative counters, lifecycle log and listeners (the sessions' are
        #: ``engine.lifecycle``); read the counters with :meth:`statistics`. The listeners are
        #: an internal extension point (the Admin UI's), not a stable interface yet.
        self.lifecycle = ServerLifecycle()
        self._namespaces: dict[str, Namespace] = {}
        self._parents: list[ParentNamespace] = []
        self._nursery: trio.Nursery | None = None
        # Operations that return before they are done, run in order (see _start_soon).
        self._background: (
            trio.MemorySendChannel[tuple[Callable[..., Awaitable[object]], Any]] | None
        ) = None
        # Tasks that live as long as the server runs (the Admin UI's), see _add_service.
        self._services: list[Callable[..., Awaitable[object]]] = []
        self.main = self.of("/")
        self.handlers = self.main.handlers

    # --- namespaces ----------------------------------------------------------------------

    def of(self, name: str) -> Namespace:
        """The namespace called ``name`` (created on first use)."""
        if not name.startswith("/"):
            name = "/" + name
        namespace = self._namespaces.get(name)
        if namespace is None:
            namespace = self._namespaces[name] = Namespace(self, name)
            self._adopt(namespace)
        return namespace

    def _registration_target(self) -> Namespace:
        return self.main

    def of_dynamic(self, matcher: NamespaceMatcher) -> ParentNamespace:
        """A family of namespaces created when a client connects to a name that
        ``matcher`` (a compiled regular expression, or ``(name, auth) -> bool``) accepts."""
        parent = ParentNamespace(self, matcher)
        self._parents.append(parent)
        return parent

    @property
    def namespaces(self) -> dict[str, Namespace]:
        """The static namespaces and the dynamic children created so far."""
        result = dict(self._namespaces)
        for parent in self._parents:
            result.update(parent.children)
        return result

    async def _find_namespace(self, name: str, auth: Any) -> Namespace | None:
        namespace = self._namespaces.get(name)
        if namespace is not None:
            return namespace
        for parent in self._parents:
            if name in parent.children:
                return parent.children[name]
            if await parent.matches(name, auth):
                if len(parent.children) >= self.max_dynamic_namespaces:
                    logger.warning(
                        "more than %d dynamic namespaces: refusing %s",
                        self.max_dynamic_namespaces,
                        name,
                    )
                    return None
                return parent.child(name)
        return None

    @property
    def _namespace(self) -> Namespace:
        return self.main

    # --- lifetime and hosting ------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Run the server until cancelled: ``await nursery.start(sio.run)``.

        Its nursery holds every session and each namespace's adapter task. The ASGI lifespan
        does this for you under hypercorn.
        """
        if self._nursery is not None:
            raise RuntimeError("this server is already running")
        try:
            async with trio.open_nursery() as nursery:
                for namespace in self.namespaces.values():
                    await nursery.start(self._run_adapter, namespace)
                await nursery.start(self.engine.run)
                self._background, operations = trio.open_memory_channel[
                    tuple[Callable[..., Awaitable[object]], Any]
                ](1000)
                nursery.start_soon(self._run_background, operations)
                for service in self._services:
                    await nursery.start(service)
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._background = None
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is running."""
        return self._nursery is not None

    @property
    def engine_options(self) -> EngineOptions:
        """The Engine.IO settings in force (the keyword arguments given, defaults for the
        others)."""
        return self.engine.options

    @property
    def max_payload(self) -> int:
        """The largest polling body or WebSocket message accepted (Engine.IO's
        ``maxPayload``)."""
        return self.engine.options.max_payload

    @property
    def shutdown_grace(self) -> float:
        """How long :meth:`shutdown` may take: the disconnect handlers' timeout, plus a
        second for the transports to close. The hosts give it that long when they stop."""
        return self.disconnect_handler_timeout + SHUTDOWN_GRACE

    async def shutdown(self) -> None:
        """Close every session with ``"server shutting down"`` and wait until all have ended
        (their disconnect handlers included). Clients see their transport close, so
        official clients reconnect, to this server's successor for instance.

        Bound the wait with a cancel scope; :func:`serve_hypercorn` and the ASGI lifespan
        allow ``disconnect_handler_timeout`` plus one second.
        """
        await trio.lowlevel.checkpoint()
        await self.engine.shutdown()

    def _start_soon(self, async_fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Run ``async_fn(*args)`` after the operations started this way before it, in the
        server's nursery, a failure logged rather than raised: for operations that return
        before they are done (``RemoteSocket.join``, as in Node), whose order must hold.

        Raises:
            RuntimeError: the server is not running, or 1,000 operations are waiting already.
        """
        if self._background is None:
            raise RuntimeError("the server is not running")
        try:
            self._background.send_nowait((async_fn, args))
        except trio.WouldBlock:
            raise RuntimeError("more than 1000 background operations waiting") from None

    def _add_service(self, service: Callable[..., Awaitable[object]]) -> None:
        """Run ``service`` in the server's nursery whenever the server runs (started with
        ``nursery.start``: it takes ``task_status``), so that it ends with the server; at
        once if the server is running already."""
        self._services.append(service)
        if self._nursery is not None:
            self._nursery.start_soon(service)

    async def _run_background(
        self,
        operations: trio.MemoryReceiveChannel[tuple[Callable[..., Awaitable[object]], Any]],
    ) -> None:
        async for async_fn, args in operations:
            try:
                await async_fn(*args)
            except Exception:
                logger.exception("background operation %r failed", async_fn)

    def _adopt(self, namespace: Namespace) -> None:
        """A namespace created while running gets its adapter started at once."""
        if self._nursery is not None:
            self._nursery.start_soon(self._run_adapter, namespace)

    async def _run_adapter(
        self, namespace: Namespace, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # In a scope of its own: a dynamic namespace that is reclaimed stops its adapter.
        with trio.CancelScope() as scope:
            namespace._adapter_scope = scope
            await namespace.adapter.run(task_status=task_status)

    def handle_http(self, request: HttpRequest) -> Coroutine[Any, Any, HttpResponse]:
        """Answer a long-polling request (used by the hosts): to be awaited, as an ``async``
        method's call would be. It hands back the engine's coroutine rather than await it, so
        that no frame of this method is made per request."""
        return self.engine.handle_http(request)

    def handle_websocket(
        self, request: HttpRequest, ws: WebSocketConnection
    ) -> Coroutine[Any, Any, None]:
        """Serve a WebSocket connection (used by the hosts): to be awaited, as an ``async``
        method's call would be. It hands back the engine's coroutine, so that no frame of this
        method stays for the connection's lifetime (about 220 bytes an idle session)."""
        return self.engine.handle_websocket(request, ws)

    def statistics(self) -> ServerStatistics:
        """What is open now (sessions, sockets, rooms, queued bytes) and the counters of
        what happened since the server was made. Costs a walk over the sessions."""
        engine = self.engine.statistics()
        namespaces = {
            name: NamespaceStatistics(sockets=len(n.sockets), rooms=len(n.adapter.rooms))
            for name, n in self.namespaces.items()
        }
        sessions = self.engine.lifecycle
        sockets = self.lifecycle
        return ServerStatistics(
            sessions=engine.sessions,
            sockets=sum(n.sockets for n in namespaces.values()),
            rooms=sum(n.rooms for n in namespaces.values()),
            queued_bytes=engine.queued_bytes,
            polling=engine.polling,
            websocket=engine.websocket,
            namespaces=namespaces,
            connections=sessions.handshakes,
            upgrades=sessions.upgrades,
            disconnects=dict(sessions.closes),
            socket_connects=sockets.socket_connects,
            socket_disconnects=dict(sockets.socket_disconnects),
            events_in=sockets.events_in,
            events_out=sockets.events_out,
            bytes_in=sockets.bytes_in,
            bytes_out=sockets.bytes_out,
            slow_consumers=sessions.slow_consumers,
            protocol_errors=sessions.protocol_errors,
            refusals={**sessions.refusals, **sockets.refusals},
            recovery=self.recovery_store.statistics() if self.recovery_store else None,
        )

    # --- Engine.IO handler ---------------------------------------------------------------

    def on_open(self, session: Session) -> None:
        """Engine.IO hook: a session opened."""
        client = session.app_state = _Client(self, session)
        self.lifecycle.session_opened()
        # Cancelled when a namespace accepts the client, or when the session closes.
        client.connect_deadline = self.engine.call_at(
            trio.current_time() + self.connect_timeout, client.connect_timed_out
        )

    def on_message(self, session: Session, data: str | bytes) -> Coroutine[Any, Any, None]:
        """Engine.IO hook: a message arrived. (Returns the client's coroutine for the
        transport to await, rather than awaiting it in one of its own: one coroutine less
        for every message.)"""
        client: _Client = session.app_state
        return client.receive(data)

    def on_close(self, session: Session, reason: DisconnectReason) -> None:
        """Engine.IO hook: a session closed."""
        client: _Client | None = session.app_state
        if client is not None:
            client.close(reason)


def _checked(parser: object) -> Parser:
    """``parser`` if it looks like a :class:`Parser` (untyped callers too): a mistake shows
    when the server is made, not at the first connection."""
    if isinstance(parser, type):
        raise TypeError(f"parser: pass an instance, {parser.__name__}(), not the class")
    if isinstance(parser, str):  # python-socketio's serializer="msgpack"
        raise TypeError(f"parser={parser!r}: pass a parser, such as trio_sio.MsgpackParser()")
    missing = [name for name in ("encode", "decoder") if not callable(getattr(parser, name, None))]
    if missing:
        raise TypeError(
            f"parser: {parser!r} has no {' or '.join(missing)} method (see trio_sio.parsers.Parser)"
        )
    return cast(Parser, parser)


class _Client:
    """The Socket.IO state of one Engine.IO session: its decoder and its sockets."""

    __slots__ = (
        "_connect_slot",
        "connect_deadline",
        "connecting",
        "decoder",
        "dropped_events",
        "inbound",
        "query",
        "server",
        "session",
        "sockets",
        "unknown_acks",
    )

    def __init__(self, server: Server, session: Session) -> None:
        self.server = server
        self.session = session
        self.query = parse_query(session.request.query_string)
        self.decoder = server.parser.decoder(
            max_attachments=server.max_attachments,
            max_binary_bytes=server.engine.options.max_payload,
        )
        self.sockets: dict[str, Socket] = {}
        # Namespaces whose CONNECT is being handled; made on first use (an empty set is
        # 216 bytes, kept by every idle client).
        self.connecting: set[str] | None = None
        self.dropped_events = 0
        self.unknown_acks = 0
        self.connect_deadline: Alarm | None = None  # see Server.on_open
        #: This client's events queued or being handled, in all its namespaces together.
        self.inbound = InboundBudget(server.handler_queue_size + server.max_concurrent_handlers)
        self._connect_slot: trio.lowlevel.ParkingLot | None = None  # made when one must wait

    async def receive(self, data: str | bytes) -> None:
        decoder = self.decoder
        lifecycle = self.server.lifecycle
        lifecycle.bytes_in += len(data)
        if lifecycle.trace:
            lifecycle.trace_in(self.session.sid, data)
        if isinstance(data, str):
            packet = decoder.receive_text(data)
            if packet is None:
                pending = decoder.pending
                assert pending is not None
                if pending.namespace not in self.sockets:
                    raise ProtocolError("binary packet for a namespace not connected")
                return
        else:
            packet = decoder.receive_binary(data)
            if packet is None:
                return
        packet_type = packet.type
        if packet_type is PacketType.EVENT:
            lifecycle.events_in += 1
            socket = self.sockets.get(packet.namespace)
            if socket is None:
                # In flight while the namespace was disconnecting: dropped and counted.
                self.dropped_events += 1
                return
            # Waits while the client's events fill the budget, which stops reading from it.
            if not self.inbound.acquire_nowait():
                await self.inbound.acquire()
            if not socket._queue_event(packet):
                self.dropped_events += 1
        elif packet_type is PacketType.ACK:
            socket = self.sockets.get(packet.namespace)
            if socket is not None:
                socket._resolve_ack(packet.id, packet.data)
        elif packet_type is PacketType.CONNECT:
            namespace_name = packet.namespace
            connecting = self.connecting
            if connecting is None:
                connecting = self.connecting = set()
            if namespace_name in self.sockets or namespace_name in connecting:
                raise ProtocolError("namespace already connected", namespace_name)
            if len(self.sockets) + len(connecting) >= self.server.max_namespaces_per_client:
                refusal = ConnectionRefused("Too many namespaces")
                await self.refuse(namespace_name, refusal, RefusalCause.MAX_NAMESPACES_PER_CLIENT)
                return
            while len(connecting) >= MAX_CONNECTS_IN_FLIGHT:
                # Backpressure: stop reading this client until one of its CONNECTs is done.
                if self._connect_slot is None:
                    self._connect_slot = trio.lowlevel.ParkingLot()
                await self._connect_slot.park()
            connecting.add(namespace_name)
            self.session.nursery.start_soon(
                self._connect, namespace_name, packet.data, name="trio_sio.socket"
            )
        elif packet_type is PacketType.DISCONNECT:
            socket = self.sockets.get(packet.namespace)
            if socket is not None:
                socket._close(DisconnectReason.IO_CLIENT_DISCONNECT)
        else:
            raise ProtocolError("unexpected packet from a client", packet_type.name)

    async def _send(self, packet: SocketPacket) -> None:
        parts = self.server.parser.encode(packet)
        with contextlib.suppress(Disconnected):  # nobody left to tell
            await self.session.send(Outgoing.message(*parts))

    async def _connect(self, name: str, auth: Any) -> None:
        socket = await self._admit(name, auth)
        if socket is not None:
            # This task becomes the socket's: no task of its own to start, and no wait for it.
            await socket._run()

    async def _admit(self, name: str, auth: Any) -> Socket | None:
        """The socket for a CONNECT to namespace ``name``, if the namespace and its
        middlewares let it in, ready to run (``None`` once refused)."""
        auth = auth if auth is not None else {}
        socket: Socket | None = None
        admitted = False
        try:
            namespace = await self.server._find_namespace(name, auth)
            if namespace is None:
                await self.refuse(
                    name, ConnectionRefused(_INVALID_NAMESPACE), RefusalCause.INVALID_NAMESPACE
                )
                return None
            auth, restored = await self._restore(namespace, auth)
            socket = Socket(namespace, self, auth, restored)
            if restored is not None:
                # At once, with no checkpoint since the restore: no broadcast can fall
                # between the packets replayed and those the socket receives.
                socket._register()
            recovery = self.server.connection_state_recovery
            skip = restored is not None and recovery is not None and recovery.skip_middlewares
            try:
                for middleware in () if skip else namespace.handlers.middlewares:
                    await middleware(socket, auth)
            except ConnectionRefused as refusal:
                await self.refuse(name, refusal, RefusalCause.MIDDLEWARE)
                return None
            except Exception:
                if self.server.handler_errors == "raise":
                    raise
                logger.exception(
                    "sid=%s connect_middleware_failed namespace=%s: refusing it",
                    self.session.sid,
                    name,
                )
                await self.refuse(name, ConnectionRefused(_SERVER_ERROR), RefusalCause.SERVER_ERROR)
                return None
            if self.session.state is not SessionState.OPEN:
                return None
            # The socket runs on_connect, which may still refuse (see Socket._connect).
            admitted = True
            return socket
        finally:
            if socket is not None and not admitted:
                socket._close(DisconnectReason.IO_SERVER_DISCONNECT)  # refused before it ran
            if self.connecting is not None:
                self.connecting.discard(name)
                if not self.connecting:
                    self.connecting = None
            if self._connect_slot:
                self._connect_slot.unpark()

    async def _restore(
        self, namespace: Namespace, auth: Any
    ) -> tuple[Any, RestoredSession[Outgoing] | None]:
        """The CONNECT payload without the recovery fields (``pid``, ``offset``), and the
        session they restore, if they do. Without them (a first connection, or recovery
        off) the payload is the application's, unchanged."""
        adapter = namespace.adapter
        recovers = adapter.recovery_store is not None
        if not (recovers and isinstance(auth, dict) and "pid" in auth):
            return auth, None
        auth = dict(auth)
        pid = auth.pop("pid")
        offset = auth.pop("offset", None)
        # Values of other types are no session and no offset of ours.
        result = await adapter.restore_session(
            pid if isinstance(pid, str) else "", offset if isinstance(offset, str) else None
        )
        lifecycle = self.server.lifecycle
        if isinstance(result, RecoveryFailure):
            lifecycle.recovery_failed(self.session.sid, namespace.name, result)
            return auth, None
        lifecycle.recovered(
            self.session.sid, namespace.name, result.session.sid, len(result.missed)
        )
        return auth, result

    async def refuse(self, namespace: str, refusal: ConnectionRefused, cause: RefusalCause) -> None:
        """Answer a CONNECT with CONNECT_ERROR (bounded, and whatever cancels the caller);
        ``cause`` says who refused, for the log and the counters."""
        self.server.lifecycle.refused(self.session.sid, namespace, cause, refusal.message)
        packet = SocketPacket(PacketType.CONNECT_ERROR, namespace, refusal.payload())
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await self._send(packet)

    def connected(self, socket: Socket) -> None:
        """A namespace accepted this client: the connect timeout no longer applies."""
        self._cancel_connect_deadline()

    def connect_timed_out(self) -> None:
        self.connect_deadline = None
        self.server.lifecycle.connect_timed_out(self.session.sid, self.server.connect_timeout)
        self.session.close(DisconnectReason.FORCED_CLOSE)

    def _cancel_connect_deadline(self) -> None:
        if self.connect_deadline is not None:
            self.connect_deadline.cancel()
            self.connect_deadline = None

    def close(self, reason: DisconnectReason) -> None:
        self._cancel_connect_deadline()
        self.decoder.reset()
        for socket in list(self.sockets.values()):
            socket._close(reason)
