"""A cluster adapter over Redis pub/sub that speaks Node's ``@socket.io/redis-adapter`` protocol.

Several trio_sio processes, Node ``socket.io`` servers using ``@socket.io/redis-adapter`` 8.x
(classic, non-sharded mode) and Node's ``@socket.io/redis-emitter`` can share one cluster::

    from trio_sio.adapters.redis import RedisAdapter

    sio = trio_sio.Server(adapter_factory=RedisAdapter.factory("redis://127.0.0.1:6379/0"))

Every namespace then broadcasts, fetches sockets, makes sockets join/leave rooms, disconnects
them and exchanges server-side events cluster-wide. Install the extra first:
``pip install 'trio-sio[redis]'`` (``coredis``, a Trio-capable Redis client built on AnyIO, and
``msgpack``).

Wire protocol (the same bytes as the Node adapter; ``<key>`` is ``"socket.io"`` by default):

- broadcasts go to ``<key>#<nsp>#``, or ``<key>#<nsp>#<room>#`` when exactly one room is
  targeted, as the msgpack array ``[uid, packet, {rooms, except, flags}]``; ``packet`` is the
  Socket.IO packet as an object (``{type, data, nsp}``), its binary values msgpack ``bin``;
- requests go to ``<key>-request#<nsp>#`` (JSON, or msgpack for broadcasts with acks) and
  answers to ``<key>-response#<nsp>#`` (or ``…#<uid>#`` with
  :attr:`~RedisAdapterOptions.publish_on_specific_response_channel`), request types 0-9;
- the number of nodes is ``PUBSUB NUMSUB <key>-request#<nsp>#``.

Lifecycle: :meth:`RedisAdapter.run` (started in the server's nursery) keeps one subscriber
connection and one command connection per namespace. Startup never waits for Redis longer than
one connection attempt. When Redis goes away, local delivery goes on untouched; the adapter
logs one warning for the outage, reconnects with exponential backoff and jitter, and logs once
more when it is back. What would have been published meanwhile is dropped and counted (not
queued for later: stale broadcasts are worse than lost ones); cluster requests return at once
with only this node's part (``nodes=None``).

Back-pressure: inbound messages pass through a queue bounded both in messages
(:attr:`~RedisAdapterOptions.inbound_queue_size`) and in bytes
(:attr:`~RedisAdapterOptions.inbound_queue_bytes`), filled by a task that does nothing else
(so coredis's own read buffers, which have no bound, stay drained). When it is full, new
messages are dropped and counted in :attr:`RedisAdapterStatistics.dropped_overflow`: a flood
from Redis costs missed cluster messages, never unbounded memory or a stalled server. (Redis
itself disconnects a subscriber that stops reading, by its ``client-output-buffer-limit
pubsub``.) Outbound, broadcasts wait while the publishing queue is full, so a fast emitter runs
at Redis's pace.

Hostile or broken input: a message larger than :attr:`~RedisAdapterOptions.max_message_size`,
that does not decode (only msgpack and JSON are decoded: never pickle), that nests deeper than
the JSON limit or does not have the protocol's shape is dropped and counted; one that claims
this node's own id is dropped as its own echo. The adapter task survives all of them. Anyone
who can ``PUBLISH`` on the Redis server can still send valid events to every client: protect
Redis as you would the servers.

Not implemented: the sharded adapter (``createShardedAdapter``, Redis 7 ``SPUBLISH``), Redis
Cluster and Sentinel, Node's ``parser`` option (only its default, msgpack as notepack.io writes
it), and sending the ``SOCKETS`` request and the single-socket join/leave/disconnect requests
(Node's 8.x adapter sends none of them either).

Connection state recovery is declined (:attr:`~trio_sio.Adapter.supports_recovery` is
``False``), as Node's classic Redis adapter declines it: pub/sub keeps nothing, so a client
may come back to another node that never saw its session or the packets it missed. With
``Server(connection_state_recovery=...)`` and this adapter, clients are offered no recovery
(no ``pid`` in CONNECT, no offsets) and reconnect as new sockets.
Every request type 0-9 is answered or consumed. The ``compress`` and ``timeout`` flags of a
broadcast are ignored (acknowledgements are collected for ``ack_timeout``); acknowledgements of
other nodes' clients carry only their first argument, as in Node's protocol.
"""

from __future__ import annotations

import datetime
import enum
import logging
import random
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio

try:
    import coredis
    import msgpack
    from coredis.retry import NoRetryPolicy
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "trio_sio.adapters.redis needs coredis and msgpack: pip install 'trio-sio[redis]'"
    ) from exc

from .._adapter import Adapter, BroadcastOptions
from .._broadcast import AckCollector
from .._cluster import ClusterReplies, RemoteSocket
from .._protocol import PacketType, ProtocolError, SocketPacket
from .._protocol.codec import DEFAULT_MAX_JSON_DEPTH
from .._socket import node_handshake

if TYPE_CHECKING:
    from coredis.patterns.pubsub import PubSub

    from .._namespace import Namespace
    from .._socket import Socket

__all__ = ["RedisAdapter", "RedisAdapterOptions", "RedisAdapterStatistics", "RequestType"]

logger = logging.getLogger("trio_sio.adapters.redis")


