"""Outbound delivery under the patterns users write, with the official JavaScript client.

A handler that broadcasts to a room containing its sender and then acknowledges makes every
outbound path meet on the sender's connection: the broadcast's deferred write, the ack's direct
write, the writer task and, on long-polling, the GET that takes the queue. A handler that
broadcasts in a loop must let the writers run, or every reader is cut as a slow consumer.
Each runs on both hosts, in the three transport modes, and the server must log nothing at
WARNING or above (a dropped session logs).

A long-polling reader drains its queue only when its next GET arrives, a network round trip
later: a loop of broadcasts must wait for it (a bounded time) too, and still cut a member that
stopped reading.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import trio_sio
from support.clients import JS_DIR, MODES, NODE, requires_node, run_scenario
from support.http import Connection, connect, polling_target
from support.servers import HOSTS, serve_server
from trio_sio._engine.fanout import POLL_PACING_S


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


async def open_polling_socket(connection: Connection) -> str:
    """A raw long-polling session on ``connection``, connected to ``/``; its sid."""
    opening = await connection.request("GET", polling_target())
    sid: str = json.loads(opening.text[1:])["sid"]
    assert (await connection.request("POST", polling_target(sid), b"40")).text == "ok"
    assert (await connection.request("GET", polling_target(sid))).text.startswith("40")
    return sid


async def call(connection: Connection, sid: str, ack_id: int, *args: Any) -> list[Any]:
    """Emit an event asking for an acknowledgement, and poll until it arrives; its args."""
    body = f"42{ack_id}{json.dumps(args)}".encode()
    assert (await connection.request("POST", polling_target(sid), body)).text == "ok"
    prefix = f"43{ack_id}"
    while True:
        payload = (await connection.request("GET", polling_target(sid))).text
        for packet in payload.split("\x1e"):
            if packet.startswith(prefix):
                answer: list[Any] = json.loads(packet[len(prefix) :])
                return answer


async def read_slowly(url: str, sid: str, count: int, round_trip_s: float) -> int:
    """Poll ``sid`` every ``round_trip_s`` until ``count`` events ``n`` arrived, in order;
    how many GETs it took."""
    received = gets = 0
    async with connect(url) as connection:
        while received < count:
            await trio.sleep(round_trip_s)
            response = await connection.request("GET", polling_target(sid))
            assert response.status == 200, f"cut after {received} events: {response.text}"
            gets += 1
            for packet in response.text.split("\x1e"):
                if packet == "2":
                    await connection.request("POST", polling_target(sid), b"3")
                elif packet.startswith("42"):
                    assert json.loads(packet[2:]) == ["n", received]
                    received += 1
    return gets


@pytest.mark.parametrize("host", HOSTS)
async def test_a_loop_of_broadcasts_waits_for_a_polling_reader_on_a_slow_network(
    host: str,
) -> None:
    # 5,000 broadcasts outrun a queue of 4,096 within a round trip of 100 ms: without the
    # wait, the reader would be cut. Node's server never cuts (its queues are unbounded).
    count, round_trip_s = 5_000, 0.1
    sio = delivery_server()
    async with (
        serve_server(host, sio) as url,
        connect(url) as reader,
        connect(url) as stopped,
        connect(url) as caller,
    ):
        reader_sid = await open_polling_socket(reader)
        stopped_sid = await open_polling_socket(stopped)
        assert await call(reader, reader_sid, 1, "join", "r") == ["r"]
        assert await call(stopped, stopped_sid, 1, "join", "r") == ["r"]  # and never reads again
        caller_sid = await open_polling_socket(caller)
        async with trio.open_nursery() as nursery:
            gets: list[int] = []

            async def read() -> None:
                gets.append(await read_slowly(url, reader_sid, count, round_trip_s))

            nursery.start_soon(read)
            started = trio.current_time()
            assert await call(caller, caller_sid, 1, "bcast_loop", count) == [count]
            elapsed = trio.current_time() - started
        # The loop ran at the reader's pace: a GET every ~256 broadcasts (its pacing mark).
        assert gets[0] >= count // 4096 + 1
        assert elapsed >= (gets[0] - 2) * round_trip_s
        # The member that stopped reading cost the loop one wait at most, then was cut.
        assert elapsed < gets[0] * (round_trip_s + POLL_PACING_S)
        assert (await stopped.request("GET", polling_target(stopped_sid))).status == 400
        assert sio.statistics().slow_consumers == 1
