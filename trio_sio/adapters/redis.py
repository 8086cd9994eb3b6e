"""A cluster adapter over Redis pub/sub that speaks Node's ``@socket.io/redis-adapter`` protocol.

Several trio_sio processes, Node ``socket.io`` servers using ``@socket.io/redis-adapter`` 8.x
(classic, non-sharded mode) and Node's ``@socket.io/redis-emitter`` can share one cluster::

    from trio_sio.adapters.redis import RedisAdapter

    sio = trio_sio.Server(adapter_factory=RedisAdapter.factory("redis://127.0.0.1:6379/0"))

Every namespace then broadcasts, fetches sockets, makes sockets join/leave rooms, disconnects
them and exchanges server-side events cluster-wide. Install the extra first:
``pip install 'trio-sio[redis]'`` (``coredis``, a Trio-capable Redis client built on AnyIO, and
``msgpack``).

Where Redis is (the URL of this adapter and of the sharded and Streams ones):

- one server: coredis's URLs, ``redis://[[username]:password@]host:port/db``, ``rediss://``
  (TLS) and ``unix://path``;
- a Redis Cluster: ``redis+cluster://[[username]:password@]host:port[,host:port...]``, its
  startup nodes (any of them is enough to find the others; the port defaults to 6379);
- a primary watched by Sentinel:
  ``redis+sentinel://[[username]:password@]host:port[,host:port...]/service[/db]``, the
  Sentinels (port 26379 by default) and the name they know the primary by. The credentials
  are the primary's; the Sentinels are asked without any. Each new connection asks them where
  the primary is, so after a failover the adapter reconnects to the new one.

A malformed cluster or Sentinel URL fails when the factory is made. TLS to a cluster or
through Sentinel is not supported yet.

On a Redis Cluster the classic adapter works as Node's does with a cluster client: it
subscribes on one node (a cluster forwards every ``PUBLISH`` to all of its nodes, so any node
will do) and counts the servers by asking every node for ``PUBSUB NUMSUB`` and adding up.
Every message still reaches every node of the cluster: the sharded adapter is the one that
spreads the load.

Wire protocol (the same bytes as the Node adapter, written and read by
:class:`~trio_sio.adapters._wire.ClassicWire`; ``<key>`` is ``"socket.io"`` by default):

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

Redis 7's sharded pub/sub (Node's ``createShardedAdapter``) is
:mod:`trio_sio.adapters.redis_sharded`. Not implemented:
Node's ``parser`` option (only its default, msgpack as notepack.io writes it),
and sending the ``SOCKETS`` request and the single-socket join/leave/disconnect requests (Node's
8.x adapter sends none of them either).

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

import logging
import re
from typing import TYPE_CHECKING, Any

from .._cluster import ClusterReplies
from ._redis_base import (
    RedisAdapterBase,
    RedisAdapterOptions,
    RedisAdapterStatistics,
)
from ._wire import ClassicWire, Request, RequestType

if TYPE_CHECKING:
    from .._namespace import Namespace
    from ._redis_base import AnyPubSub, RedisClient

__all__ = ["RedisAdapter", "RedisAdapterOptions", "RedisAdapterStatistics", "RequestType"]


class RedisAdapter(RedisAdapterBase):
    """The cluster adapter of one namespace, over Redis pub/sub (see the module's docs).

    Create it through :meth:`factory`; the server makes one per namespace and runs it.

    Attributes:
        url: the Redis URL (``redis://[:password@]host:port/db``, ``rediss://``, ``unix://``,
            ``redis+cluster://…`` or ``redis+sentinel://…``: see the module's docs).
        options: its :class:`RedisAdapterOptions`.
        uid: this node's id in the cluster (per namespace, as in Node).
    """

    logger = logging.getLogger("trio_sio.adapters.redis")
    _wire: ClassicWire

    def _make_wire(
        self, namespace: Namespace, options: RedisAdapterOptions, uid: str
    ) -> ClassicWire:
        return ClassicWire(
            options.key,
            namespace.name,
            uid,
            namespace.server.json,
            options.max_depth,
            specific_responses=options.publish_on_specific_response_channel,
        )

    async def _subscribe(self, pubsub: AnyPubSub) -> None:
        wire = self._wire
        await pubsub.psubscribe(_glob_escape(wire.broadcast_channel) + "*")
        await pubsub.subscribe(
            wire.request_channel, wire.response_channel, wire.own_response_channel
        )

    def _queue_publish(self, target: Any, channel: str, payload: bytes) -> Any:
        return target.publish(channel, payload)

    def _publish_has_key(self, channel: str) -> bool:
        return False

    async def _count_subscribers(self, client: RedisClient) -> int:
        channel = self._wire.request_channel
        counts = await client.pubsub_numsub(channel)
        return int(counts.get(channel.encode(), 0))

    async def all_rooms(self) -> ClusterReplies[str]:
        """The rooms of every node (each listed once), as far as the nodes answered within
        ``requests_timeout``."""
        local = set(self.rooms)
        pending = await self._ask(Request(RequestType.ALL_ROOMS, self.uid))
        if pending is None:
            return ClusterReplies(sorted(local), nodes=None)
        rooms = sorted(local.union(pending.items))
        return ClusterReplies(
            rooms, nodes=pending.nodes, answered=pending.answered, answered_by=pending.answered_by
        )


_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)
