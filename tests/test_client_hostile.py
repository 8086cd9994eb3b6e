"""A hostile server: tiny raw Trio servers (WebSocket on trio-websocket, long-polling on h11)
that send what a Socket.IO server must not. Each ends the client's connection with a clear
reason and cause, leaves no task or socket behind, and a bystander client connected to a real
server meanwhile keeps working."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import h11
import pytest
import trio
import trio.testing
import trio_websocket

import trio_sio
from support.servers import serve_server

BUDGET = 20
OPEN = '0{"sid":"hostile","upgrades":[],"pingInterval":%d,"pingTimeout":%d,"maxPayload":1000000}'
CONNECTED = '40{"sid":"s1"}'

Script = Callable[[trio_websocket.WebSocketConnection], Awaitable[None]]


@asynccontextmanager
async def websocket_server(script: Script) -> AsyncIterator[str]:
    """A WebSocket server that opens a session (and answers the client's CONNECT) and then
    runs ``script``; the connection's task ends when the client goes."""

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await script(ws)
            while True:
                await ws.get_message()
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        yield f"http://127.0.0.1:{server.port}"
        nursery.cancel_scope.cancel()


def opening(ping_interval: int = 300, ping_timeout: int = 200) -> Script:
    async def script(ws: trio_websocket.WebSocketConnection) -> None:
        await ws.send_message(OPEN % (ping_interval, ping_timeout))
        assert await ws.get_message() == "40"
        await ws.send_message(CONNECTED)

    return script


def then(*messages: str | bytes, **opening_options: int) -> Script:
    async def script(ws: trio_websocket.WebSocketConnection) -> None:
        await opening(**opening_options)(ws)
        for message in messages:
            await ws.send_message(message)

    return script


@asynccontextmanager
async def polling_server(answers: list[bytes]) -> AsyncIterator[str]:
    """An HTTP/1.1 server on h11: each GET gets the next of ``answers`` (then waits),
    each POST ``ok``."""
    queue = list(answers)

    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    method = event.method
                elif isinstance(event, h11.EndOfMessage):
                    if method == b"GET" and not queue:
                        await trio.sleep_forever()
                    body = queue.pop(0) if method == b"GET" else b"ok"
                    headers = [("Content-Length", str(len(body)))]
                    out = conn.send(h11.Response(status_code=200, headers=headers)) or b""
                    out += conn.send(h11.Data(data=body)) or b""
                    out += conn.send(h11.EndOfMessage()) or b""
                    await stream.send_all(out)
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (trio.BrokenResourceError, h11.ProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


async def lost(url: str, **options: Any) -> trio_sio.Disconnected:
    """Run a client (without reconnection) until the server breaks it; what it raised."""
    client = trio_sio.Client(reconnection=False)
    with trio.fail_after(BUDGET), pytest.raises(trio_sio.Disconnected) as raised:
        await client.run(url, **options)
    return raised.value


@pytest.fixture
async def bystander() -> AsyncIterator[trio_sio.Client]:
    """A client of a well-behaved server, connected throughout the test."""
    sio = trio_sio.Server()

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, value: Any) -> Any:
        return value

    client = trio_sio.Client()
    # WebSocket only: an upgrade under way would change the task count being compared.
    async with serve_server("native", sio) as url, client.connect(url, transports=("websocket",)):
        yield client


async def check_clean(bystander: trio_sio.Client, tasks_before: int) -> None:
    await trio.testing.wait_all_tasks_blocked()
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before
    gc.collect()  # an unclosed socket would warn here (warnings are errors)
    with trio.fail_after(BUDGET):
        assert await bystander.call("echo", "still here") == "still here"


WEBSOCKET_CASES = {
    "engine.io packet type": (then("9garbage"), "parse error", "invalid packet type"),
    "socket.io json": (then('42["event", '), "parse error", "invalid json"),
    "socket.io payload": (then('42{"not": "a list"}'), "parse error", "invalid payload"),
    "attachments": (then('4511-["e",{"_placeholder":true,"num":0}]'), "parse error", "too many"),
    "stray binary": (then(b"\x00\x01"), "parse error", "unexpected binary"),
    "huge message": (
        then('42["big","' + "x" * 2_000_000 + '"]'),
        "transport error",
        "larger than max_payload",
    ),
    "no pings": (opening(100, 100), "ping timeout", "no ping"),
    "second open": (then(OPEN % (300, 200)), "parse error", "unexpected packet"),
}


@pytest.mark.parametrize("case", list(WEBSOCKET_CASES))
async def test_hostile_websocket_server(case: str, bystander: trio_sio.Client) -> None:
    script, reason, detail = WEBSOCKET_CASES[case]
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    async with websocket_server(script) as url:
        error = await lost(url, transports=("websocket",))
        assert str(error.reason) == reason
        assert detail in str(error.__cause__)
    await check_clean(bystander, tasks_before)


OPEN_BYTES = (OPEN % (300, 200)).encode()
#: The first two GETs open the session and connect "/"; the third brings the case's bytes.
POLLING_CASES = {
    "engine.io packet type": (b"6\x1e9x", "invalid packet type"),
    "not utf-8": (b"\xff\xfe", "not UTF-8"),
    "base64": (b"6\x1eb!!!", "invalid base64"),
    "huge response": (b"4" + b"x" * 2_000_000, "response body over"),
}


@pytest.mark.parametrize("case", list(POLLING_CASES))
async def test_hostile_polling_server(case: str, bystander: trio_sio.Client) -> None:
    answer, detail = POLLING_CASES[case]
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    async with polling_server([OPEN_BYTES, CONNECTED.encode(), answer]) as url:
        error = await lost(url, transports=("polling",))
        assert error.reason in (
            trio_sio.DisconnectReason.PARSE_ERROR,
            trio_sio.DisconnectReason.TRANSPORT_ERROR,
        )
        assert detail in str(error.__cause__)
    await check_clean(bystander, tasks_before)


@pytest.mark.parametrize(
    "first", ['0{"sid":5}', "0[]", '0{"sid":"a","upgrades":[],"pingInterval":-1}', "2", "nope"]
)
async def test_a_bad_open_packet_is_a_connect_error(first: str) -> None:
    async def script(ws: trio_websocket.WebSocketConnection) -> None:
        await ws.send_message(first)

    async with websocket_server(script) as url:
        client = trio_sio.Client(reconnection=False)
        with trio.fail_after(BUDGET), pytest.raises(trio_sio.ConnectError) as refused:
            async with client.connect(url, transports=("websocket",)):
                pass
    assert isinstance(refused.value.__cause__, trio_sio.ProtocolError)
