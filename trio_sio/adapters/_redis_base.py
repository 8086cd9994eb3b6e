"""What the Redis adapters share: their settings and counters, where Redis is (one server, a
Redis Cluster or a primary found through Sentinel), and one connection to it kept alive (a
subscriber and a command connection per namespace, reconnecting with backoff).

:mod:`trio_sio.adapters.redis` (classic pub/sub) and :mod:`trio_sio.adapters.redis_sharded`
(Redis 7 sharded pub/sub) each add their subscriptions, their publish command and their way of
counting the nodes; :mod:`trio_sio.adapters.redis_streams` replaces the subscriber with a
reader of one stream.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar
from urllib.parse import unquote, urlsplit

import trio

try:
    import coredis
    from anyio import BrokenResourceError, ClosedResourceError
    from coredis import RedisCluster
    from coredis.connection import ClusterConnection, TCPLocation
    from coredis.exceptions import ConnectionError as RedisConnectionError
    from coredis.patterns.pubsub import ClusterPubSub, PubSub
    from coredis.pool import ClusterConnectionPool
    from coredis.retry import NoRetryPolicy
    from coredis.typing import Node
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the Redis adapters need coredis and msgpack: pip install 'trio-sio[redis]'"
    ) from exc

from .._protocol.codec import DEFAULT_MAX_JSON_DEPTH
from ._base import ClusterAdapter, ClusterSettings, WireFormat

if TYPE_CHECKING:
    from coredis.patterns.pubsub import BasePubSub

    from .._namespace import Namespace

_A = TypeVar("_A", bound="RedisAdapterBase")

__all__ = [
    "RedisAdapterBase",
    "RedisAdapterOptions",
    "RedisAdapterStatistics",
    "RedisCluster",
    "RedisConnectionError",
    "RedisLocation",
    "Subscriber",
    "parse_redis_url",
]

if TYPE_CHECKING:
    #: A client of one server (or of a Sentinel's primary) or of a Redis Cluster.
    RedisClient: TypeAlias = coredis.Redis[bytes] | coredis.RedisCluster[bytes]
    #: A subscriber of either.
    AnyPubSub: TypeAlias = BasePubSub[bytes, Any]

_CLUSTER_SCHEME = "redis+cluster"
_SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class RedisLocation:
    """Where an adapter's Redis is, read from its URL by :func:`parse_redis_url`.

    Attributes:
        kind: ``"server"`` (a ``redis://``, ``rediss://`` or ``unix://`` URL, which coredis
            reads itself), ``"cluster"`` or ``"sentinel"``.
        addresses: the cluster's startup nodes, or the Sentinels, as ``(host, port)``.
        service: the name the Sentinels know the primary by.
        db: the database of a Sentinel's primary (a cluster has only database 0).
        username, password: the Redis servers' credentials (not the Sentinels').
    """

    kind: Literal["server", "cluster", "sentinel"]
    addresses: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_redis_url(url: str) -> RedisLocation:
    """Read an adapter's URL; :class:`ValueError` says what is wrong with one.

    Besides coredis's own URLs of one server, two forms (ports default to 6379 and 26379)::

        redis+cluster://[[username]:password@]host:port[,host:port...][/]
        redis+sentinel://[[username]:password@]host:port[,host:port...]/service[/db]
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme not in (_CLUSTER_SCHEME, _SENTINEL_SCHEME):
        return RedisLocation("server")
    if not sep:
        raise ValueError(f"not a Redis URL: {url!r}")
    parts = urlsplit("//" + rest)
    if parts.query or parts.fragment:
        raise ValueError(
            f"{scheme} URLs take no query or fragment; settings are RedisAdapterOptions"
        )
    credentials, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    default_port = 6379 if scheme == _CLUSTER_SCHEME else 26379
    addresses = tuple(_address(entry, default_port, url) for entry in hosts.split(","))
    path = [segment for segment in parts.path.split("/") if segment]
    if scheme == _CLUSTER_SCHEME:
        if path:
            raise ValueError(f"a Redis Cluster has one database: no path in {url!r}")
        return RedisLocation("cluster", addresses, username=username, password=password)
    if not path or len(path) > 2:
        raise ValueError(f"{scheme} URL needs /service[/db]: {url!r}")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise ValueError(f"the database must be a number: {url!r}")
        db = int(path[1])
    return RedisLocation(
        "sentinel", addresses, unquote(path[0]), db, username=username, password=password
    )


