"""What a cluster adapter hands back: other nodes' sockets, and the answers of other nodes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._broadcast import AckCollector
    from ._namespace import Namespace

__all__ = ["ClusterReplies", "RemoteSocket"]

T = TypeVar("T")


class ClusterReplies(list[T]):
    """A list of what came back from a cluster request, with who did and did not answer.

    A cluster request never waits past its deadline: it returns what arrived in time, and
    these attributes say how complete that is::

        sockets = await sio.fetch_sockets()
        if isinstance(sockets, ClusterReplies) and not sockets.complete:
            log.warning("%d node(s) did not answer", sockets.missing)

    Attributes:
        nodes: how many other nodes were asked (``PUBSUB NUMSUB``, or ``SHARDNUMSUB``, minus
            this one), or ``None`` when the cluster could not be asked at all (Redis
            unreachable): the list then holds only this node's part.
        answered: how many of those nodes answered before the deadline.
        answered_by: the ids of the answering nodes that named themselves. trio_sio nodes add
            their id to every answer, and so does Node's sharded adapter; Node's classic
            ``@socket.io/redis-adapter`` does not, so its answers are counted in
            :attr:`answered` but not listed here.
    """

    def __init__(
        self,
        items: Iterable[T] = (),
        *,
        nodes: int | None = 0,
        answered: int = 0,
        answered_by: Iterable[str] = (),
    ) -> None:
        super().__init__(items)
        self.nodes = nodes
        self.answered = answered
        self.answered_by = tuple(answered_by)

    @property
    def missing(self) -> int:
        """How many of the nodes asked did not answer in time."""
        if self.nodes is None:
            return 0
        return max(0, self.nodes - self.answered)

    @property
    def complete(self) -> bool:
        """Whether every node asked answered (``False`` if the cluster was unreachable)."""
        return self.nodes is not None and self.answered >= self.nodes

    def __repr__(self) -> str:
        return (
            f"ClusterReplies({list.__repr__(self)}, nodes={self.nodes}, "
            f"answered={self.answered}, answered_by={self.answered_by})"
        )


@dataclass(frozen=True, eq=False)
class RemoteSocket:
    """A socket connected to another node of the cluster, as that node described it.

    :meth:`~trio_sio.BroadcastOperator.fetch_sockets` returns these, beside the local
    :class:`~trio_sio.Socket` objects, when the namespace has a cluster adapter. The methods
    act through the namespace's adapter, addressing the socket by its id (a room only it is
    in), so they work whichever node holds the socket.

    Attributes:
        namespace: the local namespace the socket was fetched through.
        id: the socket's id.
        rooms: the rooms it was in when fetched (its own id included).
        data: its ``data``, as its node serialized it (JSON values).
        handshake: its handshake as Node's socket.io serializes one: ``headers``, ``time``
            (a date string), ``address``, ``xdomain``, ``secure``, ``issued`` (milliseconds
            since the epoch), ``url``, ``query`` and ``auth``.
    """

    namespace: Namespace
    id: str
    rooms: frozenset[str]
    data: Any
    handshake: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.id} {self.namespace.name}>"

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to this socket's client."""
        await self.namespace.to(self.id).emit(event, *args)

    async def emit_with_ack(self, event: str, *args: Any) -> AckCollector:
        """Send an event asking for an acknowledgement; the answer arrives in the returned
        collector's ``remote_replies`` (or ``replies``, if the socket turned out local)."""
        return await self.namespace.to(self.id).emit_with_ack(event, *args)

    def join(self, *rooms: str) -> None:
        """Make the socket join ``rooms`` (on its node), as :meth:`Socket.join
        <trio_sio.Socket.join>` does for a local one: the request to the cluster goes out in
        the background, after the operations started before it (like Node's
        ``RemoteSocket.join``)."""
        self.namespace.server._start_soon(self.namespace.in_(self.id).sockets_join, *rooms)

    def leave(self, *rooms: str) -> None:
        """Make the socket leave ``rooms`` (in the background, as :meth:`join`)."""
        self.namespace.server._start_soon(self.namespace.in_(self.id).sockets_leave, *rooms)

    async def disconnect(self, *, close: bool = False) -> None:
        """Disconnect the socket (``close=True``: its whole connection)."""
        await self.namespace.in_(self.id).disconnect_sockets(close=close)
