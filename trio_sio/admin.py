"""The server side of the Socket.IO Admin UI (npm ``@socket.io/admin-ui`` 0.5).

::

    import trio_sio.admin

    trio_sio.admin.instrument(sio, auth=trio_sio.admin.BasicAuth("admin", PASSWORD_HASH))

This adds the admin namespace (``/admin``) to ``sio``, as Node's ``instrument(io, options)``
does, and the UI (its static files, from the npm package) connects to it. Every
``server_stats`` (each 2 s) carries the counts of sessions and sockets, and what happened
since the last one (connections, disconnections, events and bytes), read from the counters
the server keeps anyway. In ``"development"`` mode the UI also gets every socket
(``all_sockets``) and every change: sockets connected, upgraded and disconnected, rooms joined
and left, and each event received and sent.

Cost. Nothing runs per event unless the mode is ``"development"``; then each event in or out
(each recipient of a broadcast) costs one call that appends to a bounded queue, and one
task sends the queue to the admin namespace. The app never waits for the UI: when the queue
is full, updates are dropped and counted (:attr:`AdminUI.dropped_updates`); when one was a
change of the sockets or rooms, the UIs are sent ``all_sockets`` again at the next
``server_stats``, so that they show the truth again.
A UI that does not read what it is sent is cut as a slow consumer, as any client is.

With a cluster adapter (:mod:`trio_sio.adapters.redis`) every node instruments its own
server; what each node sends the admin namespace reaches the UIs connected to any node, and
the operations (``emit``, ``join``, ``leave``, ``_disconnect``) act on every node.
"""

from __future__ import annotations

import collections
import datetime
import logging
import os
import re
import secrets
import socket as _net
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import trio

from ._errors import ConnectionRefused, DisconnectReason
from ._lifecycle import ServerListener
from ._protocol import RESERVED_EVENTS, Transport
from ._server import Server, _Client
from ._socket import Socket, node_handshake

if TYPE_CHECKING:
    from ._broadcast import BroadcastOperator
    from ._cluster import RemoteSocket
    from ._engine.lifecycle import SessionInfo
    from ._namespace import Namespace

__all__ = ["AdminUI", "BasicAuth", "Mode", "instrument"]

logger = logging.getLogger("trio_sio.admin")

#: ``"development"``: every socket and every change, events included; ``"production"``: the
#: statistics only.
Mode = Literal["development", "production"]

#: How often ``server_stats`` is sent, in seconds (Node's interval).
STATS_INTERVAL = 2.0
#: Updates (development mode) waiting to be sent to the admin namespace; past it they are
#: dropped and counted.
MAX_PENDING_UPDATES = 1000
#: Admin sessions remembered (a UI that reloads presents its session id instead of the
#: password); the oldest is forgotten first.
MAX_ADMIN_SESSIONS = 100
#: bcrypt reads at most this many bytes of a password (bcrypt 5 refuses longer ones; Node's
#: bcryptjs, like bcrypt before, ignores the rest).
BCRYPT_MAX_BYTES = 72

_BCRYPT_HASH = re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")
#: The operations' ``supportedFeatures`` (the ``M`` ones: by room, not only by socket).
_OPERATIONS = ("EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT")
#: What the UI shows for a bad login (its own message for exactly this text).
_INVALID_CREDENTIALS = "invalid credentials"
#: Socket data key that carries, as in Node, a socket's client id and transport to the other
#: nodes of a cluster (their ``fetch_sockets`` answers include ``data``).
_ADMIN_KEY = "_admin"
#: Shown sockets' ``clientId``: the start of the session id, as Node shows it.
_CLIENT_ID_CHARS = 12
#: A value of ``sock.data`` that JSON cannot hold is shown as its ``repr``, this long at most.
_REPR_CHARS = 200


def _bcrypt() -> Any:
    try:
        import bcrypt
    except ImportError:
        raise ImportError(
            "basic authentication of the Admin UI needs bcrypt: pip install 'trio-sio[admin]'"
        ) from None
    return bcrypt


