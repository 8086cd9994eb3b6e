"""Connection state recovery in process (issue 16, item 1), with trio_sio.testing's client
over the in-memory host and Trio's virtual clock: what comes back (id, rooms, data, the
missed packets once and in order), which packets are recoverable (Node's rule), the reasons a
client gets a fresh session instead (logged, counted), ``skip_middlewares``, and the Redis
adapter declining. The official socket.io-client over real sockets is in
test_recovery_clients.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

import trio_sio
from trio_sio.testing import open_client, running

DURATION = 30.0


def recovery_server(**options: Any) -> trio_sio.Server:
    recovery = trio_sio.ConnectionStateRecovery(
        **{"max_disconnection_duration": DURATION, **options}
    )
    sio = trio_sio.Server(connection_state_recovery=recovery)
    sio.middleware_runs = 0  # type: ignore[attr-defined]

    @sio.use
    async def count_middleware(sock: trio_sio.Socket, auth: Any) -> None:
        sio.middleware_runs += 1  # type: ignore[attr-defined]

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        sock.data.setdefault("first_auth", auth)
        sock.data["connects"] = sock.data.get("connects", 0) + 1

    @sio.on("join")
    async def join(sock: trio_sio.Socket, room: str) -> None:
        sock.join(room)

    return sio


def store_stats(sio: trio_sio.Server) -> trio_sio.RecoveryStatistics:
    stats = sio.statistics().recovery
    assert stats is not None
    return stats


@pytest.fixture
async def sio() -> AsyncIterator[trio_sio.Server]:
    server = recovery_server()
    async with running(server):
        yield server


async def test_a_client_comes_back_with_its_id_rooms_data_and_missed_packets(
    sio: trio_sio.Server,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    async with open_client(sio, auth={"token": 1}) as first:
        await first.call("join", "r")
        await sio.to("r").emit("tick", 0)
        assert (await first.receive("tick")).args == (0,)
        assert first.pid is not None
        assert first.offset is not None
    socket_id, pid = first.sid, first.pid
    while store_stats(sio).sessions == 0:
        await trio.sleep(0.01)
    for n in (1, 2, 3):
        await sio.to("r").emit("tick", n)
    await sio.to("elsewhere").emit("tick", "not for it")
    await sio.to("r").volatile.emit("tick", "volatile: not kept")
    await sio.to("r").emit_with_ack("tick", "with an ack: not kept")
    await sio.to("r").except_("r").emit("tick", "excluded")
    async with open_client(sio, auth={"token": 1}, recover=first) as second:
        assert second.recovered
        assert (second.sid, second.pid) == (socket_id, pid)
        await sio.to("r").emit("tick", 4)
        got = [(await second.receive("tick")).args[0] for _ in range(4)]
        assert got == [1, 2, 3, 4]
        (sock,) = sio.main.sockets.values()
        assert sock.recovered
        assert sock.rooms == {socket_id, "r"}
        assert sock.data == {"first_auth": {"token": 1}, "connects": 2}
        # The recovery fields are not the application's: its auth is what the client gave.
        assert sock.handshake.auth == {"token": 1}
    assert sio.middleware_runs == 1  # type: ignore[attr-defined]  # skip_middlewares
    stats = store_stats(sio)
    assert (stats.restored, stats.replayed) == (1, 3)
    lines = [r.getMessage() for r in caplog.records if " recovered " in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].endswith(f" recovered namespace=/ socket={socket_id} replayed=3")


async def test_a_lost_connection_comes_back_until_it_expires(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recovery = trio_sio.ConnectionStateRecovery(max_disconnection_duration=60)
    sio = trio_sio.Server(connection_state_recovery=recovery)

    @sio.on("join")
    async def join(sock: trio_sio.Socket, room: str) -> None:
        sock.join(room)

    async with running(sio):
        async with open_client(sio) as first:
            await first.call("join", "news")
            await sio.to("news").emit("headline", 1)
            await first.receive("headline")
        await trio.sleep(1)  # the server notices the lost transport
        await sio.to("news").emit("headline", 2)  # missed
        async with open_client(sio, recover=first) as second:
            assert second.recovered
            assert second.sid == first.sid
            assert (await second.receive("headline")).args == (2,)
        await trio.sleep(61)  # past max_disconnection_duration
        async with open_client(sio, recover=second) as third:
            assert not third.recovered
            assert third.sid != first.sid


async def test_emits_to_one_socket_are_recoverable_calls_are_not(
    sio: trio_sio.Server, autojump_clock: trio.testing.MockClock
) -> None:
    """As in Node, ``socket.emit`` is kept as a broadcast to the socket's own room."""
    held: list[trio_sio.Socket] = []

    @sio.on("hold")
    async def hold(sock: trio_sio.Socket) -> None:
        held.append(sock)

    async with open_client(sio) as first:
        await first.call("hold")
        await held[0].emit("direct", 0)
        assert (await first.receive("direct")).args == (0,)
        offset = first.offset

        async def answer() -> str:
            await trio.lowlevel.checkpoint()
            return "answer"

        first.on("question", answer)
        await held[0].call("question")
        assert first.offset == offset  # an event with an ack request carries no offset
    while store_stats(sio).sessions == 0:
        await trio.sleep(0.01)
    async with open_client(sio, recover=first) as second:
        assert second.recovered
        (sock,) = sio.main.sockets.values()
        assert sock is not held[0]
        await sock.emit("direct", 1)
        assert (await second.receive("direct")).args == (1,)


