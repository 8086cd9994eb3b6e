"""The Redis Streams adapter against a real Redis 7, real processes and Node's own
``@socket.io/redis-streams-adapter`` 0.3.

- Cross-process (``streams_cluster``): one private ``redis-server``, two trio_sio nodes with
  :class:`RedisStreamsAdapter` in their own processes and, per test, a Node socket.io 4.8 server
  with the Streams adapter, with socket.io-client clients on every node
  (tests/js/redis_cluster.mjs with ``REDIS_ADAPTER=streams``). Room broadcasts (binary,
  ``except``), fetchSockets and remote operations, serverSideEmit with acks and broadcasts with
  acks cross between all three, both ways.
- Recovery across nodes: a socket.io-client 4.8 client on trio_sio node A (through a TCP proxy)
  is cut, A broadcasts while it is away and stops; the client reconnects to node B (trio_sio on
  each host, or Node) and recovers: the same id, every missed broadcast once, in order
  (tests/js/streams_recovery.mjs), in each transport mode.
- In-process: hostile stream entries with a bystander client, registration errors.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
import msgpack
import pytest
import trio
from test_redis_adapter import Client, open_client, requires_node, wait_until

import trio_sio
from support.clients import JS_DIR, MODES, NODE, run_scenario
from support.redis import REDIS_MISSING, RedisServer
from support.redis_nodes import (
    Cluster,
    check_broadcast_ack,
    check_fetch,
    check_rooms,
    check_server_side_emit,
    trio_nodes,
)
from support.servers import HOSTS, serve_server
from support.websocket import open_websocket
from trio_sio.adapters._wire import Request
from trio_sio.adapters.redis import RedisAdapterOptions
from trio_sio.adapters.redis_streams import RedisStreamsAdapter

pytestmark = pytest.mark.skipif(REDIS_MISSING is not None, reason=REDIS_MISSING or "")

FAST = RedisAdapterOptions(requests_timeout=1.0, reconnect_delay=(0.02, 0.2), command_timeout=2)
RECOVERY = trio_sio.ConnectionStateRecovery(max_disconnection_duration=60)


@pytest.fixture(scope="module")
def streams_cluster() -> Iterator[Cluster[RedisServer]]:
    """A private Redis and two trio_sio nodes with the Streams adapter, "A" and "B"."""
    driver_env = {"REDIS_ADAPTER": "streams"}
    with (
        RedisServer() as server,
        trio_nodes(server, ["--adapter", "streams"], driver_env) as cluster,
    ):
        yield cluster


@pytest.mark.node
@requires_node
async def test_room_broadcasts_reach_every_node(streams_cluster: Cluster[RedisServer]) -> None:
    await check_rooms(streams_cluster)


@pytest.mark.node
@requires_node
async def test_fetch_sockets_and_remote_operations_both_ways(
    streams_cluster: Cluster[RedisServer],
) -> None:
    await check_fetch(streams_cluster)


@pytest.mark.node
@requires_node
async def test_server_side_emit_with_acks_both_ways(streams_cluster: Cluster[RedisServer]) -> None:
    await check_server_side_emit(streams_cluster)


@pytest.mark.node
@requires_node
async def test_broadcast_with_acks_counts_every_node(streams_cluster: Cluster[RedisServer]) -> None:
    await check_broadcast_ack(streams_cluster)


@pytest.mark.node
@requires_node
async def test_cross_process_broadcast_rate(streams_cluster: Cluster[RedisServer]) -> None:
    """Deliveries per second from node A through the stream to 10 clients of node B
    (reported)."""
    observed = await streams_cluster.drive("rate")
    print(f"\nstreams broadcast rate through Redis: {json.dumps(observed)}")
    assert observed["deliveries"] == observed["broadcasts"] * observed["receivers"]
    assert observed["receiver_node_dropped"] == 0


# --- recovery across nodes -------------------------------------------------------------------


class Proxy:
    """A TCP proxy on loopback in front of the servers of the recovery test. While it holds,
    a request that opens a new Engine.IO session (no ``sid``) waits for :meth:`release`,
    which names the next server; the requests of sessions already open pass. A new session's
    request on a connection already open to the old server closes that connection instead
    (the client retries on a new one, which waits)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.open = trio.Event()
        self.open.set()
        self.port = 0

    def hold(self) -> None:
        if self.open.is_set():
            self.open = trio.Event()

    def release(self, target: int) -> None:
        self.target = target
        self.open.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._forward, listeners)

    @staticmethod
    def _opens_a_session(chunk: bytes) -> bool:
        request_line = chunk.split(b"\r\n", 1)[0]
        return request_line.startswith(b"GET /socket.io/") and b"sid=" not in request_line

    async def _forward(self, client: trio.SocketStream) -> None:
        async with client:
            try:
                first = await client.receive_some()
            except trio.BrokenResourceError:
                return
            if self._opens_a_session(first):
                await self.open.wait()
            try:
                upstream = await trio.open_tcp_stream("127.0.0.1", self.target)
            except OSError:
                return
            async with upstream, trio.open_nursery() as nursery:

                async def pipe(source: trio.SocketStream, sink: trio.SocketStream) -> None:
                    try:
                        if source is client:
                            await sink.send_all(first)
                        async for chunk in source:
                            held = source is client and not self.open.is_set()
                            if held and self._opens_a_session(chunk):
                                break
                            await sink.send_all(chunk)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(pipe, client, upstream)
                nursery.start_soon(pipe, upstream, client)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def streams_server(redis_url: str, name: str) -> trio_sio.Server:
    factory = RedisStreamsAdapter.factory(redis_url, FAST)
    sio = trio_sio.Server(
        cors_allowed_origins="*", adapter_factory=factory, connection_state_recovery=RECOVERY
    )

    @sio.on("join")
    async def join(sock: trio_sio.Socket, room: str) -> str:
        sock.join(room)
        return room

    @sio.on("finish")
    async def finish(sock: trio_sio.Socket) -> str:
        await sio.to("news").emit("tick", 6)
        return name

    return sio


