"""What the Redis adapters share: their settings and counters, and one connection to Redis kept
alive (a subscriber and a command connection per namespace, reconnecting with backoff).

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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import trio

try:
    import coredis
    from anyio import BrokenResourceError, ClosedResourceError
    from coredis.exceptions import ConnectionError as RedisConnectionError
    from coredis.patterns.pubsub import PubSub
    from coredis.retry import NoRetryPolicy
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the Redis adapters need coredis and msgpack: pip install 'trio-sio[redis]'"
    ) from exc

from .._protocol.codec import DEFAULT_MAX_JSON_DEPTH
from ._base import ClusterAdapter, ClusterSettings, WireFormat

if TYPE_CHECKING:
    from .._namespace import Namespace

_A = TypeVar("_A", bound="RedisAdapterBase")

__all__ = [
    "PubSub",
    "RedisAdapterBase",
    "RedisAdapterOptions",
    "RedisAdapterStatistics",
    "Subscriber",
]


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


class Subscriber(PubSub[bytes]):
    """coredis's subscriber, leaving cleanly after its connection died."""

    def _execute_command(self, command: bytes, *args: Any) -> None:
        # Leaving after the connection died (Redis restarted, then the adapter cancelled),
        # coredis's cleanup expects its own ConnectionError; the stream raises anyio's.
        try:
            super()._execute_command(command, *args)
        except (ClosedResourceError, BrokenResourceError) as exc:
            raise RedisConnectionError("the subscriber connection is closed") from exc


class RedisAdapterBase(ClusterAdapter):
    """A :class:`~trio_sio.adapters._base.ClusterAdapter` over one Redis server.

    Attributes:
        url: the Redis URL (``redis://[:password@]host:port/db``, ``rediss://``, ``unix://``).
        options: its :class:`RedisAdapterOptions`.
    """

    #: The logger of the adapter's module.
    logger: logging.Logger

    def __init__(
        self, namespace: Namespace, url: str, options: RedisAdapterOptions | None = None
    ) -> None:
        options = options or RedisAdapterOptions()
        wire = self._make_wire(namespace, options, secrets.token_hex(4))
        super().__init__(namespace, options.cluster_settings(), wire, self.logger)
        self.url = url
        self.options = options
        self._client: coredis.Redis[bytes] | None = None

    @classmethod
    def factory(
        cls: type[_A], url: str, options: RedisAdapterOptions | None = None
    ) -> Callable[[Namespace], _A]:
        """An ``adapter_factory`` for :class:`~trio_sio.Server`: every namespace gets an
        adapter on ``url`` with ``options``."""

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

    def _open_pubsub(self, client: coredis.Redis[bytes]) -> PubSub[bytes]:
        """The subscriber (not yet entered)."""
        return Subscriber(client.connection_pool, **self._pubsub_settings())

    def _pubsub_settings(self) -> dict[str, Any]:
        # No retries inside coredis: _keep_connected reconnects, and logs the outage once.
        return {
            "ignore_subscribe_messages": True,
            "retry_policy": NoRetryPolicy(),
            "subscription_timeout": self.options.connect_timeout,
        }

    async def _subscribe(self, pubsub: PubSub[bytes]) -> None:
        """Subscribe to this namespace's channels."""
        raise NotImplementedError

    async def _count_subscribers(self, client: coredis.Redis[bytes]) -> int:
        """How many nodes (this one included) subscribe to this namespace."""
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

    def _new_client(self, *, blocking: float = 0.0) -> coredis.Redis[bytes]:
        """A Redis client on :attr:`url` (``blocking``: the longest a command of it blocks on
        the server, added to ``command_timeout``)."""
        options = self.options
        return coredis.Redis.from_url(
            self.url,
            decode_responses=False,
            retry_policy=NoRetryPolicy(),
            connect_timeout=options.connect_timeout,
            stream_timeout=options.command_timeout + blocking,
        )

    @asynccontextmanager
    async def _open_redis(self) -> AsyncIterator[Any]:
        """Connect and subscribe; yields what :meth:`_serve_connection` reads from."""
        options = self.options
        client = self._new_client()
        async with client, self._open_pubsub(client) as pubsub:
            await self._subscribe(pubsub)
            with trio.fail_after(options.command_timeout):
                await client.ping()
            self._client = client
            self._connected = True
            yield pubsub

    async def _read(self, pubsub: PubSub[bytes]) -> None:
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
            async with client.pipeline(transaction=False) as pipe:
                for channel, payload in batch:
                    self._queue_publish(pipe, channel, payload)

    def _queue_publish(self, pipe: Any, channel: str, payload: bytes) -> None:
        """Add one publish command to ``pipe``."""
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