@pytest.mark.parametrize(
    ("options", "scenario", "reason"),
    [
        pytest.param({}, "expired", "expired", id="expired"),
        pytest.param({"max_packets": 2}, "evicted", "evicted", id="evicted-packets"),
        pytest.param({"max_bytes": 100}, "evicted", "evicted", id="evicted-bytes"),
        pytest.param({}, "unknown pid", "unknown pid", id="unknown-pid"),
        pytest.param({}, "no offset", "unknown offset", id="no-offset"),
    ],
)
async def test_a_client_that_cannot_be_recovered_gets_a_fresh_session(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, Any],
    scenario: str,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    sio = recovery_server(**options)
    async with running(sio):
        async with open_client(sio) as first:
            await first.call("join", "r")
            if scenario != "no offset":
                await sio.to("r").emit("tick", 0)
                await first.receive("tick")
        while store_stats(sio).sessions == 0:
            await trio.sleep(0.01)
        for n in range(3):
            await sio.to("r").emit("tick", n + 1, "x" * 40)
        if scenario == "expired":
            await trio.sleep(DURATION + 1)
        if scenario == "unknown pid":
            first.pid = "not-a-pid-of-this-server"
        async with open_client(sio, recover=first) as second:
            assert not second.recovered
            assert second.sid != first.sid
            assert second.pid not in (None, first.pid)
            (sock,) = sio.main.sockets.values()
            assert sock.rooms == {sock.id}
            assert sock.data == {"first_auth": {}, "connects": 1}
            # Never part of a history: nothing of what was missed arrives.
            await sio.to(sock.id).emit("tick", "fresh")
            assert (await second.receive("tick")).args == ("fresh",)
    messages = [r.getMessage() for r in caplog.records if "recovery_failed" in r.getMessage()]
    assert len(messages) == 1
    shown = f'"{reason}"' if " " in reason else reason
    assert messages[0].endswith(f" recovery_failed namespace=/ reason={shown}: fresh session")
    assert store_stats(sio).failures == {reason: 1}


async def test_skip_middlewares_false_runs_them_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sio = recovery_server(skip_middlewares=False)
    async with running(sio):
        async with open_client(sio) as first:
            await sio.emit("tick")
            await first.receive("tick")
        while store_stats(sio).sessions == 0:
            await trio.sleep(0.01)
        async with open_client(sio, recover=first) as second:
            assert second.recovered
    assert sio.middleware_runs == 2  # type: ignore[attr-defined]


