"""Room membership and fan-out: the in-memory adapter, and the interface a cluster adapter extends.

As in Node's ``socket.io-adapter``, each namespace has one adapter. It owns the room registry
(room -> socket ids, socket id -> rooms) and turns a broadcast into deliveries: the packet is
encoded once and the same :class:`~trio_sio._protocol.Outgoing` is offered to every recipient's
bounded queue without waiting, so a broadcast costs one queue append per recipient, no JSON and
no task. A multi-node adapter (Redis) subclasses :class:`Adapter` and adds the network part.

With connection state recovery on, the in-memory adapter also feeds the server's
:class:`~trio_sio._recovery.RecoveryStore` (as Node's ``SessionAwareAdapter``): it appends an
offset to each recoverable packet and keeps it, and it persists and restores sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from ._cluster import ClusterReplies
from ._protocol import Outgoing, PacketType, SocketPacket
from ._recovery import PersistedSession, RecoveryFailure, RecoveryStore, RestoredSession

if TYPE_CHECKING:
    from ._broadcast import AckCollector
    from ._cluster import RemoteSocket
    from ._namespace import Namespace
    from ._socket import Socket

__all__ = ["Adapter", "BroadcastOptions", "is_recoverable"]


@dataclass(frozen=True)
class BroadcastOptions:
    """Who a broadcast reaches.

    Attributes:
        rooms: only sockets in at least one of these rooms (all sockets when empty).
        except_rooms: never sockets in any of these rooms.
        volatile: drop the packet for recipients that are behind instead of queueing it.
        local: this node only, even with a cluster adapter.
    """

    rooms: frozenset[str] = field(default_factory=frozenset)
    except_rooms: frozenset[str] = field(default_factory=frozenset)
    volatile: bool = False
    local: bool = False


def is_recoverable(packet: SocketPacket, opts: BroadcastOptions) -> bool:
    """Whether connection state recovery keeps ``packet`` sent with ``opts`` (Node's rule): an
    event without an acknowledgement id, not volatile."""
    return packet.type is PacketType.EVENT and packet.id is None and not opts.volatile


class Adapter:
    """The in-memory room registry of one namespace, and its local fan-out.

    Membership changes are synchronous: the registry is in memory. Empty rooms disappear.
    """

    #: Whether this adapter can recover sessions when the server has connection state
    #: recovery on. A cluster adapter that cannot share sessions and packets between its
    #: nodes sets it to ``False``: its clients are then offered no recovery (no ``pid``, no
    #: offsets), as with Node's classic Redis adapter.
    supports_recovery: ClassVar[bool] = True
    #: Whether broadcasts and rooms reach the sockets of other processes (a cluster
    #: adapter's do); ``python -m trio_sio --workers`` needs it.
    spans_processes: ClassVar[bool] = False

    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self.rooms: dict[str, set[str]] = {}
        self.sids: dict[str, set[str]] = {}

    # --- membership ----------------------------------------------------------------------

    def rooms_pending(self) -> trio.Event | None:
        """An event set once this node's room changes so far are in effect across the
        cluster, or ``None`` if they are already (always, here: the registry is in memory).
        A cluster adapter whose nodes subscribe per room (the sharded Redis adapter) returns
        one while a new room's subscription is on its way. The server waits for it before it
        acknowledges an event, so that a client whose ``join`` was acknowledged gets the
        room's broadcasts from every node."""
        return None

    def add_all(self, sid: str, rooms: Iterable[str]) -> None:
        """Put socket ``sid`` in every room of ``rooms``."""
        joined = self.sids.setdefault(sid, set())
        for room in rooms:
            joined.add(room)
            self.rooms.setdefault(room, set()).add(sid)

    def delete(self, sid: str, room: str) -> None:
        """Take socket ``sid`` out of ``room``."""
        joined = self.sids.get(sid)
        if joined is not None:
            joined.discard(room)
        members = self.rooms.get(room)
        if members is not None:
            members.discard(sid)
            if not members:
                del self.rooms[room]

    def delete_all(self, sid: str) -> None:
        """Take socket ``sid`` out of every room at once."""
        for room in self.sids.pop(sid, ()):
            members = self.rooms.get(room)
            if members is not None:
                members.discard(sid)
                if not members:
                    del self.rooms[room]

    def socket_rooms(self, sid: str) -> frozenset[str]:
        """The rooms socket ``sid`` is in."""
        return frozenset(self.sids.get(sid, ()))

    # --- selection and fan-out -----------------------------------------------------------

    def select(self, opts: BroadcastOptions) -> Iterator[Socket]:
        """The local sockets a broadcast with ``opts`` reaches.

        Works on a snapshot of the ids, so deliveries may change membership (a slow consumer
        being dropped) while the caller iterates.
        """
        sockets = self.namespace.sockets
        if opts.rooms:
            if len(opts.rooms) == 1:
                (room,) = opts.rooms
                ids: Iterable[str] = list(self.rooms.get(room, ()))
            else:
                ids = set().union(*(self.rooms.get(room, ()) for room in opts.rooms))
        else:
            ids = list(sockets)
        excluded: set[str] = set()
        for room in opts.except_rooms:
            excluded.update(self.rooms.get(room, ()))
        for sid in ids:
            if sid in excluded:
                continue
            socket = sockets.get(sid)
            if socket is not None:
                yield socket

    def encode(self, packet: SocketPacket) -> Outgoing:
        """Encode ``packet`` once for every recipient."""
        return Outgoing.message(*self.namespace.server.parser.encode(packet))

    def broadcast_local(
        self, packet: SocketPacket, opts: BroadcastOptions, outgoing: Outgoing | None = None
    ) -> int:
        """Deliver ``packet`` to the local sockets ``opts`` selects; returns how many took it.
        ``outgoing`` is its encoding, if the caller has it already."""
        if outgoing is None:
            outgoing = self.encode(packet)
        notify = self.namespace._outgoing_hook()
        volatile = opts.volatile
        delivered = 0
        # The per-recipient cost of a broadcast is this loop body: keep it to a queue append.
        for socket in self.select(opts):
            if notify is not None:
                notify(socket, packet)
            if socket._sink.offer(outgoing, volatile=volatile):
                delivered += 1
        self._count_sent(outgoing, delivered)
        return delivered

    def broadcast_with_ack_local(
        self, packet: SocketPacket, opts: BroadcastOptions, collector: AckCollector
    ) -> int:
        """Deliver ``packet`` (which carries an ack id) to the local sockets ``opts`` selects,
        each answer going to ``collector``; returns how many took it."""
        assert packet.id is not None
        outgoing = self.encode(packet)
        delivered = 0
        for socket in self.select(opts):
            if socket._deliver_expecting_ack(outgoing, packet, collector, volatile=opts.volatile):
                delivered += 1
        self._count_sent(outgoing, delivered)
        return delivered

    def _count_sent(self, outgoing: Outgoing, recipients: int) -> None:
        """A broadcast's events and bytes out, counted once per broadcast, not per
        recipient."""
        lifecycle = self.namespace.server.lifecycle
        lifecycle.events_out += recipients
        lifecycle.bytes_out += recipients * outgoing.nbytes
        if lifecycle.trace:
            lifecycle.trace_broadcast(self.namespace.name, recipients, outgoing)

    # --- connection state recovery ------------------------------------------------------

    @property
    def recovery_store(self) -> RecoveryStore[Outgoing] | None:
        """The server's recovery store if this namespace's sockets are offered recovery (the
        server has it on and this adapter supports it), else ``None``."""
        return self.namespace.server.recovery_store if self.supports_recovery else None

    def record(
        self,
        packet: SocketPacket,
        opts: BroadcastOptions,
        encode: Callable[[SocketPacket], Outgoing],
    ) -> Outgoing:
        """``packet`` encoded with ``encode``. If recovery keeps it (Node's rule: an event
        without an acknowledgement id, not volatile), it is encoded with the next offset as
        its last argument, and kept with the rooms of ``opts``."""
        store = self.recovery_store
        if store is None or not is_recoverable(packet, opts):
            return encode(packet)
        outgoing = encode(replace(packet, data=[*packet.data, store.next_offset]))
        store.keep(self.namespace.name, opts.rooms, opts.except_rooms, outgoing, outgoing.nbytes)
        return outgoing

    async def record_emit(
        self,
        packet: SocketPacket,
        opts: BroadcastOptions,
        encode: Callable[[SocketPacket], Outgoing],
    ) -> Outgoing:
        """:meth:`record` for what :meth:`Socket.emit <trio_sio.Socket.emit>` sends (``opts``:
        the socket's own room), called only with a :attr:`recovery_store`. It may wait: an
        adapter that keeps packets outside the process (the Streams adapter's stream) stores
        it first and takes the offset from there, as Node's ``socket.emit`` goes through
        ``adapter.broadcast`` when recovery is on. This one is :meth:`record`.
        ``emit_nowait``, and packets sent while ``on_connect`` runs, use :meth:`record`."""
        await trio.lowlevel.checkpoint()
        return self.record(packet, opts, encode)

    def persist_session(self, session: PersistedSession) -> None:
        """Keep a socket that lost its connection, for its client to come back to (Node's
        ``persistSession``). Called as the socket disconnects, only with a
        :attr:`recovery_store`."""
        store = self.recovery_store
        assert store is not None
        store.persist(session, trio.current_time())

    async def restore_session(
        self, pid: str, offset: str | None
    ) -> RestoredSession[Outgoing] | RecoveryFailure:
        """The session ``pid`` with the packets its client missed after ``offset``, encoded,
        or why it cannot be restored (Node's ``restoreSession``). Called only with a
        :attr:`recovery_store`.

        The socket is put back in its rooms as soon as this returns, without a checkpoint in
        between: an implementation must not checkpoint after it has taken the packets, or a
        broadcast could fall between the packets replayed and those delivered. The in-memory
        one checkpoints only before taking them.
        """
        await trio.lowlevel.checkpoint()
        store = self.recovery_store
        assert store is not None
        return store.restore(self.namespace.name, pid, offset, trio.current_time())

    # --- the operations of a broadcast operator; a cluster adapter extends each -----------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Started in the server's nursery when the server runs (or when a dynamic namespace
        is created). The in-memory adapter has nothing to run; a cluster adapter keeps its
        connections and subscriptions here."""
        task_status.started()

    async def broadcast(self, packet: SocketPacket, opts: BroadcastOptions) -> None:
        """Broadcast ``packet``. A cluster adapter also forwards it to the other nodes."""
        self.broadcast_local(packet, opts, self.record(packet, opts, self.encode))

    async def broadcast_with_ack(
        self, packet: SocketPacket, opts: BroadcastOptions, collector: AckCollector
    ) -> None:
        """Broadcast ``packet`` asking every recipient for an acknowledgement."""
        collector._expect(self.broadcast_with_ack_local(packet, opts, collector))

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Socket | RemoteSocket]:
        """The sockets ``opts`` selects (a cluster adapter adds the other nodes' sockets, as
        :class:`~trio_sio.adapters.RemoteSocket`)."""
        return list(self.select(opts))

    async def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        """Make the selected sockets join ``rooms``."""
        rooms = list(rooms)
        for socket in list(self.select(opts)):
            socket.join(*rooms)

    async def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        """Make the selected sockets leave ``rooms``."""
        rooms = list(rooms)
        for socket in list(self.select(opts)):
            socket.leave(*rooms)

    async def disconnect_sockets(self, opts: BroadcastOptions, *, close: bool) -> None:
        """Disconnect the selected sockets."""
        for socket in list(self.select(opts)):
            await socket.disconnect(close=close)

    async def server_count(self) -> int:
        """How many nodes share this namespace (1 without a cluster)."""
        return 1

    # --- server-side events between the nodes of a cluster (none without one) ------------

    async def server_side_emit(self, event: str, args: Sequence[Any]) -> None:
        """Send ``event`` to the server-side handlers of the *other* nodes."""

    async def server_side_emit_with_ack(
        self, event: str, args: Sequence[Any]
    ) -> ClusterReplies[Any]:
        """Send ``event`` to the other nodes and gather one answer per node, as many as
        arrive before the adapter's request deadline."""
        return ClusterReplies()
