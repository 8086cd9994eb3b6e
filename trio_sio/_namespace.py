"""Namespaces: the handlers, middleware, sockets and room registry of one Socket.IO namespace."""

from __future__ import annotations

import itertools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ._broadcast import AckCollector, BroadcastOperator
from ._errors import DisconnectReason
from ._protocol import RESERVED_EVENTS, SocketPacket
from ._signatures import check_event_name as _check_event_name
from ._signatures import check_handler as _check

if TYPE_CHECKING:
    from ._adapter import Adapter
    from ._cluster import ClusterReplies, RemoteSocket
    from ._server import Server
    from ._socket import Socket

__all__ = [
    "ConnectHandler",
    "DisconnectHandler",
    "EventHandler",
    "Handlers",
    "Middleware",
    "Namespace",
    "NamespaceHandlers",
    "NamespaceMatcher",
    "PacketMiddleware",
    "ParentNamespace",
    "ServerEventHandler",
]

#: ``async def on_connect(sock, auth) -> None``; raise ConnectionRefused (or return False) to
#: refuse.
ConnectHandler = Callable[["Socket", Any], Awaitable[bool | None]]
#: ``async def handler(sock, *args) -> ack`` (a tuple is several acknowledgement arguments)
EventHandler = Callable[..., Awaitable[Any]]
#: ``async def on_disconnect(sock, reason) -> None``
DisconnectHandler = Callable[["Socket", DisconnectReason], Awaitable[None]]
#: ``async def middleware(sock, auth) -> None``; raise ConnectionRefused to refuse.
Middleware = Callable[["Socket", Any], Awaitable[None]]
#: ``async def middleware(sock, event, args) -> None``; may edit ``args``, raise to drop.
PacketMiddleware = Callable[["Socket", str, list[Any]], Awaitable[None]]
#: ``def outgoing(sock, event, *args) -> None``: sees every event sent to a socket.
OutgoingHandler = Callable[..., None]
#: ``async def handler(*args) -> answer``: an event another server of the cluster sent with
#: ``server_side_emit``; the return value answers ``server_side_emit_with_ack``.
ServerEventHandler = Callable[..., Awaitable[Any]]
#: Matches dynamic namespace names: a regular expression, or ``(name, auth) -> bool``.
NamespaceMatcher = re.Pattern[str] | Callable[[str, Any], bool | Awaitable[bool]]

# The decorators return what they were given, typed as precisely as it was; the bounds make
# mypy refuse a handler the server could not call (python-socketio's signatures, say).
EventH = TypeVar("EventH", bound=EventHandler)
ConnectH = TypeVar("ConnectH", bound=ConnectHandler)
DisconnectH = TypeVar("DisconnectH", bound=DisconnectHandler)
MiddlewareH = TypeVar("MiddlewareH", bound=Middleware)
PacketMiddlewareH = TypeVar("PacketMiddlewareH", bound=PacketMiddleware)
OutgoingH = TypeVar("OutgoingH", bound=OutgoingHandler)
ServerEventH = TypeVar("ServerEventH", bound=ServerEventHandler)
T = TypeVar("T")
NamespaceHandlersT = TypeVar("NamespaceHandlersT", bound="NamespaceHandlers")


@dataclass
class Handlers:
    """Everything registered on a namespace (shared by the children of a dynamic one)."""

    events: dict[str, EventHandler] = field(default_factory=dict)
    connect: ConnectHandler | None = None
    disconnect: DisconnectHandler | None = None
    disconnecting: DisconnectHandler | None = None
    # Tuples, replaced on every change: a listener that registers or removes one while the
    # listeners run does not disturb the loop over them, and "no listener" is one falsy test.
    any: tuple[EventHandler, ...] = ()
    any_outgoing: tuple[OutgoingHandler, ...] = ()
    middlewares: list[Middleware] = field(default_factory=list)
    packet_middlewares: list[PacketMiddleware] = field(default_factory=list)
    server_events: dict[str, ServerEventHandler] = field(default_factory=dict)


# The checks each kind of registration makes, shared by the namespace's decorators, the
# socket's (Socket.on, Socket.on_any, Socket.use...) and class-based namespaces.


def _check_handled_event(event: object, *, owner: str = "sio") -> str:
    """The name ``on(event)`` may register a handler for."""
    event = _check_event_name(
        event, "on", alternative=f", or @{owner}.event to name it after the function", owner=owner
    )
    if event == "*":
        raise ValueError(f'"*" is no catch-all here: use @{owner}.on_any (it sees every event)')
    if event in RESERVED_EVENTS:
        raise ValueError(f"{event!r} is reserved: use on_connect/on_disconnect/...")
    return event


