"""The sharded Redis adapter against a real Redis 7, real processes and Node's own
``createShardedAdapter``.

- Cross-process (``sharded_cluster``, once per subscription mode): one private ``redis-server``,
  two trio_sio nodes with :class:`ShardedRedisAdapter` in their own processes and, per test, a
  Node socket.io 4.8 server with ``@socket.io/redis-adapter`` 8.3's sharded adapter in the same
  mode, with socket.io-client clients on every node (tests/js/redis_cluster.mjs with
  ``REDIS_ADAPTER=sharded``). Room broadcasts (binary, ``except``), fetchSockets, remote
  join/leave/emit/disconnect, serverSideEmit with acks and broadcasts with acks cross between
  all three, both ways.
- In-process: the per-room channels follow membership in each mode, hostile shard messages
  with a bystander client, a Redis restart (the room channels come back), and registration
  errors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import coredis
import msgpack
import pytest
import trio
from test_redis_adapter import open_client, redis, requires_node, wait_until

import trio_sio
from support.redis import REDIS_MISSING, RedisServer
from support.redis_nodes import (
    Cluster,
    check_broadcast_ack,
    check_fetch,
    check_rooms,
    check_server_side_emit,
    spawn,
    trio_nodes,
    wait_for_url,
)
from support.servers import HOSTS, serve_app, serve_server
from trio_sio.adapters import redis_sharded
from trio_sio.adapters.redis import RedisAdapterOptions
from trio_sio.adapters.redis_sharded import ShardedRedisAdapter

pytestmark = pytest.mark.skipif(REDIS_MISSING is not None, reason=REDIS_MISSING or "")
__all__ = ["redis"]  # the fixture, used by the in-process tests

MODES = ["dynamic", "static", "dynamic-private"]


@pytest.fixture(scope="module", params=MODES)
def sharded_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster[RedisServer]]:
    """A private Redis and two sharded trio_sio nodes, "A" and "B", in one subscription mode."""
    mode: str = request.param
    node_args = ["--adapter", "sharded", "--subscription-mode", mode]
    driver_env = {"REDIS_ADAPTER": "sharded", "SUBSCRIPTION_MODE": mode}
    with RedisServer() as server, trio_nodes(server, node_args, driver_env) as cluster:
        yield cluster


@pytest.mark.node
@requires_node
async def test_room_broadcasts_reach_every_node(sharded_cluster: Cluster[RedisServer]) -> None:
    await check_rooms(sharded_cluster)


@pytest.mark.node
@requires_node
async def test_fetch_sockets_and_remote_operations_both_ways(
    sharded_cluster: Cluster[RedisServer],
) -> None:
    await check_fetch(sharded_cluster)


@pytest.mark.node
@requires_node
async def test_server_side_emit_with_acks_both_ways(sharded_cluster: Cluster[RedisServer]) -> None:
    await check_server_side_emit(sharded_cluster)


@pytest.mark.node
@requires_node
async def test_broadcast_with_acks_counts_every_node(sharded_cluster: Cluster[RedisServer]) -> None:
    await check_broadcast_ack(sharded_cluster)


@pytest.mark.node
@requires_node
async def test_cross_process_broadcast_rate(sharded_cluster: Cluster[RedisServer]) -> None:
    """Deliveries per second from node A through Redis to 10 clients of node B (reported)."""
    observed = await sharded_cluster.drive("rate")
    mode = sharded_cluster.driver_env["SUBSCRIPTION_MODE"]
    print(f"\nsharded ({mode}) broadcast rate through Redis: {json.dumps(observed)}")
    assert observed["deliveries"] == observed["broadcasts"] * observed["receivers"]
    assert observed["receiver_node_dropped"] == 0


# --- in-process ------------------------------------------------------------------------------

FAST = RedisAdapterOptions(requests_timeout=0.5, reconnect_delay=(0.02, 0.2), command_timeout=2)


def make_server(
    redis_url: str, mode: str = "dynamic", options: RedisAdapterOptions = FAST
) -> trio_sio.Server:
    factory = ShardedRedisAdapter.factory(redis_url, options, subscription_mode=mode)  # type: ignore[arg-type]
    sio = trio_sio.Server(adapter_factory=factory)

    @sio.on("join")
    async def join(sock: trio_sio.Socket, room: str) -> str:
        sock.join(room)
        return room

    @sio.on("leave")
    async def leave(sock: trio_sio.Socket, room: str) -> str:
        sock.leave(room)
        return room

    return sio


def adapter_of(sio: trio_sio.Server) -> ShardedRedisAdapter:
    adapter = sio.main.adapter
    assert isinstance(adapter, ShardedRedisAdapter)
    return adapter


async def shard_channels(client: coredis.Redis[bytes]) -> set[str]:
    channels = await client.pubsub_shardchannels()
    return {channel.decode() if isinstance(channel, bytes) else channel for channel in channels}


async def wait_for_channels(client: coredis.Redis[bytes], expected: set[str]) -> None:
    with trio.fail_after(5):
        while await shard_channels(client) != expected:
            await trio.sleep(0.02)


@pytest.mark.parametrize("mode", MODES)
async def test_room_channels_follow_membership(redis: RedisServer, mode: str) -> None:
    sio = make_server(redis.url, mode)
    probe = coredis.Redis.from_url(redis.url)
    async with (
        probe,
        serve_app(trio_sio.ASGIApp(sio)) as url,
        open_client(url) as client,
    ):
        await wait_until(lambda: adapter_of(sio).connected)
        base = {"socket.io#/#", f"socket.io#/#{adapter_of(sio).uid}#"}
        own = {f"socket.io#/#{client.sid}#"} if mode == "dynamic-private" else set()
        await wait_for_channels(probe, base | own)
        await client.call("join", "news")
        rooms = {"socket.io#/#news#"} if mode != "static" else set()
        await wait_for_channels(probe, base | own | rooms)
        # A room broadcast published by "another node" on the room's channel (or the
        # namespace's, in static mode) reaches the member.
        message = {
            "uid": "other-node",
            "nsp": "/",
            "type": 3,
            "data": {
                "packet": {"type": 2, "data": ["news", 1]},
                "opts": {"rooms": ["news"], "except": [], "flags": {}},
            },
        }
        channel = "socket.io#/#news#" if mode != "static" else "socket.io#/#"
        await probe.spublish(channel, json.dumps(message))
        assert await client.wait_for("news") == [[1]]
        await client.call("leave", "news")
        await wait_for_channels(probe, base | own)


@pytest.mark.parametrize("mode", ["dynamic", "dynamic-private"])
async def test_a_join_is_acknowledged_once_its_room_is_subscribed(
    redis: RedisServer, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client whose join was acknowledged may at once ask another node to broadcast to the
    room (the conformance suite's rooms scenario on a cluster): the room's channel must be
    subscribed by then, or Redis drops the broadcast. The subscriber is made slow here (a
    busy machine), so an acknowledgement that did not wait would come first."""
    subscribe = redis_sharded._ShardChannels.subscribe

    async def slow_subscribe(self: Any, *channels: Any, **handlers: Any) -> None:
        await trio.sleep(0.2)
        await subscribe(self, *channels, **handlers)

    monkeypatch.setattr(redis_sharded._ShardChannels, "subscribe", slow_subscribe)
    sio = make_server(redis.url, mode)
    probe = coredis.Redis.from_url(redis.url)
    async with (
        probe,
        serve_server("native", sio) as url,
        open_client(url) as client,
    ):
        await wait_until(lambda: adapter_of(sio).connected)
        for room in ("news", "sports"):
            await client.call("join", room)
            channel = f"socket.io#/#{room}#"
            assert await probe.pubsub_shardnumsub(channel) == {channel.encode(): 1}
        # An event that creates no room is acknowledged without waiting.
        with trio.fail_after(0.15):
            await client.call("join", "news")