class RequestType(enum.IntEnum):
    """Request types of the Node adapter's request/response channels (the ``type`` field)."""

    SOCKETS = 0
    ALL_ROOMS = 1
    REMOTE_JOIN = 2
    REMOTE_LEAVE = 3
    REMOTE_DISCONNECT = 4
    REMOTE_FETCH = 5
    SERVER_SIDE_EMIT = 6
    BROADCAST = 7
    BROADCAST_CLIENT_COUNT = 8
    BROADCAST_ACK = 9


@dataclass(frozen=True)
class RedisAdapterOptions:
    """Settings of a :class:`RedisAdapter` (times in seconds, sizes in bytes).

    Attributes:
        key: prefix of every channel; must match the other nodes' (Node: ``opts.key``).
        requests_timeout: how long fetching sockets or listing rooms waits for the other
            nodes (Node: ``requestsTimeout``).
        ack_timeout: how long acknowledgements of a broadcast made with
            ``emit_with_ack`` are collected from the other nodes.
        publish_on_specific_response_channel: answer a request on the requester's own
            response channel rather than the shared one (Node's option of the same name).
        inbound_queue_size, inbound_queue_bytes: bounds of the queue between the Redis
            connection and the task that handles messages; what does not fit is dropped and
            counted in :attr:`RedisAdapterStatistics.dropped_overflow`.
        outbound_queue_size: messages waiting to be published; ``emit`` waits while it is full
            (and drops, counted, while Redis is unreachable).
        max_message_size: larger inbound messages are dropped unread.
        max_depth: deepest nesting of lists/maps accepted in a message's payload.
        max_handler_tasks: server-side event handlers and remote disconnects running at once;
            past that, handling further cluster messages waits.
        reconnect_delay: first and largest pause between connection attempts (doubling, with
            jitter).
        connect_timeout, command_timeout: bounds of one connection attempt and of one Redis
            command or publishing batch.
    """

    key: str = "socket.io"
    requests_timeout: float = 5.0
    ack_timeout: float = 30.0
    publish_on_specific_response_channel: bool = False
    inbound_queue_size: int = 4096
    inbound_queue_bytes: int = 16 * 1024 * 1024
    outbound_queue_size: int = 1024
    max_message_size: int = 4 * 1024 * 1024
    max_depth: int = DEFAULT_MAX_JSON_DEPTH
    max_handler_tasks: int = 64
    reconnect_delay: tuple[float, float] = (0.05, 5.0)
    connect_timeout: float = 5.0
    command_timeout: float = 5.0


@dataclass(frozen=True)
class RedisAdapterStatistics:
    """A snapshot of one namespace's :class:`RedisAdapter` (trio's ``statistics()`` style).

    Attributes:
        connected: subscribed and able to publish right now.
        outages: connection losses (or failed first connections) so far.
        published: messages published.
        publish_dropped: messages not published: Redis unreachable, a batch failing, or a
            payload msgpack cannot carry.
        received: messages read from Redis.
        inbound_queued: messages waiting to be handled.
        dropped_overflow: messages dropped because the inbound queue was full.
        dropped_oversized: messages larger than ``max_message_size``.
        dropped_malformed: messages that did not decode or had the wrong shape.
        dropped_foreign: messages for another namespace, an unknown channel or request type.
        ignored_own: messages carrying this node's own id (its echoes, or forgeries).
        ignored: messages for nobody here: a room with no local member, answers to other
            nodes' requests or to requests already finished.
        pending_requests: cluster requests and broadcasts with acks awaiting answers.
    """

    connected: bool
    outages: int
    published: int
    publish_dropped: int
    received: int
    inbound_queued: int
    dropped_overflow: int
    dropped_oversized: int
    dropped_malformed: int
    dropped_foreign: int
    ignored_own: int
    ignored: int
    pending_requests: int


@dataclass
class _Counters:
    outages: int = 0
    published: int = 0
    publish_dropped: int = 0
    received: int = 0
    dropped_overflow: int = 0
    dropped_oversized: int = 0
    dropped_malformed: int = 0
    dropped_foreign: int = 0
    ignored_own: int = 0
    ignored: int = 0


class _Malformed(Exception):
    """An inbound message that does not decode or does not have the protocol's shape."""


class _Foreign(Exception):
    """An inbound message that is well-formed but not meant for this namespace."""


@dataclass
class _Pending:
    """A cluster request waiting for the other nodes' answers."""

    kind: RequestType
    nodes: int
    items: list[Any] = field(default_factory=list)
    answered: int = 0
    answered_by: list[str] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)

    def add(self, items: Iterable[Any], responder: str | None) -> None:
        self.items.extend(items)
        self.answered += 1
        if responder is not None:
            self.answered_by.append(responder)
        if self.answered >= self.nodes:
            self.done.set()

    def replies(self, local: Iterable[Any] = ()) -> ClusterReplies[Any]:
        return ClusterReplies(
            [*local, *self.items],
            nodes=self.nodes,
            answered=self.answered,
            answered_by=self.answered_by,
        )


