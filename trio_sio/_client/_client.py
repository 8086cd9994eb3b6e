"""The Socket.IO client: namespaces, events and acknowledgements over an Engine.IO session,
and reconnection with backoff as socket.io-client does it."""

from __future__ import annotations

import itertools
import random
import ssl
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from .._acks import ack_arguments, ack_value
from .._errors import Disconnected, DisconnectReason
from .._protocol import (
    RESERVED_EVENTS,
    JsonParser,
    Outgoing,
    PacketDecoder,
    PacketType,
    Parser,
    ProtocolError,
    SocketPacket,
)
from .._protocol.socketio import DEFAULT_MAX_ATTACHMENTS
from .._signatures import check_event_name, check_handler
from ._engine import EngineConnection, EngineSettings, open_engine
from ._http import Endpoint, TransportFailure
from ._transports import MessageOpener

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["Client", "ClientNamespace", "ConnectError", "reconnection_delay"]

#: ``async def handler(*args) -> ack``
ClientEventHandler = Callable[..., Awaitable[Any]]
EventH = TypeVar("EventH", bound=ClientEventHandler)
ConnectH = TypeVar("ConnectH", bound=Callable[[], Awaitable[None]])
DisconnectH = TypeVar("DisconnectH", bound=Callable[[DisconnectReason], Awaitable[None]])

#: The CONNECT payload: a mapping, or ``async def auth() -> Mapping`` asked on each connection.
Auth = Mapping[str, Any] | Callable[[], Awaitable[Mapping[str, Any]]]

#: Why a connection ends for good, without reconnecting.
_FINAL = frozenset({DisconnectReason.IO_SERVER_DISCONNECT, DisconnectReason.IO_CLIENT_DISCONNECT})


class ConnectError(Exception):
    """The client could not connect: the server refused a namespace (its CONNECT_ERROR's
    ``message`` and ``data``, as Node's ``next(err)`` with ``err.data`` sends them), or could
    not be reached (``data`` is ``None``; the cause is chained)."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


def reconnection_delay(
    attempt: int,
    *,
    delay: float,
    delay_max: float,
    randomization_factor: float,
    rng: random.Random,
) -> float:
    """Seconds to wait before reconnection ``attempt`` (0 for the first), as
    socket.io-client's backoff: ``delay * 2**attempt``, moved up or down by up to
    ``randomization_factor`` of itself, at most ``delay_max``."""
    base: float = delay * 2.0 ** min(attempt, 64)
    if randomization_factor:
        deviation = rng.random() * randomization_factor * base
        base = base + deviation if rng.random() < 0.5 else base - deviation
    return max(0.0, min(base, delay_max))


@contextmanager
def _single_errors() -> Iterator[None]:
    """Raise a nursery's lone exception as itself, not in an exception group: a handler's
    error, or the user's own in the ``connect`` block, comes out as it was raised."""
    try:
        yield
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if error is group:
            raise
        raise error from error.__cause__


class _Call:
    """A call waiting for its acknowledgement."""

    __slots__ = ("answer", "done", "error", "link")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.answer: list[Any] = []
        self.error: Disconnected | None = None
        #: The connection its packet went out on (None while buffered offline).
        self.link: _Link | None = None

    def fail(self, error: Disconnected) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


@dataclass
class _Event:
    """An event for the handler tasks: they take jobs in the order the server sent them."""

    namespace: ClientNamespace
    name: str
    args: list[Any]
    ack_id: int | None
    link: _Link


@dataclass
class _Connected:
    """The namespace connected: its ``on_connect`` handlers run."""

    namespace: ClientNamespace


@dataclass
class _Lost:
    """The namespace lost its connection: its ``on_disconnect`` handlers run."""

    namespace: ClientNamespace
    reason: DisconnectReason


_Job = _Event | _Connected | _Lost


