"""Cluster adapters: several trio_sio processes (and Node socket.io servers) as one server.

Each namespace has an :class:`~trio_sio.Adapter`; the default one keeps rooms in memory and
reaches this process's sockets only. A cluster adapter extends it so that broadcasts, fetching
sockets, making sockets join/leave rooms, disconnecting them and server-side events reach every
node of the cluster.

- :mod:`trio_sio.adapters.redis`: Redis pub/sub, wire-compatible with Node's
  ``@socket.io/redis-adapter`` 8.x and ``@socket.io/redis-emitter``
  (``pip install 'trio-sio[redis]'``).
- :mod:`trio_sio.adapters.redis_sharded`: Redis 7 sharded pub/sub, wire-compatible with
  ``@socket.io/redis-adapter`` 8.3's ``createShardedAdapter`` (the same extra).

Both build on one base that owns the protocol between nodes (``_base.ClusterAdapter``) and on
Node's wire formats as pure code (``_wire``); see the cluster page of the documentation.

This package itself needs no extra dependency: it holds what every cluster adapter returns,
:class:`RemoteSocket` and :class:`ClusterReplies`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._cluster import ClusterReplies as ClusterReplies
from .._cluster import RemoteSocket as RemoteSocket

if TYPE_CHECKING:
    from .._adapter import Adapter
    from .._namespace import Namespace

__all__ = ["REDIS_ADAPTERS", "ClusterReplies", "RemoteSocket", "redis_adapter_factory"]

#: The Redis adapters by name, as :func:`redis_adapter_factory` takes them.
REDIS_ADAPTERS = ("classic", "sharded", "streams")


def redis_adapter_factory(kind: str, url: str) -> Callable[[Namespace], Adapter]:
    """The ``adapter_factory`` of the Redis adapter named ``kind`` (one of
    :data:`REDIS_ADAPTERS`: ``classic`` pub/sub, ``sharded`` or ``streams``) on ``url``, with
    its default options: for apps that pick the adapter from their configuration.

    Raises:
        ValueError: ``kind`` is none of them.
    """
    # Imported only here: this package needs no coredis until a Redis adapter is asked for.
    if kind == "classic":
        from .redis import RedisAdapter

        return RedisAdapter.factory(url)
    if kind == "sharded":
        from .redis_sharded import ShardedRedisAdapter

        return ShardedRedisAdapter.factory(url)
    if kind == "streams":
        from .redis_streams import RedisStreamsAdapter

        return RedisStreamsAdapter.factory(url)
    raise ValueError(f"the Redis adapter must be one of {', '.join(REDIS_ADAPTERS)}, not {kind!r}")
