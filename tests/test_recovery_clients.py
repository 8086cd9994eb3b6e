"""Connection state recovery seen from the official socket.io-client 4.8 (issue 16, item 1),
over each transport mode on both hosts: the transport cut with ``socket.io.engine.close()``
while broadcasts go on, then recovered with the same id, rooms and data and every missed
broadcast once, in order; expiry and eviction give a fresh session. The conformance fixture
(tests/conformance_app.py) recovers too with ``TRIO_SIO_RECOVERY=1``. The scenarios are in
tests/js/recovery_scenarios.mjs; the semantics in detail are in test_recovery.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

import trio_sio
from support.clients import JS_DIR, MODES, NODE, requires_node, run_scenario
from support.servers import HOSTS, serve_server

#: The broadcasts of the "recover" scenario (its TOTAL_TICKS).
TOTAL_TICKS = 60
#: Between two broadcasts of the "recover" scenario's stream.
TICK_INTERVAL = 0.005
#: What the disconnect handler broadcasts at once, so that some are surely missed.
BURST = 3

#: Per scenario: the recovery settings of the server it runs against.
SETTINGS: dict[str, trio_sio.ConnectionStateRecovery] = {
    "recover": trio_sio.ConnectionStateRecovery(max_disconnection_duration=120),
    "expire": trio_sio.ConnectionStateRecovery(max_disconnection_duration=0.3),
    "evict": trio_sio.ConnectionStateRecovery(max_disconnection_duration=120, max_packets=4),
}


class Ticks:
    """Numbered broadcasts to one room, from a stream and from bursts, in one sequence."""

    def __init__(self, sio: trio_sio.Server) -> None:
        self.sio = sio
        self.sent = 0
        self.total = 0
        self.room = ""
        #: Set once a socket has disconnected (and its burst is sent).
        self.away = trio.Event()

    async def emit(self, count: int) -> None:
        for _ in range(count):
            if self.sent >= self.total:
                return
            number, self.sent = self.sent, self.sent + 1
            await self.sio.to(self.room).emit("tick", number)

    async def stream(self) -> None:
        """Every TICK_INTERVAL, pausing halfway until the client's transport is cut: the cut
        always falls while broadcasts go on, however fast or slow the machine."""
        while self.sent < self.total:
            if self.sent == self.total // 2:
                await self.away.wait()
            await self.emit(1)
            await trio.sleep(TICK_INTERVAL)


def recovery_server(recovery: trio_sio.ConnectionStateRecovery, nursery: trio.Nursery) -> Any:
    sio = trio_sio.Server(cors_allowed_origins="*", connection_state_recovery=recovery)
    ticks = Ticks(sio)

    @sio.use
    async def count_middleware(sock: trio_sio.Socket, auth: Any) -> None:
        sock.data["middleware"] = sock.data.get("middleware", 0) + 1

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        sock.data.setdefault("token", auth.get("token"))
        sock.data["connects"] = sock.data.get("connects", 0) + 1

    @sio.on("join")
    async def join(sock: trio_sio.Socket, room: str) -> str:
        sock.join(room)
        return room

    @sio.on("tick")
    async def tick(sock: trio_sio.Socket, room: str, count: int) -> None:
        ticks.room, ticks.total = room, ticks.sent + count
        await ticks.emit(count)

    @sio.on("stream")
    async def stream(sock: trio_sio.Socket, room: str, total: int) -> None:
        ticks.room, ticks.total = room, total
        nursery.start_soon(ticks.stream)

    @sio.on_disconnect
    async def burst(sock: trio_sio.Socket, reason: trio_sio.DisconnectReason) -> None:
        # At once, while the client is surely away (it reconnects after 100 ms at least).
        await ticks.emit(BURST)
        ticks.away.set()

    @sio.on("state")
    async def state(sock: trio_sio.Socket) -> dict[str, Any]:
        return {
            "rooms": sorted(sock.rooms),
            "data": sock.data,
            "recovered": sock.recovered,
        }

    @sio.on("kept")
    async def kept(sock: trio_sio.Socket) -> int:
        stats = sio.statistics().recovery
        assert stats is not None
        return stats.sessions

    @sio.on("duration")
    async def duration(sock: trio_sio.Socket) -> float:
        return recovery.max_disconnection_duration

    @sio.on("max_packets")
    async def max_packets(sock: trio_sio.Socket) -> int:
        return recovery.max_packets

    return sio


@asynccontextmanager
async def served(host: str, scenario: str) -> AsyncIterator[tuple[str, trio_sio.Server]]:
    async with trio.open_nursery() as nursery:
        sio = recovery_server(SETTINGS[scenario], nursery)
        async with serve_server(host, sio) as url:
            yield url, sio
        nursery.cancel_scope.cancel()


@pytest.fixture
def conformance_env() -> dict[str, str]:
    """The fixture app of conformance_url, with recovery on."""
    return {"TRIO_SIO_RECOVERY": "1"}


@pytest.mark.not_on_cluster(
    "the classic and sharded adapters decline recovery (no pid, no offsets), as Node's"
    " @socket.io/redis-adapter keeps no session across nodes either",
    adapters=("classic", "sharded"),
)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.node
@requires_node
async def test_the_conformance_fixture_recovers_with_the_env_var(
    conformance_url: str, mode: str
) -> None:
    assert NODE is not None
    command = [NODE, str(JS_DIR / "recovery_scenarios.mjs")]
    result = await run_scenario(command, conformance_url, mode, "fixture")
    assert result["observed"]["messages"] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("scenario", ["recover", "expire", "evict"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.node
@requires_node
async def test_recovery_js_client(
    host: str, mode: str, scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    assert NODE is not None
    async with served(host, scenario) as (url, sio):
        command = [NODE, str(JS_DIR / "recovery_scenarios.mjs")]
        result = await run_scenario(command, url, mode, scenario)
        stats = sio.statistics().recovery
    assert stats is not None
    lines = [r.getMessage() for r in caplog.records if " recover" in r.getMessage()]
    if scenario == "recover":
        assert result["observed"]["ticks"] == TOTAL_TICKS
        # The burst at least was broadcast while the client was away, and replayed.
        assert stats.restored == 1
        assert stats.replayed >= BURST
        assert len(lines) == 1
        assert " recovered namespace=/ " in lines[0]
    else:
        reason = "expired" if scenario == "expire" else "evicted"
        assert stats.restored == 0
        assert stats.failures == {reason: 1}
        assert [line.split(" ", 1)[1] for line in lines] == [
            f"recovery_failed namespace=/ reason={reason}: fresh session"
        ]