class _AckRelay(AckCollector):
    """Collects the acknowledgements of a broadcast another node asked for, and sends each
    back to it as a ``BROADCAST_ACK`` answer."""

    def __init__(self, adapter: RedisAdapter, request_id: str, requester: str | None) -> None:
        super().__init__()
        self._adapter = adapter
        self._request_id = request_id
        self._requester = requester

    def _settle(self, sid: str, args: list[Any] | None) -> None:
        if args is None:  # the socket disconnected: Node's adapter reports nothing either
            return
        body: dict[str, Any] = {
            "type": RequestType.BROADCAST_ACK.value,
            "requestId": self._request_id,
        }
        if args:  # only the first argument travels (Node: ``ack(arg)``)
            body["packet"] = args[0]
        try:
            payload = msgpack.packb(body, use_bin_type=True)
        except (TypeError, ValueError, OverflowError):
            self._adapter._counters.publish_dropped += 1
            return
        self._adapter._respond_nowait(self._requester, payload)


class RedisAdapter(Adapter):
    """The cluster adapter of one namespace, over Redis pub/sub (see the module's docs).

    Create it through :meth:`factory`; the server makes one per namespace and runs it.

    Attributes:
        url: the Redis URL (``redis://[:password@]host:port/db``, ``rediss://``, ``unix://``).
        options: its :class:`RedisAdapterOptions`.
        uid: this node's id in the cluster (per namespace, as in Node).
    """

    # Pub/sub keeps no history for a client that comes back to another node (see above).
    supports_recovery = False

    def __init__(
        self, namespace: Namespace, url: str, options: RedisAdapterOptions | None = None
    ) -> None:
        super().__init__(namespace)
        self.url = url
        self.options = options = options or RedisAdapterOptions()
        self.uid = secrets.token_hex(4)
        name = namespace.name
        self._json = namespace.server.json
        self._channel = f"{options.key}#{name}#"
        self._request_channel = f"{options.key}-request#{name}#"
        self._response_channel = f"{options.key}-response#{name}#"
        self._specific_response_channel = f"{self._response_channel}{self.uid}#"
        self._channel_b = self._channel.encode()
        self._request_channel_b = self._request_channel.encode()
        self._response_channels_b = frozenset(
            {self._response_channel.encode(), self._specific_response_channel.encode()}
        )
        self._counters = _Counters()
        self._client: coredis.Redis[bytes] | None = None
        self._connected = False
        self._nursery: trio.Nursery | None = None
        self._inbound_send, self._inbound_receive = trio.open_memory_channel[tuple[bytes, bytes]](
            options.inbound_queue_size
        )
        self._inbound_bytes = 0
        self._outbound_send, self._outbound_receive = trio.open_memory_channel[tuple[str, bytes]](
            options.outbound_queue_size
        )
        self._task_slots = trio.Semaphore(options.max_handler_tasks)
        self._requests: dict[str, _Pending] = {}
        self._ack_requests: dict[str, AckCollector] = {}

    @classmethod
    def factory(
        cls, url: str, options: RedisAdapterOptions | None = None
    ) -> Callable[[Namespace], RedisAdapter]:
        """An ``adapter_factory`` for :class:`~trio_sio.Server`: every namespace gets a
        :class:`RedisAdapter` on ``url`` with ``options``."""

        def make(namespace: Namespace) -> RedisAdapter:
            return cls(namespace, url, options)

        return make

    def __repr__(self) -> str:
        return f"<RedisAdapter {self.namespace.name} uid={self.uid}>"

    @property
    def connected(self) -> bool:
        """Whether the adapter is subscribed and can publish right now."""
        return self._connected

    def statistics(self) -> RedisAdapterStatistics:
        """Counters of what went through this adapter, and what was dropped and why."""
        c = self._counters
        return RedisAdapterStatistics(
            connected=self._connected,
            outages=c.outages,
            published=c.published,
            publish_dropped=c.publish_dropped,
            received=c.received,
            inbound_queued=self._inbound_receive.statistics().current_buffer_used,
            dropped_overflow=c.dropped_overflow,
            dropped_oversized=c.dropped_oversized,
            dropped_malformed=c.dropped_malformed,
            dropped_foreign=c.dropped_foreign,
            ignored_own=c.ignored_own,
            ignored=c.ignored,
            pending_requests=len(self._requests) + len(self._ack_requests),
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the Redis connections, handle what arrives and publish what leaves, until
        cancelled. Reports started once subscribed, or after the first failed attempt."""
        if self._nursery is not None:
            raise RuntimeError(f"{self!r} is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._handle_inbound)
                nursery.start_soon(self._publish_outbound)
                await nursery.start(self._keep_connected)
                task_status.started()
        finally:
            self._nursery = None
            self._connected = False
            self._client = None

    async def _keep_connected(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        first_delay, max_delay = self.options.reconnect_delay
        delay = first_delay
        started = False
        down_since: float | None = None
        while True:
            error: Exception | None = None
            try:
                await self._probe()
                async with self._open_redis() as pubsub:
                    if down_since is not None:
                        logger.info(
                            "%r: Redis at %s is back after %.1f s; cluster traffic resumes",
                            self,
                            _safe_url(self.url),
                            trio.current_time() - down_since,
                        )
                        down_since = None
                    delay = first_delay
                    if not started:
                        started = True
                        task_status.started()
                    await self._read(pubsub)
            except Exception as exc:  # a connection failure, whatever shape coredis gives it
                error = exc
            finally:
                self._connected = False
                self._client = None
            if down_since is None:
                down_since = trio.current_time()
                self._counters.outages += 1
                logger.warning(
                    "%r: no connection to Redis at %s (%s); local delivery continues, "
                    "reconnecting with backoff",
                    self,
                    _safe_url(self.url),
                    _describe(error),
                )
            if not started:
                started = True
                task_status.started()
            await trio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, max_delay)

    async def _probe(self) -> None:
        """Raise unless Redis's address accepts connections.

        A failed connection attempt inside coredis leaves its connection's stream objects
        unclosed (they warn when collected), so while Redis is down the retries stop here.
        """
        parts = urlsplit(self.url)
        with trio.fail_after(self.options.connect_timeout):
            if parts.scheme in ("redis", "rediss"):
                stream: trio.abc.Stream = await trio.open_tcp_stream(
                    parts.hostname or "localhost", parts.port or 6379
                )
            elif parts.scheme == "unix":
                stream = await trio.open_unix_socket(parts.path)
            else:
                return
        await stream.aclose()

    @asynccontextmanager
    async def _open_redis(self) -> AsyncIterator[PubSub[bytes]]:
        options = self.options
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            self.url,
            decode_responses=False,
            retry_policy=NoRetryPolicy(),
            connect_timeout=options.connect_timeout,
            stream_timeout=options.command_timeout,
        )
        async with client:
            pubsub = client.pubsub(
                ignore_subscribe_messages=True,
                retry_policy=NoRetryPolicy(),
                subscription_timeout=options.connect_timeout,
            )
            async with pubsub:
                await pubsub.psubscribe(_glob_escape(self._channel) + "*")
                await pubsub.subscribe(
                    self._request_channel, self._response_channel, self._specific_response_channel
                )
                with trio.fail_after(options.command_timeout):
                    await client.ping()
                self._client = client
                self._connected = True
                yield pubsub

    async def _read(self, pubsub: PubSub[bytes]) -> None:
        """Move messages from the subscriber connection to the bounded inbound queue."""
        counters = self._counters
        send = self._inbound_send
        max_size = self.options.max_message_size
        max_bytes = self.options.inbound_queue_bytes
        while True:
            message = await pubsub.get_message()
            if message is None or message["type"] not in ("message", "pmessage"):
                continue
            counters.received += 1
            channel = message["channel"]
            data = message["data"]
            if not isinstance(channel, bytes) or not isinstance(data, bytes):
                counters.dropped_malformed += 1
                continue
            size = len(data)
            if size > max_size:
                counters.dropped_oversized += 1
                continue
            if self._inbound_bytes + size > max_bytes:
                counters.dropped_overflow += 1
                continue
            try:
                send.send_nowait((channel, data))
            except trio.WouldBlock:
                counters.dropped_overflow += 1
            else:
                self._inbound_bytes += size

    async def _publish_outbound(self) -> None:
        """Publish queued messages, in order, in pipelined batches."""
        receive = self._outbound_receive
        counters = self._counters
        async for first in receive:
            batch = [first]
            while len(batch) < 256:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            client = self._client
            if client is None:
                counters.publish_dropped += len(batch)
                continue
            try:
                with trio.fail_after(self.options.command_timeout):
                    async with client.pipeline(transaction=False) as pipe:
                        for channel, payload in batch:
                            pipe.publish(channel, payload)
            except Exception as exc:
                counters.publish_dropped += len(batch)
                logger.debug("%r: publishing %d message(s) failed: %s", self, len(batch), exc)
            else:
                counters.published += len(batch)

    async def _publish(self, channel: str, payload: bytes) -> None:
        if not self._connected:
            self._counters.publish_dropped += 1
            return
        await self._outbound_send.send((channel, payload))

    def _publish_nowait(self, channel: str, payload: bytes) -> None:
        if not self._connected:
            self._counters.publish_dropped += 1
            return
        try:
            self._outbound_send.send_nowait((channel, payload))
        except trio.WouldBlock:
            self._counters.publish_dropped += 1

    def _response_channel_for(self, requester: str | None) -> str:
        if self.options.publish_on_specific_response_channel and requester:
            return f"{self._response_channel}{requester}#"
        return self._response_channel

    async def _respond(self, requester: str | None, payload: bytes) -> None:
        await self._publish(self._response_channel_for(requester), payload)

    def _respond_nowait(self, requester: str | None, payload: bytes) -> None:
        self._publish_nowait(self._response_channel_for(requester), payload)

    def _dumps(self, value: Any) -> bytes:
        return self._json.dumps(value).encode()

    async def _other_nodes(self) -> int | None:
        """How many other nodes subscribe to this namespace (``None``: Redis unreachable)."""
        client = self._client
        if client is None or not self._connected:
            return None
        try:
            with trio.fail_after(self.options.command_timeout):
                counts = await client.pubsub_numsub(self._request_channel)
        except Exception as exc:
            logger.debug("%r: PUBSUB NUMSUB failed: %s", self, exc)
            return None
        count = counts.get(self._request_channel_b, 0)
        return max(0, int(count) - 1)

    async def _ask(self, kind: RequestType, body: dict[str, Any]) -> _Pending | None:
        """Publish a request and gather the answers of every other node, for at most
        ``requests_timeout`` seconds."""
        timeout = self.options.requests_timeout
        nodes = await self._other_nodes()
        if nodes is None:
            return None
        pending = _Pending(kind, nodes)
        if nodes == 0:
            return pending
        request_id = secrets.token_hex(6)
        payload = self._dumps(
            {"uid": self.uid, "requestId": request_id, "type": kind.value, **body}
        )
        self._requests[request_id] = pending
        try:
            await self._publish(self._request_channel, payload)
            with trio.move_on_after(timeout):
                await pending.done.wait()
        finally:
            del self._requests[request_id]
        if pending.answered < nodes:
            logger.info(
                "%r: %s: %d of %d other node(s) did not answer within %.1f s",
                self,
                kind.name,
                nodes - pending.answered,
                nodes,
                timeout,
            )
        return pending

    # --- the operations, cluster-wide ---------------------------------------------------

    async def broadcast(self, packet: SocketPacket, opts: BroadcastOptions) -> None:
        """Deliver locally, then publish for the other nodes (unless ``opts.local``)."""
        self.broadcast_local(packet, opts)
        if opts.local:
            return
        channel = self._channel
        if len(opts.rooms) == 1:
            (room,) = opts.rooms
            channel = f"{channel}{room}#"
        try:
            payload = msgpack.packb(
                [self.uid, self._packet_object(packet), _wire_options(opts)], use_bin_type=True
            )
        except (TypeError, ValueError, OverflowError) as exc:
            self._counters.publish_dropped += 1
            logger.warning("%r: broadcast not sent to the cluster: %s", self, exc)
            return
        await self._publish(channel, payload)

    async def broadcast_with_ack(
        self, packet: SocketPacket, opts: BroadcastOptions, collector: AckCollector
    ) -> None:
        """Deliver locally and ask every other node to do the same; their client counts and
        their clients' answers arrive in ``collector`` (for ``ack_timeout`` seconds)."""
        if not opts.local:
            nodes = await self._other_nodes()
            if nodes:
                request_id = secrets.token_hex(6)
                request = {
                    "uid": self.uid,
                    "requestId": request_id,
                    "type": RequestType.BROADCAST.value,
                    "packet": self._packet_object(packet, with_id=False),
                    "opts": _wire_options(opts),
                }
                payload = msgpack.packb(request, use_bin_type=True)
                collector._expect_nodes(nodes)
                self._ack_requests[request_id] = collector
                assert self._nursery is not None
                self._nursery.start_soon(self._forget_ack_request, request_id)
                await self._publish(self._request_channel, payload)
        collector._expect(self.broadcast_with_ack_local(packet, opts, collector))

    async def _forget_ack_request(self, request_id: str) -> None:
        await trio.sleep(self.options.ack_timeout)
        self._ack_requests.pop(request_id, None)

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Socket | RemoteSocket]:
        """This node's sockets, then those of the nodes that answered in time, as a
        :class:`~trio_sio.adapters.ClusterReplies`."""
        local: list[Socket | RemoteSocket] = list(self.select(opts))
        if opts.local:
            return local
        pending = await self._ask(RequestType.REMOTE_FETCH, {"opts": _wire_selection(opts)})
        if pending is None:
            return ClusterReplies(local, nodes=None)
        return pending.replies(local)

    async def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        """Make the selected sockets of every node join ``rooms``."""
        rooms = list(rooms)
        await super().add_sockets(opts, rooms)
        if not opts.local:
            await self._publish_request(
                RequestType.REMOTE_JOIN, {"opts": _wire_selection(opts), "rooms": rooms}
            )

    async def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        """Make the selected sockets of every node leave ``rooms``."""
        rooms = list(rooms)
        await super().del_sockets(opts, rooms)
        if not opts.local:
            await self._publish_request(
                RequestType.REMOTE_LEAVE, {"opts": _wire_selection(opts), "rooms": rooms}
            )

    async def disconnect_sockets(self, opts: BroadcastOptions, *, close: bool) -> None:
        """Disconnect the selected sockets of every node (the request leaves first: the
        caller may be one of the local sockets)."""
        if not opts.local:
            await self._publish_request(
                RequestType.REMOTE_DISCONNECT, {"opts": _wire_selection(opts), "close": close}
            )
        await super().disconnect_sockets(opts, close=close)

    async def server_count(self) -> int:
        """How many nodes subscribe to this namespace's requests (1 when Redis is down)."""
        others = await self._other_nodes()
        return 1 if others is None else others + 1

    async def server_side_emit(self, event: str, args: Sequence[Any]) -> None:
        """Send ``event`` to the other nodes' server-side handlers (JSON arguments)."""
        await self._publish_request(RequestType.SERVER_SIDE_EMIT, {"data": [event, *args]})

    async def server_side_emit_with_ack(
        self, event: str, args: Sequence[Any]
    ) -> ClusterReplies[Any]:
        """Send ``event`` to the other nodes; one answer per node, as many as arrive within
        ``requests_timeout`` seconds."""
        pending = await self._ask(RequestType.SERVER_SIDE_EMIT, {"data": [event, *args]})
        if pending is None:
            return ClusterReplies(nodes=None)
        return pending.replies()

    async def all_rooms(self) -> ClusterReplies[str]:
        """The rooms of every node (each listed once), as far as the nodes answered within
        ``requests_timeout``."""
        local = set(self.rooms)
        pending = await self._ask(RequestType.ALL_ROOMS, {})
        if pending is None:
            return ClusterReplies(sorted(local), nodes=None)
        rooms = sorted(local.union(pending.items))
        return ClusterReplies(
            rooms, nodes=pending.nodes, answered=pending.answered, answered_by=pending.answered_by
        )

    async def _publish_request(self, kind: RequestType, body: dict[str, Any]) -> None:
        await self._publish(
            self._request_channel, self._dumps({"uid": self.uid, "type": kind.value, **body})
        )

    def _packet_object(self, packet: SocketPacket, *, with_id: bool = True) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "type": PacketType.EVENT.value,
            "data": packet.data,
            "nsp": self.namespace.name,
        }
        if with_id and packet.id is not None:
            wire["id"] = packet.id
        return wire

    # --- inbound ------------------------------------------------------------------------

    async def _handle_inbound(self) -> None:
        counters = self._counters
        async for channel, data in self._inbound_receive:
            self._inbound_bytes -= len(data)
            try:
                await self._dispatch(channel, data)
            except _Malformed as exc:
                counters.dropped_malformed += 1
                logger.debug("%r: dropped a malformed message on %r: %s", self, channel, exc)
            except _Foreign as exc:
                counters.dropped_foreign += 1
                logger.debug("%r: dropped a message not for us on %r: %s", self, channel, exc)

    async def _dispatch(self, channel: bytes, data: bytes) -> None:
        if channel.startswith(self._channel_b):
            self._on_broadcast(channel, data)
        elif channel == self._request_channel_b:
            await self._on_request(data)
        elif channel in self._response_channels_b:
            self._on_response(data)
        else:
            raise _Foreign("unknown channel")

    def _on_broadcast(self, channel: bytes, data: bytes) -> None:
        room_part = channel[len(self._channel_b) :]
        if room_part:
            if not room_part.endswith(b"#"):
                raise _Foreign("not a room channel")
            try:
                room = room_part[:-1].decode()
            except UnicodeDecodeError:
                raise _Foreign("room name is not UTF-8") from None
            if room not in self.rooms:
                self._counters.ignored += 1  # no local member: not worth decoding
                return
        message = self._unpack(data)
        if not isinstance(message, list) or len(message) != 3:
            raise _Malformed("not [uid, packet, opts]")
        uid, packet, opts = message
        if not isinstance(uid, str) or len(uid) > 128:
            raise _Malformed("bad uid")
        if uid == self.uid:
            self._counters.ignored_own += 1
            return
        event = self._event_data(packet)
        self._deliver(SocketPacket(PacketType.EVENT, self.namespace.name, event), opts)

    def _deliver(self, packet: SocketPacket, opts: Any) -> None:
        options = _parse_options(opts)
        try:
            self.broadcast_local(packet, options)
        except (TypeError, ValueError, RecursionError) as exc:  # not representable as JSON
            raise _Malformed(f"payload cannot be sent to clients: {exc}") from None

    def _event_data(self, packet: Any) -> list[Any]:
        """The ``data`` of an EVENT packet object from the cluster, checked."""
        if not isinstance(packet, dict):
            raise _Malformed("packet is not an object")
        if packet.get("nsp", "/") != self.namespace.name:
            raise _Foreign("another namespace")
        if packet.get("type") not in (PacketType.EVENT.value, PacketType.BINARY_EVENT.value):
            raise _Malformed("not an EVENT packet")
        data = packet.get("data")
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise _Malformed("bad event data")
        return data

    async def _on_request(self, data: bytes) -> None:
        request = self._decode(data)
        if not isinstance(request, dict):
            raise _Malformed("request is not an object")
        uid = request.get("uid")
        if uid is not None and not isinstance(uid, str):
            raise _Malformed("bad uid")
        if uid == self.uid:
            self._counters.ignored_own += 1
            return
        kind = request.get("type")
        request_id = request.get("requestId")
        if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 128):
            raise _Malformed("bad requestId")
        if kind == RequestType.SOCKETS:
            opts = BroadcastOptions(rooms=frozenset(_room_list(request.get("rooms"))))
            ids = [socket.id for socket in self.select(opts)]
            await self._answer(uid, request_id, {"sockets": ids})
        elif kind == RequestType.ALL_ROOMS:
            await self._answer(uid, request_id, {"rooms": list(self.rooms)})
        elif kind in (RequestType.REMOTE_JOIN, RequestType.REMOTE_LEAVE):
            await self._on_join_or_leave(kind, request, uid, request_id)
        elif kind == RequestType.REMOTE_DISCONNECT:
            await self._on_disconnect(request, uid, request_id)
        elif kind == RequestType.REMOTE_FETCH:
            opts = _parse_options(request.get("opts"))
            sockets = [self._describe_socket(socket) for socket in self.select(opts)]
            await self._answer(uid, request_id, {"sockets": sockets})
        elif kind == RequestType.SERVER_SIDE_EMIT:
            event = request.get("data")
            if not isinstance(event, list) or not event or not isinstance(event[0], str):
                raise _Malformed("bad server-side event")
            await self._spawn(self._serve_server_event, event[0], event[1:], request_id)
        elif kind == RequestType.BROADCAST:
            if request_id is None:
                raise _Malformed("BROADCAST without requestId")
            event = self._event_data(request.get("packet"))
            opts = _parse_options(request.get("opts"))
            relay = _AckRelay(self, request_id, uid)
            packet = SocketPacket(
                PacketType.EVENT, self.namespace.name, event, self.namespace._next_ack_id()
            )
            try:
                count = self.broadcast_with_ack_local(packet, opts, relay)
            except (TypeError, ValueError, RecursionError) as exc:
                raise _Malformed(f"payload cannot be sent to clients: {exc}") from None
            answer = {
                "type": RequestType.BROADCAST_CLIENT_COUNT.value,
                "requestId": request_id,
                "clientCount": count,
                "uid": self.uid,
            }
            await self._respond(uid, self._dumps(answer))
        else:
            raise _Foreign(f"unknown request type {kind!r}")

    async def _answer(self, requester: str | None, request_id: str | None, body: Any) -> None:
        if request_id is None:
            raise _Malformed("request without requestId")
        await self._respond(
            requester, self._dumps({"requestId": request_id, **body, "uid": self.uid})
        )

    async def _on_join_or_leave(
        self, kind: RequestType, request: dict[str, Any], uid: str | None, request_id: str | None
    ) -> None:
        join = kind == RequestType.REMOTE_JOIN
        if "opts" in request:  # socketsJoin / socketsLeave: no answer expected
            opts = _parse_options(request.get("opts"))
            rooms = _room_list(request.get("rooms"))
            if join:
                await Adapter.add_sockets(self, opts, rooms)
            else:
                await Adapter.del_sockets(self, opts, rooms)
            return
        # The older form, one socket by id (answered only by the node that has it).
        sid, room = request.get("sid"), request.get("room")
        if not isinstance(sid, str) or not isinstance(room, str):
            raise _Malformed("bad sid/room")
        socket = self.namespace.sockets.get(sid)
        if socket is None:
            self._counters.ignored += 1
            return
        if join:
            socket.join(room)
        else:
            socket.leave(room)
        await self._answer(uid, request_id, {})

    async def _on_disconnect(
        self, request: dict[str, Any], uid: str | None, request_id: str | None
    ) -> None:
        close = request.get("close", False)
        if not isinstance(close, bool):
            raise _Malformed("bad close flag")
        if "opts" in request:
            opts = _parse_options(request.get("opts"))
            for socket in list(self.select(opts)):
                await self._spawn(socket.disconnect, close=close)
            return
        sid = request.get("sid")
        if not isinstance(sid, str):
            raise _Malformed("bad sid")
        target = self.namespace.sockets.get(sid)
        if target is None:
            self._counters.ignored += 1
            return
        await self._spawn(target.disconnect, close=close)
        await self._answer(uid, request_id, {})

    async def _spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> None:
        """Run ``fn`` as a task of the adapter, at most ``max_handler_tasks`` at once."""
        assert self._nursery is not None
        await self._task_slots.acquire()

        async def task() -> None:
            try:
                await fn(*args, **kwargs)
            finally:
                self._task_slots.release()

        self._nursery.start_soon(task)

    async def _serve_server_event(
        self, event: str, args: list[Any], request_id: str | None
    ) -> None:
        handler = self.namespace.handlers.server_events.get(event)
        result: Any = None
        if handler is not None:
            try:
                result = await handler(*args)
            except Exception:
                if self.namespace.server.handler_errors == "raise":
                    raise
                logger.exception("%r: server-side event handler for %r failed", self, event)
                return  # no answer: the requester sees this node missing
        if request_id is None:
            return
        answer = {
            "type": RequestType.SERVER_SIDE_EMIT.value,
            "requestId": request_id,
            "data": result,
            "uid": self.uid,
        }
        try:
            payload = self._dumps(answer)
        except (TypeError, ValueError) as exc:
            logger.warning(
                "%r: the answer to server-side event %r is not JSON: %s", self, event, exc
            )
            return
        # Node's adapter answers server-side events on the shared channel, whatever the option.
        await self._publish(self._response_channel, payload)

    def _on_response(self, data: bytes) -> None:
        response = self._decode(data)
        if not isinstance(response, dict):
            raise _Malformed("response is not an object")
        request_id = response.get("requestId")
        if not isinstance(request_id, str):
            raise _Malformed("response without requestId")
        collector = self._ack_requests.get(request_id)
        if collector is not None:
            kind = response.get("type")
            if kind == RequestType.BROADCAST_CLIENT_COUNT:
                count = response.get("clientCount")
                if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                    raise _Malformed("bad clientCount")
                collector._node_reported(count)
            elif kind == RequestType.BROADCAST_ACK:
                collector._settle_remote(response.get("packet"))
            else:
                raise _Malformed("bad broadcast answer")
            if collector.complete:
                del self._ack_requests[request_id]
            return
        pending = self._requests.get(request_id)
        if pending is None:
            self._counters.ignored += 1  # another node's request, or one already finished
            return
        responder = response.get("uid")
        if not isinstance(responder, str):
            responder = None
        if pending.kind == RequestType.REMOTE_FETCH:
            sockets = response.get("sockets")
            entries = sockets if isinstance(sockets, list) else []
            remote = [self._remote_socket(entry) for entry in entries]
            pending.add([socket for socket in remote if socket is not None], responder)
            if len(entries) != sum(socket is not None for socket in remote) or not isinstance(
                sockets, list
            ):
                self._counters.dropped_malformed += 1
        elif pending.kind == RequestType.ALL_ROOMS:
            pending.add(_room_list(response.get("rooms")), responder)
        else:  # SERVER_SIDE_EMIT
            pending.add([response.get("data")], responder)

    def _remote_socket(self, entry: Any) -> RemoteSocket | None:
        if not isinstance(entry, dict):
            return None
        sid = entry.get("id")
        if not isinstance(sid, str):
            return None
        try:
            rooms = frozenset(_room_list(entry.get("rooms")))
        except _Malformed:
            return None
        handshake = entry.get("handshake")
        return RemoteSocket(
            namespace=self.namespace,
            id=sid,
            rooms=rooms,
            data=entry.get("data"),
            handshake=handshake if isinstance(handshake, dict) else {},
        )

    def _describe_socket(self, socket: Socket) -> dict[str, Any]:
        """A local socket as Node's adapter describes one in a ``REMOTE_FETCH`` answer."""
        description: dict[str, Any] = {
            "id": socket.id,
            "handshake": node_handshake(socket.handshake),
            "rooms": sorted(socket.rooms),
            "data": socket.data,
        }
        try:
            self._json.dumps(description)
        except (TypeError, ValueError):
            logger.warning("%r: the data of %r is not JSON; sent as null", self, socket)
            description["data"] = None
        return description

    # --- decoding -----------------------------------------------------------------------

    def _unpack(self, data: bytes) -> Any:
        try:
            value = msgpack.unpackb(data, raw=False, ext_hook=_ext_hook, strict_map_key=True)
            return _sanitize(value, self.options.max_depth + 3)
        except Exception as exc:  # msgpack raises several kinds; none may escape
            raise _Malformed(f"not msgpack: {type(exc).__name__}") from None

    def _decode(self, data: bytes) -> Any:
        """A request or response: JSON when it starts with ``{``, msgpack otherwise."""
        if data[:1] != b"{":
            return self._unpack(data)
        try:
            return self._json.loads(data.decode())
        except (ProtocolError, UnicodeDecodeError) as exc:
            raise _Malformed(f"not JSON: {exc}") from None


