"""Broadcasts: who receives (rooms, exceptions, flags) and what to do with them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import trio

from ._acks import ack_value
from ._adapter import BroadcastOptions
from ._protocol import PacketType, SocketPacket
from ._socket import Socket

if TYPE_CHECKING:
    from ._cluster import RemoteSocket
    from ._namespace import Namespace

__all__ = ["AckCollector", "BroadcastOperator"]


class AckCollector:
    """The acknowledgements of one broadcast, arriving as the clients answer.

    The wait is bounded by the caller, as everything in Trio::

        acks = await sio.to("room").emit_with_ack("question")
        with trio.move_on_after(5):
            await acks.wait()
        print(acks.replies, acks.missing)

    Attributes:
        expected: how many sockets were sent the packet (grows as cluster nodes report).
        replies: socket id -> answer (``None``, a value, or a tuple, as :meth:`Socket.call`).
        lost: how many recipients disconnected before answering.
        remote_replies: the answers of other nodes' sockets, with a cluster adapter. The
            cluster protocol carries neither the socket id nor more than the first argument
            of each answer.
    """

    def __init__(self) -> None:
        self.expected = 0
        self.replies: dict[str, Any] = {}
        self.lost = 0
        self.remote_replies: list[Any] = []
        self._waiting: set[str] = set()
        self._outstanding = 0
        self._nodes_pending = 0
        self._done = trio.Event()

    @property
    def missing(self) -> list[str]:
        """Ids of the local sockets that have not answered (yet)."""
        return list(self._waiting)

    @property
    def complete(self) -> bool:
        """Whether every recipient answered or disconnected."""
        return self._outstanding <= 0 and self._nodes_pending <= 0

    @property
    def missing_nodes(self) -> int:
        """With a cluster adapter: how many other nodes have not reported how many of their
        sockets they sent the packet to (yet). Until they have, :attr:`expected` is short."""
        return max(0, self._nodes_pending)

    async def wait(self) -> None:
        """Wait until every recipient has answered or disconnected."""
        if self.complete:
            await trio.lowlevel.checkpoint()
        else:
            await self._done.wait()

    def _expect(self, count: int) -> None:
        """``count`` more recipients were sent the packet (local ones register as waiting
        with :meth:`_waiting_for` first; a cluster adapter reports remote counts here)."""
        self.expected += count
        self._outstanding += count
        self._check()

    def _waiting_for(self, sid: str) -> None:
        self._waiting.add(sid)

    def _settle(self, sid: str, args: list[Any] | None) -> None:
        """One recipient answered (``args``) or disconnected (``None``)."""
        if args is None:
            self.lost += 1
        else:
            self.replies[sid] = ack_value(args)
        self._waiting.discard(sid)
        self._outstanding -= 1
        self._check()

    # --- cluster hooks: call _expect_nodes before the local _expect ----------------------

    def _expect_nodes(self, count: int) -> None:
        """``count`` other nodes were sent the broadcast and will each report a count."""
        self._nodes_pending += count

    def _node_reported(self, count: int) -> None:
        """One other node sent the packet to ``count`` of its sockets."""
        self._nodes_pending -= 1
        self._expect(count)

    def _settle_remote(self, answer: Any) -> None:
        """One of another node's sockets answered."""
        self.remote_replies.append(answer)
        self._outstanding -= 1
        self._check()

    def _check(self) -> None:
        if self._outstanding <= 0 and self._nodes_pending <= 0:
            self._done.set()


@dataclass(frozen=True)
class BroadcastOperator:
    """Targets for a broadcast in one namespace; built with :meth:`to`, :meth:`except_` and
    the flags, then used with :meth:`emit` and friends. Immutable: every builder call
    returns a new operator."""

    namespace: Namespace
    options: BroadcastOptions = field(default_factory=BroadcastOptions)

    def to(self, *rooms: str) -> BroadcastOperator:
        """Also target these rooms (a socket in several is reached once)."""
        return replace(self, options=replace(self.options, rooms=self.options.rooms | set(rooms)))

    in_ = to

    def except_(self, *rooms: str) -> BroadcastOperator:
        """Exclude the sockets in these rooms (a socket id is a room)."""
        return replace(
            self,
            options=replace(self.options, except_rooms=self.options.except_rooms | set(rooms)),
        )

    @property
    def volatile(self) -> BroadcastOperator:
        """Drop the packet for clients that are behind rather than queue it."""
        return replace(self, options=replace(self.options, volatile=True))

    @property
    def local(self) -> BroadcastOperator:
        """Only this node's sockets, even with a cluster adapter."""
        return replace(self, options=replace(self.options, local=True))

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to every targeted socket. Never waits for a client: a recipient
        whose queue is full is disconnected as a slow consumer (see the docs on backpressure).
        """
        namespace = self.namespace
        await namespace.server.engine.start_broadcast()
        packet = SocketPacket(PacketType.EVENT, namespace.name, [event, *args])
        await namespace.adapter.broadcast(packet, self.options)
        await namespace.server.engine.pace_broadcast()

    async def emit_with_ack(self, event: str, *args: Any) -> AckCollector:
        """Send an event to every targeted socket, asking each for an acknowledgement.

        Returns at once with an :class:`AckCollector` that fills in as answers arrive.
        """
        namespace = self.namespace
        await namespace.server.engine.start_broadcast()
        collector = AckCollector()
        ack_id = namespace._next_ack_id()
        packet = SocketPacket(PacketType.EVENT, namespace.name, [event, *args], ack_id)
        await namespace.adapter.broadcast_with_ack(packet, self.options, collector)
        await namespace.server.engine.pace_broadcast()
        return collector

    async def fetch_sockets(self) -> list[Socket | RemoteSocket]:
        """The targeted sockets (with a cluster adapter, those of the other nodes too, as
        :class:`~trio_sio.adapters.RemoteSocket`)."""
        await trio.lowlevel.checkpoint()
        return await self.namespace.adapter.fetch_sockets(self.options)

    async def sockets_join(self, *rooms: str) -> None:
        """Make every targeted socket join ``rooms``."""
        await trio.lowlevel.checkpoint()
        await self.namespace.adapter.add_sockets(self.options, rooms)

    async def sockets_leave(self, *rooms: str) -> None:
        """Make every targeted socket leave ``rooms``."""
        await trio.lowlevel.checkpoint()
        await self.namespace.adapter.del_sockets(self.options, rooms)

    async def disconnect_sockets(self, *, close: bool = False) -> None:
        """Disconnect every targeted socket (``close=True``: their whole connections)."""
        await trio.lowlevel.checkpoint()
        await self.namespace.adapter.disconnect_sockets(self.options, close=close)
