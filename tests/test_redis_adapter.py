"""The Redis adapter against real Redis servers, real processes and Node's own adapter.

- Cross-process (``cluster`` fixture): one private ``redis-server``, two trio_sio nodes in
  their own processes (tests/support/redis_cluster_node.py) and, per test, a Node socket.io 4.8
  server with ``@socket.io/redis-adapter`` 8.x plus socket.io-client clients on every node
  (tests/js/redis_cluster.mjs). Room broadcasts, fetchSockets, remote join/leave/disconnect,
  serverSideEmit and broadcasts with acks cross between all three, both ways.
- ``tests/conformance_app.py`` with ``TRIO_SIO_REDIS_URL`` set, under the hypercorn CLI,
  receives what ``@socket.io/redis-emitter`` publishes.
- In-process (two servers in this Trio run, talking through Redis; raw WebSocket clients):
  Redis restarted mid-test, Redis absent at startup, hostile messages, and requests that some
  node never answers.

Every Redis here is the test's own (tests/support/redis.py), never the system's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coredis
import msgpack
import pytest
import trio

import trio_sio
from support.clients import JS_DIR, NODE
from support.redis import REDIS_MISSING, RedisServer, free_port
from support.redis_nodes import (
    Cluster,
    Process,
    check_broadcast_ack,
    check_fetch,
    check_rooms,
    check_server_side_emit,
    run_driver,
    spawn,
    trio_nodes,
    wait_for_url,
)
from support.servers import serve_app
from support.websocket import WebSocket, open_websocket
from trio_sio.adapters import ClusterReplies
from trio_sio.adapters.redis import RedisAdapter, RedisAdapterOptions

pytestmark = pytest.mark.skipif(REDIS_MISSING is not None, reason=REDIS_MISSING or "")


def _node_missing() -> str | None:
    if NODE is None:
        return "node is not on PATH"
    if not (JS_DIR / "node_modules" / "@socket.io" / "redis-adapter").is_dir():
        return "tests/js/node_modules lacks @socket.io/redis-adapter: `npm ci --prefix tests/js`"
    return None


NODE_MISSING = _node_missing()
requires_node = pytest.mark.skipif(NODE_MISSING is not None, reason=NODE_MISSING or "")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster[RedisServer]]:
    """A private Redis and two trio_sio nodes, "A" and "B", each in its own process."""
    if REDIS_MISSING is not None:
        pytest.skip(REDIS_MISSING)
    with RedisServer() as server, trio_nodes(server) as nodes:
        yield nodes


# --- across processes: two trio_sio nodes and a Node node ------------------------------------


@pytest.mark.node
@requires_node
async def test_room_broadcasts_reach_every_node(cluster: Cluster[RedisServer]) -> None:
    await check_rooms(cluster)


@pytest.mark.node
@requires_node
async def test_fetch_sockets_and_remote_operations_both_ways(cluster: Cluster[RedisServer]) -> None:
    await check_fetch(cluster)


@pytest.mark.node
@requires_node
async def test_server_side_emit_both_ways(cluster: Cluster[RedisServer]) -> None:
    await check_server_side_emit(cluster)


@pytest.mark.node
@requires_node
async def test_broadcast_with_acks_counts_every_node(cluster: Cluster[RedisServer]) -> None:
    await check_broadcast_ack(cluster)


@pytest.mark.node
@requires_node
async def test_redis_emitter_reaches_trio_clients(cluster: Cluster[RedisServer]) -> None:
    observed = await cluster.drive("emitter")
    assert observed["receivers"] == 2


@pytest.mark.node
@requires_node
async def test_cross_process_broadcast_rate(cluster: Cluster[RedisServer]) -> None:
    """Deliveries per second from node A through Redis to 10 clients of node B (reported)."""
    observed = await cluster.drive("rate")
    print(f"\ncross-process broadcast rate through Redis: {json.dumps(observed)}")
    assert observed["deliveries"] == observed["broadcasts"] * observed["receivers"]
    assert observed["receiver_node_dropped"] == 0
    assert observed["deliveries_per_second"] > 1000


@pytest.mark.node
@requires_node
async def test_conformance_app_joins_a_cluster_with_the_env_var() -> None:
    """``TRIO_SIO_REDIS_URL`` makes tests/conformance_app.py a cluster node."""
    redis = RedisServer()
    workdir = Path(tempfile.mkdtemp(prefix="trio-sio-conformance-"))
    process: Process | None = None
    try:
        await redis.astart()
        env = dict(os.environ, TRIO_SIO_REDIS_URL=redis.url, PYTHONUNBUFFERED="1")
        argv = [
            sys.executable,
            "-m",
            "hypercorn",
            "-k",
            "trio",
            "--bind",
            "127.0.0.1:0",
            "tests/conformance_app.py:app",
        ]
        process = spawn("C", argv, workdir, env)
        await trio.to_thread.run_sync(wait_for_url, process, r"Running on (http://\S+)", "stderr")
        observed = await run_driver("emitter", redis.url, [f"C={process.url}"], process.output())
        assert observed["receivers"] == 1
    finally:
        if process is not None:
            process.stop()
        redis.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.node
@requires_node
async def test_cluster_survives_a_redis_restart(cluster: Cluster[RedisServer]) -> None:
    """Redis killed under the running processes: local traffic goes on, then the cluster
    (trio_sio nodes and a Node node) works again, with one warning per node for the outage."""

    def outage_warnings(node: Process) -> int:
        return node.stderr.read_text(errors="replace").count("no connection to Redis")

    before = [outage_warnings(node) for node in cluster.nodes]
    a = cluster.nodes[0]
    async with open_client(a.url) as client:
        await client.call("join", "restart")
        cluster.redis.stop()
        await wait_until_async(lambda: stats_of(client), lambda s: not s["connected"])
        await client.call("room-broadcast", "restart", "during the outage")
        assert await client.wait_for("room-message") == [["A", "restart", "during the outage"]]
        await trio.sleep(0.3)  # a few reconnection attempts
        await cluster.redis.astart()
        for node in cluster.nodes:
            async with open_client(node.url) as probe:
                await wait_until_async(lambda p=probe: stats_of(p), lambda s: s["connected"])
    await check_rooms(cluster)
    after = [outage_warnings(node) for node in cluster.nodes]
    assert [n - b for n, b in zip(after, before, strict=True)] == [1, 1], cluster.output()


async def stats_of(client: Client) -> dict[str, Any]:
    (stats,) = await client.call("stats")
    assert isinstance(stats, dict)
    return stats


async def wait_until_async(
    fetch: Callable[[], Awaitable[dict[str, Any]]], predicate: Callable[[dict[str, Any]], bool]
) -> None:
    """Poll ``fetch()`` until ``predicate`` holds on its result, for up to 10 s."""
    with trio.fail_after(10):
        while True:
            if predicate(await fetch()):
                return
            await trio.sleep(0.05)


# --- in-process: a raw Socket.IO client, and two servers in this Trio run -------------------


@dataclass
class Client:
    """A minimal Socket.IO client over a raw WebSocket (text events and acks only)."""

    ws: WebSocket
    sid: str
    events: list[list[Any]] = field(default_factory=list)
    _acks: dict[int, list[Any]] = field(default_factory=dict)
    _next_id: int = 0
    _changed: trio.Event = field(default_factory=trio.Event)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _read(self) -> None:
        while True:
            message = await self.ws.receive()
            assert isinstance(message, str), message
            if message == "2":
                await self.ws.send("3")
            elif message.startswith("42"):
                match = re.match(r"42\d*(.*)", message, re.DOTALL)
                assert match is not None, message
                self.events.append(json.loads(match.group(1)))  # acks asked for: never given
                self._wake()
            elif message.startswith("43"):
                match = re.match(r"43(\d+)(.*)", message)
                assert match is not None, message
                self._acks[int(match.group(1))] = json.loads(match.group(2))
                self._wake()

    async def call(self, event: str, *args: Any) -> list[Any]:
        ack_id = self._next_id
        self._next_id += 1
        await self.ws.send(f"42{ack_id}" + json.dumps([event, *args]))
        with trio.fail_after(5):
            while ack_id not in self._acks:
                await self._changed.wait()
        return self._acks.pop(ack_id)

    def named(self, event: str) -> list[list[Any]]:
        return [args[1:] for args in self.events if args[0] == event]

    async def wait_for(self, event: str, count: int = 1) -> list[list[Any]]:
        with trio.fail_after(5):
            while len(self.named(event)) < count:
                await self._changed.wait()
        return self.named(event)


@asynccontextmanager
async def open_client(url: str) -> AsyncIterator[Client]:
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with open_websocket(ws_url) as ws:
        opening = await ws.receive()
        assert isinstance(opening, str), opening
        assert opening.startswith("0"), opening
        await ws.send("40")
        connected = await ws.receive()
        assert isinstance(connected, str), connected
        assert connected.startswith("40"), connected
        client = Client(ws, json.loads(connected[2:])["sid"])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._read)
            yield client
            nursery.cancel_scope.cancel()


FAST = RedisAdapterOptions(requests_timeout=0.5, reconnect_delay=(0.02, 0.2), command_timeout=2)


def make_server(redis_url: str, options: RedisAdapterOptions = FAST) -> trio_sio.Server:
    sio = trio_sio.Server(adapter_factory=RedisAdapter.factory(redis_url, options))

    @sio.on("join")
    async def join(sock: trio_sio.Socket, room: str) -> str:
        sock.join(room)
        return room

    return sio


def adapter_of(sio: trio_sio.Server) -> RedisAdapter:
    adapter = sio.main.adapter
    assert isinstance(adapter, RedisAdapter)
    return adapter


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` (the adapters' state has no event to wait on) for up to 5 s."""
    with trio.fail_after(5):
        while True:
            if predicate():
                return
            await trio.sleep(0.02)


