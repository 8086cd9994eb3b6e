"""The Engine.IO heartbeat as actions on the server's timer, on Trio's virtual clock: each
ping is due ``ping_interval`` after the session opened or after the last pong, a ping not
answered within ``ping_timeout`` of when it was queued closes the session, and the session's
end leaves no action behind."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from support.engineio import EchoHandler
from trio_sio import DisconnectReason
from trio_sio._engine import EngineOptions, EngineServer, HttpRequest
from trio_sio._protocol import Outgoing
from trio_sio.hosts._memory import MemoryWebSocket

INTERVAL, TIMEOUT = 25.0, 20.0


@asynccontextmanager
async def running_engine() -> AsyncIterator[tuple[EchoHandler, EngineServer, trio.Nursery]]:
    """An engine with the INTERVAL and TIMEOUT heartbeat, running until the block ends."""
    handler = EchoHandler()
    engine = EngineServer(handler, EngineOptions(ping_interval=INTERVAL, ping_timeout=TIMEOUT))
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        yield handler, engine, nursery
        nursery.cancel_scope.cancel()


async def open_session(engine: EngineServer, nursery: trio.Nursery) -> tuple[MemoryWebSocket, str]:
    """A WebSocket session from the start, and its sid."""
    ws = MemoryWebSocket()
    request = HttpRequest("GET", "/engine.io/", "EIO=4&transport=websocket", {})
    nursery.start_soon(engine.handle_websocket, request, ws)
    opening = await ws.from_server.receive()
    assert isinstance(opening, str)
    return ws, json.loads(opening[1:])["sid"]


@pytest.mark.parametrize("graceful", [False, True])
async def test_ping_deadlines_are_exact_and_nothing_outlives_the_session(
    autojump_clock: trio.testing.MockClock, graceful: bool
) -> None:
    async with running_engine() as (handler, engine, nursery):
        alarms = engine._sessions.alarms
        ws, sid = await open_session(engine, nursery)
        opened = trio.current_time()

        assert await ws.from_server.receive() == "2"
        assert trio.current_time() - opened == pytest.approx(INTERVAL)
        await trio.sleep(3)
        await ws.to_server.send("3")
        pong = trio.current_time()

        assert await ws.from_server.receive() == "2"  # an interval after the pong
        assert trio.current_time() - pong == pytest.approx(INTERVAL)
        ping = trio.current_time()
        if graceful:
            # A graceful close instead, to a client that stopped reading (more than the
            # in-memory WebSocket buffers): what the writer took is still being sent, so it
            # drains for ping_timeout, then it is forced.
            await trio.sleep(1)
            session = engine.get_session(sid)
            assert session is not None
            for _ in range(100):
                session.send_nowait(Outgoing.message("x"))
            await trio.sleep(1)
            session.close(DisconnectReason.IO_SERVER_DISCONNECT, graceful=True)
            ping += 2
        reason = await handler.wait_closed(sid)  # this ping is never answered
        assert trio.current_time() - ping == pytest.approx(TIMEOUT)
        assert reason is (
            DisconnectReason.IO_SERVER_DISCONNECT if graceful else DisconnectReason.PING_TIMEOUT
        )
        assert len(alarms) == 0
        with trio.fail_after(5):
            await ws.closed.wait()


async def test_a_late_timer_does_not_take_the_clients_time_to_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # On a busy machine the timer may queue a ping late. The client still has ping_timeout
    # from then to answer, as engine.io's timer gives it; counting from when the ping was due
    # instead would leave it 5 s here, and close a session that answered in 10.
    async with running_engine() as (_, engine, nursery):
        ws, sid = await open_session(engine, nursery)
        opened = trio.current_time()
        await trio.sleep(INTERVAL - 1)
        autojump_clock.jump(16)  # time passes without the timer running: it is 15 s late
        assert await ws.from_server.receive() == "2"
        queued = trio.current_time()
        assert queued - opened == pytest.approx(INTERVAL + 15)
        await trio.sleep(TIMEOUT - 10)
        await ws.to_server.send("3")
        pong = trio.current_time()
        assert await ws.from_server.receive() == "2"  # the next ping: the session lived
        assert trio.current_time() - pong == pytest.approx(INTERVAL)
        assert engine.get_session(sid) is not None


# A text message (the reader's fast path), a binary one, and a noop (Session.receive's path).
OTHER_PACKETS = ["4busy", b"\x01\x02", "6"]


@pytest.mark.parametrize("packet", OTHER_PACKETS, ids=["text", "binary", "noop"])
async def test_a_packet_while_the_pong_is_awaited_gives_the_client_ping_timeout_from_it(
    autojump_clock: trio.testing.MockClock, packet: str | bytes
) -> None:
    # As engine.io 6.6 does: a client busy sending may answer late, and what it sends shows it
    # is there. Here the pong comes 25 s after the ping, past ping_timeout (20 s), but 20 s
    # after the message; the session lives (without the refresh it closed at 20 s).
    async with running_engine() as (_, engine, nursery):
        ws, sid = await open_session(engine, nursery)
        assert await ws.from_server.receive() == "2"
        await trio.sleep(5)
        await ws.to_server.send(packet)
        await trio.sleep(TIMEOUT - 0.5)
        await ws.to_server.send("3")
        pong = trio.current_time()
        while await ws.from_server.receive() != "2":  # the echo, if any
            pass
        assert trio.current_time() - pong == pytest.approx(INTERVAL)
        assert engine.get_session(sid) is not None


async def test_only_the_first_packet_after_a_ping_moves_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Once per ping, as in engine.io: a client that keeps sending but never answers is closed
    # ping_timeout after the first packet that followed the ping, not kept alive by the rest.
    async with running_engine() as (handler, engine, nursery):
        ws, sid = await open_session(engine, nursery)
        assert await ws.from_server.receive() == "2"
        await trio.sleep(5)
        await ws.to_server.send("6")
        first = trio.current_time()

        async def keep_sending() -> None:
            while True:
                await trio.sleep(1)
                await ws.to_server.send("6")

        nursery.start_soon(keep_sending)
        with trio.fail_after(3 * TIMEOUT):  # virtual time: a session kept alive fails here
            assert await handler.wait_closed(sid) is DisconnectReason.PING_TIMEOUT
        assert trio.current_time() - first == pytest.approx(TIMEOUT)