def _address(entry: str, default_port: int, url: str) -> tuple[str, int]:
    parts = urlsplit("//" + entry)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"a bad port in {url!r}") from None
    if not parts.hostname:
        raise ValueError(f"a host is missing in {url!r}")
    return parts.hostname, port if port is not None else default_port


@dataclass(frozen=True)
class RedisAdapterOptions:
    """Settings of a :class:`~trio_sio.adapters.redis.RedisAdapter` or a
    :class:`~trio_sio.adapters.redis_sharded.ShardedRedisAdapter` (times in seconds, sizes in
    bytes).

    Attributes:
        key: prefix of every channel; must match the other nodes' (Node: ``opts.key``, or
            ``channelPrefix`` for the sharded adapter).
        requests_timeout: how long fetching sockets or listing rooms waits for the other
            nodes (Node: ``requestsTimeout``).
        ack_timeout: how long acknowledgements of a broadcast made with
            ``emit_with_ack`` are collected from the other nodes.
        publish_on_specific_response_channel: answer a request on the requester's own
            response channel rather than the shared one (Node's option of the same name; the
            sharded adapter always does).
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

    def cluster_settings(self) -> ClusterSettings:
        return ClusterSettings(
            requests_timeout=self.requests_timeout,
            ack_timeout=self.ack_timeout,
            inbound_queue_size=self.inbound_queue_size,
            inbound_queue_bytes=self.inbound_queue_bytes,
            outbound_queue_size=self.outbound_queue_size,
            max_message_size=self.max_message_size,
            max_handler_tasks=self.max_handler_tasks,
        )


@dataclass(frozen=True)
class RedisAdapterStatistics:
    """A snapshot of one namespace's Redis adapter (trio's ``statistics()`` style).

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


@contextmanager
def closed_as_connection_error() -> Iterator[None]:
    """Leaving after the connection died (Redis restarted, then the adapter cancelled),
    coredis's subscriber cleanup expects its own ConnectionError; the stream raises anyio's."""
    try:
        yield
    except (ClosedResourceError, BrokenResourceError) as exc:
        raise RedisConnectionError("the subscriber connection is closed") from exc


class Subscriber(PubSub[bytes]):
    """coredis's subscriber, leaving cleanly after its connection died."""

    def _execute_command(self, command: bytes, *args: Any) -> None:
        with closed_as_connection_error():
            super()._execute_command(command, *args)


class ClusterSubscriber(ClusterPubSub[bytes]):
    """coredis's subscriber on one node of a Redis Cluster (which forwards every ``PUBLISH``
    to every node), leaving cleanly after its connection died."""

    def _execute_command(self, command: bytes, *args: Any) -> None:
        with closed_as_connection_error():
            super()._execute_command(command, *args)