def _check_event_handler(handler: object, kind: str = "on") -> None:
    _check(handler, kind, "(sock, *args)", 1, rest="some")


def _check_any(handler: object, kind: str) -> None:
    _check(
        handler,
        kind,
        "(sock, event, *args)",
        2,
        rest="any",
        hint=", not python-socketio's catch-all (event, sid, data)",
    )


def _check_any_outgoing(handler: object, kind: str) -> None:
    _check(handler, kind, "(sock, event, *args)", 2, rest="any", synchronous=True)


def _check_packet_middleware(middleware: object, kind: str) -> None:
    _check(middleware, kind, "(sock, event, args)", 3, hint=", not Node's (packet, next)")


def _without(listeners: tuple[T, ...], listener: T | None) -> tuple[T, ...]:
    """``listeners`` without ``listener`` (its first occurrence, as Node's ``offAny``), or
    without any when it is ``None``."""
    if listener is None:
        return ()
    for index, candidate in enumerate(listeners):
        # == rather than is: a bound method is a new object each time it is read.
        if candidate == listener:
            return listeners[:index] + listeners[index + 1 :]
    return listeners


class _Registry:
    """The registration decorators, for namespaces and for the server (its ``/``).

    Each checks what it is given (an ``async def`` function the server can call with the
    arguments it passes) and raises :class:`TypeError` at once otherwise.
    """

    handlers: Handlers

    def on(self, event: str) -> Callable[[EventH], EventH]:
        """Register the handler of ``event``: ``async def h(sock, *args)``; its return value is
        the acknowledgement (``None``: none; a tuple: several arguments)."""
        event = _check_handled_event(event)

        def register(handler: EventH) -> EventH:
            _check_event_handler(handler)
            self.handlers.events[event] = handler
            return handler

        return register

    def event(self, handler: EventH) -> EventH:
        """Register a handler for the event named like the function."""
        name = getattr(handler, "__name__", None)
        if not isinstance(name, str):
            raise TypeError(f'{handler!r} has no name: use @on("name")')
        return self.on(name)(handler)

    def on_connect(self, handler: ConnectH) -> ConnectH:
        """Register ``async def h(sock, auth)``, run when a client connects, after the
        :meth:`use` middleware and before any of its events is handled. Raising
        :class:`~trio_sio.ConnectionRefused` (or returning ``False``) refuses the connection
        with CONNECT_ERROR, as middleware does. The client connects when the handler returns:
        what reaches the socket meanwhile (its own ``sock.emit``, broadcasts to its rooms,
        the handler's broadcast that includes it) waits and follows the CONNECT packet, in
        order; a refused client gets none of it."""
        _check(
            handler,
            "on_connect",
            "(sock, auth)",
            2,
            hint=", not python-socketio's (sid, environ, auth)",
        )
        self.handlers.connect = handler
        return handler

    def on_disconnecting(self, handler: DisconnectH) -> DisconnectH:
        """Register ``async def h(sock, reason)``, run as a socket disconnects, while
        ``sock.rooms`` still lists its rooms."""
        _check(handler, "on_disconnecting", "(sock, reason)", 2)
        self.handlers.disconnecting = handler
        return handler

    def on_disconnect(self, handler: DisconnectH) -> DisconnectH:
        """Register ``async def h(sock, reason)``, run after a socket disconnected."""
        _check(handler, "on_disconnect", "(sock, reason)", 2, hint=", not python-socketio's (sid)")
        self.handlers.disconnect = handler
        return handler

    def on_any(self, handler: EventH) -> EventH:
        """Add ``async def h(sock, event, *args)``, run for every incoming event before its
        own handler, after the listeners added before it (Node's ``onAny``). A socket's own
        listeners (:meth:`Socket.on_any <trio_sio.Socket.on_any>`) run after the
        namespace's."""
        _check_any(handler, "on_any")
        self.handlers.any = (*self.handlers.any, handler)
        return handler

    def prepend_any(self, handler: EventH) -> EventH:
        """Like :meth:`on_any`, but run before the listeners added so far (Node's
        ``prependAny``)."""
        _check_any(handler, "prepend_any")
        self.handlers.any = (handler, *self.handlers.any)
        return handler

    def off_any(self, handler: EventHandler | None = None) -> None:
        """Remove ``handler`` from the :meth:`on_any` listeners, or all of them without an
        argument (Node's ``offAny``)."""
        self.handlers.any = _without(self.handlers.any, handler)

    def on_any_outgoing(self, handler: OutgoingH) -> OutgoingH:
        """Add ``def h(sock, event, *args)`` (synchronous), called for every event sent to a
        socket, broadcasts included, after the listeners added before it (Node's
        ``onAnyOutgoing``)."""
        _check_any_outgoing(handler, "on_any_outgoing")
        self.handlers.any_outgoing = (*self.handlers.any_outgoing, handler)
        return handler

    def prepend_any_outgoing(self, handler: OutgoingH) -> OutgoingH:
        """Like :meth:`on_any_outgoing`, but called before the listeners added so far."""
        _check_any_outgoing(handler, "prepend_any_outgoing")
        self.handlers.any_outgoing = (handler, *self.handlers.any_outgoing)
        return handler

    def off_any_outgoing(self, handler: OutgoingHandler | None = None) -> None:
        """Remove ``handler`` from the :meth:`on_any_outgoing` listeners, or all of them."""
        self.handlers.any_outgoing = _without(self.handlers.any_outgoing, handler)

    def use(self, middleware: MiddlewareH) -> MiddlewareH:
        """Add connect middleware ``async def m(sock, auth)``; raising
        :class:`~trio_sio.ConnectionRefused` refuses the connection with its message and data.
        Middleware runs in the order added, before the socket joins the namespace."""
        _check(middleware, "use", "(sock, auth)", 2)
        self.handlers.middlewares.append(middleware)
        return middleware

    def use_packet(self, middleware: PacketMiddlewareH) -> PacketMiddlewareH:
        """Add packet middleware ``async def m(sock, event, args)``, run for every incoming
        event; it may edit ``args`` in place, or raise to drop the event."""
        _check_packet_middleware(middleware, "use_packet")
        self.handlers.packet_middlewares.append(middleware)
        return middleware

    def on_server_event(self, event: str) -> Callable[[ServerEventH], ServerEventH]:
        """Register ``async def h(*args)`` for ``event`` when another server of the cluster
        sends it with :meth:`Namespace.server_side_emit` (Node: ``serverSideEmit``). Its
        return value (JSON) is this server's answer to ``server_side_emit_with_ack``.

        Needs a cluster adapter; handlers run as tasks of the adapter, concurrently.
        """
        event = _check_event_name(event, "on_server_event")
        if event in RESERVED_EVENTS:
            raise ValueError(f"{event!r} is a reserved event name")

        def register(handler: ServerEventH) -> ServerEventH:
            _check(handler, "on_server_event", "(*args)", 0, rest="some")
            self.handlers.server_events[event] = handler
            return handler

        return register

    def register(self, handlers: NamespaceHandlersT) -> NamespaceHandlersT:
        """Register the ``on_<name>`` methods of a :class:`NamespaceHandlers` object:
        ``on_connect``, ``on_disconnecting`` and ``on_disconnect`` as the decorators of the
        same names do, every other ``on_<event>`` as the handler of ``<event>``. Each is
        checked as its decorator checks it, all of them before any is registered, so a class
        with a mistake registers nothing."""
        if not isinstance(handlers, NamespaceHandlers):
            raise TypeError(f"register takes a NamespaceHandlers object, not {handlers!r}")
        if handlers._namespace is not None:
            raise RuntimeError(f"{handlers!r} is already registered on {handlers._namespace!r}")
        connect: Any = None
        disconnecting: Any = None
        disconnect: Any = None
        events: dict[str, EventHandler] = {}
        for attribute in sorted(dir(type(handlers))):
            if not attribute.startswith("on_"):
                continue
            method = getattr(handlers, attribute)
            kind = f"{type(handlers).__name__}.{attribute}"
            if attribute == "on_connect":
                _check(method, kind, "(self, sock, auth)", 2)
                connect = method
            elif attribute == "on_disconnecting":
                _check(method, kind, "(self, sock, reason)", 2)
                disconnecting = method
            elif attribute == "on_disconnect":
                _check(method, kind, "(self, sock, reason)", 2)
                disconnect = method
            else:
                event = _check_handled_event(attribute.removeprefix("on_"))
                _check(method, kind, "(self, sock, *args)", 1, rest="some")
                events[event] = method
        # Checked: now register, as the decorators would.
        if connect is not None:
            self.handlers.connect = connect
        if disconnecting is not None:
            self.handlers.disconnecting = disconnecting
        if disconnect is not None:
            self.handlers.disconnect = disconnect
        self.handlers.events.update(events)
        handlers._namespace = self._registration_target()
        return handlers

    def _registration_target(self) -> Namespace | ParentNamespace:
        """What :attr:`NamespaceHandlers.namespace` is, once registered here."""
        raise NotImplementedError


