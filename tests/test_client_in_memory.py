"""trio_sio.Client connected to an in-process server by ``trio_sio.testing.connect_client``:
the client's own code over an in-memory WebSocket, on Trio's clock, so that heartbeats,
reconnection backoff and recovery are timed on the virtual clock (``autojump_clock``)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import trio_sio
from trio_sio.testing import connect_client, running


def echo_server(**options: Any) -> trio_sio.Server:
    sio = trio_sio.Server(ping_interval=1, ping_timeout=1, **options)

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.on("ask")
    async def ask(sock: trio_sio.Socket, question: str) -> Any:
        return await sock.call("answer-me", question)

    @sio.on("drop")
    async def drop(sock: trio_sio.Socket) -> None:
        sock.session.close(trio_sio.DisconnectReason.TRANSPORT_CLOSE)

    @sio.on("join")
    async def join(sock: trio_sio.Socket, room: str) -> None:
        sock.join(room)

    return sio


async def test_acks_both_ways_across_heartbeats(autojump_clock: trio.testing.MockClock) -> None:
    sio = echo_server()
    client = trio_sio.Client()
    reasons: list[trio_sio.DisconnectReason] = []

    @sio.on_disconnect
    async def gone(sock: trio_sio.Socket, reason: trio_sio.DisconnectReason) -> None:
        reasons.append(reason)

    @client.on("answer-me")
    async def answer_me(question: str) -> Any:
        return {"answer": question}

    async with running(sio):
        async with connect_client(sio, client):
            assert await client.call("echo", 1, b"\x00", {"x": None}) == (1, b"\x00", {"x": None})
            await trio.sleep(3600)  # an hour of virtual heartbeats, answered by the client
            assert client.connected
            assert await client.call("ask", "why") == {"answer": "why"}
            assert client.connections == 1
        with trio.fail_after(60):  # the server saw the client leave, not its transport close
            while not reasons:
                await trio.sleep(0.01)
    assert reasons == [trio_sio.DisconnectReason.IO_CLIENT_DISCONNECT]
    assert client.disconnect_reason is trio_sio.DisconnectReason.IO_CLIENT_DISCONNECT


async def test_reconnection_waits_the_backoff_on_the_virtual_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sio = echo_server()
    client = trio_sio.Client(delay=2, delay_max=10, randomization_factor=0)
    connected_at: list[float] = []

    @client.on_connect
    async def connected() -> None:
        connected_at.append(trio.current_time())

    async with running(sio), connect_client(sio, client):
        sid = client.sid
        dropped_at = trio.current_time()
        await client.emit("drop")
        while client.connections < 2:
            await trio.sleep(0.001)
        assert client.sid != sid
        assert await client.call("echo", "again") == "again"
    # Reconnected once the backoff's first delay had passed (no jitter), and no later.
    assert connected_at[1] - dropped_at == pytest.approx(2, abs=0.01)


async def test_recovery_in_memory(autojump_clock: trio.testing.MockClock) -> None:
    sio = echo_server(
        connection_state_recovery=trio_sio.ConnectionStateRecovery(max_disconnection_duration=60)
    )
    client = trio_sio.Client(delay=5, randomization_factor=0)
    received: list[int] = []

    @client.on("n")
    async def on_n(n: int) -> None:
        received.append(n)

    async with running(sio), connect_client(sio, client):
        await client.call("join", "room")
        await sio.to("room").emit("n", 0)
        sid = client.sid
        await client.emit("drop")
        while client.connected:
            await trio.sleep(0.001)
        for n in (1, 2, 3):  # the client is away for 5 virtual seconds
            await sio.to("room").emit("n", n)
        while not client.connected:
            await trio.sleep(0.001)
        await sio.to("room").emit("n", 4)
        assert await client.call("echo", "flush") == "flush"
        assert client.recovered
        assert client.sid == sid
    assert received == [0, 1, 2, 3, 4]


async def test_a_refused_namespace_is_a_connect_error() -> None:
    sio = trio_sio.Server()

    @sio.of("/private").use
    async def refuse(sock: trio_sio.Socket, auth: Any) -> None:
        raise trio_sio.ConnectionRefused("no", {"why": auth})

    client = trio_sio.Client(reconnection=False)
    async with running(sio):
        with pytest.raises(trio_sio.ConnectError) as refused:
            async with connect_client(sio, client, namespaces=("/private",), auth={"a": 1}):
                pytest.fail("connected although refused")
    assert (refused.value.message, refused.value.data) == ("no", {"why": {"a": 1}})


async def test_query_and_headers_reach_the_server() -> None:
    sio = trio_sio.Server()
    seen: list[tuple[str | None, str | None]] = []

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        seen.append((sock.handshake.query.get("room"), sock.handshake.headers.get("x-token")))

    client = trio_sio.Client()
    async with (
        running(sio),
        connect_client(sio, client, query={"room": "r1"}, headers={"X-Token": "t"}),
    ):
        pass
    assert seen == [("r1", "t")]
