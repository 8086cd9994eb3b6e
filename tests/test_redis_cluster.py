"""The three Redis adapters on a real Redis Cluster and through a real Sentinel.

- ``redis_cluster`` (once for the module): three ``redis-server`` primaries in cluster mode,
  slots spread by ``redis-cli --cluster create`` (tests/support/redis.py). For each adapter, two
  trio_sio servers on the native host, with raw WebSocket clients on each: room broadcasts
  both ways, ``fetch_sockets``, ``server_side_emit`` with acknowledgements and broadcasts with
  acknowledgements. Each test has its own channel prefix (and stream), so they share the
  cluster without seeing each other. So that no test passes on one node by accident: the
  sharded adapter's channels are chosen (and asserted, by ``CLUSTER KEYSLOT``) to live on all
  three primaries; the classic adapter gets a broadcast ``PUBLISH``-ed on each primary in
  turn; the Streams adapter's stream and its session keys are on a cluster whose every command
  must go to the key's slot owner.
- Recovery across nodes on the cluster (Streams adapter): a socket.io-client 4.8 client cut from
  one server recovers on the other, its session key and the stream on their own slots.
- A mixed cluster on the Redis Cluster (sharded adapter): two trio_sio processes and a Node
  server whose ``createShardedAdapter`` has node-redis 4 cluster clients (tests/js/
  redis_cluster.mjs), with clients on each: room broadcasts, fetchSockets and remote
  operations, serverSideEmit with acks and broadcasts with acks, both ways.
- A cluster primary restarted: the adapters reconnect and cluster traffic resumes.
- ``redis_sentinel``: a primary and one Sentinel watching it; each adapter finds the primary
  through the Sentinel and carries broadcasts between two servers. And a failover: with a
  replica, the primary is killed, the Sentinel promotes the replica, and every adapter ends up
  subscribed on the new primary, broadcasts crossing again.
- URL errors fail when the factory is made.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
import msgpack
import pytest
import trio
from test_redis_adapter import Client, open_client, requires_node
from test_redis_streams_adapter import recover_on_b, streams_server

import trio_sio
from support.redis import (
    REDIS_CLI,
    REDIS_CLUSTER_MISSING,
    RedisClusterServers,
    RedisSentinelServers,
)
from support.redis_nodes import (
    Cluster,
    check_broadcast_ack,
    check_fetch,
    check_rooms,
    check_server_side_emit,
    trio_nodes,
)
from support.servers import serve_server
from trio_sio.adapters import ClusterReplies
from trio_sio.adapters._redis_base import RedisAdapterBase, RedisLocation, parse_redis_url
from trio_sio.adapters.redis import RedisAdapter, RedisAdapterOptions
from trio_sio.adapters.redis_sharded import ShardedRedisAdapter, key_slot
from trio_sio.adapters.redis_streams import RedisStreamsAdapter

pytestmark = pytest.mark.skipif(
    REDIS_CLUSTER_MISSING is not None, reason=REDIS_CLUSTER_MISSING or ""
)

KINDS = ["classic", "sharded", "streams"]
FAST = RedisAdapterOptions(requests_timeout=2.0, reconnect_delay=(0.05, 0.5), command_timeout=3)


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterServers]:
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def redis_sentinel() -> Iterator[RedisSentinelServers]:
    with RedisSentinelServers() as sentinel:
        yield sentinel


def factory(kind: str, url: str, key: str) -> Callable[[Any], RedisAdapterBase]:
    """An adapter factory of ``kind`` on ``url``, with channels (and stream) named after
    ``key``."""
    options = dataclasses.replace(FAST, key=key)
    if kind == "classic":
        return RedisAdapter.factory(url, options)
    if kind == "sharded":
        return ShardedRedisAdapter.factory(url, options, subscription_mode="dynamic")
    return RedisStreamsAdapter.factory(url, options, stream_name=key + "-stream")


def make_server(kind: str, url: str, key: str, name: str) -> trio_sio.Server:
    sio = trio_sio.Server(adapter_factory=factory(kind, url, key))

    @sio.on("join")
    async def join(sock: trio_sio.Socket, room: str) -> str:
        sock.join(room)
        return room

    @sio.on_server_event("ping")
    async def ping(value: Any) -> str:
        return f"pong-{name}-{value}"

    return sio


def adapter_of(sio: trio_sio.Server) -> RedisAdapterBase:
    adapter = sio.of("/").adapter
    assert isinstance(adapter, RedisAdapterBase)
    return adapter


async def server_count(sio: trio_sio.Server, expected: int) -> None:
    """Wait until the adapter counts ``expected`` servers (on a cluster: every node asked)."""
    with trio.fail_after(10):
        while await adapter_of(sio).server_count() != expected:
            await trio.sleep(0.05)


@asynccontextmanager
async def two_nodes(
    kind: str, url: str, key: str
) -> AsyncIterator[tuple[trio_sio.Server, trio_sio.Server, Client, Client]]:
    """Servers "A" and "B" on the native host, a client on each, both in room "r"."""
    one = make_server(kind, url, key, "A")
    two = make_server(kind, url, key, "B")
    async with (
        serve_server("native", one) as url1,
        serve_server("native", two) as url2,
        open_client(url1) as c1,
        open_client(url2) as c2,
    ):
        for client in (c1, c2):
            await client.call("join", "r")
        await server_count(one, 2)
        await server_count(two, 2)
        yield one, two, c1, c2


async def broadcast_until_both_have_two(sender: trio_sio.Server, c1: Client, c2: Client) -> None:
    """After an outage, with one "m" each from before it: ``sender`` broadcasts "m" to room
    "r" every 0.2 s until each client has had two (the first may still be lost on the way)."""
    with trio.fail_after(20):
        number = 0
        while len(c2.named("m")) < 2 or len(c1.named("m")) < 2:
            number += 1
            await sender.to("r").emit("m", number)
            await trio.sleep(0.2)


async def cli(port: int, *command: str) -> str:
    assert REDIS_CLI is not None
    result = await trio.run_process(
        [REDIS_CLI, "-p", str(port), *command], capture_stdout=True, check=True
    )
    return result.stdout.decode().strip()


async def slot_owners(cluster: RedisClusterServers) -> list[tuple[range, int]]:
    """Each primary's slot ranges and port, from ``CLUSTER NODES``."""
    owners = []
    for line in (await cli(cluster.ports[0], "CLUSTER", "NODES")).splitlines():
        fields = line.split()
        if "master" not in fields[2]:
            continue
        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
        for span in fields[8:]:
            first, _, last = span.partition("-")
            owners.append((range(int(first), int(last or first) + 1), port))
    return owners


