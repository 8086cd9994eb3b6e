"""Connection state recovery in trio_sio.Client (issue 19): the fixture app with recovery on
(``TRIO_SIO_RECOVERY=1``) on trio_sio's two hosts and on Node's socket.io 4.8 with
``connectionStateRecovery``, in the three transport modes.

The client keeps each namespace's ``pid`` and the offset of the last recoverable event, sends
them back in CONNECT when it reconnects, and takes the offset off the events' arguments. The
server's side of recovery is tested in test_recovery.py and test_recovery_clients.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from test_client import BUDGET, mode, wait_for_transport

import trio_sio
from support.clients import NODE_MISSING
from support.peers import PEERS, TRANSPORTS, Peer, serving_peer
from trio_sio.parsers import Parser

__all__ = ["mode"]  # the fixture, shared with test_client.py

RECOVERY = {"TRIO_SIO_RECOVERY": "1"}
#: Room broadcasts in the recovery test.
TOTAL = 40
#: Broadcasts the member receives before its transport is cut (the rest keep coming).
CUT_AFTER = 5
#: The broadcast at which the sender waits until the member knows it is cut, to send BURST
#: more while the member cannot be back yet (its reconnection waits for them).
PAUSE_AT = 20
BURST = 3


@pytest.fixture(params=PEERS)
async def recovering_peer(
    request: pytest.FixtureRequest, nursery: trio.Nursery
) -> AsyncIterator[Peer]:
    async with serving_peer(request.param, nursery, RECOVERY) as served:
        yield served


async def until(condition: Any) -> None:
    with trio.fail_after(BUDGET):
        while not condition():
            await trio.sleep(0.01)


async def test_a_cut_transport_recovers_every_missed_event_once_in_order(
    recovering_peer: Peer, mode: str
) -> None:
    await cut_and_recover(recovering_peer.url, TRANSPORTS[mode])


@pytest.mark.parametrize("host", ["hypercorn", "native"])
async def test_recovery_with_the_msgpack_parser(host: str, nursery: trio.Nursery) -> None:
    """The offsets are strings in msgpack too (the server encodes them with its parser)."""
    peer = Peer(host, nursery, {**RECOVERY, "TRIO_SIO_PARSER": "msgpack"})
    await peer.start()
    await cut_and_recover(peer.url, TRANSPORTS["upgrade"], trio_sio.MsgpackParser())
    await peer.stop()


async def cut_and_recover(
    url: str, transports: tuple[str, ...], parser: Parser | None = None
) -> None:
    """A member of a room is cut (the server closes its transport) while a sender
    broadcasts to the room; it comes back on its own with both namespaces recovered, and
    every broadcast once, in order, without offsets."""
    member = trio_sio.Client(delay=0.05, randomization_factor=0, parser=parser)
    custom = member.of("/custom")
    sender = trio_sio.Client(parser=parser)
    room = "recovery-room"
    received: list[int] = []
    seen_by_on_any: list[tuple[Any, ...]] = []
    echoed: list[tuple[Any, ...]] = []
    cut = trio.Event()
    burst_sent = trio.Event()
    auth_asked = 0

    @member.on("room-message")
    async def room_message(in_room: str, n: int) -> None:  # no third argument: no offset
        received.append(n)

    @member.on_any
    async def any_event(event: str, *args: Any) -> None:
        if event == "room-message":
            seen_by_on_any.append(args)

    @member.on("message-back")
    async def message_back(*args: Any) -> None:
        echoed.append(args)

    @member.on("ack-me")
    async def ack_me(payload: Any) -> Any:
        return payload

    custom_echoed: list[tuple[Any, ...]] = []

    @custom.on("message-back")
    async def custom_message_back(*args: Any) -> None:
        custom_echoed.append(args)

    @member.on_disconnect
    async def disconnected(reason: trio_sio.DisconnectReason) -> None:
        cut.set()

    async def auth() -> dict[str, str]:
        # A reconnection waits for the burst, so that it surely falls while the member is away.
        nonlocal auth_asked
        auth_asked += 1
        if auth_asked > 1:
            await burst_sent.wait()
        return {"token": "t1"}

    async def broadcast() -> None:
        for n in range(TOTAL):
            if n == PAUSE_AT:
                await cut.wait()
            elif n == PAUSE_AT + BURST:
                burst_sent.set()
            await sender.call("room-broadcast", room, n)

    mode = "polling" if transports == ("polling",) else "websocket"
    with trio.fail_after(4 * BUDGET):
        async with (
            member.connect(url, transports=transports, auth=auth, namespaces=("/", "/custom")),
            sender.connect(url, transports=("websocket",)),
        ):
            assert not member.recovered  # a first connection recovers nothing
            await wait_for_transport(member, mode)
            assert await member.call("join", room) == room
            sid, custom_sid = member.sid, custom.sid
            async with trio.open_nursery() as nursery:
                nursery.start_soon(broadcast)
                await until(lambda: len(received) >= CUT_AFTER)
                # A fresh offset for "/custom" too. Node's server forgets, once a minute, the
                # packets older than maxDisconnectionDuration (2 s here), and a namespace whose
                # last packet is gone cannot recover: on a busy machine "/custom"'s only packet,
                # its greeting, can be that old by the time of the cut. An active app's
                # namespaces have recent packets; this one is given one.
                await custom.emit("message", "fresh")
                await until(lambda: custom_echoed == [("fresh",)])
                await member.emit("drop-transport")  # the server cuts the transport
                # Back with the same session, on its own. Until the client has read the cut,
                # both namespaces still look connected; and Node's server may answer
                # "/custom"'s CONNECT after the broadcasts that "/" recovers.
                await cut.wait()
                await until(lambda: member.connected and custom.connected)
            await until(lambda: TOTAL - 1 in received)
            # The last broadcast came last: a duplicate would have come before it.
            assert received == list(range(TOTAL))
            assert seen_by_on_any == [(room, n) for n in range(TOTAL)]
            assert member.recovered
            assert custom.recovered
            assert (member.sid, custom.sid) == (sid, custom_sid)
            assert member.connections == 2
            await wait_for_transport(member, mode)
            # A last string argument is the application's own on an event without offset
            # (one asking for an ack) and on one that had it taken off.
            with trio.fail_after(BUDGET):
                assert await member.call("request-ack", "text") == "text"
            await member.emit("message", 1, "last")
            await until(lambda: echoed)
            assert echoed == [(1, "last")]


async def test_a_replay_beyond_the_buffer_is_a_fresh_session(nursery: trio.Nursery) -> None:
    """Node's server replays what a socket missed before its CONNECT; more than
    ``replay_buffer`` events of it and the client gives the session up: it reconnects as a new
    one, and gets none of them (never part of a history)."""
    if NODE_MISSING is not None:
        pytest.skip(NODE_MISSING)
    peer = Peer("node", nursery, RECOVERY)
    await peer.start()
    member = trio_sio.Client(delay=0.05, randomization_factor=0, replay_buffer=2)
    sender = trio_sio.Client()
    received: list[int] = []
    burst_sent = trio.Event()
    auth_asked = 0

    @member.on("room-message")
    async def room_message(room: str, n: int) -> None:
        received.append(n)

    async def auth() -> dict[str, str]:
        nonlocal auth_asked
        auth_asked += 1
        if auth_asked > 1:
            await burst_sent.wait()
        return {}

    with trio.fail_after(4 * BUDGET):
        async with (
            member.connect(peer.url, transports=("websocket",), auth=auth),
            sender.connect(peer.url, transports=("websocket",)),
        ):
            assert await member.call("join", "room") == "room"
            await sender.call("room-broadcast", "room", 0)
            await until(lambda: received == [0])
            sid = member.sid
            await member.emit("drop-transport")
            await until(lambda: not member.connected)
            for n in range(1, 4):  # one more than the buffer holds
                await sender.call("room-broadcast", "room", n)
            burst_sent.set()
            await until(lambda: member.connected)
            assert not member.recovered
            assert member.sid != sid
            # The refused replay's connection never counted; the next one asked afresh.
            assert (member.connections, auth_asked) == (2, 3)
            await sender.call("room-broadcast", "room", 4)  # no longer in the room
            assert await member.call("message-with-ack", "flush") == "flush"
    assert received == [0]
    await peer.stop()


async def test_a_restarted_server_gives_a_fresh_session(recovering_peer: Peer) -> None:
    """The new server never issued the pid the client sends back: a fresh session, whose
    events lose their (new) offsets all the same."""
    client = trio_sio.Client(delay=0.05, delay_max=0.2)
    echoed: list[tuple[Any, ...]] = []

    @client.on("message-back")
    async def message_back(*args: Any) -> None:
        echoed.append(args)

    async with client.connect(recovering_peer.url, transports=("websocket",)):
        await client.emit("message", "before")
        await until(lambda: echoed)
        sid = client.sid
        await recovering_peer.stop()
        await until(lambda: not client.connected)
        await recovering_peer.start()
        await until(lambda: client.connected)
        assert not client.recovered
        assert client.sid != sid
        await client.emit("message", "after")
        await until(lambda: len(echoed) == 2)
    assert echoed == [("before",), ("after",)]


async def test_without_recovery_a_last_string_is_an_argument(nursery: trio.Nursery) -> None:
    """No pid from the server, no offsets to take off."""
    peer = Peer("native", nursery)
    await peer.start()
    client = trio_sio.Client()
    echoed: list[tuple[Any, ...]] = []

    @client.on("message-back")
    async def message_back(*args: Any) -> None:
        echoed.append(args)

    async with client.connect(peer.url, transports=("websocket",)):
        await client.emit("message", "a", "b")
        await until(lambda: echoed)
        assert not client.recovered
    assert echoed == [("a", "b")]
    await peer.stop()