class NamespaceHandlers:
    """A namespace's handlers as methods of a class, python-socketio's ``AsyncNamespace``::

        class Chat(trio_sio.NamespaceHandlers):
            async def on_connect(self, sock: trio_sio.Socket, auth: Any) -> None:
                sock.join("lobby")

            async def on_message(self, sock: trio_sio.Socket, text: str) -> str:
                await self.namespace.emit("message", text)
                return "sent"

        sio.of("/chat").register(Chat())

    Every ``on_<event>`` method handles ``<event>`` (so event names that are not Python
    names need the decorators); ``on_connect``, ``on_disconnecting`` and ``on_disconnect``
    are the connection's, with the parameters of the decorators of the same names. Methods
    are ``async def``, checked when the object is registered (:meth:`Namespace.register`),
    and state kept on ``self`` is shared by every socket of the namespace (per-socket state
    belongs in ``sock.data``). One object is registered on one namespace.
    """

    _namespace: Namespace | ParentNamespace | None = None

    @property
    def namespace(self) -> Namespace | ParentNamespace:
        """The namespace (or family of dynamic namespaces) this object is registered on."""
        if self._namespace is None:
            raise RuntimeError(f"{self!r} is not registered on a namespace yet")
        return self._namespace


class _Targets:
    """Broadcasts and server-wide operations on every socket of one namespace (for
    :class:`Namespace`, and for :class:`~trio_sio.Server` on namespace ``/``)."""

    @property
    def _namespace(self) -> Namespace:
        raise NotImplementedError

    # --- broadcasting and server-side operations ----------------------------------------

    def to(self, *rooms: str) -> BroadcastOperator:
        """Target the sockets in ``rooms``."""
        return self._namespace._all_sockets.to(*rooms)

    in_ = to

    def except_(self, *rooms: str) -> BroadcastOperator:
        """Target every socket except those in ``rooms``."""
        return self._namespace._all_sockets.except_(*rooms)

    @property
    def volatile(self) -> BroadcastOperator:
        """Target everyone, dropping the packet for clients that are behind."""
        return self._namespace._all_sockets.volatile

    @property
    def local(self) -> BroadcastOperator:
        """Target this node's sockets only."""
        return self._namespace._all_sockets.local

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to every socket of the namespace."""
        await self._namespace._all_sockets.emit(event, *args)

    async def emit_with_ack(self, event: str, *args: Any) -> AckCollector:
        """Send an event to every socket, collecting acknowledgements."""
        return await self._namespace._all_sockets.emit_with_ack(event, *args)

    async def fetch_sockets(self) -> list[Socket | RemoteSocket]:
        """Every socket of the namespace."""
        return await self._namespace._all_sockets.fetch_sockets()

    async def sockets_join(self, *rooms: str) -> None:
        """Make every socket join ``rooms``."""
        await self._namespace._all_sockets.sockets_join(*rooms)

    async def sockets_leave(self, *rooms: str) -> None:
        """Make every socket leave ``rooms``."""
        await self._namespace._all_sockets.sockets_leave(*rooms)

    async def disconnect_sockets(self, *, close: bool = False) -> None:
        """Disconnect every socket of the namespace."""
        await self._namespace._all_sockets.disconnect_sockets(close=close)

    async def close_room(self, room: str) -> None:
        """Make every socket leave ``room``, which then no longer exists."""
        await self.in_(room).sockets_leave(room)

    # --- server-side events between the servers of a cluster -----------------------------

    async def server_side_emit(self, event: str, *args: Any) -> None:
        """Send an event to the other servers of the cluster (their :meth:`on_server_event`
        handlers), not to clients. Without a cluster adapter there is nobody to send to."""
        await trio.lowlevel.checkpoint()
        if event in RESERVED_EVENTS:
            raise ValueError(f"{event!r} is a reserved event name")
        await self._namespace.adapter.server_side_emit(event, args)

    async def server_side_emit_with_ack(self, event: str, *args: Any) -> ClusterReplies[Any]:
        """Send an event to the other servers and gather their answers: one per server, as
        many as arrived before the adapter's deadline (the result says who did not answer)."""
        await trio.lowlevel.checkpoint()
        if event in RESERVED_EVENTS:
            raise ValueError(f"{event!r} is a reserved event name")
        return await self._namespace.adapter.server_side_emit_with_ack(event, args)