async def owner_of(cluster: RedisClusterServers, name: str) -> int:
    """The port of the primary that owns ``name``'s slot (``CLUSTER KEYSLOT``)."""
    slot = int(await cli(cluster.ports[0], "CLUSTER", "KEYSLOT", name))
    return next(port for slots, port in await slot_owners(cluster) if slot in slots)


async def common_checks(one: trio_sio.Server, two: trio_sio.Server, c1: Client, c2: Client) -> None:
    """Broadcasts both ways, fetch_sockets, server-side events with acks and broadcasts with
    acks, between two servers."""
    await one.to("r").emit("m", "from-A")
    await two.to("r").emit("m", "from-B")
    for client in (c1, c2):
        assert sorted(args[0] for args in await client.wait_for("m", 2)) == ["from-A", "from-B"]

    for sio in (one, two):
        sockets = await sio.fetch_sockets()
        assert isinstance(sockets, ClusterReplies)
        assert sorted(s.id for s in sockets) == sorted([c1.sid, c2.sid])
        assert sockets.complete

    replies = await one.server_side_emit_with_ack("ping", 1)
    assert list(replies) == ["pong-B-1"]
    assert replies.complete
    replies = await two.server_side_emit_with_ack("ping", 2)
    assert list(replies) == ["pong-A-2"]

    # The raw clients never acknowledge: what crosses is B's count of the clients it reached.
    acks = await one.to("r").emit_with_ack("question")
    with trio.fail_after(5):
        while acks.missing_nodes or acks.expected != 2:
            await trio.sleep(0.02)
    assert (await c2.wait_for("question")) == [[]]