async def test_a_socket_the_server_or_client_disconnects_is_not_kept(
    sio: trio_sio.Server, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_client(sio) as client:
        await sio.emit("tick")
        await client.receive("tick")
        await client.disconnect()
    async with open_client(sio) as client:
        (sock,) = sio.main.sockets.values()
        await sock.disconnect()
        await client.wait_disconnected()
    await trio.sleep(1)
    assert store_stats(sio).sessions == 0


async def test_recovery_off_changes_nothing_on_the_wire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sio = trio_sio.Server()
    async with running(sio), open_client(sio, auth={"pid": "x", "offset": "0"}) as client:
        assert client.pid is None
        await sio.emit("tick", "last string")
        assert (await client.receive("tick")).args == ("last string",)
        (sock,) = sio.main.sockets.values()
        assert sock.handshake.auth == {"pid": "x", "offset": "0"}
        assert not sock.recovered
    assert sio.statistics().recovery is None


def test_the_redis_adapter_declines() -> None:
    pytest.importorskip("coredis")
    from trio_sio.adapters.redis import RedisAdapter

    sio = trio_sio.Server(
        adapter_factory=RedisAdapter.factory("redis://127.0.0.1:1/0"),
        connection_state_recovery=trio_sio.ConnectionStateRecovery(),
    )
    assert RedisAdapter.supports_recovery is False
    assert sio.main.adapter.recovery_store is None


def test_the_conformance_app_turns_recovery_on_with_the_env_var(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conftest import load_conformance_module

    assert load_conformance_module().sio.connection_state_recovery is None
    monkeypatch.setenv("TRIO_SIO_RECOVERY", "1")
    recovery = load_conformance_module().sio.connection_state_recovery
    assert recovery == trio_sio.ConnectionStateRecovery(max_disconnection_duration=2.0)


async def test_a_replay_longer_than_the_outbound_queue_waits_for_the_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The missed packets go out with backpressure, like what on_connect sends: a replay
    longer than ``outbound_queue_packets`` does not make the client a slow consumer. Binary
    events are recoverable too."""
    recovery = trio_sio.ConnectionStateRecovery(max_disconnection_duration=DURATION)
    sio = trio_sio.Server(connection_state_recovery=recovery, outbound_queue_packets=4)
    async with running(sio):
        async with open_client(sio) as first:
            await sio.emit("tick", 0)
            await first.receive("tick")
        while store_stats(sio).sessions == 0:
            await trio.sleep(0.01)
        for n in range(1, 11):
            await sio.emit("tick", n, bytes([n]))
        async with open_client(sio, recover=first) as second:
            assert second.recovered
            got = [(await second.receive("tick")).args for _ in range(10)]
            assert got == [(n, bytes([n])) for n in range(1, 11)]
            assert second.connected


async def test_the_store_is_in_the_prometheus_metrics(
    sio: trio_sio.Server, autojump_clock: trio.testing.MockClock
) -> None:
    pytest.importorskip("prometheus_client")
    from trio_sio.metrics import ServerCollector

    async with open_client(sio) as first:
        await sio.emit("tick", 0)
        await first.receive("tick")
    while store_stats(sio).sessions == 0:
        await trio.sleep(0.01)
    first.pid = "unknown"
    async with open_client(sio, recover=first):
        samples = {
            (sample.name, tuple(sample.labels.items())): sample.value
            for family in ServerCollector(sio).collect()
            for sample in family.samples
        }
    assert samples[("trio_sio_recovery_packets", ())] == 1
    assert samples[("trio_sio_recovery_sessions", ())] == 1
    assert samples[("trio_sio_recovery_restored_total", ())] == 0
    assert samples[("trio_sio_recovery_failures_total", (("reason", "unknown pid"),))] == 1
    assert samples[("trio_sio_recovery_failures_total", (("reason", "expired"),))] == 0


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param({"pid": {"nested": [1]}, "offset": 12}, id="not-strings"),
        pytest.param({"pid": "p" * 100_000, "offset": "9" * 100_000}, id="huge"),
        pytest.param({"pid": None}, id="null-pid"),
        pytest.param({"pid": "x", "offset": "\u0663\u0663"}, id="non-ascii-digits"),
    ],
)
async def test_hostile_recovery_fields_get_a_fresh_session_and_a_bystander_carries_on(
    sio: trio_sio.Server, autojump_clock: trio.testing.MockClock, auth: dict[str, Any]
) -> None:
    async with open_client(sio) as bystander:
        async with open_client(sio, auth=auth) as hostile:
            assert not hostile.recovered
            assert hostile.pid is not None
            sock = sio.main.sockets[hostile.sid]
            assert sock.handshake.auth == {}
        await sio.emit("tick", "still here")
        assert (await bystander.receive("tick")).args == ("still here",)
    assert store_stats(sio).failures == {"unknown pid": 1}
