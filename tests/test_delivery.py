"""Outbound delivery under the patterns users write, with the official JavaScript client.

A handler that broadcasts to a room containing its sender and then acknowledges makes every
outbound path meet on the sender's connection: the broadcast's deferred write, the ack's direct
write, the writer task and, on long-polling, the GET that takes the queue. A handler that
broadcasts in a loop must let the writers run, or every reader is cut as a slow consumer.
Each runs on both hosts, in the three transport modes, and the server must log nothing at
WARNING or above (a dropped session logs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

import trio_sio
from support.clients import JS_DIR, MODES, NODE, requires_node, run_scenario
from support.servers import HOSTS, serve_server


def delivery_server() -> trio_sio.Server:
    sio = trio_sio.Server()

    @sio.on("join")
    async def join(sock: trio_sio.Socket, room: str) -> str:
        sock.join(room)
        return room

    @sio.on("bcast_ack")
    async def bcast_ack(sock: trio_sio.Socket, sender: int, i: int) -> int:
        await sio.to("r").emit("tick", sender, i)  # the sender is in "r" too
        return i

    @sio.on("bcast_loop")
    async def bcast_loop(sock: trio_sio.Socket, count: int) -> int:
        target = sio.to("r")
        for i in range(count):
            await target.emit("n", i)
        return count

    return sio


@pytest.fixture(params=HOSTS)
async def delivery_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    async with serve_server(request.param, delivery_server()) as url:
        yield url


def assert_quiet_server(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r for r in caplog.records if r.name.startswith("trio_sio") and r.levelno >= 30]
    assert noisy == [], "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in noisy)


async def run_delivery(url: str, mode: str, scenario: str, **options: Any) -> dict[str, Any]:
    assert NODE is not None
    command = [NODE, str(JS_DIR / "delivery_scenarios.mjs")]
    return await run_scenario(
        command, url, mode, scenario, extra=[json.dumps(options)], budget_s=60
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.node
@requires_node
async def test_broadcast_and_ack_to_a_room_with_the_sender(
    delivery_url: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_sio")
    result = await run_delivery(delivery_url, mode, "bcast-ack", clients=5, rounds=200)
    assert result["observed"]["ticks_received"] == 5 * 200 * 5
    assert_quiet_server(caplog)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.node
@requires_node
async def test_a_loop_of_broadcasts_reaches_every_reader(
    delivery_url: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_sio")
    result = await run_delivery(delivery_url, mode, "bcast-loop", clients=3, count=10_000)
    assert result["observed"]["received"] == [10_000] * 3
    assert_quiet_server(caplog)