class RedisAdapterBase(ClusterAdapter):
    """A :class:`~trio_sio.adapters._base.ClusterAdapter` over Redis: one server, a Redis
    Cluster or a primary found through Sentinel.

    Attributes:
        url: the Redis URL (``redis://[:password@]host:port/db``, ``rediss://``, ``unix://``,
            ``redis+cluster://host:port,…`` or ``redis+sentinel://host:port,…/service[/db]``).
        options: its :class:`RedisAdapterOptions`.
    """

    #: The logger of the adapter's module.
    logger: logging.Logger

    def __init__(
        self, namespace: Namespace, url: str, options: RedisAdapterOptions | None = None
    ) -> None:
        options = options or RedisAdapterOptions()
        self._location = parse_redis_url(url)
        wire = self._make_wire(namespace, options, secrets.token_hex(4))
        super().__init__(namespace, options.cluster_settings(), wire, self.logger)
        self.url = url
        self.options = options
        self._client: RedisClient | None = None

    @classmethod
    def factory(
        cls: type[_A], url: str, options: RedisAdapterOptions | None = None
    ) -> Callable[[Namespace], _A]:
        """An ``adapter_factory`` for :class:`~trio_sio.Server`: every namespace gets an
        adapter on ``url`` with ``options``. A malformed cluster or Sentinel URL fails here
        (:class:`ValueError`)."""
        parse_redis_url(url)

        def make(namespace: Namespace) -> _A:
            return cls(namespace, url, options)

        return make

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

    # --- what each Redis adapter supplies -----------------------------------------------

    def _make_wire(
        self, namespace: Namespace, options: RedisAdapterOptions, uid: str
    ) -> WireFormat:
        """The wire format (called before the adapter is initialised)."""
        raise NotImplementedError

    def _open_pubsub(self, client: RedisClient) -> AbstractAsyncContextManager[Any]:
        """The subscriber (not yet entered), which :meth:`_subscribe` and :meth:`_read` use."""
        if isinstance(client, coredis.RedisCluster):
            return ClusterSubscriber(client.connection_pool, **self._pubsub_settings())
        return Subscriber(client.connection_pool, **self._pubsub_settings())

    def _pubsub_settings(self) -> dict[str, Any]:
        # No retries inside coredis: _keep_connected reconnects, and logs the outage once.
        return {
            "ignore_subscribe_messages": True,
            "retry_policy": NoRetryPolicy(),
            "subscription_timeout": self.options.connect_timeout,
        }

    async def _subscribe(self, pubsub: Any) -> None:
        """Subscribe to this namespace's channels (``pubsub``: what :meth:`_open_pubsub`
        gave, entered)."""
        raise NotImplementedError

    async def _count_subscribers(self, client: RedisClient) -> int:
        """How many nodes (this one included) subscribe to this namespace (on a Redis
        Cluster, coredis asks every node and adds up: a node counts its own subscribers)."""
        raise NotImplementedError

    async def _serve_connection(self, connection: Any) -> None:
        """While connected: move what arrives into the inbound queue (``connection`` is what
        :meth:`_open_redis` gave: the subscriber, for the pub/sub adapters)."""
        await self._read(connection)

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the Redis connections, handle what arrives and publish what leaves, until
        cancelled. Reports started once subscribed, or after the first failed attempt."""
        try:
            async with trio.open_nursery() as nursery:
                await self._run_queues(nursery)
                await nursery.start(self._keep_connected)
                task_status.started()
        finally:
            self._stopped()
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
                        self._logger.info(
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
                    await self._serve_connection(pubsub)
            except Exception as exc:  # a connection failure, whatever shape coredis gives it
                error = exc
            finally:
                self._connected = False
                self._client = None
            if down_since is None:
                down_since = trio.current_time()
                self._counters.outages += 1
                self._logger.warning(
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
        """Raise unless Redis's address (for Sentinel: one of its addresses) accepts
        connections. A cluster's is tried by :meth:`_connect`, which starts from it.

        A failed connection attempt inside coredis leaves its connection's stream objects
        unclosed (they warn when collected), so while Redis is down the retries stop here.
        """
        location = self._location
        if location.kind == "cluster":
            return
        with trio.fail_after(self.options.connect_timeout):
            if location.kind != "server":
                stream, _ = await _open_any(location.addresses)
            else:
                parts = urlsplit(self.url)
                if parts.scheme in ("redis", "rediss"):
                    stream = await trio.open_tcp_stream(
                        parts.hostname or "localhost", parts.port or 6379
                    )
                elif parts.scheme == "unix":
                    stream = await trio.open_unix_socket(parts.path)
                else:
                    return
        await stream.aclose()

    @asynccontextmanager
    async def _connect(self, *, blocking: float = 0.0) -> AsyncIterator[RedisClient]:
        """A Redis client on :attr:`url`, entered (``blocking``: the longest a command of it
        blocks on the server, added to ``command_timeout``)."""
        location = self._location
        connect_timeout = self.options.connect_timeout
        stream_timeout = self.options.command_timeout + blocking
        # No retries inside coredis: _keep_connected reconnects, and logs the outage once.
        if location.kind == "cluster":
            # coredis learns the cluster's layout from the startup nodes in order, and each
            # failed connection attempt inside it leaks (see _probe): start with a node that
            # accepts, and do not ask every node for its full-coverage setting (which would
            # reach the primaries that are down).
            with trio.fail_after(connect_timeout):
                probe, reachable = await _open_any(location.addresses)
            await probe.aclose()
            addresses = [reachable, *(a for a in location.addresses if a != reachable)]
            cluster = coredis.RedisCluster(
                startup_nodes=[Node(host=host, port=port) for host, port in addresses],
                username=location.username,
                password=location.password,
                decode_responses=False,
                retry_policy=NoRetryPolicy(),
                connect_timeout=connect_timeout,
                stream_timeout=stream_timeout,
                skip_full_coverage_check=True,
                connection_pool_cls=_ClusterPool,
            )
            try:
                async with cluster:
                    yield cluster
            finally:
                _close_layout_errors(cluster)
        elif location.kind == "sentinel":
            # The Sentinels are asked where the primary is for every new connection, so a
            # reconnection after a failover finds the new primary.
            sentinels = coredis.Sentinel(
                [TCPLocation(host, port) for host, port in location.addresses],
                decode_responses=False,
                connect_timeout=connect_timeout,
                stream_timeout=stream_timeout,
            )
            async with sentinels:
                # Until the Sentinels fail over, they name the primary that died, and a failed
                # connection attempt inside coredis leaks (see _probe): try its address first.
                host, port = await sentinels.discover_primary(location.service)
                with trio.fail_after(connect_timeout):
                    await _check_accepts(host, port)
                primary = sentinels.primary_for(
                    location.service,
                    db=location.db,
                    username=location.username,
                    password=location.password,
                )
                async with primary:
                    yield primary
        else:
            client = coredis.Redis.from_url(
                self.url,
                decode_responses=False,
                retry_policy=NoRetryPolicy(),
                connect_timeout=connect_timeout,
                stream_timeout=stream_timeout,
            )
            async with client:
                yield client

    @asynccontextmanager
    async def _node_client(self, host: str, port: int) -> AsyncIterator[coredis.Redis[bytes]]:
        """A client of one node of the cluster, with its credentials, entered. The cluster
        names a primary that is down until it fails over, and a failed connection attempt
        inside coredis leaks (see _probe): the node's address is tried first."""
        location = self._location
        with trio.fail_after(self.options.connect_timeout):
            await _check_accepts(host, port)
        async with coredis.Redis(
            host,
            port,
            username=location.username,
            password=location.password,
            decode_responses=False,
            retry_policy=NoRetryPolicy(),
            connect_timeout=self.options.connect_timeout,
            stream_timeout=self.options.command_timeout,
        ) as client:
            yield client

    @asynccontextmanager
    async def _open_redis(self) -> AsyncIterator[Any]:
        """Connect and subscribe; yields what :meth:`_serve_connection` reads from."""
        options = self.options
        async with self._connect() as client, self._open_pubsub(client) as pubsub:
            await self._subscribe(pubsub)
            with trio.fail_after(options.command_timeout):
                await client.ping()
            self._client = client
            self._connected = True
            yield pubsub

    async def _read(self, pubsub: AnyPubSub) -> None:
        """Move messages from the subscriber connection to the bounded inbound queue (the
        task does nothing else, so coredis's own unbounded buffers stay drained)."""
        while True:
            message = await pubsub.get_message()
            if message is None or message["type"] not in ("message", "pmessage"):
                continue
            channel = message["channel"]
            data = message["data"]
            if not isinstance(channel, bytes) or not isinstance(data, bytes):
                self._counters.received += 1
                self._counters.dropped_malformed += 1
                continue
            self._received(channel, data)

    async def _publish_batch(self, batch: list[tuple[str, bytes]]) -> None:
        client = self._client
        if client is None:
            raise ConnectionError("not connected")
        with trio.fail_after(self.options.command_timeout):
            if not isinstance(client, coredis.RedisCluster):
                async with client.pipeline(transaction=False) as pipe:
                    for channel, payload in batch:
                        self._queue_publish(pipe, channel, payload)
                return
            # coredis's cluster pipeline routes a command by its key, and fails on PUBLISH,
            # which has none (any node forwards it to all): those go one by one, in order.
            keyed = [item for item in batch if self._publish_has_key(item[0])]
            if keyed:
                async with client.pipeline(transaction=False) as pipe:
                    for channel, payload in keyed:
                        self._queue_publish(pipe, channel, payload)
            for channel, payload in batch:
                if not self._publish_has_key(channel):
                    await self._queue_publish(client, channel, payload)

    def _queue_publish(self, target: Any, channel: str, payload: bytes) -> Any:
        """The publish command of ``payload`` on ``channel``, on ``target`` (a pipeline:
        queued; a client: the awaitable command)."""
        raise NotImplementedError

    def _publish_has_key(self, channel: str) -> bool:
        """Whether the publish command on ``channel`` names a key (so a Redis Cluster routes
        it to one slot): ``SPUBLISH`` and ``XADD`` do, ``PUBLISH`` does not."""
        raise NotImplementedError

    async def _other_nodes(self) -> int | None:
        client = self._client
        if client is None or not self._connected:
            # No network call to wait for, but still a checkpoint: the cluster operations
            # that ask this (server_count, fetch_sockets, all_rooms) must be one either way.
            await trio.lowlevel.checkpoint()
            return None
        try:
            with trio.fail_after(self.options.command_timeout):
                count = await self._count_subscribers(client)
        except Exception as exc:
            self._logger.debug("%r: counting the nodes failed: %s", self, exc)
            return None
        return max(0, count - 1)