@asynccontextmanager
async def node_b(kind: str, host: str, redis_url: str) -> AsyncIterator[str]:
    """Node B's URL: a trio_sio server on ``host``, or a Node server."""
    if kind == "trio":
        async with serve_server(host, streams_server(redis_url, "B")) as url:
            yield url
        return
    assert NODE is not None
    process = await trio.lowlevel.open_process(
        [NODE, str(JS_DIR / "streams_node.mjs"), redis_url], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(20):
            line = b""
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some()
                assert chunk, "the Node node exited"
                line += chunk
        yield json.loads(line)["url"]
    finally:
        process.kill()
        await process.wait()


async def recover_on_b(
    host: str, redis_url: str, url_b: str, mode: str, session_stored: Callable[[], Awaitable[bool]]
) -> dict[str, Any]:
    """The recovery scenario (tests/js/streams_recovery.mjs) of a client that joins node A on
    ``host`` through a :class:`Proxy`, and is cut: A broadcasts ticks 1 to 5 while it is
    away, waits until ``session_stored()`` (A stored the session in Redis), and stops; the
    proxy lets the reconnection through to node B at ``url_b``. The scenario's result."""
    async with trio.open_nursery() as nursery:
        a = streams_server(redis_url, "A")
        a_scope = trio.CancelScope()
        a_served = trio.Event()
        a_url: list[str] = []

        async def run_a() -> None:
            with a_scope:
                async with serve_server(host, a) as url:
                    a_url.append(url)
                    a_served.set()
                    await trio.sleep_forever()

        nursery.start_soon(run_a)
        await a_served.wait()
        proxy = Proxy(port_of(a_url[0]))
        await nursery.start(proxy.serve)

        @a.on("prepare")
        async def prepare(sock: trio_sio.Socket) -> bool:
            proxy.hold()  # the client's reconnection waits at the proxy
            await a.to("news").emit("tick", 0)
            return True

        @a.on_disconnect
        async def away(sock: trio_sio.Socket, reason: trio_sio.DisconnectReason) -> None:
            nursery.start_soon(missed_then_stop)

        async def missed_then_stop() -> None:
            for number in range(1, 6):
                await a.to("news").emit("tick", number)
            with trio.fail_after(10):
                while not await session_stored():
                    await trio.sleep(0.02)
            a_scope.cancel()
            proxy.release(port_of(url_b))

        result = await run_scenario(
            [NODE or "node", str(JS_DIR / "streams_recovery.mjs")],
            f"http://127.0.0.1:{proxy.port}",
            mode,
            "recover",
        )
        nursery.cancel_scope.cancel()
    return result


@pytest.mark.node
@requires_node
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("host", "b_kind"), [*((h, "trio") for h in HOSTS), ("native", "node")])
async def test_a_client_recovers_on_another_node(host: str, b_kind: str, mode: str) -> None:
    async with (
        RedisServer() as redis,
        coredis.Redis.from_url(redis.url) as probe,
        node_b(b_kind, host, redis.url) as url_b,
    ):

        async def session_stored() -> bool:
            return bool(await probe.keys("sio:session:*"))

        result = await recover_on_b(host, redis.url, url_b, mode, session_stored)
    assert result["recovered"] is True
    assert result["same_id"] is True
    assert result["node"] == ("B" if b_kind == "trio" else "N")
    assert result["ticks"] == [0, 1, 2, 3, 4, 5, 6]