# --- on the cluster ---------------------------------------------------------------------------


async def test_classic_adapter_on_a_cluster(redis_cluster: RedisClusterServers) -> None:
    key = "classic-" + secrets.token_hex(3)
    async with two_nodes("classic", redis_cluster.url, key) as (one, two, c1, c2):
        await common_checks(one, two, c1, c2)
        # PUBLISH on any primary reaches the subscribers of every node: each in turn.
        channel = f"{key}#/#r#"
        for port in redis_cluster.ports:
            message = msgpack.packb(
                [
                    "raw-node",
                    {"type": 2, "data": ["raw", port], "nsp": "/"},
                    {"rooms": ["r"], "except": []},
                ]
            )
            async with coredis.Redis("127.0.0.1", port) as direct:
                await direct.publish(channel, message)
        for client in (c1, c2):
            raw = await client.wait_for("raw", 3)
            assert sorted(args[0] for args in raw) == sorted(redis_cluster.ports)


async def test_sharded_adapter_on_a_cluster(redis_cluster: RedisClusterServers) -> None:
    key = "sharded-" + secrets.token_hex(3)
    namespace_channel = f"{key}#/#"
    # Two rooms whose channels live on the two primaries that do not own the namespace's.
    owners = {await owner_of(redis_cluster, namespace_channel): "namespace"}
    rooms: list[str] = []
    for number in range(100):
        room = f"room{number}"
        port = await owner_of(redis_cluster, f"{key}#/#{room}#")
        if port not in owners:
            owners[port] = room
            rooms.append(room)
        if len(owners) == 3:
            break
    assert sorted(owners) == sorted(redis_cluster.ports)

    async with two_nodes("sharded", redis_cluster.url, key) as (one, two, c1, c2):
        await common_checks(one, two, c1, c2)
        for client in (c1, c2):
            for room in rooms:
                await client.call("join", room)
        with trio.fail_after(10):  # each node subscribes to the rooms' channels
            while True:
                counts = [
                    int(
                        (await cli(port, "PUBSUB", "SHARDNUMSUB", f"{key}#/#{room}#")).splitlines()[
                            1
                        ]
                    )
                    for port, room in owners.items()
                    if room != "namespace"
                ]
                if counts == [2, 2]:
                    break
                await trio.sleep(0.05)
        for number, room in enumerate(rooms):
            await one.to(room).emit("room", room, number)
            await two.to(room).emit("room", room, -number - 1)
        for client in (c1, c2):
            got = await client.wait_for("room", 4)
            assert sorted(map(tuple, got)) == sorted(
                [(room, n) for n, room in enumerate(rooms)]
                + [(room, -n - 1) for n, room in enumerate(rooms)]
            )


async def test_streams_adapter_on_a_cluster(redis_cluster: RedisClusterServers) -> None:
    key = "streams-" + secrets.token_hex(3)
    async with two_nodes("streams", redis_cluster.url, key) as (one, two, c1, c2):
        await common_checks(one, two, c1, c2)
        stream = key + "-stream"
        owner = await owner_of(redis_cluster, stream)
        length = int(await cli(owner, "XLEN", stream))
        assert length == 2  # the two broadcasts went through the stream (on its slot's owner)