@dataclass(frozen=True)
class BasicAuth:
    """The Admin UI's login: a user name and the bcrypt hash of the password, never the
    password itself. Make the hash once, and keep it with the configuration::

        python -c "import bcrypt, getpass; print(bcrypt.hashpw(getpass.getpass().encode(),
        bcrypt.gensalt()).decode())"

    Raises:
        ValueError: ``password_hash`` is not a bcrypt hash (``$2b$12$`` and 53 characters).
        ImportError: bcrypt is not installed (the ``admin`` extra).
    """

    username: str
    password_hash: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.username, str) or not self.username:
            raise ValueError("BasicAuth needs a user name")
        if not isinstance(self.password_hash, str) or not _BCRYPT_HASH.fullmatch(
            self.password_hash
        ):
            raise ValueError(
                "password_hash must be a bcrypt hash ($2b$12$ followed by 53 characters), "
                "such as bcrypt.hashpw(password, bcrypt.gensalt()).decode()"
            )
        _bcrypt()

    def check(self, username: str, password: str) -> bool:
        """Whether the credentials match. Slow on purpose (bcrypt): run it in a thread. The
        password is checked even for a wrong user name, so that the time taken does not tell
        which user names exist."""
        matches: bool = _bcrypt().checkpw(
            password.encode()[:BCRYPT_MAX_BYTES], self.password_hash.encode()
        )
        return secrets.compare_digest(username.encode(), self.username.encode()) and matches


def instrument(
    server: Server,
    *,
    auth: BasicAuth | None,
    namespace: str = "/admin",
    readonly: bool = False,
    mode: Mode = "development",
    server_id: str | None = None,
) -> AdminUI:
    """Serve the Socket.IO Admin UI's namespace on ``server`` (Node's ``instrument``).

    Args:
        auth: :class:`BasicAuth`, or ``None`` for no login at all (anyone who can reach the
            server can then see every socket and disconnect them). There is no default: as
            in Node, going without a login is said explicitly.
        namespace: the admin namespace; it must not have handlers of its own.
        readonly: the UI may look, not act (no ``emit``, ``join``, ``leave``,
            ``_disconnect``).
        mode: ``"development"`` sends every socket and every change, events included;
            ``"production"`` only ``server_stats``, whose cost does not grow with traffic.
        server_id: this server's name in the UI (by default ``hostname#pid``, so that
            several processes on one host are told apart).

    Returns the :class:`AdminUI`; its task runs in the server's nursery whenever the server
    runs, and ends with it.

    Raises:
        ValueError: an option has a wrong value, or ``namespace`` has handlers already.
        RuntimeError: ``server`` is instrumented already.
    """
    if auth is not None and not isinstance(auth, BasicAuth):
        raise TypeError(f"auth is a BasicAuth or None, not {auth!r}")
    if mode not in ("development", "production"):
        raise ValueError(f'mode is "development" or "production", not {mode!r}')
    if not isinstance(namespace, str) or not namespace.strip("/"):
        raise ValueError(f"the admin namespace needs a name other than /, not {namespace!r}")
    if server_id is not None and (not isinstance(server_id, str) or not server_id):
        raise ValueError(f"server_id is a non-empty string, not {server_id!r}")
    if server in _instrumented:
        raise RuntimeError("this server is instrumented already")
    name = namespace if namespace.startswith("/") else "/" + namespace
    existing = server.namespaces.get(name)
    if existing is not None and _has_handlers(existing):
        raise ValueError(f"{name} has handlers already: give the Admin UI another namespace")
    _instrumented.add(server)
    return AdminUI(
        server,
        server.of(name),
        auth=auth,
        readonly=readonly,
        development=mode == "development",
        server_id=server_id or f"{_net.gethostname()}#{os.getpid()}",
    )


_instrumented: weakref.WeakSet[Server] = weakref.WeakSet()


def _has_handlers(namespace: Namespace) -> bool:
    handlers = namespace.handlers
    return bool(
        handlers.events
        or handlers.connect
        or handlers.disconnect
        or handlers.disconnecting
        or handlers.middlewares
        or handlers.any
    )