# --- in-process ------------------------------------------------------------------------------


def adapter_of(sio: trio_sio.Server) -> RedisStreamsAdapter:
    adapter = sio.main.adapter
    assert isinstance(adapter, RedisStreamsAdapter)
    return adapter


def broadcast_data(event: list[Any], room: str | None = None) -> bytes:
    data = {
        "packet": {"type": 2, "data": event, "nsp": "/"},
        "opts": {"rooms": [room] if room else [], "except": [], "flags": {}},
    }
    return json.dumps(data).encode()


@pytest.mark.parametrize("host", HOSTS)
async def test_hostile_stream_entries_are_dropped_and_a_bystander_keeps_working(
    host: str,
) -> None:
    redis = RedisServer()
    await redis.astart()
    sio = streams_server(redis.url, "A")
    deep: Any = "x"
    for _ in range(200):
        deep = [deep]
    try:
        async with (
            coredis.Redis.from_url(redis.url) as probe,
            serve_server(host, sio) as url,
            open_client(url) as victim,
            open_client(url) as bystander,
        ):
            adapter = adapter_of(sio)
            await victim.call("join", "r")
            await bystander.call("join", "b")
            await wait_until(lambda: adapter.connected)
            before = adapter.statistics()
            own = adapter.uid.encode()
            hostile: list[dict[bytes, bytes]] = [
                {b"uid": b"o", b"nsp": b"/", b"type": b"3", b"data": b"{not json"},
                {b"uid": b"o", b"nsp": b"/", b"type": b"3", b"data": b"!!not base64"},
                {b"uid": b"o", b"nsp": b"/", b"type": b"3x", b"data": b"{}"},
                {b"uid": b"o", b"nsp": b"/", b"type": b"3"},  # no data
                {b"uid": b"o", b"nsp": b"/", b"type": b"3", b"data": broadcast_data([["no"]])},
                {b"uid": b"o", b"nsp": b"/", b"type": b"3", b"data": broadcast_data(["d", deep])},
                {b"uid": b"\xff", b"nsp": b"/", b"type": b"3", b"data": broadcast_data(["u"])},
                {b"nsp": b"/", b"type": b"3", b"data": b"x" * 3},  # base64 of nothing sensible
                {b"uid": b"o", b"nsp": b"/other", b"type": b"3", b"data": broadcast_data(["e"])},
                {b"uid": b"o", b"nsp": b"/", b"type": b"99", b"data": b"{}"},  # foreign
                {b"uid": b"o", b"nsp": b"/", b"type": b"2"},  # a 0.2 heartbeat: foreign
                {b"uid": own, b"nsp": b"/", b"type": b"3", b"data": broadcast_data(["forged"])},
                {b"junk": b"only"},  # no namespace: foreign
            ]
            for fields in hostile:
                await probe.xadd("socket.io", fields)
            packed = msgpack.packb(  # what Node sends when a payload has binary
                {"packet": {"type": 2, "data": ["legit", 1]}, "opts": {"rooms": ["r"]}}
            )
            await probe.xadd(
                "socket.io", {"uid": "o", "nsp": "/", "type": "3", "data": base64.b64encode(packed)}
            )
            await probe.xadd(
                "socket.io",
                {"uid": "o", "nsp": "/", "type": "3", "data": broadcast_data(["still", 2], "b")},
            )
            legit = await victim.wait_for("legit")
            still = await bystander.wait_for("still")
            # With recovery on, each ends with its stream entry id, the client's offset.
            assert legit[0][0] == 1
            assert isinstance(legit[0][1], str)
            assert still[0][0] == 2
            after = adapter.statistics()
    finally:
        redis.close()

    def delta(name: str) -> int:
        return int(getattr(after, name) - getattr(before, name))

    assert delta("ignored_own") == 1
    assert delta("dropped_foreign") == 4
    assert delta("dropped_malformed") == 8
    assert [args[0] for args in bystander.events] == ["still"]