@pytest.mark.parametrize("host", HOSTS)
async def test_hostile_shard_messages_are_dropped_and_a_bystander_keeps_working(
    redis: RedisServer, host: str
) -> None:
    # A payload nests at most 4 deep here, though the server's JSON codec takes 32.
    sio = make_server(redis.url, options=dataclasses.replace(FAST, max_depth=4))
    adapter = adapter_of(sio)
    probe = coredis.Redis.from_url(redis.url)
    channel = "socket.io#/#"

    def broadcast(uid: Any, data: Any, nsp: Any = "/", room: str = "r") -> dict[str, Any]:
        packet = {"type": 2, "data": data}
        opts = {"rooms": [room], "except": [], "flags": {}}
        return {"uid": uid, "nsp": nsp, "type": 3, "data": {"packet": packet, "opts": opts}}

    deep: Any = ["deep"]
    for _ in range(100):
        deep = [deep]
    async with (
        probe,
        serve_server(host, sio) as url,
        open_client(url) as victim,
        open_client(url) as bystander,
    ):
        await victim.call("join", "r")
        await bystander.call("join", "b")
        await wait_until(lambda: adapter.connected)
        before = adapter.statistics()
        hostile: list[bytes] = [
            b"\xc1 not msgpack",  # malformed
            b"{not json",  # malformed
            b"[1, 2]",  # msgpack of nothing sensible: malformed
            json.dumps(broadcast(adapter.uid, ["forged"])).encode(),  # own
            json.dumps(broadcast(42, ["bad-uid"])).encode(),  # malformed
            json.dumps(broadcast("other", ["elsewhere"], nsp="/other")).encode(),  # foreign
            json.dumps(broadcast("other", [["not", "an", "event"]])).encode(),  # malformed
            json.dumps(broadcast("other", ["deep", deep])).encode(),  # malformed (too deep)
            # malformed: deeper than the adapter's max_depth, not than the codec's limit
            json.dumps(broadcast("other", ["deep", [[[[["x"]]]]]])).encode(),
            json.dumps({"uid": "other", "nsp": "/", "type": 2}).encode(),  # heartbeat: foreign
            json.dumps({"uid": "other", "nsp": "/", "type": 7, "data": {}}).encode(),  # no id
            msgpack.packb(broadcast("other", ["ext", msgpack.ExtType(5, b"x")])),  # malformed
            json.dumps(
                {"uid": "o", "nsp": "/", "type": 11, "data": {"requestId": "nobody"}}
            ).encode(),  # an answer to nobody: ignored
        ]
        for payload in hostile:
            await probe.spublish(channel, payload)
        await probe.spublish(channel, json.dumps(broadcast("other", ["legit", 1])))
        await probe.spublish(channel, json.dumps(broadcast("other", ["still", 2], room="b")))
        assert await victim.wait_for("legit") == [[1]]
        assert await bystander.wait_for("still") == [[2]]
        after = adapter.statistics()

    def delta(name: str) -> int:
        return int(getattr(after, name) - getattr(before, name))

    assert delta("received") == len(hostile) + 2
    assert delta("ignored_own") == 1
    assert delta("dropped_foreign") == 2
    assert delta("dropped_malformed") == 9
    assert delta("ignored") == 1
    assert [args[0] for args in victim.events] == ["legit"]
    assert [args[0] for args in bystander.events] == ["still"]