class ClientNamespace:
    """One namespace of a :class:`Client`: its handlers, and emitting to it.

    :class:`Client` is itself the ``/`` namespace; :meth:`Client.of` gives the others.

    Attributes:
        name: the namespace (``"/chat"``).
        sid: the socket id the server gave it on the current connection; ``None`` while it is
            not connected.
        recovered: whether its last connection got its session back (the same ``sid``, its
            rooms, and the events it missed, replayed before new ones), by the server's
            connection state recovery.
    """

    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self.name = name
        self.sid: str | None = None
        self.recovered = False
        #: With connection state recovery on the server: the session's private id, and the
        #: offset of the last recoverable event received, sent back on reconnection.
        self._pid: str | None = None
        self._offset: str | None = None
        self._link: _Link | None = None
        self._events: dict[str, ClientEventHandler] = {}
        self._any: tuple[ClientEventHandler, ...] = ()
        self._on_connect: tuple[Callable[[], Awaitable[None]], ...] = ()
        self._on_disconnect: tuple[Callable[[DisconnectReason], Awaitable[None]], ...] = ()
        self._calls: dict[int, _Call] = {}
        self._ack_ids = itertools.count()

    def __repr__(self) -> str:
        return f"<ClientNamespace {self.name!r}>"

    @property
    def connected(self) -> bool:
        """Whether the namespace is connected now."""
        return self.sid is not None

    # --- registration -------------------------------------------------------------------

    def on(self, event: str) -> Callable[[EventH], EventH]:
        """Register the handler of ``event``: ``async def h(*args)``. Its return value
        acknowledges the event when the server asked for it (``None``: no arguments; a tuple:
        several; :data:`~trio_sio.NO_ACK`: none), as on the server."""
        event = check_event_name(
            event, "on", alternative=", or @client.event to name it after it", owner="client"
        )
        if event == "*":
            raise ValueError('"*" is no catch-all here: use @client.on_any')
        if event in RESERVED_EVENTS:
            raise ValueError(f"{event!r} is reserved: use on_connect/on_disconnect")

        def register(handler: EventH) -> EventH:
            check_handler(handler, "on", "(*args)", 0, rest="some")
            self._events[event] = handler
            return handler

        return register

    def event(self, handler: EventH) -> EventH:
        """Register a handler for the event named like the function."""
        name = getattr(handler, "__name__", None)
        if not isinstance(name, str):
            raise TypeError(f'{handler!r} has no name: use @client.on("name")')
        return self.on(name)(handler)

    def on_any(self, handler: EventH) -> EventH:
        """Add ``async def h(event, *args)``, run for every event before its handler."""
        check_handler(handler, "on_any", "(event, *args)", 1, rest="any")
        self._any = (*self._any, handler)
        return handler

    def on_connect(self, handler: ConnectH) -> ConnectH:
        """Add ``async def h()``, run each time the namespace connects (reconnections too),
        before the events that follow."""
        check_handler(handler, "on_connect", "()", 0)
        self._on_connect = (*self._on_connect, handler)
        return handler

    def on_disconnect(self, handler: DisconnectH) -> DisconnectH:
        """Add ``async def h(reason)``, run each time the namespace loses its connection,
        after the events received before."""
        check_handler(handler, "on_disconnect", "(reason)", 1)
        self._on_disconnect = (*self._on_disconnect, handler)
        return handler

    # --- emitting -----------------------------------------------------------------------

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event. Returns once it is queued for the writer (waiting while that queue
        is full); while reconnecting, it is kept for the next connection if the client's
        ``offline_buffer`` has room.

        Raises:
            Disconnected: not connected (and not kept).
            TypeError: an argument JSON cannot represent.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._client._send(self, SocketPacket(PacketType.EVENT, self.name, [event, *args]))

    async def call(self, event: str, *args: Any) -> Any:
        """Send an event and wait for its acknowledgement: ``None``, the value, or a tuple of
        them, as :meth:`trio_sio.Socket.call`. Bound the wait with the caller's cancel scope.

        Raises:
            Disconnected: the connection ended before the answer came (at once, not on a
                timeout).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        ack_id = next(self._ack_ids)
        call = _Call()
        packet = SocketPacket(PacketType.EVENT, self.name, [event, *args], ack_id)
        self._calls[ack_id] = call
        try:
            await self._client._send(self, packet, call)
            await call.done.wait()
        finally:
            del self._calls[ack_id]
        if call.error is not None:
            raise call.error
        return ack_value(call.answer)

    # --- the connection's side ----------------------------------------------------------

    def _connected(self, link: _Link, sid: str, pid: str | None) -> None:
        self.sid = sid
        self._link = link
        self.recovered = pid is not None and pid == self._pid
        if not self.recovered:
            # A new session: an offset of the old one would ask for a history not its own.
            self._offset = None
        self._pid = pid

    def _connect_payload(self, auth: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The CONNECT payload: the application's ``auth``, and, to get the session back,
        its ``pid`` and last offset (the application's fields win, as in socket.io-client)."""
        if self._pid is None:
            return dict(auth) if auth is not None else None
        recovery: dict[str, Any] = {"pid": self._pid}
        if self._offset is not None:
            recovery["offset"] = self._offset
        return {**recovery, **(auth or {})}

    def _forget_session(self) -> None:
        self._pid = None
        self._offset = None

    def _take_offset(self, packet: SocketPacket, args: list[Any]) -> None:
        """Take the offset off a recoverable event's arguments (the last, a string, of an
        event asking no ack, when the server gave a ``pid``), so handlers see the arguments
        the server's application sent."""
        if self._pid is not None and packet.id is None and args and isinstance(args[-1], str):
            self._offset = args.pop()

    def _lose(self, error: Disconnected) -> bool:
        """Forget the connection; fail the calls sent on it. Whether it was connected."""
        was_connected = self.sid is not None
        link = self._link
        self.sid = None
        self._link = None
        for call in self._calls.values():
            if call.link is link:
                call.fail(error)
        return was_connected

    def _fail_all(self, error: Disconnected) -> None:
        for call in self._calls.values():
            call.fail(error)


