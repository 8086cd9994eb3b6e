"""A cluster adapter over Redis 7 sharded pub/sub, wire-compatible with Node's
``@socket.io/redis-adapter`` 8.3 ``createShardedAdapter``.

Sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``) is what the classic adapter outgrows into: on a
Redis Cluster a shard channel lives on one shard instead of being copied to every node, and
even on one server a node only receives the rooms it has members of. Node servers created with
``createShardedAdapter(pub, sub, {channelPrefix, subscriptionMode})`` and trio_sio servers
share one cluster::

    from trio_sio.adapters.redis_sharded import ShardedRedisAdapter

    sio = trio_sio.Server(
        adapter_factory=ShardedRedisAdapter.factory("redis://127.0.0.1:6379/0")
    )

Channels (``<prefix>`` is :attr:`~trio_sio.adapters.redis.RedisAdapterOptions.key`,
``"socket.io"`` by default, Node's ``channelPrefix``):

- ``<prefix>#<nsp>#``: every message of the namespace (``socket.io-adapter``'s
  ``ClusterAdapter`` messages ``{uid, nsp, type, data}``, JSON unless they carry binary, then
  msgpack), except
- ``<prefix>#<nsp>#<room>#``: broadcasts to that one room alone, without acknowledgements,
  with ``subscription_mode="dynamic"`` (the default: public rooms, not sockets' own rooms) or
  ``"dynamic-private"`` (every room). A node subscribes to the channel of each such room it
  has members in, while it has them; ``"static"`` keeps to the namespace channel. Every node
  of a cluster must use the same mode.
- ``<prefix>#<nsp>#<uid>#``: the answers to this node's requests.

The number of nodes is ``PUBSUB SHARDNUMSUB <prefix>#<nsp>#``. Redis 7 serves sharded pub/sub
on a single server too (Debian 12's 7.0 does).

On a Redis Cluster (``redis+cluster://host:port,…``, see :mod:`trio_sio.adapters.redis`) each
channel lives on the shard that owns its slot: the adapter keeps a subscriber connection to
every primary and subscribes to each channel on its slot's owner, ``SPUBLISH`` goes to that
owner, and the servers are counted by adding up every node's ``PUBSUB SHARDNUMSUB``. A room's
traffic then loads one shard only. The slots are read once per connection, and resharding
is not followed yet: when a slot moves, Redis drops the subscriptions of its channels, and
the adapter subscribes to them again only when it next reconnects (a primary that restarts or
fails over makes it reconnect).

Lifecycle, back-pressure and hostile input are as for :mod:`trio_sio.adapters.redis` (the same
:class:`~trio_sio.adapters.redis.RedisAdapterOptions` and
:class:`~trio_sio.adapters.redis.RedisAdapterStatistics`; the option
``publish_on_specific_response_channel`` does not apply: answers always go to the requester's
channel). Node's sharded adapter has no ``allRooms`` request, so neither has this one.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import trio

from ._redis_base import (
    RedisAdapterBase,
    RedisAdapterOptions,
    RedisCluster,
    RedisConnectionError,
    Subscriber,
    parse_redis_url,
)
from ._wire import ShardedWire, SubscriptionMode
from ._wire import subscription_mode as checked_mode

if TYPE_CHECKING:
    from .._namespace import Namespace
    from ._redis_base import RedisClient

__all__ = ["ShardedRedisAdapter", "SubscriptionMode"]


class _ShardChannels(Subscriber):
    """coredis's subscriber on one (non-cluster) connection, subscribing with
    ``SSUBSCRIBE``/``SUNSUBSCRIBE``: its own ``ShardedPubSub`` needs a Redis Cluster client.
    Shard messages arrive as ordinary ``message`` entries."""

    async def subscribe(self, *channels: Any, **channel_handlers: Any) -> None:
        new = [self._encode(channel) for channel in channels]
        waiters = {channel: trio.Event() for channel in new}
        for channel, event in waiters.items():
            self._subscription_waiters[channel].append(event)  # type: ignore[arg-type]
        for channel in new:  # one command per channel: a cluster wants one slot per command
            self._execute_command(b"SSUBSCRIBE", channel)
        await self._ensure_subscribed(waiters)  # type: ignore[arg-type]
        self.channels.update(dict.fromkeys(new))

    async def unsubscribe(self, *channels: Any) -> None:
        waiters = {self._encode(channel): trio.Event() for channel in channels or self.channels}
        for channel, event in waiters.items():
            self._unsubscription_waiters[channel].append(event)  # type: ignore[arg-type]
        self._unsubscribe(*channels)
        await self._ensure_unsubscribed(waiters)  # type: ignore[arg-type]

    def _unsubscribe(self, *channels: Any) -> None:
        self._execute_command(b"SUNSUBSCRIBE", *channels)


CLUSTER_SLOTS = 16384


def key_slot(name: bytes) -> int:
    """The Redis Cluster slot of a key or shard channel, as Redis computes it: CRC16 (XMODEM)
    of its hash tag (the text between the first ``{`` and the next ``}``, if not empty) or of
    the whole name, modulo 16384."""
    start = name.find(b"{")
    if start >= 0:
        end = name.find(b"}", start + 1)
        if end > start + 1:
            name = name[start + 1 : end]
    crc = 0
    for byte in name:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc % CLUSTER_SLOTS


class _ClusterShardChannels:
    """Sharded subscriptions on a Redis Cluster: a :class:`_ShardChannels` on each primary,
    each channel subscribed on the primary that owns its slot (where ``SPUBLISH`` delivers
    it), as the slots were when it connected.

    Not coredis's ``ShardedPubSub``: leaving after a node failed, that one neither releases
    the connections it took nor lets their errors through as ConnectionError.
    """

    def __init__(self, adapter: ShardedRedisAdapter, cluster: RedisCluster[bytes]) -> None:
        self._adapter = adapter
        self._cluster = cluster
        #: The first slot of each range, and the range's last slot and primary, in order.
        self._firsts: list[int] = []
        self._ranges: list[tuple[int, tuple[str, int]]] = []
        self.subscribers: dict[tuple[str, int], _ShardChannels] = {}
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> _ClusterShardChannels:
        with trio.fail_after(self._adapter.options.command_timeout):
            layout = await self._cluster.cluster_slots()
        async with AsyncExitStack() as stack:
            for (first, last), nodes in sorted(layout.items()):
                primary = (nodes[0]["host"], nodes[0]["port"])
                self._firsts.append(first)
                self._ranges.append((last, primary))
                if primary in self.subscribers:
                    continue
                client = await stack.enter_async_context(self._adapter._node_client(*primary))
                self.subscribers[primary] = await stack.enter_async_context(
                    _ShardChannels(client.connection_pool, **self._adapter._pubsub_settings())
                )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._stack.__aexit__(*exc_info)

    def _by_owner(self, channels: Iterable[str]) -> dict[tuple[str, int], list[str]]:
        groups: dict[tuple[str, int], list[str]] = {}
        for channel in channels:
            slot = key_slot(channel.encode())
            index = bisect.bisect_right(self._firsts, slot) - 1
            if index < 0 or self._ranges[index][0] < slot:
                # A cluster without full coverage: reconnect, and look again.
                raise RedisConnectionError(f"no primary serves slot {slot} of {channel!r}")
            groups.setdefault(self._ranges[index][1], []).append(channel)
        return groups

    async def subscribe(self, *channels: str) -> None:
        for owner, group in self._by_owner(channels).items():
            await self.subscribers[owner].subscribe(*group)

    async def unsubscribe(self, *channels: str) -> None:
        for owner, group in self._by_owner(channels).items():
            await self.subscribers[owner].unsubscribe(*group)


class ShardedRedisAdapter(RedisAdapterBase):
    """The cluster adapter of one namespace, over Redis 7 sharded pub/sub (see the module's
    docs). Create it through :meth:`factory`.

    Attributes:
        url: the Redis URL (``redis://[:password@]host:port/db``, ``rediss://``, ``unix://``,
            ``redis+cluster://…`` or ``redis+sentinel://…``: see
            :mod:`trio_sio.adapters.redis`).
        options: its :class:`~trio_sio.adapters.redis.RedisAdapterOptions`.
        subscription_mode: Node's ``subscriptionMode``.
        uid: this node's id in the cluster (per namespace, as in Node).
    """

    logger = logging.getLogger("trio_sio.adapters.redis_sharded")
    _wire: ShardedWire

    def __init__(
        self,
        namespace: Namespace,
        url: str,
        options: RedisAdapterOptions | None = None,
        *,
        subscription_mode: SubscriptionMode = "dynamic",
    ) -> None:
        self.subscription_mode = checked_mode(subscription_mode)
        super().__init__(namespace, url, options)
        # Rooms whose channel may need (un)subscribing, and the room channels subscribed.
        self._rooms_to_check: set[str] = set()
        self._rooms_checked = trio.Event()
        self._room_channels: set[str] = set()
        # Set when no room waits for its subscription (see rooms_pending).
        self._rooms_subscribed = trio.Event()
        self._rooms_subscribed.set()

    @classmethod
    def factory(
        cls,
        url: str,
        options: RedisAdapterOptions | None = None,
        *,
        subscription_mode: SubscriptionMode = "dynamic",
    ) -> Callable[[Namespace], ShardedRedisAdapter]:
        """An ``adapter_factory`` for :class:`~trio_sio.Server`: every namespace gets a
        :class:`ShardedRedisAdapter` on ``url`` with ``options`` and ``subscription_mode``
        (``"static"``, ``"dynamic"`` or ``"dynamic-private"``; any other, or a malformed
        cluster or Sentinel URL, fails here)."""
        mode = checked_mode(subscription_mode)
        parse_redis_url(url)

        def make(namespace: Namespace) -> ShardedRedisAdapter:
            return cls(namespace, url, options, subscription_mode=mode)

        return make

    def _make_wire(
        self, namespace: Namespace, options: RedisAdapterOptions, uid: str
    ) -> ShardedWire:
        return ShardedWire(
            options.key,
            namespace.name,
            uid,
            namespace.server.json,
            options.max_depth,
            mode=self.subscription_mode,
        )

    def _open_pubsub(self, client: RedisClient) -> _ShardChannels | _ClusterShardChannels:
        if isinstance(client, RedisCluster):
            return _ClusterShardChannels(self, client)
        return _ShardChannels(client.connection_pool, **self._pubsub_settings())

    async def _subscribe(self, pubsub: _ShardChannels | _ClusterShardChannels) -> None:
        wire = self._wire
        self._rooms_to_check.clear()
        self._room_channels = {
            wire.room_channel(room) for room in self.rooms if self._has_room_channel(room)
        }
        await pubsub.subscribe(wire.channel, wire.own_response_channel, *self._room_channels)

    async def _serve_connection(self, pubsub: _ShardChannels | _ClusterShardChannels) -> None:
        if isinstance(pubsub, _ClusterShardChannels):
            readers = list(pubsub.subscribers.values())
        else:
            readers = [pubsub]
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._follow_rooms, pubsub)
                for reader in readers:
                    nursery.start_soon(self._read, reader)
        finally:
            # Disconnected: nothing to wait for (the next connection subscribes every room).
            self._rooms_subscribed.set()

    def _queue_publish(self, target: Any, channel: str, payload: bytes) -> Any:
        return target.spublish(channel, payload)

    def _publish_has_key(self, channel: str) -> bool:
        return True

    async def _count_subscribers(self, client: RedisClient) -> int:
        channel = self._wire.channel
        counts = await client.pubsub_shardnumsub(channel)
        return int(counts.get(channel.encode(), 0))

    # --- a channel per room, while the room has members here ------------------------------

    def _has_room_channel(self, room: str) -> bool:
        return self._wire.has_room_channel(room, private=room in self.sids)

    def _check_rooms(self, rooms: Iterable[str], *, created: bool = False) -> None:
        """Rooms created or deleted: the subscriber task brings the subscriptions in line
        (until it has, acknowledgements wait for the created ones: :meth:`rooms_pending`)."""
        if self.subscription_mode == "static":
            return
        before = len(self._rooms_to_check)
        self._rooms_to_check.update(rooms)
        if len(self._rooms_to_check) != before:
            self._rooms_checked.set()
            if created and self._connected and self._rooms_subscribed.is_set():
                self._rooms_subscribed = trio.Event()

    def rooms_pending(self) -> trio.Event | None:
        """While a room created here waits for its channel's ``SSUBSCRIBE``, an event set once
        Redis confirmed it (or the connection ended); ``None`` otherwise."""
        return None if self._rooms_subscribed.is_set() else self._rooms_subscribed

    def add_all(self, sid: str, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        created = [room for room in rooms if room not in self.rooms]
        super().add_all(sid, rooms)
        self._check_rooms((room for room in created if self._has_room_channel(room)), created=True)

    def delete(self, sid: str, room: str) -> None:
        super().delete(sid, room)
        if room not in self.rooms:
            self._check_rooms([room])

    def delete_all(self, sid: str) -> None:
        rooms = list(self.sids.get(sid, ()))
        super().delete_all(sid)
        self._check_rooms(room for room in rooms if room not in self.rooms)

    async def _follow_rooms(self, pubsub: _ShardChannels | _ClusterShardChannels) -> None:
        wire = self._wire
        while True:
            await self._rooms_checked.wait()
            self._rooms_checked = trio.Event()
            rooms, self._rooms_to_check = self._rooms_to_check, set()
            wanted, unwanted = [], []
            for room in rooms:
                channel = wire.room_channel(room)
                if room in self.rooms and self._has_room_channel(room):
                    if channel not in self._room_channels:
                        wanted.append(channel)
                elif channel in self._room_channels:
                    unwanted.append(channel)
            # Bounded: acknowledgements wait for this; a Redis that does not answer in time
            # is treated as gone (the adapter reconnects, and the waiters go on).
            with trio.fail_after(self.options.command_timeout):
                if wanted:
                    await pubsub.subscribe(*wanted)
                    self._room_channels.update(wanted)
                if unwanted:
                    await pubsub.unsubscribe(*unwanted)
                    self._room_channels.difference_update(unwanted)
            if not self._rooms_to_check:
                self._rooms_subscribed.set()