class Namespace(_Registry, _Targets):
    """One namespace: handlers, connected sockets, and the adapter with its rooms.

    Attributes:
        name: the namespace, such as ``"/"`` or ``"/chat"``.
        sockets: connected sockets by id.
        adapter: the room registry and fan-out (in memory, or a cluster adapter).
    """

    def __init__(
        self,
        server: Server,
        name: str,
        handlers: Handlers | None = None,
        parent: ParentNamespace | None = None,
    ) -> None:
        self.server = server
        self.name = name
        self.handlers = handlers if handlers is not None else Handlers()
        self.sockets: dict[str, Socket] = {}
        self.adapter: Adapter = server.adapter_factory(self)
        #: The family a dynamic namespace belongs to (``None`` for a static one).
        self.parent = parent
        self._ack_ids = itertools.count()
        self._occupants = 0  # sockets connected or on their way (middleware, on_connect)
        self._adapter_scope: trio.CancelScope | None = None  # cancels the adapter's task
        # Sockets with outgoing listeners of their own: while there are none, a broadcast
        # need not look at each recipient for them (see _outgoing_hook).
        self._watched_outgoing = 0

    def _enter(self) -> None:
        """A socket for this namespace exists (it may still be refused)."""
        self._occupants += 1

    def _vacate(self) -> None:
        """A socket of this namespace is gone: an empty dynamic namespace is reclaimed."""
        self._occupants -= 1
        if not self._occupants and self.parent is not None:
            self.parent._reclaim(self)

    def __repr__(self) -> str:
        return f"<Namespace {self.name}>"

    def _next_ack_id(self) -> int:
        return next(self._ack_ids)

    @property
    def _all_sockets(self) -> BroadcastOperator:
        return BroadcastOperator(self)

    def _notify_outgoing(self, socket: Socket, packet: SocketPacket) -> None:
        """Show ``packet``, on its way to ``socket``, to the namespace's outgoing listeners,
        then to the socket's own."""
        for listener in self.handlers.any_outgoing:
            listener(socket, *packet.data)
        if socket._listeners is not None:
            for listener in socket._listeners.any_outgoing:
                listener(socket, *packet.data)
        lifecycle = self.server.lifecycle
        if lifecycle.event_listeners:
            # The packet's own list, as every recipient of a broadcast shares it: no copy
            # per recipient.
            lifecycle.sent(socket, packet.data)

    def _outgoing_hook(self) -> Callable[[Socket, SocketPacket], None] | None:
        """What a broadcast calls for each recipient: ``None`` when nobody listens to
        outgoing events (the common case), so that the fan-out loop costs no call."""
        if (
            self.handlers.any_outgoing
            or self._watched_outgoing
            or self.server.lifecycle.event_listeners
        ):
            return self._notify_outgoing
        return None

    def _registration_target(self) -> Namespace:
        return self

    @property
    def _namespace(self) -> Namespace:
        return self