@pytest.mark.node
@requires_node
async def test_streams_recovery_across_nodes_on_a_cluster(
    redis_cluster: RedisClusterServers,
) -> None:
    """As test_redis_streams_adapter's recovery test, on the cluster: the session key (its
    own slot) written by A is taken by B, which replays from the stream (another slot)."""
    url = redis_cluster.url
    stream_owner = await owner_of(redis_cluster, "socket.io")
    await cli(stream_owner, "DEL", "socket.io")  # the default stream, fresh for this test
    session_keys: list[tuple[int, str]] = []

    async def session_stored() -> bool:
        for port in redis_cluster.ports:
            found = await cli(port, "KEYS", "sio:session:*")
            session_keys.extend((port, key) for key in found.split())
        return bool(session_keys)

    async with serve_server("native", streams_server(url, "B")) as url_b:
        result = await recover_on_b("native", url, url_b, "websocket", session_stored)
    assert result["recovered"] is True
    assert result["same_id"] is True
    assert result["node"] == "B"
    assert result["ticks"] == [0, 1, 2, 3, 4, 5, 6]
    # A wrote the session key on its own slot's owner (a cluster allows nothing else), which
    # need not be the stream's; B took it from there.
    (session_port, session_key), *_ = session_keys
    assert session_port == await owner_of(redis_cluster, session_key)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_restarted_primary(kind: str) -> None:
    """A primary the adapters depend on is killed and started again: the one owning the
    namespace's channel (sharded: every adapter has a subscriber on every primary), the
    stream's (Streams: every adapter reads it there), or the one holding server A's pattern
    subscription (classic). The adapters on it see the outage, come back, and broadcasts
    cross again."""
    key = f"{kind}-" + secrets.token_hex(3)
    with RedisClusterServers() as cluster:
        async with two_nodes(kind, cluster.url, key) as (one, two, c1, c2):
            await one.to("r").emit("m", 1)
            for client in (c1, c2):
                await client.wait_for("m", 1)
            if kind == "classic":
                victims = [
                    port
                    for port in cluster.ports
                    if "psub=1" in await cli(port, "CLIENT", "LIST", "TYPE", "pubsub")
                ]
                victim_port = victims[0]
            else:
                name = f"{key}#/#" if kind == "sharded" else key + "-stream"
                victim_port = await owner_of(cluster, name)
            victim = next(server for server in cluster.servers if server.port == victim_port)
            victim.stop()
            # Down for longer than the adapters' first reconnection delays: their attempts
            # to reach it fail, as in a real outage.
            with trio.fail_after(30):
                while max(adapter_of(sio).statistics().outages for sio in (one, two)) < 1:
                    await trio.sleep(0.05)
            await trio.sleep(1)
            await victim.astart()
            with trio.fail_after(30):  # the cluster agrees it is whole again, then the adapters
                while (await cli(victim_port, "CLUSTER", "INFO")).find("cluster_state:ok") < 0:
                    await trio.sleep(0.1)
            await server_count(one, 2)
            await server_count(two, 2)
            await broadcast_until_both_have_two(one, c1, c2)
            outages = [adapter_of(sio).statistics().outages for sio in (one, two)]
            assert min(outages) >= (0 if kind == "classic" else 1), outages
            assert max(outages) >= 1, outages


# --- a mixed Node/trio_sio cluster on the Redis Cluster (sharded adapter) ---------------------


@pytest.fixture(scope="module")
def mixed_sharded(redis_cluster: RedisClusterServers) -> Iterator[Cluster[RedisClusterServers]]:
    """Two trio_sio processes, "A" and "B", with the sharded adapter on the Redis Cluster; each
    test adds a Node server whose createShardedAdapter has node-redis cluster clients."""
    node_args = ["--adapter", "sharded", "--subscription-mode", "dynamic"]
    driver_env = {"REDIS_ADAPTER": "sharded", "SUBSCRIPTION_MODE": "dynamic"}
    with trio_nodes(redis_cluster, node_args, driver_env) as cluster:
        yield cluster