# --- helpers ---------------------------------------------------------------------------------


def _wire_selection(opts: BroadcastOptions) -> dict[str, Any]:
    return {"rooms": list(opts.rooms), "except": list(opts.except_rooms)}


def _wire_options(opts: BroadcastOptions) -> dict[str, Any]:
    wire = _wire_selection(opts)
    wire["flags"] = {"volatile": True} if opts.volatile else {}
    return wire


def _room_list(value: Any) -> list[str]:
    """Rooms from the wire: a list of strings (Node rooms may be numbers: made strings)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Malformed("rooms are not a list")
    rooms = []
    for room in value:
        if isinstance(room, str):
            rooms.append(room)
        elif isinstance(room, int) and not isinstance(room, bool):
            rooms.append(str(room))
        else:
            raise _Malformed("a room is not a string")
    return rooms


def _parse_options(opts: Any) -> BroadcastOptions:
    """``{rooms, except, flags}`` from the wire as :class:`BroadcastOptions`."""
    if opts is None:
        return BroadcastOptions()
    if not isinstance(opts, dict):
        raise _Malformed("opts is not an object")
    flags = opts.get("flags")
    if flags is not None and not isinstance(flags, dict):
        raise _Malformed("flags is not an object")
    return BroadcastOptions(
        rooms=frozenset(_room_list(opts.get("rooms"))),
        except_rooms=frozenset(_room_list(opts.get("except"))),
        volatile=bool(flags and flags.get("volatile")),
    )


def _ext_hook(code: int, data: bytes) -> Any:
    # notepack.io's own extension type 0: ``undefined`` (fixext 1) or an ArrayBuffer.
    if code == 0:
        return None if data == b"\x00" else bytes(data)
    raise ValueError(f"msgpack extension type {code}")


def _iso(timestamp: msgpack.Timestamp) -> str:
    """A msgpack timestamp (a JavaScript ``Date``) as ``Date.toJSON`` writes it."""
    moment: datetime.datetime = timestamp.to_datetime()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _sanitize(value: Any, max_depth: int) -> Any:
    """Check the nesting depth (iteratively) and turn msgpack timestamps into strings."""
    if isinstance(value, msgpack.Timestamp):
        return _iso(value)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise ValueError(f"nested deeper than {max_depth}")
        keys: Iterable[Any] = item.keys() if isinstance(item, dict) else range(len(item))
        for key in keys:
            child = item[key]
            if isinstance(child, list | dict):
                stack.append((child, depth + 1))
            elif isinstance(child, msgpack.Timestamp):
                item[key] = _iso(child)
    return value


_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def _safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    return re.sub(r"//[^@/]*@", "//***@", url)


def _describe(error: BaseException | None) -> str:
    """The innermost error of a (possibly grouped) connection failure, in one line."""
    while error is not None and getattr(error, "exceptions", None):
        error = error.exceptions[0]  # type: ignore[attr-defined]
    if error is None:
        return "connection closed"
    return f"{type(error).__name__}: {error}"