class ParentNamespace(_Registry):
    """A family of namespaces created on demand: every name ``matcher`` accepts becomes a
    child :class:`Namespace` that shares this object's handlers and middleware. A child
    whose last socket leaves is forgotten (its rooms are empty by then), and there are at
    most the server's ``max_dynamic_namespaces`` children at once.

    Attributes:
        children: the child namespaces created so far, by name.
    """

    def __init__(self, server: Server, matcher: NamespaceMatcher) -> None:
        self.server = server
        self.matcher = matcher
        self.handlers = Handlers()
        self.children: dict[str, Namespace] = {}

    async def matches(self, name: str, auth: Any) -> bool:
        """Whether ``name`` belongs to this family."""
        await trio.lowlevel.checkpoint()
        if isinstance(self.matcher, re.Pattern):
            return self.matcher.fullmatch(name) is not None
        result = self.matcher(name, auth)
        if isinstance(result, bool):
            return result
        return bool(await result)

    def child(self, name: str) -> Namespace:
        """The child namespace called ``name`` (created on first use)."""
        namespace = self.children.get(name)
        if namespace is None:
            namespace = Namespace(self.server, name, self.handlers, parent=self)
            self.children[name] = namespace
            self.server._adopt(namespace)
        return namespace

    def _registration_target(self) -> ParentNamespace:
        return self

    def _reclaim(self, namespace: Namespace) -> None:
        """Forget a child whose last socket left (Node's ``cleanupEmptyChildNamespaces``):
        otherwise every name a client ever tried would stay, with its adapter."""
        if self.children.get(namespace.name) is namespace:
            del self.children[namespace.name]
            if namespace._adapter_scope is not None:
                namespace._adapter_scope.cancel()

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to every socket of every child."""
        await trio.lowlevel.checkpoint()
        for namespace in list(self.children.values()):
            await namespace.emit(event, *args)