async def cluster_size(sio: trio_sio.Server, expected: int) -> None:
    """Wait until ``PUBSUB NUMSUB`` counts ``expected`` nodes."""
    with trio.fail_after(5):
        while True:
            if await adapter_of(sio).server_count() == expected:
                return
            await trio.sleep(0.02)


@asynccontextmanager
async def two_nodes(
    redis_url: str,
) -> AsyncIterator[tuple[trio_sio.Server, trio_sio.Server, Client, Client]]:
    """Two servers on ``redis_url`` under the ASGI app, a client on each, both in room "r",
    once the cluster counts both."""
    one, two = make_server(redis_url), make_server(redis_url)
    async with (
        serve_app(trio_sio.ASGIApp(one)) as url1,
        serve_app(trio_sio.ASGIApp(two)) as url2,
        open_client(url1) as c1,
        open_client(url2) as c2,
    ):
        for client in (c1, c2):
            await client.call("join", "r")
        await cluster_size(one, 2)
        yield one, two, c1, c2


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    async with RedisServer() as server:
        yield server


async def test_redis_restart_local_continues_cluster_resumes(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio.adapters.redis")
    async with two_nodes(redis.url) as (one, two, c1, c2):
        await one.to("r").emit("m", 1)
        await c1.wait_for("m")
        await c2.wait_for("m")

        redis.stop()
        await wait_until(lambda: not adapter_of(one).connected)
        await wait_until(lambda: not adapter_of(two).connected)
        await one.to("r").emit("m", 2)  # local delivery goes on
        assert (await c1.wait_for("m", 2))[1] == [2]
        await trio.sleep(0.5)  # several reconnection attempts
        assert len(c2.named("m")) == 1  # nothing crossed meanwhile
        sockets = await one.fetch_sockets()
        assert isinstance(sockets, ClusterReplies)
        assert sockets.nodes is None
        assert [s.id for s in sockets] == [c1.sid]

        await redis.astart()
        await wait_until(lambda: adapter_of(one).connected)
        await wait_until(lambda: adapter_of(two).connected)
        await cluster_size(one, 2)
        await one.to("r").emit("m", 3)
        await two.to("r").emit("m", 4)
        assert sorted(args[0] for args in await c1.wait_for("m", 4)) == [1, 2, 3, 4]
        assert sorted(args[0] for args in await c2.wait_for("m", 3)) == [1, 3, 4]  # any order
        sockets = await two.fetch_sockets()
        assert isinstance(sockets, ClusterReplies)
        assert sorted(s.id for s in sockets) == sorted([c1.sid, c2.sid])
        assert sockets.complete

    for sio in (one, two):
        stats = adapter_of(sio).statistics()
        assert stats.outages == 1
        assert stats.publish_dropped >= (1 if sio is one else 0)
    ours = [r for r in caplog.records if r.name == "trio_sio.adapters.redis"]
    warnings = [r for r in ours if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]  # one per adapter and outage
    assert all("no connection to Redis" in r.getMessage() for r in warnings)
    recoveries = [r for r in ours if "is back after" in r.getMessage()]
    assert len(recoveries) == 2


async def test_startup_without_redis_does_not_block(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    sio = make_server(f"redis://127.0.0.1:{port}/0")
    with trio.fail_after(5):
        async with serve_app(trio_sio.ASGIApp(sio)) as url, open_client(url) as client:
            assert not adapter_of(sio).connected
            await client.call("join", "r")
            await sio.to("r").emit("local", 1)
            assert await client.wait_for("local") == [[1]]
            assert await sio.server_side_emit_with_ack("anything") == []
            redis = RedisServer(port)
            try:
                await redis.astart()
                await wait_until(lambda: adapter_of(sio).connected)
            finally:
                redis.close()
    warnings = [
        r
        for r in caplog.records
        if r.name == "trio_sio.adapters.redis" and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


async def test_hostile_messages_are_dropped_and_counted(redis: RedisServer) -> None:
    options = dataclasses.replace(FAST, max_message_size=10_000)
    sio = make_server(redis.url, options)
    adapter = adapter_of(sio)
    client_redis = coredis.Redis.from_url(redis.url)
    broadcast = "socket.io#/#"
    requests = "socket.io-request#/#"

    def packet(data: list[Any], nsp: str = "/") -> dict[str, Any]:
        return {"type": 2, "data": data, "nsp": nsp}

    def envelope(uid: Any, data: list[Any], nsp: str = "/") -> bytes:
        return msgpack.packb([uid, packet(data, nsp), {"rooms": ["r"], "except": []}])

    deep: Any = ["deep"]
    for _ in range(100):
        deep = [deep]
    async with (
        client_redis,
        serve_app(trio_sio.ASGIApp(sio)) as url,
        open_client(url) as client,
    ):
        await client.call("join", "r")
        await wait_until(lambda: adapter.connected)
        before = adapter.statistics()
        hostile: list[tuple[str, bytes]] = [
            (broadcast, b"\xc1 not msgpack"),  # malformed
            (broadcast, b"\x92\xa1x"),  # truncated msgpack: malformed
            (broadcast, b"\x80" * 10_001),  # oversized
            (broadcast, envelope(adapter.uid, ["forged", 1])),  # this node's own uid: own
            (broadcast, envelope(42, ["bad-uid"])),  # malformed
            (broadcast, envelope("x" * 1000, ["long-uid"])),  # malformed
            (broadcast, envelope("other", ["elsewhere"], nsp="/other")),  # foreign
            (broadcast, envelope("other", [["not", "an", "event"]])),  # malformed
            (broadcast, envelope("other", ["deep", deep])),  # malformed (too deep)
            (broadcast, msgpack.packb(["other", packet(["ext", msgpack.ExtType(5, b"x")]), {}])),
            (broadcast, msgpack.packb(["other", packet(["nan", float("nan")]), {}])),  # malformed
            (broadcast + "x", envelope("other", ["no-room-terminator"])),  # foreign
            (requests, b"{not json"),  # malformed
            (requests, b'{"type": 5, "requestId": 7}'),  # malformed
            (requests, b'{"type": 42, "requestId": "abc"}'),  # foreign
            (requests, b"\xff\xfe"),  # malformed
            (requests, json.dumps({"type": 6, "data": "no list"}).encode()),  # malformed
            ("socket.io-response#/#", b'{"requestId": "nobody"}'),  # ignored
            ("socket.io-response#/#", b"[1, 2]"),  # malformed
        ]
        for channel, payload in hostile:
            await client_redis.publish(channel, payload)
        # Then a well-formed event from another "node": the adapter task must still be alive.
        await client_redis.publish(broadcast + "r#", envelope("other", ["legit", 1]))
        assert await client.wait_for("legit") == [[1]]
        after = adapter.statistics()

    def delta(name: str) -> int:
        return int(getattr(after, name) - getattr(before, name))

    assert delta("received") == len(hostile) + 1
    assert delta("dropped_oversized") == 1
    assert delta("ignored_own") == 1
    assert delta("dropped_foreign") == 3
    assert delta("dropped_malformed") == 13
    assert delta("ignored") == 1
    assert [args[0] for args in client.events] == ["legit"]


async def test_cluster_requests_return_what_arrived_in_time(redis: RedisServer) -> None:
    """A node that subscribes but never answers: requests return at the deadline and say so."""
    sio = make_server(redis.url)
    silent = coredis.Redis.from_url(redis.url)
    async with (
        silent,
        silent.pubsub(channels=["socket.io-request#/#"]),
        serve_app(trio_sio.ASGIApp(sio)) as url,
        open_client(url) as client,
    ):
        await cluster_size(sio, 2)
        with trio.fail_after(2):
            sockets = await sio.fetch_sockets()
            replies = await sio.server_side_emit_with_ack("ping")
            rooms = await adapter_of(sio).all_rooms()
        assert isinstance(sockets, ClusterReplies)
        assert [s.id for s in sockets] == [client.sid]
        assert (sockets.nodes, sockets.answered, sockets.missing, sockets.complete) == (
            1,
            0,
            1,
            False,
        )
        assert (replies, replies.missing) == ([], 1)
        assert list(rooms) == [client.sid]
        assert rooms.missing == 1
        acks = await sio.emit_with_ack("question")
        with trio.move_on_after(0.3):
            await acks.wait()
        assert not acks.complete
        assert acks.missing_nodes == 1


async def test_local_and_volatile_flags_between_trio_nodes(redis: RedisServer) -> None:
    async with two_nodes(redis.url) as (one, _, c1, c2):
        published = adapter_of(one).statistics().published
        await one.local.to("r").emit("m", "local")
        await c1.wait_for("m", 1)
        await one.volatile.to("r").emit("m", "volatile")  # nothing queued: not dropped
        await c1.wait_for("m", 2)
        await one.to("r").except_(c2.sid).emit("m", "except")
        await one.to("r").emit("m", "all")
        expected = ["local", "volatile", "except", "all"]
        assert [args[0] for args in await c1.wait_for("m", 4)] == expected
        assert [args[0] for args in await c2.wait_for("m", 2)] == ["volatile", "all"]
        await wait_until(lambda: adapter_of(one).statistics().published == published + 3)