class AdminUI(ServerListener):
    """The admin namespace of one server, made by :func:`instrument`.

    Attributes:
        namespace: the admin namespace.
        server_id: this server's name in the UI.
        features: the ``supportedFeatures`` the UI is told of.
        development: whether every socket and change is sent (``mode="development"``).
        dropped_updates: updates not sent because the queue to the admin namespace was full
            (when one was a change of the sockets or rooms, the UIs get ``all_sockets``
            again).
    """

    def __init__(
        self,
        server: Server,
        namespace: Namespace,
        *,
        auth: BasicAuth | None,
        readonly: bool,
        development: bool,
        server_id: str,
    ) -> None:
        self.server = server
        self.namespace = namespace
        self.auth = auth
        self.server_id = server_id
        self.development = development
        self.features: list[str] = [
            *(() if readonly else _OPERATIONS),
            "AGGREGATED_EVENTS",
            *(("ALL_EVENTS",) if development else ()),
        ]
        self.dropped_updates = 0
        self._hostname = _net.gethostname()
        # (event, arguments, time.time() to append as an ISO date or None), oldest first.
        self._pending: collections.deque[tuple[str, tuple[Any, ...], float | None]] = (
            collections.deque()
        )
        self._pending_changed = trio.Event()
        self._resync = False
        self._reported_drops = 0
        self._sessions: dict[str, None] = {}  # admin session ids, oldest first
        # A session id made by the middleware, to send once the socket connects.
        self._new_sessions: weakref.WeakKeyDictionary[Socket, str] = weakref.WeakKeyDictionary()
        self._checking = trio.CapacityLimiter(1)  # bcrypt runs, one at a time
        self._started = 0.0
        self._last: dict[tuple[str, str | None], int] = {}

        if auth is not None:
            namespace.use(self._authenticate)
        namespace.on_connect(self._on_connect)
        if not readonly:
            namespace.on("emit")(self._emit)
            namespace.on("join")(self._join)
            namespace.on("leave")(self._leave)
            namespace.on("_disconnect")(self._disconnect)
        if development:
            server.lifecycle.listeners.append(self)
            server.lifecycle.event_listeners.append(self)
            server.engine.lifecycle.listeners.append(self)
        server._add_service(self.run)

    def __repr__(self) -> str:
        return f"<AdminUI {self.namespace.name} {self.server_id}>"

    # --- the task --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send ``server_stats`` every 2 s, and the updates as they come (started by the
        server, in its nursery)."""
        self._started = trio.current_time()
        self._last = self._counters()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_stats)
            nursery.start_soon(self._send_updates)
            task_status.started()

    async def _send_stats(self) -> None:
        while True:
            dropped = self.dropped_updates - self._reported_drops
            if dropped:
                self._reported_drops = self.dropped_updates
                logger.warning(
                    "admin: %d updates dropped (the queue to %s was full)%s",
                    dropped,
                    self.namespace.name,
                    "; sending all_sockets again" if self._resync else "",
                )
            if self._resync:
                await self._resend_all_sockets()
            await self.namespace.emit("server_stats", self.server_stats())
            await trio.sleep(STATS_INTERVAL)

    async def _send_updates(self) -> None:
        while True:
            await self._pending_changed.wait()
            self._pending_changed = trio.Event()
            while self._pending:
                event, args, stamp = self._pending.popleft()
                if stamp is not None:
                    args = (*args, _iso(stamp))
                # An app event the parser cannot encode (TypeError), or one nested just
                # within the limit that the update's two more levels take past it: the UI
                # misses it. Anything else is a bug, not to be hidden.
                try:
                    await self.namespace.emit(event, *args)
                except (TypeError, RecursionError) as exc:
                    logger.debug("admin: %s not sent: %r", event, exc)

    async def _resend_all_sockets(self) -> None:
        self._resync = False
        self._pending.clear()  # older than the snapshot
        await self.namespace.emit("all_sockets", await self.all_sockets())

    # --- what is sent ------------------------------------------------------------------------

    def server_stats(self) -> dict[str, Any]:
        """The ``server_stats`` message (consumes the aggregated events since the last)."""
        sessions = list(self.server.engine.sessions())
        return {
            "serverId": self.server_id,
            "hostname": self._hostname,
            "pid": os.getpid(),
            "uptime": trio.current_time() - self._started,
            "clientsCount": len(sessions),
            "pollingClientsCount": sum(1 for s in sessions if s.transport is Transport.POLLING),
            "aggregatedEvents": self._aggregated_events(),
            "namespaces": [
                {"name": name, "socketsCount": len(namespace.sockets)}
                for name, namespace in self.server.namespaces.items()
            ],
        }

    def _counters(self) -> dict[tuple[str, str | None], int]:
        """The server's cumulative counters, by the UI's (type, subType)."""
        engine = self.server.engine.lifecycle
        sockets = self.server.lifecycle
        counters: dict[tuple[str, str | None], int] = {
            ("rawConnection", None): engine.handshakes,
            ("packetsIn", None): sockets.events_in,
            ("packetsOut", None): sockets.events_out,
            ("bytesIn", None): sockets.bytes_in,
            ("bytesOut", None): sockets.bytes_out,
        }
        for reason, count in engine.closes.items():
            counters["rawDisconnection", reason] = count
        return counters

    def _aggregated_events(self) -> list[dict[str, Any]]:
        """What happened since the last call, from the counters (Node counts each event into
        a per-second bucket as it happens; the UI sums them by 10 s anyway)."""
        now = self._counters()
        timestamp = int(time.time()) * 1000
        events = []
        for (kind, sub_type), count in now.items():
            delta = count - self._last.get((kind, sub_type), 0)
            if delta > 0:
                event: dict[str, Any] = {"timestamp": timestamp, "type": kind, "count": delta}
                if sub_type is not None:
                    event["subType"] = sub_type
                events.append(event)
        self._last = now
        return events

    async def all_sockets(self) -> list[dict[str, Any]]:
        """Every connected socket of every namespace, as the UI shows them (with a cluster
        adapter, those of the nodes that answered in time too)."""
        await trio.lowlevel.checkpoint()
        found: list[list[Socket | RemoteSocket]] = []

        async def fetch(namespace: Namespace) -> None:
            found.append(await namespace.fetch_sockets())

        async with trio.open_nursery() as nursery:
            for namespace in list(self.server.namespaces.values()):
                nursery.start_soon(fetch, namespace)
        return [
            self._describe(sock) if isinstance(sock, Socket) else self._describe_remote(sock)
            for sockets in found
            for sock in sockets
            if not isinstance(sock, Socket) or sock.connected
        ]

    def _describe(self, sock: Socket) -> dict[str, Any]:
        return self._shown(
            sock.id,
            sock.namespace.name,
            sock.session.sid[:_CLIENT_ID_CHARS],
            sock.session.transport.value,
            sock.data,
            node_handshake(sock.handshake),
            sock.rooms,
        )

    def _describe_remote(self, sock: RemoteSocket) -> dict[str, Any]:
        # Another node's socket: its client id and transport travel in data (see _ADMIN_KEY).
        data = sock.data if isinstance(sock.data, dict) else {}
        admin = data.get(_ADMIN_KEY)
        admin = admin if isinstance(admin, dict) else {}
        return self._shown(
            sock.id,
            sock.namespace.name,
            admin.get("clientId"),
            admin.get("transport"),
            data,
            sock.handshake,
            sock.rooms,
        )

    def _shown(
        self,
        sid: str,
        namespace: str,
        client_id: Any,
        transport: Any,
        data: Any,
        handshake: Mapping[str, Any],
        rooms: frozenset[str],
    ) -> dict[str, Any]:
        """A socket as the UI reads it (Node's ``SerializedSocket``)."""
        headers = handshake.get("headers")
        headers = headers if isinstance(headers, dict) else {}
        return {
            "id": sid,
            "clientId": client_id,
            "transport": transport,
            "nsp": namespace,
            "data": self._shown_data(data),
            "handshake": {
                # Behind a proxy, the client's address is in its headers.
                "address": headers.get("cf-connecting-ip")
                or headers.get("x-forwarded-for")
                or handshake.get("address"),
                "headers": headers,
                "query": handshake.get("query"),
                "issued": handshake.get("issued"),
                "secure": handshake.get("secure"),
                "time": handshake.get("time"),
                "url": handshake.get("url"),
                "xdomain": handshake.get("xdomain"),
                # Not auth: it may hold credentials.
            },
            "rooms": sorted(rooms),
        }

    def _shown_data(self, data: Any) -> Any:
        """``sock.data`` without the admin's own key, each value JSON or its ``repr``."""
        if not isinstance(data, dict):
            return data if self._encodable(data) else repr(data)[:_REPR_CHARS]
        shown = {key: value for key, value in data.items() if key != _ADMIN_KEY}
        if self._encodable(shown):
            return shown
        return {
            str(key): value if self._encodable(value) else repr(value)[:_REPR_CHARS]
            for key, value in shown.items()
        }

    def _encodable(self, value: Any) -> bool:
        try:
            self.server.json.dumps(value)
        except (TypeError, ValueError):
            return False
        return True

    # --- the admin namespace -----------------------------------------------------------------

    async def _authenticate(self, sock: Socket, auth: Any) -> None:
        """Middleware: refuse the UI unless its credentials or session id are good. Before
        the socket exists for the namespace, so the UI's updates do not pile up meanwhile."""
        session_id = await self._log_in(auth)
        if session_id is not None:
            self._new_sessions[sock] = session_id  # told in _on_connect

    async def _on_connect(self, sock: Socket, auth: Any) -> None:
        session_id = self._new_sessions.pop(sock, None)
        if session_id is not None:
            await sock.emit("session", session_id)
        await sock.emit("config", {"supportedFeatures": self.features})
        if self.development:
            await sock.emit("all_sockets", await self.all_sockets())

    async def _log_in(self, auth: Any) -> str | None:
        """Check the UI's credentials: a new session id for a good password, ``None`` for a
        session id it had been given."""
        assert self.auth is not None
        if isinstance(auth, dict):
            session_id = auth.get("sessionId")
            if isinstance(session_id, str) and session_id in self._sessions:
                return None
            username, password = auth.get("username"), auth.get("password")
            if isinstance(username, str) and isinstance(password, str):
                matches = await trio.to_thread.run_sync(
                    self.auth.check, username, password, limiter=self._checking
                )
                if matches:
                    session_id = secrets.token_urlsafe(16)
                    self._sessions[session_id] = None
                    if len(self._sessions) > MAX_ADMIN_SESSIONS:
                        del self._sessions[next(iter(self._sessions))]
                    return session_id
        raise ConnectionRefused(_INVALID_CREDENTIALS)

    # The operations take what a client may send: any arguments, of any kind, any number.

    def _target(self, name: Any, *strings: Any) -> Namespace | None:
        """The namespace an operation names, if it exists here (an operation never makes
        one) and the operation's other arguments are strings."""
        if not isinstance(name, str) or not all(isinstance(s, str) for s in strings):
            logger.info("admin: operation ignored: namespace=%r arguments=%r", name, strings)
            return None
        namespace = self.server.namespaces.get(name)
        if namespace is None:
            logger.info("admin: operation ignored: no namespace %s here", name)
        return namespace

    async def _emit(
        self, sock: Socket, name: Any = None, selection: Any = None, *args: Any
    ) -> None:
        """``emit(nsp, filter, event, ...args)``."""
        event = args[0] if args else None
        namespace = self._target(name, event, *_selection(selection))
        if namespace is None:
            return
        if event in RESERVED_EVENTS:
            logger.info("admin: %r is a reserved event name: not sent", event)
            return
        await _selected(namespace, selection).emit(*args)

    async def _join(
        self, sock: Socket, name: Any = None, room: Any = None, selection: Any = None, *_: Any
    ) -> None:
        """``join(nsp, room, filter)``: the sockets selected join ``room``."""
        namespace = self._target(name, room, *_selection(selection))
        if namespace is not None:
            await _selected(namespace, selection).sockets_join(room)

    async def _leave(
        self, sock: Socket, name: Any = None, room: Any = None, selection: Any = None, *_: Any
    ) -> None:
        """``leave(nsp, room, filter)``: the sockets selected leave ``room``."""
        namespace = self._target(name, room, *_selection(selection))
        if namespace is not None:
            await _selected(namespace, selection).sockets_leave(room)

    async def _disconnect(
        self, sock: Socket, name: Any = None, close: Any = False, selection: Any = None, *_: Any
    ) -> None:
        """``_disconnect(nsp, close, filter)``; ``close`` ends their whole connections."""
        namespace = self._target(name, *_selection(selection))
        if namespace is not None:
            await _selected(namespace, selection).disconnect_sockets(close=close is True)

    # --- the listeners (development mode) -------------------------------------------------

    def _push(
        self, event: str, args: tuple[Any, ...], *, stamped: bool = True, state: bool = True
    ) -> None:
        """Queue an update for the admin namespace; ``state``: a change of what the UI
        shows (not one of the stream of events), which the UI must be told again if it is
        dropped."""
        # Nobody to tell: no UI on this server, and no other node to reach through a cluster
        # adapter.
        if not self.namespace.sockets and not self.namespace.adapter.spans_processes:
            return
        if len(self._pending) >= MAX_PENDING_UPDATES:
            self.dropped_updates += 1
            self._resync = self._resync or state
            return
        self._pending.append((event, args, time.time() if stamped else None))
        self._pending_changed.set()

    def socket_connected(self, socket: Socket) -> None:
        if isinstance(socket.data, dict):
            socket.data[_ADMIN_KEY] = {
                "clientId": socket.session.sid[:_CLIENT_ID_CHARS],
                "transport": socket.session.transport.value,
            }
        self._push("socket_connected", (self._describe(socket),))

    def socket_disconnected(self, socket: Socket, reason: DisconnectReason) -> None:
        name = socket.namespace.name
        self._push("socket_disconnected", (name, socket.id, reason.value))
        # Node's adapter tells of every room a socket leaves as it disconnects; the UI
        # forgets rooms only so.
        for room in sorted(socket.rooms):
            self._push("room_left", (name, room, socket.id))

    def rooms_joined(self, socket: Socket, rooms: tuple[str, ...]) -> None:
        for room in rooms:
            self._push("room_joined", (socket.namespace.name, room, socket.id))

    def rooms_left(self, socket: Socket, rooms: tuple[str, ...]) -> None:
        for room in rooms:
            self._push("room_left", (socket.namespace.name, room, socket.id))

    def session_upgraded(self, session: SessionInfo) -> None:
        client = getattr(session, "app_state", None)
        if not isinstance(client, _Client):
            return
        transport = session.transport.value
        for socket in client.sockets.values():
            admin = socket.data.get(_ADMIN_KEY) if isinstance(socket.data, dict) else None
            if isinstance(admin, dict):
                admin["transport"] = transport
            update = {"id": socket.id, "nsp": socket.namespace.name, "transport": transport}
            self._push("socket_updated", (update,), stamped=False)

    def event_received(self, socket: Socket, event: str, args: Sequence[Any]) -> None:
        if socket.namespace is not self.namespace:
            update = (socket.namespace.name, socket.id, [event, *args])
            self._push("event_received", update, state=False)

    def event_sent(self, socket: Socket, data: Sequence[Any]) -> None:
        if socket.namespace is not self.namespace:
            self._push("event_sent", (socket.namespace.name, socket.id, data), state=False)


def _selection(selection: Any) -> tuple[Any, ...]:
    """An operation's ``filter`` to check as a string: a room or a socket id; none (``null``
    or empty) selects every socket of the namespace."""
    return (selection,) if selection else ()


def _selected(namespace: Namespace, selection: str | None) -> BroadcastOperator:
    """The sockets an operation's ``filter`` selects."""
    return namespace.in_(selection) if selection else namespace._all_sockets


def _iso(timestamp: float) -> str:
    """A ``time.time()`` as JavaScript's ``Date.toJSON`` writes it (how Node sends dates)."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