async def test_socket_emit_is_appended_and_replayed_on_another_node() -> None:
    """As Node's ``socket.emit`` with recovery on (a broadcast to the socket's own room): the
    event goes into the stream and carries its entry id as offset, and a client that comes
    back to another node with an earlier offset gets it again. ``emit_nowait`` cannot wait
    for Redis: it goes without an offset."""
    redis = RedisServer()
    await redis.astart()
    a = streams_server(redis.url, "A")
    b = streams_server(redis.url, "B")

    @a.on("direct")
    async def direct(sock: trio_sio.Socket) -> None:
        await sock.emit("direct-back", 1)
        sock.emit_nowait("nowait-back", 2)

    def ws_url(url: str) -> str:
        return url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"

    try:
        async with (
            coredis.Redis.from_url(redis.url) as probe,
            serve_server("native", a) as url_a,
            serve_server("native", b) as url_b,
        ):
            await wait_until(lambda: adapter_of(a).connected and adapter_of(b).connected)
            async with open_websocket(ws_url(url_a)) as ws, trio.open_nursery() as nursery:
                assert str(await ws.receive()).startswith("0")
                await ws.send("40")
                connected = json.loads(str(await ws.receive())[2:])
                client = Client(ws, connected["sid"])
                nursery.start_soon(client._read)
                await client.call("join", "news")
                await client.call("finish")  # a broadcast to "news": the offset before
                ((_, before),) = await client.wait_for("tick")
                await client.call("direct")
                ((one, offset),) = await client.wait_for("direct-back")
                assert client.named("nowait-back") == [[2]]
                nursery.cancel_scope.cancel()
            assert one == 1
            (entry,) = await probe.xrange("socket.io", offset, offset)
            message = adapter_of(a)._wire.decode(b"", adapter_of(a)._wire.frame(entry.field_values))
            assert isinstance(message, Request)
            assert message.event == ("direct-back", 1)
            assert message.opts is not None
            assert message.opts.rooms == {client.sid}
            with trio.fail_after(10):  # A stores the session as the connection drops
                while not await probe.keys("sio:session:*"):
                    await trio.sleep(0.02)
            async with open_websocket(ws_url(url_b)) as ws:
                assert str(await ws.receive()).startswith("0")
                await ws.send("40" + json.dumps({"pid": connected["pid"], "offset": before}))
                restored = json.loads(str(await ws.receive())[2:])
                assert restored["sid"] == client.sid
                replayed = str(await ws.receive())
                assert replayed.startswith("42"), replayed
                assert json.loads(replayed[2:]) == ["direct-back", 1, offset]
    finally:
        redis.close()


def test_registration_errors() -> None:
    with pytest.raises(ValueError, match="max_len"):
        RedisStreamsAdapter.factory("redis://127.0.0.1:1/0", max_len=0)
    with pytest.raises(ValueError, match="read_count"):
        RedisStreamsAdapter.factory("redis://127.0.0.1:1/0", read_count=True)
    with pytest.raises(ValueError, match="stream_name"):
        RedisStreamsAdapter.factory("redis://127.0.0.1:1/0", stream_name="")
