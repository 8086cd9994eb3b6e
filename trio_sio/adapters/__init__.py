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

from .._cluster import ClusterReplies as ClusterReplies
from .._cluster import RemoteSocket as RemoteSocket

__all__ = ["ClusterReplies", "RemoteSocket"]