@pytest.mark.parametrize("host", HOSTS)
async def test_room_channels_come_back_after_a_redis_restart(redis: RedisServer, host: str) -> None:
    one, two = make_server(redis.url), make_server(redis.url)
    async with (
        serve_server(host, one) as url1,
        serve_server(host, two) as url2,
        open_client(url1) as c1,
        open_client(url2) as c2,
    ):
        await c2.call("join", "r")
        await wait_until(lambda: adapter_of(one).connected and adapter_of(two).connected)
        assert await adapter_of(one).server_count() == 2
        redis.stop()
        await wait_until(lambda: not adapter_of(two).connected)
        await redis.astart()
        await wait_until(lambda: adapter_of(one).connected and adapter_of(two).connected)
        probe = coredis.Redis.from_url(redis.url)
        async with probe:
            await wait_for_channels(
                probe,
                {
                    "socket.io#/#",
                    "socket.io#/#r#",
                    f"socket.io#/#{adapter_of(one).uid}#",
                    f"socket.io#/#{adapter_of(two).uid}#",
                },
            )
        await one.to("r").emit("m", "after")
        assert await c2.wait_for("m") == [["after"]]
        assert c1.named("m") == []
        sockets = await one.fetch_sockets()
        assert sorted(s.id for s in sockets) == sorted([c1.sid, c2.sid])