class _Link:
    """The Socket.IO side of one Engine.IO session: decoding, and the namespaces on it."""

    def __init__(
        self, client: Client, decoder: PacketDecoder, namespaces: Sequence[ClientNamespace]
    ) -> None:
        self.client = client
        self.decoder = decoder
        self.namespaces = {namespace.name: namespace for namespace in namespaces}
        self.awaiting = set(self.namespaces)
        self.answered = trio.Event()
        self.refusal: ConnectError | None = None
        #: Set when the server has disconnected every namespace of the connection.
        self.all_dropped = trio.Event()
        self.engine: EngineConnection | None = None
        #: Events that came for a namespace asking for its session back before its CONNECT:
        #: Node's server replays what the socket missed first. Whether the session was
        #: recovered is in the CONNECT, so the reader must get past them (up to the client's
        #: ``replay_buffer``); they go to the handlers once it comes.
        self.replayed: list[tuple[ClientNamespace, SocketPacket]] = []

    async def on_message(self, data: str | bytes) -> None:
        """An Engine.IO message from the server (the reader waits while handlers are busy)."""
        if isinstance(data, str):
            packet = self.decoder.receive_text(data)
        else:
            packet = self.decoder.receive_binary(data)
        if packet is None:
            return
        namespace = self.namespaces.get(packet.namespace)
        if namespace is None:
            return  # not a namespace this client asked for: socket.io-client ignores it too
        kind = packet.type
        if kind is PacketType.CONNECT:
            fields = packet.data if isinstance(packet.data, dict) else {}
            sid, pid = fields.get("sid"), fields.get("pid")
            if not isinstance(sid, str) or namespace.name not in self.awaiting:
                raise ProtocolError("unexpected CONNECT", namespace.name)
            self.awaiting.discard(namespace.name)
            # What was kept while disconnected goes first; emits meanwhile join the end of
            # the buffer, so the namespace counts as connected only once it is empty.
            assert self.engine is not None
            while (kept := self.client._take_offline(namespace)) is not None:
                frames, call = kept
                if call is not None:
                    call.link = self
                await self.engine.send(Outgoing.message(*frames))
            namespace._connected(self, sid, pid if isinstance(pid, str) else None)
            if not self.awaiting:
                if self.refusal is None:
                    # Counted in the step that connects the last namespace: nobody can see
                    # the client connected and this connection not counted yet.
                    self.client.connections += 1
                self.answered.set()
            # Before on_connect, as socket.io-client emits its buffered events before "connect".
            for owner, replayed in self.replayed:
                if owner is namespace:
                    await self._event(namespace, replayed)
            self.replayed = [entry for entry in self.replayed if entry[0] is not namespace]
            await self.client._jobs_send.send(_Connected(namespace))
        elif kind is PacketType.CONNECT_ERROR:
            if namespace.name not in self.awaiting:
                raise ProtocolError("unexpected CONNECT_ERROR", namespace.name)
            error = packet.data
            if isinstance(error, dict):
                self.refusal = ConnectError(str(error.get("message", "")), error.get("data"))
            else:
                self.refusal = ConnectError(str(error))
            self.answered.set()
        elif (
            kind is PacketType.EVENT
            and namespace.name in self.awaiting
            and namespace._pid is not None
        ):
            if len(self.replayed) >= self.client.replay_buffer:
                # A recovery the client cannot take in: the next connection starts afresh.
                namespace._forget_session()
                for owner, _ in self.replayed:
                    owner._forget_session()
                raise TransportFailure(
                    f"the server replayed more than replay_buffer={self.client.replay_buffer} "
                    "events before its CONNECT; reconnecting as a new session"
                )
            self.replayed.append((namespace, packet))
        elif namespace._link is not self:
            return  # not connected yet (or any more): nothing else concerns it
        elif kind is PacketType.EVENT:
            await self._event(namespace, packet)
        elif kind is PacketType.ACK:
            call = namespace._calls.get(packet.id) if packet.id is not None else None
            if call is not None and call.link is self and not call.done.is_set():
                call.answer = packet.data
                call.done.set()
        elif kind is PacketType.DISCONNECT:
            error = Disconnected(DisconnectReason.IO_SERVER_DISCONNECT)
            namespace._lose(error)
            dropped = self.client._dropped
            dropped.add(namespace.name)
            await self.client._jobs_send.send(
                _Lost(namespace, DisconnectReason.IO_SERVER_DISCONNECT)
            )
            if dropped.issuperset(self.namespaces):
                self.all_dropped.set()

    async def _event(self, namespace: ClientNamespace, packet: SocketPacket) -> None:
        name, *args = packet.data
        # Taken on receipt: what is received is handled, even if the connection drops.
        namespace._take_offset(packet, args)
        await self.client._jobs_send.send(_Event(namespace, name, args, packet.id, self))

    def is_current(self, namespace: ClientNamespace) -> bool:
        return namespace._link is self and self.client._current is self


