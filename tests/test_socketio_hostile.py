"""Hostile Socket.IO input over a real WebSocket (catalogue sections S and B).

Each case connects an attacker through hypercorn, sends the bad bytes, and then checks the
invariants: the attacker's connection is closed (or the packet refused, where the protocol
says so), the server's connect handler ran exactly once per honest connect, a bystander on
the same server still completes a round trip, and no session is left behind.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio

import trio_sio
from support.servers import serve_app
from support.websocket import Closed, WebSocket, open_websocket
from trio_sio.testing import open_client


@dataclass
class Target:
    url: str
    sio: trio_sio.Server
    connects: list[Any]

    @asynccontextmanager
    async def attacker(self, namespace: str | None = "/") -> AsyncIterator[WebSocket]:
        """A raw WebSocket with an Engine.IO session, connected to ``namespace``."""
        url = self.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        async with open_websocket(url) as ws:
            opening = await ws.receive()
            assert isinstance(opening, str)
            assert opening.startswith("0")
            if namespace is not None:
                prefix = "" if namespace == "/" else namespace + ","
                await ws.send("40" + prefix)
                reply = await ws.receive()
                assert isinstance(reply, str)
                assert reply.startswith("40" + prefix + '{"sid":')
            yield ws

    async def bystander_ok(self) -> None:
        async with open_client(self.sio) as client:
            assert await client.call("echo", 1, b"\x02") == (1, b"\x02")

    async def settled(self) -> None:
        with trio.fail_after(5):
            while (stats := self.sio.engine.statistics()).sessions or stats.session_tasks:
                await trio.sleep(0.01)


@asynccontextmanager
async def serve_target() -> AsyncIterator[Target]:
    sio = trio_sio.Server(ping_interval=5, ping_timeout=5, cors_allowed_origins="*")
    connects: list[Any] = []

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        connects.append(auth)

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    async with serve_app(trio_sio.ASGIApp(sio)) as url:
        yield Target(url, sio, connects)


async def expect_closed(ws: WebSocket) -> None:
    """Read until the server closes; only pings may arrive first."""
    with trio.fail_after(5):
        while True:
            try:
                message = await ws.receive()
            except Closed:
                return
            assert message == "2", f"unexpected {message!r} before the close"


TWO_ATTACHMENTS = '452-["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'

HOSTILE_TEXT = [
    # S1: malformed packets and payloads
    "4abc",
    "49",
    "42{}",
    "42[]",
    '42[true,"foo"]',
    '42[null,"bar"]',
    '42[{"toString":"foo"}]',
    "40[]",
    "41/admin,{}",
    '44{"message":"x"}',
    # S2: reserved event names
    '42["connect",{"x":1}]',
    '42["connect_error"]',
    '42["disconnect"]',
    '42["disconnecting"]',
    '42["newListener"]',
    '42["removeListener"]',
    # S3: ack ids
    '42abc["echo"]',
    '429007199254740992["echo"]',
    "42" + "9" * 101 + '["echo"]',
    # S4: depth
    "42" + "[" * 50_000,
    '42["echo",' + "[" * 40 + "]" * 40 + "]",
    # S5: over-long namespace
    "40/" + "a" * 10_000 + ",",
    # S7: CONNECT twice to the same namespace
    "40",
    # B1: attachment counts
    "45",
    "451",
    '45a-["echo"]',
    '451.23-["echo"]',
    '45-1-["echo"]',
    # B2: more attachments than allowed, refused before any is buffered
    '4599999999-["echo"]',
    # B5: an attachment with no binary packet pending is below (binary frame)
]


@pytest.mark.parametrize("frame", HOSTILE_TEXT, ids=lambda f: repr(f[:24]))
async def test_hostile_packet_closes_only_the_attacker(frame: str) -> None:
    async with serve_target() as target:
        async with target.attacker() as ws:
            await ws.send(frame)
            await expect_closed(ws)
        await target.settled()
        assert target.connects == [{}]  # the reserved "connect" never re-ran the handler
        await target.bystander_ok()


@pytest.mark.parametrize(
    "placeholder",
    [
        {"_placeholder": True, "num": "0"},
        {"_placeholder": True, "num": 0.5},
        {"_placeholder": True, "num": -1},
        {"_placeholder": True, "num": 1},
        {"_placeholder": True},
        {"_placeholder": True, "num": True},
    ],
)
async def test_bad_placeholder_closes_and_wedges_nothing(placeholder: dict[str, Any]) -> None:  # B3
    async with serve_target() as target:
        async with target.attacker() as ws:
            await ws.send("451-" + json.dumps(["echo", placeholder]))
            await ws.send(b"\x01")
            await expect_closed(ws)
        await target.settled()
        await target.bystander_ok()


async def test_placeholder_flag_other_than_true_is_plain_data() -> None:
    async with serve_target() as target, target.attacker() as ws:
        await ws.send('4210["echo",{"_placeholder":false,"num":0}]')
        assert await ws.receive() == '4310[{"_placeholder":false,"num":0}]'


async def test_text_while_attachments_are_pending_closes() -> None:  # B4
    async with serve_target() as target:
        async with target.attacker() as ws:
            await ws.send(
                '452-["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
            )
            await ws.send(b"\x01")
            await ws.send('42["echo"]')
            await expect_closed(ws)
        await target.bystander_ok()


async def test_attachment_without_a_binary_packet_closes() -> None:  # B5
    async with serve_target() as target:
        async with target.attacker() as ws:
            await ws.send(b"\x01\x02")
            await expect_closed(ws)
        await target.bystander_ok()


async def test_binary_packet_before_connect_closes() -> None:  # B6
    async with serve_target() as target:
        async with target.attacker(namespace=None) as ws:
            await ws.send('451-["echo",{"_placeholder":true,"num":0}]')
            await expect_closed(ws)
        await target.settled()
        assert target.connects == []
        await target.bystander_ok()


async def test_attachments_beyond_the_payload_limit_close() -> None:  # B7
    async with serve_target() as target:
        async with target.attacker() as ws:
            placeholders = [{"_placeholder": True, "num": n} for n in range(3)]
            await ws.send("453-" + json.dumps(["echo", *placeholders]))
            try:
                for _ in range(3):
                    await ws.send(b"x" * 600_000)
            except trio.BrokenResourceError:
                pass  # closed while the third was on its way: that is the point
            await expect_closed(ws)
        await target.settled()
        await target.bystander_ok()


async def test_binary_event_round_trip_on_the_wire() -> None:
    async with serve_target() as target, target.attacker() as ws:
        await ws.send(TWO_ATTACHMENTS.replace("452-", "452-7"))
        await ws.send(b"\x01\x02\x03")
        await ws.send(b"\x04")
        assert await ws.receive() == (
            '462-7[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
        )
        assert await ws.receive() == b"\x01\x02\x03"
        assert await ws.receive() == b"\x04"


async def test_unknown_namespace_is_refused_and_the_connection_stays() -> None:  # S5
    async with serve_target() as target, target.attacker() as ws:
        await ws.send("40/nowhere,")
        assert await ws.receive() == '44/nowhere,{"message":"Invalid namespace"}'
        await ws.send('421["echo","still here"]')
        assert await ws.receive() == '431["still here"]'


async def test_event_for_a_namespace_not_joined_is_dropped() -> None:  # S6
    async with serve_target() as target, target.attacker() as ws:
        await ws.send('42/other,1["echo",1]')
        await ws.send('422["echo",2]')
        assert await ws.receive() == "432[2]"
        (sock,) = await target.sio.fetch_sockets()
        assert sock._client.dropped_events == 1


async def test_unknown_ack_id_is_ignored() -> None:  # S8
    async with serve_target() as target, target.attacker() as ws:
        await ws.send("43999[1]")
        await ws.send('423["echo",3]')
        assert await ws.receive() == "433[3]"
        (sock,) = await target.sio.fetch_sockets()
        assert sock._client.unknown_acks == 1


async def test_large_array_within_limits_is_accepted() -> None:  # S4
    async with serve_target() as target, target.attacker() as ws:
        big = list(range(100_000))
        await ws.send("425" + json.dumps(["echo", big]))
        reply = await ws.receive()
        assert isinstance(reply, str)
        assert json.loads(reply[3:]) == [big]


async def test_disconnect_mid_reconstruction_frees_the_pending_packet() -> None:  # B8
    async with serve_target() as target:
        async with target.attacker() as ws:
            await ws.send(
                '452-["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
            )
            await ws.send(b"x" * 100_000)
            (sock,) = await target.sio.fetch_sockets()
            client = sock._client
            with trio.fail_after(2):
                while client.decoder.pending is None:
                    await trio.sleep(0.01)
        await target.settled()
        assert client.decoder.pending is None
        await target.bystander_ok()