def _close_layout_errors(cluster: coredis.RedisCluster[bytes]) -> None:
    """coredis 6.9 never closes the memory stream that feeds a cluster client's layout
    monitor, which then warns (``ResourceWarning``) when collected: close it once the client
    is done. Looked up defensively, as a private attribute that a later coredis may drop."""
    layout = getattr(cluster.connection_pool, "cluster_layout", None)
    for stream in getattr(layout, "_error_stream", ()):
        stream.close()


class _ClusterConnection(ClusterConnection):
    """coredis 6.9 opens six memory streams with each connection and closes them only
    once connected. :meth:`_probe` cannot keep a cluster's attempts from failing: it
    reaches one node, while a command may go to a primary that is down, and each failed
    attempt leaves six streams that warn (``ResourceWarning``) when collected. This
    connection closes them when it ends. Looked up defensively, as private attributes."""

    async def run(self, **kwargs: Any) -> None:
        try:
            await super().run(**kwargs)
        finally:
            for name in _CONNECTION_STREAMS:
                stream = getattr(self, name, None)
                if stream is not None:
                    stream.close()


_CONNECTION_STREAMS = (
    "_push_message_buffer_in",
    "_push_message_buffer_out",
    "_streamed_message_buffer_in",
    "_streamed_message_buffer_out",
    "_write_buffer_in",
    "_write_buffer_out",
)


class _ClusterPool(ClusterConnectionPool):
    """A cluster's connection pool, making :class:`_ClusterConnection` connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, connection_class=_ClusterConnection, **kwargs)


async def _check_accepts(host: str, port: int) -> None:
    """Raise unless ``host:port`` accepts a connection."""
    stream = await trio.open_tcp_stream(host, port)
    await stream.aclose()


async def _open_any(
    addresses: tuple[tuple[str, int], ...],
) -> tuple[trio.SocketStream, tuple[str, int]]:
    """A connection to the first of ``addresses`` that accepts one, and its address."""
    error: OSError | None = None
    for host, port in addresses:
        try:
            return await trio.open_tcp_stream(host, port), (host, port)
        except OSError as exc:
            error = exc
    assert error is not None  # parse_redis_url gives at least one address
    raise error


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
