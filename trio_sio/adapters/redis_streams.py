"""A cluster adapter over one Redis stream, wire-compatible with Node's
``@socket.io/redis-streams-adapter`` 0.3, with connection state recovery across nodes.

Every node appends what may be replayed (broadcasts without acks, socket joins, leaves and
disconnects) to one stream (``XADD … MAXLEN ~ max_len``) and reads everyone's with ``XREAD
BLOCK`` from the last entry it read, so a node that loses Redis for a moment resumes where it
stopped. What nobody replays (fetching sockets, server-side events, broadcasts with acks, and
the answers) goes by pub/sub, msgpack, on ``<key>#<nsp>#`` and ``<key>#<nsp>#<uid>#``, and the
nodes are counted as the subscribers of ``<key>#<nsp>#`` (``PUBSUB NUMSUB``), as Node's 0.3
does. Node servers created with ``createAdapter(redisClient, {streamName, maxLen, readCount,
sessionKeyPrefix, channelPrefix})`` and trio_sio servers share one cluster::

    from trio_sio.adapters.redis_streams import RedisStreamsAdapter

    sio = trio_sio.Server(
        adapter_factory=RedisStreamsAdapter.factory("redis://127.0.0.1:6379/0"),
        connection_state_recovery=trio_sio.ConnectionStateRecovery(),
    )

An entry's fields are ``uid``, ``nsp``, ``type`` and ``data`` (``socket.io-adapter``'s
``ClusterAdapter`` messages; see :class:`~trio_sio.adapters._wire.StreamsWire`).

On a Redis Cluster (``redis+cluster://host:port,…``, see :mod:`trio_sio.adapters.redis`) the
stream is one key, so it lives on the one shard that owns its slot; each session key
(Node's names, no hash tag) lives on its own slot's owner, and every command names one key.
The pub/sub part works as the classic adapter's does on a cluster.

**Recovery across nodes.** With ``connection_state_recovery`` on, a broadcast is appended
before it is delivered, and its stream entry id is the offset its recipients keep (the last
argument on the wire, as Node appends it). A socket that loses its connection is stored in
Redis under ``<session_key_prefix><pid>`` (base64 msgpack ``{sid, pid, rooms, data}``, expiring
after ``max_disconnection_duration``), so its client can reconnect to *any* node of the
cluster, Node's included: that node takes the session (``GETDEL``), checks that the client's
offset is still in the stream, and replays the broadcasts after it that reached the session's
rooms, in stream order. Bounds:

- the stream holds about ``max_len`` entries (every message of every namespace); a client whose
  offset was trimmed away gets a fresh session;
- a session key lives at most ``max_disconnection_duration``, and is used once;
- a restore reads the stream ``read_count`` entries at a time, at most
  ``restore_max_reads`` times, and replays at most the server's
  ``ConnectionStateRecovery.max_packets`` packets and ``max_bytes`` bytes: a longer history
  gives a fresh session rather than part of one;
- sessions waiting to be stored are bounded by ``outbound_queue_size`` (beyond it, and while
  Redis is unreachable for longer, a disconnecting socket is not recoverable).

``socket.emit`` to one socket is appended too, as Node appends it (a broadcast to the socket's
own room), and sent once Redis has it. ``emit_nowait``, and what a socket is sent while
``on_connect`` runs, cannot wait for Redis: those go without an offset and are not replayed.

Lifecycle, back-pressure and hostile input are as for :mod:`trio_sio.adapters.redis` (the same
:class:`~trio_sio.adapters.redis.RedisAdapterOptions`, whose ``key`` is Node's
``channelPrefix`` and whose ``publish_on_specific_response_channel`` does not apply: answers
always go to the requester's channel; and
:class:`~trio_sio.adapters.redis.RedisAdapterStatistics`). Each namespace reads the stream on a
connection of its own.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import trio
from coredis.tokens import PureToken

from .._adapter import BroadcastOptions, is_recoverable
from .._protocol import Outgoing, PacketType, SocketPacket
from .._recovery import PersistedSession, RecoveryFailure, RestoredSession
from ._redis_base import (
    RedisAdapterBase,
    RedisAdapterOptions,
    parse_redis_url,
)
from ._wire import (
    MAX_ID_LENGTH,
    Request,
    RequestType,
    Response,
    StreamsWire,
    WireError,
    decode_session,
    encode_session,
    is_stream_id,
)

if TYPE_CHECKING:
    from .._namespace import Namespace
    from ._redis_base import AnyPubSub, RedisClient

__all__ = ["RedisStreamsAdapter", "StreamsSettings"]

#: How long one ``XREAD`` waits on the server for new entries (Node's is 200 ms too).
BLOCK_MS = 200


@dataclass(frozen=True)
class StreamsSettings:
    """The stream's settings, as Node's ``RedisStreamsAdapterOptions`` names them (times in
    seconds). Every node of a cluster must use the same ``stream_name`` and
    ``session_key_prefix``.

    Attributes:
        stream_name: the stream (Node: ``streamName``).
        max_len: about how many entries the stream keeps (``XADD … MAXLEN ~``; Node:
            ``maxLen``).
        read_count: entries read per ``XREAD`` (and per ``XRANGE`` of a restore; Node:
            ``readCount``).
        session_key_prefix: prefix of the Redis key of a disconnected socket's session
            (Node: ``sessionKeyPrefix``).
        restore_max_reads: most ``XRANGE`` calls one restore makes (Node's is 100).
    """

    stream_name: str = "socket.io"
    max_len: int = 10_000
    read_count: int = 100
    session_key_prefix: str = "sio:session:"
    restore_max_reads: int = 100

    def __post_init__(self) -> None:
        if not self.stream_name:
            raise ValueError("the Redis Streams adapter: stream_name must not be empty")
        for name in ("max_len", "read_count", "restore_max_reads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"the Redis Streams adapter: {name} must be a positive integer")


def _entry_id(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("ascii")


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


class RedisStreamsAdapter(RedisAdapterBase):
    """The cluster adapter of one namespace, over one Redis stream (see the module's docs).
    Create it through :meth:`factory`.

    Attributes:
        url: the Redis URL (``redis://[:password@]host:port/db``, ``rediss://``, ``unix://``,
            ``redis+cluster://…`` or ``redis+sentinel://…``: see
            :mod:`trio_sio.adapters.redis`).
        options: its :class:`~trio_sio.adapters.redis.RedisAdapterOptions`.
        streams: its :class:`StreamsSettings`.
        uid: this node's id in the cluster (per namespace, as in Node).
    """

    supports_recovery = True
    logger = logging.getLogger("trio_sio.adapters.redis_streams")
    _wire: StreamsWire

    def __init__(
        self,
        namespace: Namespace,
        url: str,
        options: RedisAdapterOptions | None = None,
        streams: StreamsSettings | None = None,
    ) -> None:
        self.streams = streams or StreamsSettings()
        super().__init__(namespace, url, options)
        #: The id of the last entry read, where the next XREAD starts (None: the tail).
        self._read_from: str | None = None
        #: The id of the entry being handled.
        self._entry_id = "0-0"
        #: sid -> the last entry replayed to it by a restore: later deliveries of those
        #: entries (read, or published, before the socket came back) skip it.
        self._replayed: dict[str, tuple[int, int]] = {}
        self._sessions_send, self._sessions_receive = trio.open_memory_channel[
            tuple[str, bytes, int]
        ](self.options.outbound_queue_size)

    @classmethod
    def factory(
        cls,
        url: str,
        options: RedisAdapterOptions | None = None,
        *,
        stream_name: str = "socket.io",
        max_len: int = 10_000,
        read_count: int = 100,
        session_key_prefix: str = "sio:session:",
        restore_max_reads: int = 100,
    ) -> Callable[[Namespace], RedisStreamsAdapter]:
        """An ``adapter_factory`` for :class:`~trio_sio.Server`: every namespace gets a
        :class:`RedisStreamsAdapter` on ``url`` with ``options`` and the stream settings of
        :class:`StreamsSettings` (checked here, as a cluster or Sentinel URL is)."""
        parse_redis_url(url)
        streams = StreamsSettings(
            stream_name=stream_name,
            max_len=max_len,
            read_count=read_count,
            session_key_prefix=session_key_prefix,
            restore_max_reads=restore_max_reads,
        )

        def make(namespace: Namespace) -> RedisStreamsAdapter:
            return cls(namespace, url, options, streams)

        return make

    def _make_wire(
        self, namespace: Namespace, options: RedisAdapterOptions, uid: str
    ) -> StreamsWire:
        return StreamsWire(
            self.streams.stream_name,
            options.key,
            namespace.name,
            uid,
            namespace.server.json,
            options.max_depth,
        )

    # --- the connection ------------------------------------------------------------------

    @asynccontextmanager
    async def _open_redis(self) -> AsyncIterator[tuple[AnyPubSub, RedisClient]]:
        """The subscriber and command client of every Redis adapter, and a client for the
        blocking reads of the stream."""
        async with (
            self._connect(blocking=BLOCK_MS / 1000) as reader,
            super()._open_redis() as pubsub,
        ):
            client = self._client
            assert client is not None
            with trio.fail_after(self.options.command_timeout):
                await reader.ping()
                if self._read_from is None:
                    last = await client.xrevrange(self.streams.stream_name, "+", "-", count=1)
                    self._read_from = _entry_id(last[0].identifier) if last else "0-0"
            yield pubsub, reader

    async def _subscribe(self, pubsub: AnyPubSub) -> None:
        await pubsub.subscribe(self._wire.channel, self._wire.own_response_channel)

    async def _count_subscribers(self, client: RedisClient) -> int:
        channel = self._wire.channel
        counts = await client.pubsub_numsub(channel)
        return int(counts.get(channel.encode(), 0))

    async def _serve_connection(self, connection: tuple[AnyPubSub, RedisClient]) -> None:
        pubsub, reader = connection
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._store_sessions)
            nursery.start_soon(self._read_stream, reader)
            await self._read(pubsub)

    async def _read_stream(self, reader: RedisClient) -> None:
        """``XREAD`` from the last entry read, into the bounded inbound queue."""
        stream = self.streams.stream_name
        count = self.streams.read_count
        frame = self._wire.frame
        while True:
            assert self._read_from is not None
            result = await reader.xread({stream: self._read_from}, count=count, block=BLOCK_MS)
            for entries in (result or {}).values():
                for entry in entries:
                    self._read_from = _entry_id(entry.identifier)
                    self._received(self._read_from.encode(), frame(entry.field_values))

    def _queue_publish(self, target: Any, channel: str, payload: bytes) -> Any:
        if not self._wire.is_entry(channel):
            return target.publish(channel, payload)
        return self._xadd(target, channel, payload)

    def _publish_has_key(self, channel: str) -> bool:
        return self._wire.is_entry(channel)  # XADD to the stream; the rest is PUBLISH

    def _xadd(self, target: Any, stream: str, payload: bytes) -> Any:
        """``XADD`` of ``payload`` to ``stream``, trimmed to about ``max_len`` entries, on
        ``target`` (a client: awaitable; a pipeline: queued)."""
        return target.xadd(
            stream,
            StreamsWire.fields(payload),
            identifier="*",
            trim_strategy=PureToken.MAXLEN,
            threshold=self.streams.max_len,
            trim_operator=PureToken.APPROXIMATELY,
        )

    async def _append(self, payload: bytes) -> str | None:
        """Append one entry now, outside the queue; its id, or ``None`` if it failed."""
        client = self._client
        if client is None or not self._connected:
            self._counters.publish_dropped += 1
            return None
        try:
            with trio.fail_after(self.options.command_timeout):
                entry_id = await self._xadd(client, self.streams.stream_name, payload)
        except Exception as exc:
            self._counters.publish_dropped += 1
            self._logger.debug("%r: appending to the stream failed: %s", self, exc)
            return None
        self._counters.published += 1
        return None if entry_id is None else _entry_id(entry_id)

    async def _handle(self, channel: bytes, message: Request | Response) -> None:
        is_entry = b"#" not in channel
        if is_entry:
            self._entry_id = channel.decode("ascii")
        await super()._handle(channel, message)
        if is_entry:
            self._forget_replayed(_id_key(self._entry_id))

    # --- broadcasts and their offsets ----------------------------------------------------

    def _recoverable(self, packet: SocketPacket, opts: BroadcastOptions) -> bool:
        return self.recovery_store is not None and is_recoverable(packet, opts)

    def _with_offset(
        self, packet: SocketPacket, opts: BroadcastOptions, entry_id: str
    ) -> tuple[BroadcastOptions, Outgoing]:
        """The recipients (without the sockets that got this entry from a restore already)
        and the encoding of ``packet`` with ``entry_id`` as its last argument."""
        key = _id_key(entry_id)
        replayed = [sid for sid, until in self._replayed.items() if until >= key]
        if replayed:
            opts = replace(opts, except_rooms=opts.except_rooms | frozenset(replayed))
        return opts, self.encode(replace(packet, data=[*packet.data, entry_id]))

    async def broadcast(self, packet: SocketPacket, opts: BroadcastOptions) -> None:
        """With recovery on, append first and deliver with the entry id as offset (as
        Node does); otherwise as every cluster adapter."""
        if opts.local or not self._recoverable(packet, opts):
            await super().broadcast(packet, opts)
            return
        request = Request(RequestType.BROADCAST, self.uid, opts=opts, event=tuple(packet.data))
        encoded = self._encode_request(request)
        entry_id = None if encoded is None else await self._append(encoded[1])
        if entry_id is None:
            self.broadcast_local(packet, opts)
            return
        self.broadcast_local(packet, *self._with_offset(packet, opts, entry_id))

    def _deliver_remote_broadcast(self, packet: SocketPacket, opts: BroadcastOptions) -> None:
        if not self._recoverable(packet, opts):
            self.broadcast_local(packet, opts)
            return
        self.broadcast_local(packet, *self._with_offset(packet, opts, self._entry_id))

    def _forget_replayed(self, read: tuple[int, int]) -> None:
        """Entries up to ``read`` are handled: restored sockets need no more skipping."""
        if self._replayed:
            for sid in [sid for sid, until in self._replayed.items() if until <= read]:
                del self._replayed[sid]

    def record(
        self,
        packet: SocketPacket,
        opts: BroadcastOptions,
        encode: Callable[[SocketPacket], Outgoing],
    ) -> Outgoing:
        """What cannot wait for the stream (``emit_nowait``, an emit while ``on_connect``
        runs) is not appended to it: encoded without an offset."""
        return encode(packet)

    async def record_emit(
        self,
        packet: SocketPacket,
        opts: BroadcastOptions,
        encode: Callable[[SocketPacket], Outgoing],
    ) -> Outgoing:
        """``socket.emit`` is appended to the stream first, as a broadcast to the socket's own
        room (as Node's is), and goes with its entry id as offset: a restore on any node
        replays it if it was lost with the connection. Without an offset if Redis does not
        take it (as a broadcast then goes)."""
        entry_id = None
        if self._recoverable(packet, opts):
            request = Request(RequestType.BROADCAST, self.uid, opts=opts, event=tuple(packet.data))
            encoded = self._encode_request(request)
            if encoded is not None:
                entry_id = await self._append(encoded[1])
        if entry_id is None:
            await trio.lowlevel.checkpoint()
            return encode(packet)
        return encode(replace(packet, data=[*packet.data, entry_id]))

    # --- sessions in Redis ---------------------------------------------------------------

    def persist_session(self, session: PersistedSession) -> None:
        """Queue the session to be stored in Redis (Node's key and format), expiring after
        ``max_disconnection_duration``."""
        recovery = self.namespace.server.connection_state_recovery
        assert recovery is not None
        try:
            value = encode_session(session)
        except (TypeError, ValueError, OverflowError) as exc:
            self._logger.warning("%r: the session of %s is not stored: %s", self, session.sid, exc)
            return
        if len(value) > self.options.max_message_size:
            self._logger.warning("%r: the session of %s is too large to store", self, session.sid)
            return
        ttl_ms = max(1, int(recovery.max_disconnection_duration * 1000))
        key = self.streams.session_key_prefix + session.pid
        try:
            self._sessions_send.send_nowait((key, value, ttl_ms))
        except trio.WouldBlock:
            self._counters.publish_dropped += 1
            self._logger.warning("%r: too many sessions waiting to be stored", self)

    async def _store_sessions(self) -> None:
        async for key, value, ttl_ms in self._sessions_receive:
            client = self._client
            if client is None:  # the connection just ended: this session is lost
                self._counters.publish_dropped += 1
                continue
            try:
                with trio.fail_after(self.options.command_timeout):
                    await client.set(key, value, px=ttl_ms)
            except Exception as exc:
                self._counters.publish_dropped += 1
                self._logger.debug("%r: storing a session failed: %s", self, exc)

    async def restore_session(
        self, pid: str, offset: str | None
    ) -> RestoredSession[Outgoing] | RecoveryFailure:
        """Take the session ``pid`` from Redis and replay the broadcasts after ``offset``
        (a stream entry id) that reached its rooms (Node's ``restoreSession``)."""
        await trio.lowlevel.checkpoint()
        client = self._client
        if offset is None or not is_stream_id(offset):
            return RecoveryFailure.UNKNOWN_OFFSET
        if not pid or len(pid) > MAX_ID_LENGTH or client is None:
            return RecoveryFailure.UNKNOWN_PID
        stream = self.streams.stream_name
        try:
            with trio.fail_after(self.options.command_timeout):
                raw = await client.getdel(self.streams.session_key_prefix + pid)
                if raw is None:
                    return RecoveryFailure.UNKNOWN_PID
                if not await client.xrange(stream, offset, offset):
                    return RecoveryFailure.EVICTED
            session = decode_session(bytes(raw), self.namespace.name, self.options.max_depth)
            return await self._replay(client, session, offset)
        except WireError as exc:
            self._logger.info("%r: a stored session does not decode: %s", self, exc)
            return RecoveryFailure.UNKNOWN_PID
        except Exception as exc:  # Redis unreachable or slow: whatever shape coredis gives
            self._logger.info("%r: restoring a session failed: %s", self, exc)
            return RecoveryFailure.UNKNOWN_PID

    async def _replay(
        self, client: RedisClient, session: PersistedSession, offset: str
    ) -> RestoredSession[Outgoing] | RecoveryFailure:
        recovery = self.namespace.server.connection_state_recovery
        assert recovery is not None
        settings = self.streams
        wire = self._wire
        missed: list[Outgoing] = []
        nbytes = 0
        last = offset
        for _ in range(settings.restore_max_reads):
            with trio.fail_after(self.options.command_timeout):
                entries = await client.xrange(
                    settings.stream_name, "(" + last, "+", count=settings.read_count
                )
            for entry in entries:
                last = _entry_id(entry.identifier)
                frame = wire.frame(entry.field_values)
                if len(frame) > self.options.max_message_size:
                    continue
                try:
                    message = wire.decode(b"", frame)
                except WireError:
                    continue  # another namespace, or not ours to read
                if not self._replays(message, session.rooms):
                    continue
                assert isinstance(message, Request)
                packet = SocketPacket(PacketType.EVENT, self.namespace.name, [*message.event, last])
                outgoing = self.encode(packet)
                missed.append(outgoing)
                nbytes += outgoing.nbytes
                if len(missed) > recovery.max_packets or nbytes > recovery.max_bytes:
                    return RecoveryFailure.EVICTED
            if len(entries) < settings.read_count:
                break
        else:
            return RecoveryFailure.EVICTED  # more history than a restore reads
        self._replayed[session.sid] = _id_key(last)
        return RestoredSession(session, missed)

    @staticmethod
    def _replays(message: Request | Response, rooms: frozenset[str]) -> bool:
        """Whether a restored session missed ``message``: a broadcast without acks, not
        volatile, to one of ``rooms`` (or to all) and to none it is excepted from."""
        if not isinstance(message, Request) or message.kind != RequestType.BROADCAST:
            return False
        opts = message.opts or BroadcastOptions()
        return (
            message.request_id is None
            and not opts.volatile
            and (not opts.rooms or not opts.rooms.isdisjoint(rooms))
            and opts.except_rooms.isdisjoint(rooms)
        )