@pytest.mark.node
@requires_node
async def test_mixed_sharded_cluster_on_redis_cluster(
    mixed_sharded: Cluster[RedisClusterServers],
) -> None:
    await check_rooms(mixed_sharded)
    await check_fetch(mixed_sharded)
    await check_server_side_emit(mixed_sharded)
    await check_broadcast_ack(mixed_sharded)


# --- through Sentinel -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_adapters_through_sentinel(kind: str, redis_sentinel: RedisSentinelServers) -> None:
    key = f"{kind}-" + secrets.token_hex(3)
    async with two_nodes(kind, redis_sentinel.url, key) as (one, two, c1, c2):
        await common_checks(one, two, c1, c2)
        assert adapter_of(one).connected
        assert adapter_of(two).connected


@pytest.mark.parametrize("kind", KINDS)
async def test_a_sentinel_failover(kind: str) -> None:
    """The primary dies; the Sentinel promotes its replica. The adapters, which lost their
    connections, keep asking the Sentinel, and carry broadcasts through the new primary."""
    with RedisSentinelServers(replicas=1) as sentinel:
        new = sentinel.replicas[0].port
        key = f"{kind}-" + secrets.token_hex(3)
        async with two_nodes(kind, sentinel.url, key) as (one, two, c1, c2):
            await one.to("r").emit("m", 0)
            for client in (c1, c2):
                await client.wait_for("m", 1)
            sentinel.primary.stop()
            with trio.fail_after(30):  # down after 1 s, then the failover
                while str(new) not in await cli(
                    sentinel.sentinel.port,
                    "SENTINEL",
                    "GET-MASTER-ADDR-BY-NAME",
                    sentinel.service,
                ):
                    await trio.sleep(0.1)
            await server_count(one, 2)
            await server_count(two, 2)
            await broadcast_until_both_have_two(two, c1, c2)
            for sio in (one, two):
                assert adapter_of(sio).statistics().outages == 1
            # Both adapters subscribe on the new primary (beside the Sentinel, named).
            listing = await cli(new, "CLIENT", "LIST", "TYPE", "pubsub")
            ours = [line for line in listing.splitlines() if "name=sentinel-" not in line]
            assert len(ours) == 2, listing


# --- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://",
        "redis+cluster://127.0.0.1:notaport",
        "redis+cluster://127.0.0.1:7000/1",
        "redis+cluster://127.0.0.1:7000/?timeout=1",
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:26379/service/db",
        "redis+sentinel://127.0.0.1:26379/service/0/extra",
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_malformed_urls_fail_when_the_factory_is_made(kind: str, url: str) -> None:
    with pytest.raises(ValueError, match=r"URL|port|host|database"):
        factory(kind, url, "k")


async def test_key_slots_are_redis_own(redis_cluster: RedisClusterServers) -> None:
    """The sharded adapter routes each channel by the slot it computes: Redis agrees."""
    names = ["socket.io#/#", "socket.io#/#room#", "a{tag}b", "{tag}", "x{}y", "{}", "é#{", ""]
    for name in names:
        expected = int(await cli(redis_cluster.ports[0], "CLUSTER", "KEYSLOT", name))
        assert key_slot(name.encode()) == expected, name


def test_cluster_and_sentinel_urls() -> None:
    cluster = parse_redis_url("redis+cluster://user:p%40ss@10.0.0.1:7000,[::1]:7001,node3/")
    assert cluster == RedisLocation(
        "cluster",
        (("10.0.0.1", 7000), ("::1", 7001), ("node3", 6379)),
        username="user",
        password="p@ss",
    )
    sentinel = parse_redis_url("redis+sentinel://:secret@s1,s2:26380/my-primary/2")
    assert sentinel == RedisLocation(
        "sentinel", (("s1", 26379), ("s2", 26380)), "my-primary", 2, password="secret"
    )
    assert parse_redis_url("redis://127.0.0.1:6379/0").kind == "server"
