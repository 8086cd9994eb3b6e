"""The cluster adapter base: the request/response protocol between nodes, over any transport.

As ``socket.io-adapter``'s ``ClusterAdapter`` does for Node, :class:`ClusterAdapter` owns what
every cluster adapter shares: turning the broadcast operator's operations into messages for
the other nodes, serving the other nodes' requests (request types 0-9: sockets, rooms, remote
join/leave/disconnect, fetching sockets, server-side events, broadcasts with acks and the relay
of their acknowledgements), gathering answers until every node answered or the deadline passed,
and the bounded queues between the transport and all of that. The wire format is a pure object
from :mod:`trio_sio.adapters._wire`; a subclass supplies the transport:

- :meth:`ClusterAdapter.run` keeps its connection, hands every message it receives to
  :meth:`ClusterAdapter._received` (which never blocks), and calls
  :meth:`ClusterAdapter._run_queues` in its nursery;
- :meth:`ClusterAdapter._publish_batch` publishes queued ``(channel, payload)`` pairs;
- :meth:`ClusterAdapter._other_nodes` counts the other nodes (``None``: unreachable).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .._adapter import Adapter, BroadcastOptions
from .._broadcast import AckCollector
from .._cluster import ClusterReplies, RemoteSocket
from .._protocol import PacketType, SocketPacket
from .._socket import node_handshake
from ._wire import (
    ForeignMessage,
    Request,
    RequestType,
    Response,
    WireError,
    room_list,
)

if TYPE_CHECKING:
    from .._namespace import Namespace
    from .._socket import Socket

__all__ = ["ClusterAdapter", "ClusterSettings", "Counters", "WireFormat"]

#: Messages published in one batch at most.
PUBLISH_BATCH = 256


class WireFormat(Protocol):
    """What :class:`ClusterAdapter` needs from a wire format (see ``_wire``)."""

    uid: str

    def decode(self, channel: bytes, data: bytes) -> Request | Response: ...

    def encode_request(self, request: Request) -> tuple[str, bytes]: ...

    def encode_response(self, requester: str | None, response: Response) -> tuple[str, bytes]: ...

    def room_of(self, channel: bytes) -> str | None: ...


@dataclass(frozen=True)
class ClusterSettings:
    """The bounds and deadlines of a :class:`ClusterAdapter` (see ``RedisAdapterOptions``)."""

    requests_timeout: float
    ack_timeout: float
    inbound_queue_size: int
    inbound_queue_bytes: int
    outbound_queue_size: int
    max_message_size: int
    max_handler_tasks: int


@dataclass
class Counters:
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

    def __init__(self, adapter: ClusterAdapter, request_id: str, requester: str | None) -> None:
        super().__init__()
        self._adapter = adapter
        self._request_id = request_id
        self._requester = requester

    def _settle(self, sid: str, args: list[Any] | None) -> None:
        if args is None:  # the socket disconnected: Node's adapter reports nothing either
            return
        # Only the first argument travels (Node: ``ack(arg)``).
        body = {"packet": args[0]} if args else {}
        response = Response(self._request_id, None, RequestType.BROADCAST_ACK, body)
        self._adapter._respond_nowait(self._requester, response)


class ClusterAdapter(Adapter):
    """The cluster adapter of one namespace, over a transport a subclass supplies.

    Attributes:
        uid: this node's id in the cluster (per namespace, as in Node).
    """

    # Recovery needs sessions and missed packets shared between the nodes; a transport that
    # keeps none (pub/sub) declines it, as Node's ClusterAdapter and classic adapter do.
    supports_recovery = False
    spans_processes = True

    def __init__(
        self,
        namespace: Namespace,
        settings: ClusterSettings,
        wire: WireFormat,
        logger: logging.Logger,
    ) -> None:
        super().__init__(namespace)
        self.uid = wire.uid
        self._settings = settings
        self._wire = wire
        self._logger = logger
        self._counters = Counters()
        self._connected = False
        self._nursery: trio.Nursery | None = None
        self._inbound_send, self._inbound_receive = trio.open_memory_channel[tuple[bytes, bytes]](
            settings.inbound_queue_size
        )
        self._inbound_bytes = 0
        self._outbound_send, self._outbound_receive = trio.open_memory_channel[tuple[str, bytes]](
            settings.outbound_queue_size
        )
        self._task_slots = trio.Semaphore(settings.max_handler_tasks)
        self._requests: dict[str, _Pending] = {}
        self._ack_requests: dict[str, AckCollector] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace.name} uid={self.uid}>"

    @property
    def connected(self) -> bool:
        """Whether the adapter is subscribed and can publish right now."""
        return self._connected

    # --- what a transport supplies ------------------------------------------------------

    async def _publish_batch(self, batch: list[tuple[str, bytes]]) -> None:
        """Publish ``batch`` in order; raise if it could not be published."""
        raise NotImplementedError

    async def _other_nodes(self) -> int | None:
        """How many other nodes share this namespace (``None``: the cluster is unreachable)."""
        raise NotImplementedError

    # --- the queues ---------------------------------------------------------------------

    async def _run_queues(self, nursery: trio.Nursery) -> None:
        """Start handling inbound and publishing outbound messages in ``nursery`` (the
        transport's), which also runs the tasks requests ask for."""
        if self._nursery is not None:
            raise RuntimeError(f"{self!r} is already running")
        self._nursery = nursery
        nursery.start_soon(self._handle_inbound)
        nursery.start_soon(self._publish_outbound)

    def _stopped(self) -> None:
        self._nursery = None
        self._connected = False

    def _received(self, channel: bytes, data: bytes) -> None:
        """A message from the transport, queued for handling or dropped (and counted) when
        it is too large or the inbound queue is full; never blocks."""
        counters = self._counters
        counters.received += 1
        size = len(data)
        if size > self._settings.max_message_size:
            counters.dropped_oversized += 1
            return
        if self._inbound_bytes + size > self._settings.inbound_queue_bytes:
            counters.dropped_overflow += 1
            return
        try:
            self._inbound_send.send_nowait((channel, data))
        except trio.WouldBlock:
            counters.dropped_overflow += 1
        else:
            self._inbound_bytes += size

    async def _publish_outbound(self) -> None:
        """Publish queued messages, in order, in batches."""
        receive = self._outbound_receive
        counters = self._counters
        async for first in receive:
            batch = [first]
            while len(batch) < PUBLISH_BATCH:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            if not self._connected:
                counters.publish_dropped += len(batch)
                continue
            try:
                await self._publish_batch(batch)
            except Exception as exc:
                counters.publish_dropped += len(batch)
                self._logger.debug("%r: publishing %d message(s) failed: %s", self, len(batch), exc)
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

    def _encode_request(self, request: Request) -> tuple[str, bytes] | None:
        try:
            return self._wire.encode_request(request)
        except (TypeError, ValueError, OverflowError) as exc:
            self._counters.publish_dropped += 1
            self._logger.warning("%r: %s not sent to the cluster: %s", self, request.kind.name, exc)
            return None

    async def _send(self, request: Request) -> None:
        encoded = self._encode_request(request)
        if encoded is not None:
            await self._publish(*encoded)

    def _encode_response(
        self, requester: str | None, response: Response
    ) -> tuple[str, bytes] | None:
        try:
            return self._wire.encode_response(requester, response)
        except (TypeError, ValueError, OverflowError) as exc:
            self._counters.publish_dropped += 1
            self._logger.warning("%r: an answer not sent to the cluster: %s", self, exc)
            return None

    async def _respond(self, requester: str | None, response: Response) -> None:
        encoded = self._encode_response(requester, response)
        if encoded is not None:
            await self._publish(*encoded)

    def _respond_nowait(self, requester: str | None, response: Response) -> None:
        encoded = self._encode_response(requester, response)
        if encoded is not None:
            self._publish_nowait(*encoded)

    # --- asking the other nodes ---------------------------------------------------------

    async def _ask(self, request: Request) -> _Pending | None:
        """Publish ``request`` (its id is set here) and gather the answers of every other
        node, for at most ``requests_timeout`` seconds."""
        timeout = self._settings.requests_timeout
        nodes = await self._other_nodes()
        if nodes is None:
            return None
        pending = _Pending(request.kind, nodes)
        if nodes == 0:
            return pending
        request_id = secrets.token_hex(6)
        encoded = self._encode_request(dataclasses.replace(request, request_id=request_id))
        if encoded is None:
            return pending
        self._requests[request_id] = pending
        try:
            await self._publish(*encoded)
            with trio.move_on_after(timeout):
                await pending.done.wait()
        finally:
            del self._requests[request_id]
        if pending.answered < nodes:
            self._logger.info(
                "%r: %s: %d of %d other node(s) did not answer within %.1f s",
                self,
                request.kind.name,
                nodes - pending.answered,
                nodes,
                timeout,
            )
        return pending

    # --- the operations, cluster-wide ---------------------------------------------------

    async def broadcast(self, packet: SocketPacket, opts: BroadcastOptions) -> None:
        """Deliver locally, then publish for the other nodes (unless ``opts.local``)."""
        self.broadcast_local(packet, opts)
        if not opts.local:
            await self._send(
                Request(RequestType.BROADCAST, self.uid, opts=opts, event=tuple(packet.data))
            )

    async def broadcast_with_ack(
        self, packet: SocketPacket, opts: BroadcastOptions, collector: AckCollector
    ) -> None:
        """Deliver locally and ask every other node to do the same; their client counts and
        their clients' answers arrive in ``collector`` (for ``ack_timeout`` seconds)."""
        if not opts.local:
            nodes = await self._other_nodes()
            if nodes:
                request_id = secrets.token_hex(6)
                request = Request(
                    RequestType.BROADCAST, self.uid, request_id, opts, event=tuple(packet.data)
                )
                encoded = self._encode_request(request)
                if encoded is not None:
                    collector._expect_nodes(nodes)
                    self._ack_requests[request_id] = collector
                    assert self._nursery is not None
                    self._nursery.start_soon(self._forget_ack_request, request_id)
                    await self._publish(*encoded)
        collector._expect(self.broadcast_with_ack_local(packet, opts, collector))

    async def _forget_ack_request(self, request_id: str) -> None:
        await trio.sleep(self._settings.ack_timeout)
        self._ack_requests.pop(request_id, None)

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Socket | RemoteSocket]:
        """This node's sockets, then those of the nodes that answered in time, as a
        :class:`~trio_sio.adapters.ClusterReplies`."""
        local: list[Socket | RemoteSocket] = list(self.select(opts))
        if opts.local:
            return local
        pending = await self._ask(Request(RequestType.REMOTE_FETCH, self.uid, opts=opts))
        if pending is None:
            return ClusterReplies(local, nodes=None)
        return pending.replies(local)

    async def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        """Make the selected sockets of every node join ``rooms``."""
        rooms = list(rooms)
        await super().add_sockets(opts, rooms)
        if not opts.local:
            await self._send(
                Request(RequestType.REMOTE_JOIN, self.uid, opts=opts, rooms=tuple(rooms))
            )

    async def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        """Make the selected sockets of every node leave ``rooms``."""
        rooms = list(rooms)
        await super().del_sockets(opts, rooms)
        if not opts.local:
            await self._send(
                Request(RequestType.REMOTE_LEAVE, self.uid, opts=opts, rooms=tuple(rooms))
            )

    async def disconnect_sockets(self, opts: BroadcastOptions, *, close: bool) -> None:
        """Disconnect the selected sockets of every node (the request leaves first: the
        caller may be one of the local sockets)."""
        if not opts.local:
            await self._send(
                Request(RequestType.REMOTE_DISCONNECT, self.uid, opts=opts, close=close)
            )
        await super().disconnect_sockets(opts, close=close)

    async def server_count(self) -> int:
        """How many nodes share this namespace (1 when the cluster is unreachable)."""
        others = await self._other_nodes()
        return 1 if others is None else others + 1

    async def server_side_emit(self, event: str, args: Sequence[Any]) -> None:
        """Send ``event`` to the other nodes' server-side handlers (JSON arguments)."""
        await self._send(Request(RequestType.SERVER_SIDE_EMIT, self.uid, event=(event, *args)))

    async def server_side_emit_with_ack(
        self, event: str, args: Sequence[Any]
    ) -> ClusterReplies[Any]:
        """Send ``event`` to the other nodes; one answer per node, as many as arrive within
        ``requests_timeout`` seconds."""
        pending = await self._ask(
            Request(RequestType.SERVER_SIDE_EMIT, self.uid, event=(event, *args))
        )
        if pending is None:
            return ClusterReplies(nodes=None)
        return pending.replies()

    # --- inbound ------------------------------------------------------------------------

    async def _handle_inbound(self) -> None:
        counters = self._counters
        async for channel, data in self._inbound_receive:
            self._inbound_bytes -= len(data)
            try:
                await self._dispatch(channel, data)
            except ForeignMessage as exc:
                counters.dropped_foreign += 1
                self._logger.debug("%r: dropped a message not for us on %r: %s", self, channel, exc)
            except WireError as exc:
                counters.dropped_malformed += 1
                self._logger.debug("%r: dropped a malformed message on %r: %s", self, channel, exc)

    async def _dispatch(self, channel: bytes, data: bytes) -> None:
        room = self._wire.room_of(channel)
        if room is not None and room not in self.rooms:
            self._counters.ignored += 1  # no local member: not worth decoding
            return
        await self._handle(channel, self._wire.decode(channel, data))

    async def _handle(self, channel: bytes, message: Request | Response) -> None:
        """Act on a message decoded from ``channel``."""
        if isinstance(message, Response):
            self._on_response(message)
        elif message.uid == self.uid:
            self._counters.ignored_own += 1
        else:
            await self._on_request(message)

    async def _on_request(self, request: Request) -> None:
        kind = request.kind
        uid = request.uid
        if kind == RequestType.BROADCAST:
            await self._on_broadcast(request)
        elif kind == RequestType.SOCKETS:
            opts = BroadcastOptions(rooms=frozenset(request.rooms))
            ids = [socket.id for socket in self.select(opts)]
            await self._answer(request, {"sockets": ids})
        elif kind == RequestType.ALL_ROOMS:
            await self._answer(request, {"rooms": list(self.rooms)})
        elif kind in (RequestType.REMOTE_JOIN, RequestType.REMOTE_LEAVE):
            await self._on_join_or_leave(request)
        elif kind == RequestType.REMOTE_DISCONNECT:
            await self._on_disconnect(request)
        elif kind == RequestType.REMOTE_FETCH:
            sockets = [self._describe_socket(socket) for socket in self.select(_opts(request))]
            await self._answer(request, {"sockets": sockets})
        elif kind == RequestType.SERVER_SIDE_EMIT:
            name, *args = request.event
            await self._spawn(self._serve_server_event, name, args, request.request_id, uid)
        else:
            raise ForeignMessage(f"{kind.name} is not a request")

    async def _on_broadcast(self, request: Request) -> None:
        opts = _opts(request)
        nsp = self.namespace
        if request.request_id is None:
            packet = SocketPacket(PacketType.EVENT, nsp.name, list(request.event))
            try:
                self._deliver_remote_broadcast(packet, opts)
            except (TypeError, ValueError, RecursionError) as exc:  # not representable as JSON
                raise WireError(f"payload cannot be sent to clients: {exc}") from None
            return
        relay = _AckRelay(self, request.request_id, request.uid)
        packet = SocketPacket(PacketType.EVENT, nsp.name, list(request.event), nsp._next_ack_id())
        try:
            count = self.broadcast_with_ack_local(packet, opts, relay)
        except (TypeError, ValueError, RecursionError) as exc:
            raise WireError(f"payload cannot be sent to clients: {exc}") from None
        await self._answer(request, {"clientCount": count}, RequestType.BROADCAST_CLIENT_COUNT)

    def _deliver_remote_broadcast(self, packet: SocketPacket, opts: BroadcastOptions) -> None:
        """Deliver another node's broadcast (without acks) to the local sockets."""
        self.broadcast_local(packet, opts)

    async def _answer(
        self, request: Request, body: dict[str, Any], kind: RequestType | None = None
    ) -> None:
        if request.request_id is None:
            raise WireError("request without requestId")
        response = Response(request.request_id, self.uid, kind or request.kind, body)
        await self._respond(request.uid, response)

    async def _on_join_or_leave(self, request: Request) -> None:
        join = request.kind == RequestType.REMOTE_JOIN
        if request.opts is not None:
            if join:
                await Adapter.add_sockets(self, request.opts, request.rooms)
            else:
                await Adapter.del_sockets(self, request.opts, request.rooms)
            return
        # The classic single-socket form: answered only by the node that has the socket.
        assert request.sid is not None
        assert request.room is not None
        socket = self.namespace.sockets.get(request.sid)
        if socket is None:
            self._counters.ignored += 1
            return
        if join:
            socket.join(request.room)
        else:
            socket.leave(request.room)
        await self._answer(request, {})

    async def _on_disconnect(self, request: Request) -> None:
        if request.opts is not None:
            for socket in list(self.select(request.opts)):
                await self._spawn(socket.disconnect, close=request.close)
            return
        assert request.sid is not None
        target = self.namespace.sockets.get(request.sid)
        if target is None:
            self._counters.ignored += 1
            return
        await self._spawn(target.disconnect, close=request.close)
        await self._answer(request, {})

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
        self, event: str, args: list[Any], request_id: str | None, requester: str | None
    ) -> None:
        handler = self.namespace.handlers.server_events.get(event)
        result: Any = None
        if handler is not None:
            try:
                result = await handler(*args)
            except Exception:
                if self.namespace.server.handler_errors == "raise":
                    raise
                self._logger.exception("%r: server-side event handler for %r failed", self, event)
                return  # no answer: the requester sees this node missing
        if request_id is None:
            return
        response = Response(request_id, self.uid, RequestType.SERVER_SIDE_EMIT, {"data": result})
        await self._respond(requester, response)

    def _on_response(self, response: Response) -> None:
        collector = self._ack_requests.get(response.request_id)
        if collector is not None:
            if response.kind == RequestType.BROADCAST_CLIENT_COUNT:
                count = response.body.get("clientCount")
                if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                    raise WireError("bad clientCount")
                collector._node_reported(count)
            elif response.kind == RequestType.BROADCAST_ACK:
                collector._settle_remote(response.body.get("packet"))
            else:
                raise WireError("bad broadcast answer")
            if collector.complete:
                del self._ack_requests[response.request_id]
            return
        pending = self._requests.get(response.request_id)
        if pending is None:
            self._counters.ignored += 1  # another node's request, or one already finished
            return
        body = response.body
        if pending.kind == RequestType.REMOTE_FETCH:
            sockets = body.get("sockets")
            entries = sockets if isinstance(sockets, list) else []
            remote = [self._remote_socket(entry) for entry in entries]
            found = [socket for socket in remote if socket is not None]
            pending.add(found, response.uid)
            if len(entries) != len(found) or not isinstance(sockets, list):
                self._counters.dropped_malformed += 1
        elif pending.kind == RequestType.ALL_ROOMS:
            pending.add(room_list(body.get("rooms")), response.uid)
        else:  # SERVER_SIDE_EMIT
            pending.add([body.get("data")], response.uid)

    def _remote_socket(self, entry: Any) -> RemoteSocket | None:
        if not isinstance(entry, dict):
            return None
        sid = entry.get("id")
        if not isinstance(sid, str):
            return None
        try:
            rooms = frozenset(room_list(entry.get("rooms")))
        except WireError:
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
        """A local socket as Node's adapters describe one in a ``REMOTE_FETCH`` answer."""
        description: dict[str, Any] = {
            "id": socket.id,
            "handshake": node_handshake(socket.handshake),
            "rooms": sorted(socket.rooms),
            "data": socket.data,
        }
        try:
            self.namespace.server.json.dumps(description)
        except (TypeError, ValueError):
            self._logger.warning("%r: the data of %r is not JSON; sent as null", self, socket)
            description["data"] = None
        return description


def _opts(request: Request) -> BroadcastOptions:
    return request.opts or BroadcastOptions()
