"""The parser seam and the msgpack parser, end to end.

- the fixture app with ``TRIO_SIO_PARSER=msgpack``, driven by socket.io-client 4.x plus
  socket.io-msgpack-parser 3.x (Node) and by python-socketio's ``serializer="msgpack"``, in
  every transport mode, on both hosts;
- the wire compared with the npm package itself, both ways;
- hostile msgpack over WebSocket and long-polling, on both hosts, with a bystander;
- the in-process test client and parser mistakes at construction.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import msgpack
import pytest
import trio
from test_official_clients import SIO_JS, SIO_JS_OBSERVED, SIO_PY, SIO_PY_OBSERVED, run_client

import trio_sio
from support.clients import (
    JS_DIR,
    MODES,
    NODE,
    TESTS_DIR,
    assert_observed,
    requires_node,
)
from support.http import polling_target, request
from support.servers import HOSTS, serve_server
from support.websocket import Closed, WebSocket, open_websocket
from trio_sio.parsers import PacketType, SocketPacket
from trio_sio.testing import open_client, running

PARSER = trio_sio.MsgpackParser()
UTC = timezone.utc


@pytest.fixture
def conformance_env() -> dict[str, str]:
    """The fixture app speaks msgpack (and so do the scenario scripts, which read the same
    variable)."""
    return {"TRIO_SIO_PARSER": "msgpack"}


# --------------------------------------------------------------------------------------------
# the official clients

#: Echo, acks both ways, binary, broadcasts, namespaces, and the CONNECT paths.
SIO_JS_SCENARIOS = [
    "auth",
    "echo",
    "ack",
    "binary",
    "namespaces",
    "forbidden",
    "unknown",
    "rooms",
    "request-ack",
    "disconnect-me",
    "large",
]
SIO_PY_SCENARIOS = [
    "auth",
    "echo",
    "ack",
    "binary",
    "namespaces",
    "forbidden",
    "rooms",
    "request-ack",
    "disconnect-me",
]


@pytest.mark.parametrize("scenario", SIO_JS_SCENARIOS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.node
@requires_node
async def test_socketio_js_client_with_the_msgpack_parser(
    conformance_url: str, mode: str, scenario: str
) -> None:
    result = await run_client(SIO_JS, conformance_url, mode, scenario, "socket.io-client@4.")
    assert result["client"].endswith("(socket.io-msgpack-parser@3.0.2)")
    assert_observed(result, SIO_JS_OBSERVED.get(scenario, {}))


@pytest.mark.parametrize("scenario", SIO_PY_SCENARIOS)
@pytest.mark.parametrize("mode", MODES)
async def test_socketio_python_client_with_the_msgpack_serializer(
    conformance_url: str, mode: str, scenario: str
) -> None:
    result = await run_client(SIO_PY, conformance_url, mode, scenario, "python-socketio@5.")
    assert result["client"].endswith("(serializer msgpack)")
    assert_observed(result, SIO_PY_OBSERVED.get(scenario, {}))


# --------------------------------------------------------------------------------------------
# the wire, against the npm package


def decoded_in_node(value: Any) -> Any:
    """A Python value as msgpack_wire.mjs describes what the npm decoder made of it."""
    if isinstance(value, bytes):
        return {"$bin": value.hex()}
    if isinstance(value, datetime):
        return {"$date": round(value.timestamp() * 1000)}
    if isinstance(value, list | tuple):
        return [decoded_in_node(item) for item in value]
    if isinstance(value, dict):
        return {key: decoded_in_node(item) for key, item in value.items()}
    return value


#: Packets as trio_sio sends them, and what the npm decoder must make of each.
SENT = {
    "connect": SocketPacket(PacketType.CONNECT, "/", {"sid": "abc"}),
    "connect_error": SocketPacket(
        PacketType.CONNECT_ERROR, "/forbidden", {"message": "forbidden", "data": {"r": 1}}
    ),
    "disconnect": SocketPacket(PacketType.DISCONNECT, "/custom"),
    "event": SocketPacket(PacketType.EVENT, "/", ["m", 1, -2.5, None, True, "é", {"k": []}]),
    "event_with_ack": SocketPacket(PacketType.EVENT, "/chat", ["ask", {"q": 1}], 2**53 - 1),
    "binary": SocketPacket(PacketType.EVENT, "/", ["b", b"\x00\xff", {"deep": [b""]}]),
    "date": SocketPacket(PacketType.EVENT, "/", ["t", datetime(1970, 1, 2, tzinfo=UTC)]),
    "ack": SocketPacket(PacketType.ACK, "/", [b"reply", "x"], 0),
    "big_ints": SocketPacket(PacketType.EVENT, "/", ["n", 2**32, -(2**31) - 1, 255, -33]),
}

#: What the npm encoder's messages (msgpack_wire.mjs's PACKETS) decode to here.
RECEIVED = {
    "connect_without_auth": SocketPacket(PacketType.CONNECT, "/", None),
    "connect_with_auth": SocketPacket(PacketType.CONNECT, "/custom", {"token": "t", "n": [1, 2]}),
    "event": SocketPacket(
        PacketType.EVENT, "/", ["message", 1, "two", None, True, -1.5, {"k": "v"}], 3
    ),
    "buffers": SocketPacket(PacketType.EVENT, "/", ["bin", b"\x01\x02\x03", {"empty": b""}]),
    # Typed arrays and ArrayBuffers are notepack.io's extension type 0: bytes here too, even
    # of the sizes of undefined (1) and a Date (8).
    "array_buffers": SocketPacket(
        PacketType.EVENT, "/", ["ab", b"\x00", struct.pack("<d", 1.5), b"\x07\x08\x09"]
    ),
    "date_and_undefined": SocketPacket(
        PacketType.EVENT, "/", ["when", datetime(1970, 1, 2, tzinfo=UTC), None]
    ),
    "ack": SocketPacket(PacketType.ACK, "/chat", ["a", b"b"], 5),
    "disconnect": SocketPacket(PacketType.DISCONNECT, "/custom"),
    "large_ack_id": SocketPacket(PacketType.EVENT, "/", ["x"], 2**53 - 1),
}


@pytest.mark.node
@requires_node
async def test_the_wire_is_the_npm_packages_both_ways() -> None:
    assert NODE is not None
    messages = {name: PARSER.encode(packet) for name, packet in SENT.items()}
    assert all(len(parts) == 1 and isinstance(parts[0], bytes) for parts in messages.values())
    stdin = json.dumps({"decode": {name: parts[0].hex() for name, parts in messages.items()}})
    with trio.fail_after(30):
        process = await trio.run_process(
            [NODE, str(JS_DIR / "msgpack_wire.mjs")],
            stdin=stdin.encode(),
            capture_stdout=True,
            cwd=TESTS_DIR.parent,
        )
    result = json.loads(process.stdout)
    assert result["parser"] == "socket.io-msgpack-parser@3.0.2"
    for name, packet in SENT.items():
        expected: dict[str, Any] = {"type": packet.type.value, "nsp": packet.namespace}
        if packet.data is not None:
            expected["data"] = decoded_in_node(packet.data)
        if packet.id is not None:
            expected["id"] = packet.id
        assert result["decoded"][name] == expected, name
    assert set(result["encoded"]) == set(RECEIVED)
    decoder = PARSER.decoder(max_attachments=10, max_binary_bytes=1_000_000)
    for name, hex_message in result["encoded"].items():
        assert decoder.receive_binary(bytes.fromhex(hex_message)) == RECEIVED[name], name


# --------------------------------------------------------------------------------------------
# hostile input, with a bystander, on both hosts and both transports


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


HOSTILE = {
    "garbage": b"\xc1\xc1\xc1",
    "truncated": pack({"type": 2, "nsp": "/", "data": ["echo", "x"]})[:-2],
    "not a map": pack(["echo"]),
    "binary event type": pack({"type": 5, "nsp": "/", "data": ["echo"]}),
    "reserved event": pack({"type": 2, "nsp": "/", "data": ["disconnect"]}),
    "deep": b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa4echo" + b"\x91" * 40 + b"\xc0",
    "extension": pack({"type": 2, "nsp": "/", "data": ["echo", msgpack.ExtType(7, b"x")]}),
    "bin map key": pack({"type": 2, "nsp": "/", "data": ["echo", {b"k": 1}]}),
    "ack id": pack({"type": 2, "nsp": "/", "data": ["echo"], "id": -1}),
}


@asynccontextmanager
async def msgpack_server(host: str) -> AsyncIterator[tuple[str, trio_sio.Server, list[Any]]]:
    sio = trio_sio.Server(parser=trio_sio.MsgpackParser(), ping_interval=5, ping_timeout=5)
    connects: list[Any] = []

    @sio.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        connects.append(auth)

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    async with serve_server(host, sio) as url:
        yield url, sio, connects


def decode_packet(message: str | bytes) -> SocketPacket:
    assert isinstance(message, bytes), message
    return PARSER.decoder(max_attachments=10, max_binary_bytes=10**6).receive_binary(message)


@asynccontextmanager
async def msgpack_websocket(url: str) -> AsyncIterator[WebSocket]:
    """A raw WebSocket speaking msgpack, connected to ``/``."""
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with open_websocket(ws_url) as ws:
        opening = await ws.receive()
        assert isinstance(opening, str)
        assert opening.startswith("0")
        await ws.send(PARSER.encode(SocketPacket(PacketType.CONNECT, "/", {"me": 1}))[0])
        reply = decode_packet(await ws.receive())
        assert reply.type is PacketType.CONNECT
        assert isinstance(reply.data["sid"], str)
        yield ws


async def bystander_ok(url: str) -> None:
    async with msgpack_websocket(url) as ws:
        echo = SocketPacket(PacketType.EVENT, "/", ["echo", 1, b"\x02", {"d": [None]}], 4)
        await ws.send(PARSER.encode(echo)[0])
        with trio.fail_after(5):
            while (message := await ws.receive()) == "2":
                await ws.send("3")
        assert decode_packet(message) == SocketPacket(
            PacketType.ACK, "/", [1, b"\x02", {"d": [None]}], 4
        )


async def expect_closed(ws: WebSocket) -> None:
    """Read until the server closes; only pings may arrive first."""
    with trio.fail_after(5):
        while True:
            try:
                message = await ws.receive()
            except Closed:
                return
            assert message == "2", f"unexpected {message!r} before the close"


async def settled(sio: trio_sio.Server) -> None:
    with trio.fail_after(5):
        while (stats := sio.engine.statistics()).sessions or stats.session_tasks:
            await trio.sleep(0.01)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", [*HOSTILE, "text frame"])
async def test_hostile_msgpack_over_websocket_closes_only_the_attacker(
    host: str, case: str
) -> None:
    async with msgpack_server(host) as (url, sio, connects):
        async with msgpack_websocket(url) as attacker:
            await attacker.send(HOSTILE.get(case, '42["echo"]'))
            await expect_closed(attacker)
        await bystander_ok(url)
        assert connects == [{"me": 1}, {"me": 1}]
        await settled(sio)
        assert sio.statistics().protocol_errors == 1


async def polling_session(url: str) -> str:
    """A long-polling session speaking msgpack, connected to ``/``; its sid."""
    opening = await request(url, "GET", polling_target())
    sid: str = json.loads(opening.text[1:])["sid"]
    connect = PARSER.encode(SocketPacket(PacketType.CONNECT, "/", {"me": 1}))[0]
    answer = await request(url, "POST", polling_target(sid), b"b" + base64.b64encode(connect))
    assert (answer.status, answer.text) == (200, "ok")
    reply = await request(url, "GET", polling_target(sid))
    assert reply.text.startswith("b"), reply.text  # one binary message, in base64
    assert decode_packet(base64.b64decode(reply.text[1:])).type is PacketType.CONNECT
    return sid


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", [*HOSTILE, "text message"])
async def test_hostile_msgpack_over_polling_closes_only_the_attacker(host: str, case: str) -> None:
    async with msgpack_server(host) as (url, sio, connects):
        sid = await polling_session(url)
        hostile = HOSTILE.get(case)
        body = b'42["echo"]' if hostile is None else b"b" + base64.b64encode(hostile)
        answer = await request(url, "POST", polling_target(sid), body)
        assert answer.status == 400
        assert (await request(url, "GET", polling_target(sid))).status == 400  # gone
        await bystander_ok(url)
        assert connects == [{"me": 1}, {"me": 1}]
        await settled(sio)
        assert sio.statistics().protocol_errors == 1


# --------------------------------------------------------------------------------------------
# in-process, and mistakes


async def test_the_test_client_speaks_the_servers_parser() -> None:
    sio = trio_sio.Server(parser=trio_sio.MsgpackParser())
    when = datetime(2026, 12, 6, 12, 30, tzinfo=UTC)

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        assert await sock.call("ask", args[0]) == "answer"
        return args

    async with running(sio), open_client(sio) as client:

        async def answer(question: Any) -> str:
            assert question == b"\x00"
            return "answer"

        client.on("ask", answer)
        assert await client.call("echo", b"\x00", when, {"n": [1.5]}) == (
            b"\x00",
            when,
            {"n": [1.5]},
        )


@pytest.mark.parametrize(
    ("parser", "message"),
    [
        (trio_sio.MsgpackParser, "pass an instance, MsgpackParser()"),
        ("msgpack", "pass a parser, such as trio_sio.MsgpackParser()"),
        (trio_sio.JsonParser().json, "has no encode or decoder method"),
    ],
)
def test_a_parser_mistake_fails_when_the_server_is_made(parser: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        trio_sio.Server(parser=parser)


def test_the_default_parser_is_json_on_the_servers_codec() -> None:
    codec = trio_sio.JsonParser().json
    sio = trio_sio.Server(json=codec)
    assert isinstance(sio.parser, trio_sio.JsonParser)
    assert sio.parser.json is codec


async def test_unencodable_data_fails_the_emit_naming_the_event() -> None:
    sio = trio_sio.Server(parser=trio_sio.MsgpackParser())

    @sio.on("bad")
    async def bad(sock: trio_sio.Socket) -> None:
        with pytest.raises(TypeError, match="event 'x' cannot be sent"):
            await sock.emit("x", object())
        await sock.emit("fine", 1)

    async with running(sio), open_client(sio) as client:
        await client.emit("bad")
        assert (await client.receive("fine")).args == (1,)


@pytest.mark.parametrize("host", HOSTS)
async def test_a_msgpack_client_of_a_json_server_is_closed_with_a_hint(
    host: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    sio = trio_sio.Server(ping_interval=5, ping_timeout=5)
    async with serve_server(host, sio) as url:
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        async with open_websocket(ws_url) as ws:
            assert isinstance(await ws.receive(), str)  # the open packet
            await ws.send(PARSER.encode(SocketPacket(PacketType.CONNECT, "/"))[0])
            await expect_closed(ws)
        await settled(sio)
    assert sio.statistics().protocol_errors == 1
    assert "a client with another parser?" in caplog.text