@dataclass
class _Session:
    """How one connection attempt went."""

    reason: DisconnectReason
    error: BaseException | None


class Client(ClientNamespace):
    """A Socket.IO v5 client for Trio: WebSocket (trio-websocket), HTTP long-polling (h11)
    and the upgrade from one to the other, with reconnection. ::

        client = trio_sio.Client()

        @client.on("chat message")
        async def chat_message(text: str) -> None:
            print(text)

        async with client.connect("http://127.0.0.1:5001"):
            await client.emit("chat message", "hello")

    The client is its ``/`` namespace; :meth:`of` gives the others. One client holds one
    connection at a time.

    Args:
        path: the server's Engine.IO path.
        reconnection: reconnect after the connection is lost (not after the server or this
            client disconnected).
        delay, delay_max, randomization_factor: the backoff between attempts:
            ``delay * 2**attempt`` seconds, give or take ``randomization_factor`` of it, at
            most ``delay_max`` (socket.io-client's ``reconnectionDelay`` ...).
        attempts: how many reconnection attempts before giving up; ``None``: no limit.
        offline_buffer: how many emits (and calls) to keep while reconnecting, sent once
            connected again; beyond it (and with 0, the default) emitting while disconnected
            raises :class:`~trio_sio.Disconnected`.
        max_payload: the largest WebSocket message or polling response accepted (bytes).
        handler_queue_size: events received and not yet handled before reading stops (so a
            server sending faster than the handlers run is slowed down, not buffered).
        max_concurrent_handlers: handlers running at once; with 1 (the default) they run
            one after the other, in the order the events came.
        outgoing_queue: packets queued for sending before ``emit`` waits.
        replay_buffer: with connection state recovery, events a server replays before it
            says the session is recovered (Node's does) that the client holds meanwhile;
            beyond them, it gives the session up and reconnects as a new one.
        ssl_context: for ``https://`` and ``wss://``; by default the system's trust store.
        parser: the Socket.IO parser (JSON by default).
        rng: the random source of the backoff's jitter.
    """

    def __init__(
        self,
        *,
        path: str = "socket.io",
        reconnection: bool = True,
        delay: float = 1.0,
        delay_max: float = 5.0,
        randomization_factor: float = 0.5,
        attempts: int | None = None,
        offline_buffer: int = 0,
        max_payload: int = 1_000_000,
        handler_queue_size: int = 16,
        max_concurrent_handlers: int = 1,
        outgoing_queue: int = 16,
        replay_buffer: int = 1000,
        ssl_context: ssl.SSLContext | None = None,
        parser: Parser | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 <= randomization_factor <= 1:
            raise ValueError("randomization_factor is between 0 and 1")
        if delay < 0 or delay_max < delay:
            raise ValueError("0 <= delay <= delay_max")
        if attempts is not None and attempts < 0:
            raise ValueError("attempts is None or at least 0")
        counts = (handler_queue_size, max_concurrent_handlers, outgoing_queue, replay_buffer)
        if min(max_payload, *counts) < 1:
            raise ValueError("sizes and counts are at least 1")
        if offline_buffer < 0:
            raise ValueError("offline_buffer is at least 0")
        super().__init__(self, "/")
        self.path = path
        self.reconnection = reconnection
        self.delay = delay
        self.delay_max = delay_max
        self.randomization_factor = randomization_factor
        self.attempts = attempts
        self.offline_buffer = offline_buffer
        self.max_payload = max_payload
        self.handler_queue_size = handler_queue_size
        self.max_concurrent_handlers = max_concurrent_handlers
        self.outgoing_queue = outgoing_queue
        self.replay_buffer = replay_buffer
        self.ssl_context = ssl_context
        self.parser: Parser = parser or JsonParser()
        self.rng = rng or random.Random()
        self._namespaces: dict[str, ClientNamespace] = {"/": self}
        #: The connection in use (while connected or connecting).
        self._current: _Link | None = None
        self._running = False
        self._offline: deque[tuple[ClientNamespace, tuple[str | bytes, ...], _Call | None]]
        self._offline = deque()
        self._ended = trio.Event()
        self._final: Disconnected | None = None
        self._backoff = trio.CancelScope()  # the wait between attempts
        self._jobs_send, self._jobs_receive = trio.open_memory_channel[_Job](0)
        #: Namespaces the server disconnected: they are not connected again.
        self._dropped: set[str] = set()
        #: Connections made so far (reconnections included).
        self.connections = 0
        #: How trio_sio.testing connects it to an in-process server instead of over TCP.
        self._open_websocket: MessageOpener | None = None

    def of(self, namespace: str) -> ClientNamespace:
        """The namespace ``namespace`` (``"/chat"``) of this client, for its handlers and
        emits; it is connected if it is among ``connect``'s ``namespaces``."""
        if not namespace.startswith("/"):
            raise ValueError(f"namespaces start with '/': {namespace!r}")
        found = self._namespaces.get(namespace)
        if found is None:
            found = self._namespaces[namespace] = ClientNamespace(self, namespace)
        return found

    @property
    def transport(self) -> str | None:
        """``"polling"`` or ``"websocket"`` while connected; ``None`` otherwise."""
        link = self._current
        if link is None or link.engine is None or link.engine.transport is None:
            return None
        return link.engine.transport_name

    @property
    def disconnect_reason(self) -> DisconnectReason | None:
        """Why the connection ended for good, once it has."""
        return self._final.reason if self._final is not None else None

    # --- connecting ---------------------------------------------------------------------

    @asynccontextmanager
    async def connect(
        self,
        url: str,
        *,
        transports: Sequence[str] = ("polling", "websocket"),
        auth: Auth | None = None,
        namespaces: Sequence[str] = ("/",),
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Client]:
        """Connect to the server at ``url`` (``http://host:port``) and stay connected (and
        reconnecting) for the duration of the block; entering returns once every namespace
        of ``namespaces`` is connected. Leaving disconnects.

        ``transports`` are tried as socket.io-client does: the first opens the session and,
        from polling, the client upgrades to ``"websocket"`` if it is listed. ``auth`` is
        the CONNECT payload every namespace sends (the server's ``auth``), or
        ``async def auth() -> Mapping``, asked for it on each connection. ``headers`` go with
        every HTTP request (the handshake's, the polls', the WebSocket's).

        Raises:
            ConnectError: a namespace was refused, or the server could not be reached (after
                the reconnection attempts); from the block, a reconnection was refused.
        """
        with _single_errors():
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    self._serve, url, transports, auth, namespaces, headers, name="client"
                )
                try:
                    yield self
                finally:
                    with trio.CancelScope(shield=True):
                        await self._leave()
                    nursery.cancel_scope.cancel()

    async def run(
        self,
        url: str,
        *,
        transports: Sequence[str] = ("polling", "websocket"),
        auth: Auth | None = None,
        namespaces: Sequence[str] = ("/",),
        headers: Mapping[str, str] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """:meth:`connect` as a task: ``await nursery.start(client.run, url)`` returns once
        connected. Returns when the server or :meth:`disconnect` ends the connection;
        cancelling it disconnects.

        Raises:
            ConnectError: as :meth:`connect`; also when a reconnection is refused.
            Disconnected: the connection was lost and reconnection gave up (or is off); the
                reason says how, the cause is chained.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._serve(url, transports, auth, namespaces, headers, task_status=task_status)
        if self._final is not None and self._final.reason not in _FINAL:
            raise self._final

    async def disconnect(self) -> None:
        """Disconnect every namespace and close the connection (no reconnection follows).
        Pending calls fail with :class:`~trio_sio.Disconnected`."""
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._leave()

    async def wait_disconnected(self) -> DisconnectReason:
        """Wait until the connection has ended for good; why it ended."""
        await self._ended.wait()
        assert self._final is not None
        return self._final.reason or DisconnectReason.IO_CLIENT_DISCONNECT

    async def _leave(self) -> None:
        """Disconnect, if connected; end for good."""
        self._finish(Disconnected(DisconnectReason.IO_CLIENT_DISCONNECT))
        link = self._current
        engine = link.engine if link is not None else None
        if link is not None and engine is not None and not engine.ended.is_set():
            with trio.move_on_after(engine.heartbeat_window), suppress(Disconnected):
                for name, namespace in link.namespaces.items():
                    if namespace.connected:
                        await self._write(link, SocketPacket(PacketType.DISCONNECT, name))
            await engine.close()
        await trio.lowlevel.checkpoint()

    def _finish(self, final: Disconnected) -> None:
        """The connection is over for good: fail everything that waits on it."""
        if self._ended.is_set():
            return
        self._final = final
        self._ended.set()
        self._backoff.cancel()
        for namespace in self._namespaces.values():
            namespace._fail_all(final)
        for _, _, call in self._offline:
            if call is not None:
                call.fail(final)
        self._offline.clear()

    # --- the connection's task ----------------------------------------------------------

    async def _serve(
        self,
        url: str,
        transports: Sequence[str],
        auth: Auth | None,
        namespace_names: Sequence[str],
        headers: Mapping[str, str] | None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if self._running:
            raise RuntimeError("this client is connected already: one connection at a time")
        endpoint = Endpoint.parse(url, self.path)
        if not transports or not set(transports) <= {"polling", "websocket"}:
            raise ValueError(f"transports are 'polling' and/or 'websocket', not {transports!r}")
        if not namespace_names:
            raise ValueError("connect at least one namespace")
        namespaces = [self.of(name) for name in namespace_names]
        settings = EngineSettings(
            transports=tuple(transports),
            headers=list((headers or {}).items()),
            ssl_context=self.ssl_context,
            max_payload=self.max_payload,
            outgoing_queue=self.outgoing_queue,
            open_websocket=self._open_websocket,
        )
        if callable(auth):
            check_handler(auth, "auth", "()", 0)
        self._running = True
        self._dropped = set()
        self._ended = trio.Event()
        self._final = None
        self._jobs_send, self._jobs_receive = trio.open_memory_channel[_Job](
            self.handler_queue_size
        )
        try:
            with _single_errors():
                await self._connect_and_reconnect(endpoint, settings, auth, namespaces, task_status)
        finally:
            self._running = False
            self._finish(Disconnected(DisconnectReason.IO_CLIENT_DISCONNECT))
            for namespace in self._namespaces.values():
                namespace._lose(self._final or Disconnected(None))

    async def _connect_and_reconnect(
        self,
        endpoint: Endpoint,
        settings: EngineSettings,
        auth: Auth | None,
        namespaces: Sequence[ClientNamespace],
        task_status: trio.TaskStatus[None],
    ) -> None:
        started = False
        failures = 0
        async with trio.open_nursery() as nursery:
            for _ in range(self.max_concurrent_handlers):
                nursery.start_soon(self._handle_jobs)

            def connected() -> None:
                nonlocal started, failures
                failures = 0
                if not started:
                    started = True
                    task_status.started()

            while not self._ended.is_set():
                namespaces = [n for n in namespaces if n.name not in self._dropped]
                session = await self._session(endpoint, settings, auth, namespaces, connected)
                final = self._ended.is_set() or session.reason in _FINAL
                if isinstance(session.error, ConnectError):
                    final = True  # a refused namespace is not retried
                lost = Disconnected(session.reason)
                lost.__cause__ = session.error
                for namespace in namespaces:
                    if namespace._lose(lost):
                        await self._jobs_send.send(_Lost(namespace, session.reason))
                if (
                    not final
                    and self.reconnection
                    and (self.attempts is None or failures < self.attempts)
                ):
                    wait = reconnection_delay(
                        failures,
                        delay=self.delay,
                        delay_max=self.delay_max,
                        randomization_factor=self.randomization_factor,
                        rng=self.rng,
                    )
                    failures += 1
                    with trio.CancelScope() as self._backoff:
                        await trio.sleep(wait)
                    continue
                error = session.error
                if isinstance(error, ConnectError):
                    raise error  # refused, on the first connection or a later one
                if not started:
                    raise ConnectError(str(error or session.reason)) from error
                self._finish(lost)
            # Let the handlers take what is queued, then stop them.
            await self._jobs_send.aclose()

    async def _session(
        self,
        endpoint: Endpoint,
        settings: EngineSettings,
        auth: Auth | None,
        namespaces: Sequence[ClientNamespace],
        on_connected: Callable[[], None],
    ) -> _Session:
        """One connection, from the handshake until it ends; ``on_connected`` is called once
        every namespace is connected."""
        link = _Link(
            self,
            self.parser.decoder(
                max_attachments=DEFAULT_MAX_ATTACHMENTS, max_binary_bytes=self.max_payload
            ),
            namespaces,
        )
        try:
            async with open_engine(endpoint, settings, link.on_message) as engine:
                link.engine = engine
                self._current = link
                try:
                    # Asked for on every connection, so that a reconnection can bring a fresh
                    # token (socket.io-client's function ``auth``).
                    fields = await auth() if callable(auth) else auth
                    for namespace in namespaces:
                        payload = namespace._connect_payload(fields)
                        connect = SocketPacket(PacketType.CONNECT, namespace.name, payload)
                        await self._write(link, connect)
                    await link.answered.wait()
                    if link.refusal is None:
                        on_connected()
                        await link.all_dropped.wait()
                        await engine.close(DisconnectReason.IO_SERVER_DISCONNECT)
                    else:
                        await engine.close()
                except Disconnected:
                    pass  # the session ended: its reason says why
        except TransportFailure as exc:  # the handshake failed
            return _Session(DisconnectReason.TRANSPORT_ERROR, exc)
        except ProtocolError as exc:  # its open packet was bad
            return _Session(DisconnectReason.PARSE_ERROR, exc)
        finally:
            if self._current is link:
                self._current = None
        if link.refusal is not None:
            return _Session(DisconnectReason.IO_CLIENT_DISCONNECT, link.refusal)
        assert engine.reason is not None
        return _Session(engine.reason, engine.error)

    def _take_offline(
        self, namespace: ClientNamespace
    ) -> tuple[tuple[str | bytes, ...], _Call | None] | None:
        """The first packet kept for ``namespace`` while disconnected, taken out."""
        for index, (owner, frames, call) in enumerate(self._offline):
            if owner is namespace:
                del self._offline[index]
                return frames, call
        return None

    async def _handle_jobs(self) -> None:
        async for job in self._jobs_receive:
            if isinstance(job, _Event):
                await self._handle_event(job)
            elif isinstance(job, _Connected):
                for on_connect in job.namespace._on_connect:
                    await on_connect()
            else:
                for on_disconnect in job.namespace._on_disconnect:
                    await on_disconnect(job.reason)

    async def _handle_event(self, event: _Event) -> None:
        namespace = event.namespace
        for listener in namespace._any:
            await listener(event.name, *event.args)
        handler = namespace._events.get(event.name)
        if handler is None:
            return
        reply = ack_arguments(await handler(*event.args))
        if event.ack_id is None or reply is None or not event.link.is_current(namespace):
            return  # no ack asked for, or NO_ACK; or the connection it came on is gone
        ack = SocketPacket(PacketType.ACK, namespace.name, reply, event.ack_id)
        with suppress(Disconnected):  # gone meanwhile
            await self._write(event.link, ack)

    # --- sending ------------------------------------------------------------------------

    async def _write(self, link: _Link, packet: SocketPacket) -> None:
        assert link.engine is not None
        await link.engine.send(Outgoing.message(*self.parser.encode(packet)))

    async def _send(
        self, namespace: ClientNamespace, packet: SocketPacket, call: _Call | None = None
    ) -> None:
        frames = self.parser.encode(packet)
        link = namespace._link
        engine = link.engine if link is not None and link.is_current(namespace) else None
        if engine is not None and not engine.ended.is_set():
            if call is not None:
                call.link = link
            await engine.send(Outgoing.message(*frames))
            return
        may_reconnect = (
            self._running
            and self.reconnection
            and not self._ended.is_set()
            and namespace.name not in self._dropped
        )
        if may_reconnect and len(self._offline) < self.offline_buffer:
            self._offline.append((namespace, frames, call))
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if self._final is not None:
            raise self._final
        raise Disconnected(None)