def test_a_wrong_subscription_mode_fails_at_registration() -> None:
    with pytest.raises(ValueError, match="subscription_mode"):
        ShardedRedisAdapter.factory("redis://127.0.0.1:1/0", subscription_mode="always")  # type: ignore[arg-type]


# --- the conformance fixture ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["classic", "sharded", "streams"])
async def test_conformance_app_selects_the_adapter(kind: str, redis: RedisServer) -> None:
    """``TRIO_SIO_REDIS_ADAPTER`` beside ``TRIO_SIO_REDIS_URL``: two fixture processes and an
    in-process node of the same kind form one cluster."""
    workdir = Path(tempfile.mkdtemp(prefix="trio-sio-conformance-"))
    env = dict(
        os.environ, TRIO_SIO_REDIS_URL=redis.url, TRIO_SIO_REDIS_ADAPTER=kind, PYTHONUNBUFFERED="1"
    )
    argv = [sys.executable, "-m", "hypercorn", "-k", "trio", "--bind", "127.0.0.1:0"]
    argv.append("tests/conformance_app.py:app")
    processes = [spawn(name, argv, workdir, env) for name in ("C1", "C2")]
    if kind == "sharded":
        sio = make_server(redis.url)
    elif kind == "streams":
        from trio_sio.adapters.redis_streams import RedisStreamsAdapter

        sio = trio_sio.Server(adapter_factory=RedisStreamsAdapter.factory(redis.url, FAST))
    else:
        from trio_sio.adapters.redis import RedisAdapter

        sio = trio_sio.Server(adapter_factory=RedisAdapter.factory(redis.url, FAST))
    try:
        for process in processes:
            await trio.to_thread.run_sync(
                wait_for_url, process, r"Running on (http://\S+)", "stderr"
            )
        async with (
            serve_app(trio_sio.ASGIApp(sio)) as url,
            open_client(processes[0].url) as c1,
            open_client(processes[1].url) as c2,
            open_client(url),
        ):
            with trio.fail_after(10):
                while await sio.main.adapter.server_count() != 3:
                    await trio.sleep(0.05)
            for client in (c1, c2):
                await client.call("join", "conformance")
            if kind == "sharded":  # both fixtures subscribe to the room's channel
                probe = coredis.Redis.from_url(redis.url)
                async with probe:
                    channel = "socket.io#/#conformance#"
                    with trio.fail_after(10):
                        while (await probe.pubsub_shardnumsub(channel))[channel.encode()] != 2:
                            await trio.sleep(0.02)
            await sio.to("conformance").emit("hello", kind)
            for client in (c1, c2):
                assert await client.wait_for("hello") == [[kind]]
            await c1.call("room-broadcast", "conformance", "from-c1")
            assert await c2.wait_for("room-message") == [["conformance", "from-c1"]]
    finally:
        for process in processes:
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_conformance_app_refuses_an_unknown_adapter() -> None:
    env = dict(os.environ, TRIO_SIO_REDIS_ADAPTER="streamz")
    result = subprocess.run(
        [sys.executable, "-c", "import conformance_app"],
        cwd=Path(__file__).parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    expected = "TRIO_SIO_REDIS_ADAPTER must be one of classic, sharded, streams, not 'streamz'"
    assert expected in result.stderr


def test_the_sharded_adapter_declines_recovery() -> None:
    """Sharded pub/sub keeps no packets either, as Node's sharded adapter (a ClusterAdapter)
    keeps none: clients are offered no recovery."""
    sio = trio_sio.Server(
        adapter_factory=ShardedRedisAdapter.factory("redis://127.0.0.1:1/0"),
        connection_state_recovery=trio_sio.ConnectionStateRecovery(),
    )
    assert ShardedRedisAdapter.supports_recovery is False
    assert sio.main.adapter.recovery_store is None
