"""The native Trio host (``trio_sio.serve_native``) over real sockets.

HTTP/1.1 rules (keep-alive, pipelining, header and time limits), the hostile inputs of
sections H, P and W of ``security.md`` against this host, WebSocket frames that break RFC 6455,
static files, TLS, embedding (``nursery.start``, port 0) and graceful shutdown.

Every hostile case ends by checking that bystander sessions still work and that nothing of the
attacker's session is left (no session, no task).
"""

from __future__ import annotations

import inspect
import json
import re
import socket
import sys
import tracemalloc
import zlib
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trio.lowlevel
import trio.testing
import wsproto
import wsproto.events as ev
from wsproto.frame_protocol import FrameProtocol

import trio_sio
from support.engineio import (
    NATIVE_HOSTS,
    EchoHandler,
    EngineFixture,
    bystanders_ok,
    serve_engine,
    settled,
)
from support.http import connect, host_port, request
from support.tls import loopback_tls
from support.websocket import Closed, Rejected, open_websocket
from trio_sio import DisconnectReason, NativeConfig
from trio_sio._engine import Consumer
from trio_sio._engine.websocket import WebSocketTransport
from trio_sio._protocol.websocket import encode_messages
from trio_sio.engineio import EngineOptions, EngineServer, Outgoing
from trio_sio.hosts.native import _http as native_http
from trio_sio.hosts.native._websocket import DirectWebSocket, NativeWebSocket

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

PAYLOAD_LIMIT = 1_000_000
UPGRADE_HEADERS = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
]


#: The native host of this test (``support.engineio.NATIVE_HOSTS``: one per HTTP parser).
native_host = "native"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test of the fixture server here runs with each of the host's HTTP parsers."""
    if "native_engine(" in inspect.getsource(metafunc.function):
        metafunc.fixturenames.append("each_http_parser")
        metafunc.parametrize("each_http_parser", list(NATIVE_HOSTS), indirect=True)


@pytest.fixture
def each_http_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(globals(), "native_host", request.param)


def native_engine(
    *,
    config: NativeConfig | None = None,
    static_files: dict[str, Any] | None = None,
    **options: Any,
) -> AbstractAsyncContextManager[EngineFixture]:
    """The Engine.IO echo fixture of ``support.engineio``, on the native host."""
    return serve_engine(
        host=native_host, native_config=config, static_files=static_files, **options
    )


async def raw_exchange(url: str, data: bytes, *, until_eof: bool = True) -> bytes:
    """Send raw bytes, read until the server closes (or one read, without ``until_eof``)."""
    host, port = host_port(url)
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(data)
        received = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                received += chunk
                if not until_eof:
                    break
        return received


# --- HTTP/1.1 ------------------------------------------------------------------------------


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async with native_engine() as e, connect(e.url) as conn:
        sids = []
        for _ in range(3):
            response = await conn.request("GET", e.target("EIO=4&transport=polling"))
            assert response.status == 200
            sids.append(json.loads(response.text[1:])["sid"])
        response = await conn.request(
            "POST", e.target(f"EIO=4&transport=polling&sid={sids[0]}"), b"4hi"
        )
        assert response.text == "ok"
        assert (
            await conn.request("GET", e.target(f"EIO=4&transport=polling&sid={sids[0]}"))
        ).text == "4hi"
        assert len(set(sids)) == 3


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with native_engine() as e:
        host = e.url.removeprefix("http://")
        one = f"GET {e.target('EIO=4&transport=polling')} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        missing = f"GET /nothing-here HTTP/1.1\r\nHost: {host}\r\n\r\n"
        last = (
            f"GET {e.target('EIO=3&transport=polling')} HTTP/1.1\r\nHost: {host}\r\n"
            "Connection: close\r\n\r\n"
        )
        received = await raw_exchange(e.url, (one + missing + one + last).encode())
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", received)
        assert statuses == [b"200", b"404", b"200", b"400"]
        assert received.count(b'"sid"') == 2


async def test_pipelined_requests_take_turns_with_other_tasks() -> None:
    # Requests that are all here already never make the connection wait; it lets the other
    # tasks run after each one all the same.
    async with native_engine() as e:
        host = e.url.removeprefix("http://")
        count = 300
        missing = f"GET /nothing-here HTTP/1.1\r\nHost: {host}\r\n\r\n" * count
        last = f"GET /nothing-here HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        turns = 0

        async def count_turns() -> None:
            nonlocal turns
            while True:
                await trio.lowlevel.checkpoint()
                turns += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(count_turns)
            received = await raw_exchange(e.url, (missing + last).encode())
            nursery.cancel_scope.cancel()
        assert received.count(b"HTTP/1.1 404 ") == count + 1
        assert turns >= count


async def test_a_chunked_post_pipelined_with_a_poll() -> None:
    # The chunked body arrives split inside its framing; the poll behind it is read after it.
    async with native_engine() as e:
        sid = await e.handshake()
        host = e.url.removeprefix("http://")
        target = e.target(f"EIO=4&transport=polling&sid={sid}")
        post = (
            f"POST {target} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
            "2;ext=1\r\n4h\r\n1\r\ni\r\n0\r\nX-Trailer: t\r\n\r\n"
        ).encode()
        poll = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        stream = await trio.open_tcp_stream(*host_port(e.url))
        async with stream:
            cut = post.index(b"\r\n0\r\n") + 3
            await stream.send_all(post[:cut])
            await trio.testing.wait_all_tasks_blocked()  # the server read what came
            await stream.send_all(post[cut:] + poll)
            received = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    received += chunk
        first, second = received.split(b"HTTP/1.1 ")[1:]
        assert (first[:4], first[-2:]) == (b"200 ", b"ok")
        assert (second[:4], second[-3:]) == (b"200 ", b"4hi")


async def _polling_session(e: EngineFixture) -> tuple[Any, str]:
    """A new long-polling session of ``e`` and the target of its requests."""
    sid = await e.handshake()
    session = e.engine.get_session(sid)
    assert session is not None
    return session, e.target(f"EIO=4&transport=polling&sid={sid}")


async def _parked_poll(e: EngineFixture, connection: Any, target: str) -> None:
    """Send a long-poll GET on ``connection`` and wait until the server parks it."""
    await connection.send_head("GET", target)
    await connection.end_body()
    await trio.testing.wait_all_tasks_blocked()


async def test_a_long_poll_is_answered_by_the_task_that_sends() -> None:
    # A packet for one client answers its waiting GET from the sending task (here, the test's):
    # the response is out before that task yields, the GET's own task still asleep on its
    # socket. The client's next GET may come on that connection (it wakes that task) or on
    # another one while it sleeps; neither is an overlapping GET.
    async with native_engine() as e:
        session, target = await _polling_session(e)
        async with connect(e.url) as first, connect(e.url) as second:
            await _parked_poll(e, first, target)
            session.send_nowait(Outgoing.message("a"))
            assert session.delivery.consumer is Consumer.NONE  # answered, in this step
            response = await first.read_response()
            assert (response.status, response.text) == (200, "4a")
            assert response.headers["content-type"] == "text/plain; charset=UTF-8"

            await _parked_poll(e, first, target)  # the same connection
            session.send_nowait(Outgoing.message("b"))
            assert (await first.read_response()).text == "4b"

            await _parked_poll(e, second, target)  # another connection, the first asleep
            for text in ("c", "d"):  # one GET, one batch: "d" waits for the next GET
                session.send_nowait(Outgoing.message(text))
            assert (await second.read_response()).text == "4c"
            await _parked_poll(e, first, target)
            assert (await first.read_response()).text == "4d"

            posted = await second.request("POST", target, b"4e")  # echoed by the handler
            assert (posted.status, posted.text) == (200, "ok")
            await _parked_poll(e, second, target)
            assert (await second.read_response()).text == "4e"
            assert session.state is trio_sio.engineio.SessionState.OPEN
            assert (await first.request("POST", target, b"1")).text == "ok"
        await settled(e)
        await bystanders_ok(e)


async def test_a_request_pipelined_behind_a_long_poll_is_served_after_it() -> None:
    # The client sent its next request while the poll waited: the poll's task no longer
    # waits on the socket, so the sending task leaves the answer to it, and the request
    # behind it is served next.
    async with native_engine() as e:
        session, target = await _polling_session(e)
        async with connect(e.url) as connection:
            await _parked_poll(e, connection, target)
            await connection.stream.send_all(
                f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n4b".encode()
            )
            await trio.testing.wait_all_tasks_blocked()
            session.send_nowait(Outgoing.message("a"))
            with trio.fail_after(5):
                assert (await connection.read_response()).text == "4a"
                assert (await connection.read_response()).text == "ok"
        await bystanders_ok(e)


async def test_a_close_posted_together_with_a_poll_comes_after_it() -> None:
    # The client sends a GET and, on another connection, a POST with a close packet; both
    # arrive before the server runs, so trio wakes their tasks in one batch, in either order.
    # In arrival order the GET waits, then the close releases it with a noop (as engine.io);
    # the other way round it would find its session gone (400).
    async with native_engine() as e:
        for _ in range(20):
            sid = await e.handshake()
            target = e.target(f"EIO=4&transport=polling&sid={sid}")
            async with connect(e.url) as poll, connect(e.url) as post:
                get = [h11.Request(method="GET", target=target, headers=[("Host", "x")])]
                close = [
                    h11.Request(
                        method="POST",
                        target=target,
                        headers=[("Host", "x"), ("Content-Length", "1")],
                    ),
                    h11.Data(data=b"1"),
                ]
                # Straight into the kernel, without yielding between them.
                for connection, events in ((poll, get), (post, close)):
                    data = b"".join(connection.conn.send(ev) or b"" for ev in events)
                    data += connection.conn.send(h11.EndOfMessage()) or b""
                    connection.stream.socket._sock.send(data)  # type: ignore[attr-defined]
                with trio.fail_after(5):
                    polled, posted = await poll.read_response(), await post.read_response()
            assert (polled.status, polled.text) == (200, "6")
            assert (posted.status, posted.text) == (200, "ok")
        await settled(e)


async def test_the_connection_of_an_answered_long_poll_is_idle_from_its_answer() -> None:
    # Its task sleeps on the socket after the sending task answered: keep_alive_timeout still
    # ends a connection the client leaves idle.
    async with native_engine(config=NativeConfig(keep_alive_timeout=0.3)) as e:
        session, target = await _polling_session(e)
        async with connect(e.url) as connection:
            await _parked_poll(e, connection, target)
            await trio.sleep(0.2)  # waiting for packets is not idle
            session.send_nowait(Outgoing.message("a"))
            answered = trio.current_time()
            assert (await connection.read_response()).text == "4a"
            with trio.fail_after(2):
                assert await connection.stream.receive_some(100) == b""
            assert trio.current_time() - answered >= 0.25  # counted from the answer


async def test_a_long_poll_answer_the_kernel_takes_in_part() -> None:
    # An answer larger than the socket takes at once: the GET's task is woken to send the
    # rest, and the connection serves on.
    big = "x" * 12_000_000
    async with native_engine(outbound_queue_bytes=32_000_000) as e:
        session, target = await _polling_session(e)
        async with connect(e.url) as connection:
            await _parked_poll(e, connection, target)
            session.send_nowait(Outgoing.message(big))
            assert session.delivery.consumer is Consumer.NONE
            with trio.fail_after(30):
                response = await connection.read_response()
            assert response.body == b"4" + big.encode()
            await _parked_poll(e, connection, target)
            session.send_nowait(Outgoing.message("after"))
            assert (await connection.read_response()).text == "4after"
            assert (await connection.request("POST", target, b"1")).text == "ok"
        await settled(e)
        await bystanders_ok(e)


async def test_http_1_0_gets_its_answer_and_the_connection_closes() -> None:
    async with native_engine() as e:
        received = await raw_exchange(
            e.url, f"GET {e.target('EIO=4&transport=polling')} HTTP/1.0\r\n\r\n".encode()
        )
        assert received.startswith(b"HTTP/1.1 200 ")
        assert b'"sid"' in received


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 3000 + b"Host: x\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", b"400"),
        (
            b"POST /engine.io/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"400",
        ),
        (b"GET / HTTP/1.1\nHost: x\n\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", b"400"),
        (
            b"POST /engine.io/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
            b"Content-Length: 1\r\n\r\nx",
            b"400",
        ),
        (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n\r\n", b"400"),
        (b"PROPFIND / HTTP/1.1\r\nHost: x\r\n\r\n", b"501"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", b"400"),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", b"505"),
    ],
    ids=[
        "garbage",
        "big-header",
        "many-headers",
        "bad-length",
        "length-and-chunked",
        "bare-line-feeds",
        "folded-header",
        "length-twice",
        "two-spaces",
        "no-host",
        "unknown-method",
        "gzip-encoding",
        "http-2.0",
    ],
)
async def test_malformed_or_oversized_heads_are_refused(head: bytes, status: bytes) -> None:
    async with native_engine() as e:
        received = await raw_exchange(e.url, head)
        assert received.split(b" ")[1] == status
        await bystanders_ok(e)


async def test_origin_with_control_characters_is_refused_and_not_echoed() -> None:  # H7
    async with native_engine(cors_allowed_origins="*") as e:
        host = e.url.removeprefix("http://")
        target = e.target("EIO=4&transport=polling")
        head = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://a\x01b\r\n\r\n"
        received = await raw_exchange(e.url, head.encode(), until_eof=False)
        # Refused by the host itself (RFC 9110 field values), so the origin is not echoed.
        assert received.startswith(b"HTTP/1.1 400 ")
        assert b"access-control-allow-origin" not in received.lower()
        assert e.engine.statistics().sessions == 0


async def test_slow_request_head_times_out_with_408() -> None:
    config = NativeConfig(request_timeout=0.3)
    async with native_engine(config=config) as e:
        start = trio.current_time()
        received = await raw_exchange(e.url, b"GET /engine.io/?EIO=4 HTTP/1.1\r\nHost: x\r\n")
        assert received.startswith(b"HTTP/1.1 408 ")
        assert trio.current_time() - start < 2
        await bystanders_ok(e)


async def test_idle_keep_alive_connections_are_closed() -> None:
    config = NativeConfig(keep_alive_timeout=0.2)
    async with native_engine(config=config) as e:
        host, port = host_port(e.url)
        async with await trio.open_tcp_stream(host, port) as stream:
            # Never sending anything: closed without an answer.
            with trio.fail_after(2):
                assert await stream.receive_some(100) == b""


async def test_expect_100_continue() -> None:
    async with native_engine() as e:
        sid = await e.handshake()
        async with connect(e.url) as conn:
            await conn.send_head(
                "POST",
                e.target(f"EIO=4&transport=polling&sid={sid}"),
                [("Expect", "100-continue")],
                content_length=3,
            )
            await conn.send_body(b"4hi")
            await conn.end_body()
            response = await conn.read_response()
        assert response.status == 200
        assert (await e.poll(sid)).text == "4hi"


# --- H: handshake ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "method", "code"),
    [
        ("EIO=3&transport=polling", "GET", 5),  # H1
        ("transport=polling", "GET", 5),
        ("EIO=4&transport=__proto__", "GET", 0),  # H2
        ("EIO=4", "GET", 0),
        ("EIO=4&transport=polling", "POST", 2),  # H3
        ("EIO=4&transport=polling&sid=__proto__", "GET", 1),  # H4
        ("EIO=4&transport=polling&sid=" + "x" * 10_000, "GET", 1),
        ("EIO=4&transport=websocket", "GET", 3),  # H5: no upgrade headers
    ],
)
async def test_bad_requests_get_engineio_error_codes(query: str, method: str, code: int) -> None:
    async with native_engine() as e:
        response = await request(e.url, method, e.target(query))
        assert response.status == 400
        assert response.json()["code"] == code
        assert e.engine.statistics().sessions == 0
        await bystanders_ok(e)


async def test_foreign_origin_is_refused_on_both_transports() -> None:  # H6, H8
    async with native_engine() as e:
        headers = [("Origin", "http://evil.example"), ("X-Forwarded-Host", "evil.example")]
        response = await request(e.url, "GET", e.target("EIO=4&transport=polling"), b"", headers)
        assert response.status == 403
        assert response.json() == {"code": 4, "message": "Forbidden"}
        assert "access-control-allow-origin" not in response.headers
        with pytest.raises(Rejected) as refused:
            async with open_websocket(e.ws_url(), headers):
                pass
        # Unlike the ASGI host, the native host refuses the upgrade with a real HTTP answer.
        assert refused.value.status == 403
        assert json.loads(refused.value.body)["code"] == 4
        assert e.engine.statistics().sessions == 0


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([("Sec-WebSocket-Version", "8")], 426),
        ([("Sec-WebSocket-Key", "short")], 400),
        ([("Connection", "keep-alive")], 400),
    ],
)
async def test_invalid_websocket_handshakes_are_refused(
    headers: list[tuple[str, str]], status: int
) -> None:
    async with native_engine() as e, connect(e.url) as conn:
        names = {name for name, _ in headers}
        upgrade = [h for h in UPGRADE_HEADERS if h[0] not in names] + headers
        await conn.send_head("GET", e.target("EIO=4&transport=websocket"), upgrade)
        response = await conn.read_response()
        assert response.status == status
        assert e.engine.statistics().sessions == 0


async def test_websocket_upgrade_elsewhere_is_404() -> None:
    async with native_engine() as e, connect(e.url) as conn:
        await conn.send_head("GET", "/elsewhere/", UPGRADE_HEADERS)
        assert (await conn.read_response()).status == 404


# --- P: long-polling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b"4\xff\xfe", [], DisconnectReason.PARSE_ERROR),  # P8
        ("\x1e".join(["4a"] * 2000).encode(), [], DisconnectReason.PARSE_ERROR),  # P6
        (
            b"\x01\x02",
            [("Content-Type", "application/octet-stream")],
            DisconnectReason.TRANSPORT_ERROR,
        ),  # P7
    ],
)
async def test_bad_post_bodies_close_only_that_session(
    body: bytes, headers: list[tuple[str, str]], reason: DisconnectReason
) -> None:
    async with native_engine() as e:
        sid = await e.handshake()
        target = e.target(f"EIO=4&transport=polling&sid={sid}")
        response = await request(e.url, "POST", target, body, headers)
        assert response.status == 400
        assert e.handler.closed[sid] is reason
        await settled(e)
        await bystanders_ok(e)


# --- W: WebSocket ---------------------------------------------------------------------------


async def test_websocket_echoes_text_and_binary_and_answers_pings() -> None:
    async with native_engine() as e, e.websocket() as ws:
        await e.open_websocket_session(ws)
        await ws.send("4héllo")
        assert await ws.receive() == "4héllo"
        await ws.send(b"\x01\x02\x03")
        assert await ws.receive() == b"\x01\x02\x03"
        await ws._flush(ev.Ping(payload=b"are you there"))
        event = await ws._next_event()
        assert isinstance(event, ev.Pong)
        assert event.payload == b"are you there"
        large = "4" + "é" * 200_000
        await ws.send(large)
        assert await ws.receive() == large


async def test_client_close_is_echoed_and_ends_the_session() -> None:
    async with native_engine() as e:
        async with e.websocket() as ws:
            sid = await e.open_websocket_session(ws)
            await ws.close(4000)
            with trio.fail_after(2), pytest.raises(Closed) as closed:
                await ws.receive()
            assert closed.value.code == 4000
        with trio.fail_after(2):
            assert await e.handler.wait_closed(sid) is DisconnectReason.TRANSPORT_CLOSE
        await settled(e)


@pytest.mark.parametrize("binary", [False, True])
async def test_oversized_websocket_message_closes_with_1009(binary: bool) -> None:  # W1
    async with native_engine() as e:
        async with e.websocket() as ws:
            sid = await e.open_websocket_session(ws)
            await ws.send(b"x" * (PAYLOAD_LIMIT + 1) if binary else "4" + "x" * PAYLOAD_LIMIT)
            with trio.fail_after(5), pytest.raises(Closed) as closed:
                await ws.receive()
            assert closed.value.code == 1009
            with trio.fail_after(2):
                assert await e.handler.wait_closed(sid) is DisconnectReason.TRANSPORT_ERROR
        await settled(e)
        await bystanders_ok(e)


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """A hand-made client frame."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    length = bytes((n,)) if n < 126 else bytes((126,)) + n.to_bytes(2, "big")
    if not masked:
        return bytes((first, length[0])) + length[1:] + payload
    masked_payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((first, length[0] | 0x80)) + length[1:] + mask + masked_payload


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x1, b"4hi", masked=False), 1002),  # clients must mask
        (frame(0x3, b""), 1002),  # reserved opcode
        (frame(0x1, b"4hi", rsv=4), 1002),  # RSV1 without permessage-deflate (CVE-2022-21676)
        (frame(0x1, b"4\xff"), 1007),  # invalid UTF-8
        (frame(0x9, b"x" * 126), 1002),  # control frame too long
        (frame(0x0, b"4x"), 1002),  # continuation of nothing
        (frame(0x8, b"\x03\xed"), 1002),  # close code 1005 is local-only
    ],
    ids=["unmasked", "opcode", "rsv1", "utf8", "long-control", "continuation", "close-code"],
)
async def test_frames_breaking_rfc_6455_close_the_connection(data: bytes, code: int) -> None:
    async with native_engine() as e:
        async with e.websocket() as ws:
            sid = await e.open_websocket_session(ws)
            await ws.send_raw(data)
            with trio.fail_after(5), pytest.raises(Closed) as closed:
                await ws.receive()
            assert closed.value.code == code
        with trio.fail_after(2):
            await e.handler.wait_closed(sid)
        await settled(e)
        await bystanders_ok(e)


async def test_pings_arriving_together_get_one_pong() -> None:
    config = NativeConfig(websocket_control_frame_rate=None)
    async with native_engine(config=config) as e, e.websocket() as ws:
        await e.open_websocket_session(ws)
        pings = [frame(0x9, b"%d" % n) for n in range(1000)]
        await ws.send_raw(b"".join(pings) + frame(0x1, b"4after"))
        pongs = []
        with trio.fail_after(5):
            while True:
                event = await ws._next_event()
                if isinstance(event, ev.Pong):
                    pongs.append(bytes(event.payload))
                elif isinstance(event, ev.TextMessage) and event.data == "4after":
                    break
        # Answered before the message that followed, and only the latest of those that were
        # read together (the kernel may have handed them over in a few reads).
        assert pongs[-1] == b"999"
        assert len(pongs) <= 10


@pytest.mark.parametrize(
    "flood",
    [
        [frame(0x9, b"p")] * 150,
        [frame(0xA, b"")] * 150,
        [frame(0x1, b"4", fin=False)] + [frame(0x0, b"", fin=False)] * 150,
    ],
    ids=["pings", "pongs", "empty-fragments"],
)
async def test_control_frames_beyond_the_rate_close_with_1008(flood: list[bytes]) -> None:
    async with native_engine() as e:
        async with e.websocket() as ws:
            sid = await e.open_websocket_session(ws)
            await ws.send_raw(b"".join(flood))
            with trio.fail_after(5), pytest.raises(Closed) as closed:
                await ws.receive()  # the pongs that may come first are skipped
            assert closed.value.code == 1008
            with trio.fail_after(2):
                assert await e.handler.wait_closed(sid) is DisconnectReason.TRANSPORT_CLOSE
        await settled(e)
        await bystanders_ok(e)


async def test_a_burst_of_control_frames_within_the_rate_passes() -> None:
    config = NativeConfig(websocket_control_frame_rate=100)
    async with native_engine(config=config) as e, e.websocket() as ws:
        await e.open_websocket_session(ws)
        await ws.send_raw(b"".join([frame(0x9, b"p")] * 100) + frame(0x1, b"4still here"))
        with trio.fail_after(5):
            while (message := await ws.receive()) == "2":
                pass
        assert message == "4still here"


async def test_tiny_fragments_are_reassembled() -> None:
    async with native_engine() as e, e.websocket() as ws:
        await e.open_websocket_session(ws)
        text = "4" + "fragmenté" * 300
        data = text.encode()
        frames = [frame(0x1, data[:1], fin=False)]
        frames += [frame(0x0, data[i : i + 1], fin=False) for i in range(1, len(data) - 1)]
        frames.append(frame(0x9, b"in between"))
        frames.append(frame(0x0, data[-1:]))
        await ws.send_raw(b"".join(frames))
        while (message := await ws.receive()) == "2":
            pass
        assert message == text


@pytest.mark.parametrize("path", ["broadcast", "single"])
async def test_direct_writes_keep_order_when_the_kernel_takes_part_of_a_message(path: str) -> None:
    # Writes to an idle connection skip its writer task: a single-target send is written at
    # once, broadcasts are queued quietly and written together by the server's flusher. When
    # the kernel takes only part, the rest waits for the writer, ahead of later messages.
    async with native_engine() as e:
        async with e.websocket() as ws:
            sid = await e.open_websocket_session(ws)
            session = e.engine.get_session(sid)
            assert session is not None
            transport = session.current_transport
            assert isinstance(transport, WebSocketTransport)
            connection = transport.connection
            assert isinstance(connection, DirectWebSocket)
            assert connection._raw is not None
            # A small send buffer (no autotuning) and large messages: the kernel cannot take
            # them whole while the client is not reading.
            connection._raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
            await trio.testing.wait_all_tasks_blocked()  # the session's writer is parked
            messages = [f"4{i:04d}" + "x" * 300_000 for i in range(6)]
            for message in messages:
                item = Outgoing.message(message[1:])
                if path == "broadcast":
                    assert session.offer(item)
                else:
                    session.send_nowait(item)
            if path == "broadcast":
                # Nothing written yet, and the writer not woken: the flusher does it.
                assert session.delivery.queued()[0] == len(messages)
                assert session.delivery.consumer is Consumer.FLUSH_DUE
            else:
                assert connection.unsent  # the first one went out at once, in part
            await trio.testing.wait_all_tasks_blocked()
            assert session.delivery.queued() == (0, 0)
            with trio.fail_after(10):
                received = [await ws.receive() for _ in messages]
            assert received == messages
            await ws.send("4still here")
            assert await ws.receive() == "4still here"
        await settled(e)


def negotiated_extensions(ws: Any) -> list[Any]:
    """The extensions the server accepted, as the wsproto client sees them."""
    return list(ws.conn.connection._proto.extensions)


async def test_deflate_is_off_by_default() -> None:
    from wsproto.extensions import PerMessageDeflate

    offer = [PerMessageDeflate()]
    async with native_engine() as e, open_websocket(e.ws_url(), extensions=offer) as ws:
        assert negotiated_extensions(ws) == []
        await e.open_websocket_session(ws)
        await ws.send_raw(_long_frame(zlib.compress(b"4" * 70_000)[2:-4], rsv1=True))
        with trio.fail_after(5), pytest.raises(Closed) as closed:
            await ws.receive()
        assert closed.value.code == 1002


async def test_deflate_when_enabled_round_trips_and_bounds_a_bomb() -> None:  # W2
    from wsproto.extensions import PerMessageDeflate

    config = NativeConfig(websocket_compression=True)
    async with native_engine(config=config) as e:
        async with open_websocket(e.ws_url(), extensions=[PerMessageDeflate()]) as ws:
            assert negotiated_extensions(ws)
            await e.open_websocket_session(ws)
            text = "4" + "compressible " * 1000
            await ws.send(text)
            assert await ws.receive() == text
        async with open_websocket(e.ws_url(), extensions=[PerMessageDeflate()]) as ws:
            sid = await e.open_websocket_session(ws)
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            bomb = compressor.compress(b"4" * (64 * 1024 * 1024))
            bomb += compressor.flush(zlib.Z_SYNC_FLUSH)
            tracemalloc.start()
            try:
                await ws.send_raw(_long_frame(bomb[:-4], rsv1=True))
                with trio.fail_after(10), pytest.raises(Closed) as closed:
                    await ws.receive()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert closed.value.code == 1009
            assert peak < 16 * 1024 * 1024
            with trio.fail_after(2):
                await e.handler.wait_closed(sid)
        await settled(e)
        await bystanders_ok(e)


def _long_frame(payload: bytes, *, rsv1: bool = False) -> bytes:
    """A masked text frame of any size (RSV1: compressed)."""
    mask = b"\x0f\x0e\x0d\x0c"
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        n, "little"
    )
    first = 0xC1 if rsv1 else 0x81
    if n < 126:
        length = bytes((0x80 | n,))
    elif n < 65536:
        length = bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    else:
        length = bytes((0x80 | 127,)) + n.to_bytes(8, "big")
    return bytes((first,)) + length + mask + masked


# --- the upgrade ----------------------------------------------------------------------------


async def test_upgrade_with_another_protocol_revision_is_refused() -> None:  # W4
    async with native_engine() as e:
        sid = await e.handshake()
        for query in (f"EIO=3&transport=websocket&sid={sid}", f"transport=websocket&sid={sid}"):
            async with connect(e.url) as conn:
                await conn.send_head("GET", e.target(query), UPGRADE_HEADERS)
                response = await conn.read_response()
            assert response.status == 400
            assert response.json()["code"] == 5
        assert (await e.post(sid, "4untouched")).text == "ok"
        assert (await e.poll(sid)).text == "4untouched"


# --- outbound coalescing --------------------------------------------------------------------


def counted_websocket(
    head: bytes = b"",
) -> tuple[NativeWebSocket, trio.testing.MemoryStream, list[int]]:
    """A :class:`NativeWebSocket` on a memory stream whose handshake answers ``head``; the
    client's side, and the count of the server's writes."""
    server_side, client_side = trio.testing.memory_stream_pair()
    writes = [0]
    pump = server_side.send_stream.send_all_hook
    assert pump is not None

    async def count_write() -> None:
        writes[0] += 1
        await pump()

    server_side.send_stream.send_all_hook = count_write

    def accepted(headers: list[tuple[str, str]]) -> tuple[bytes, bytes]:
        return head, b""

    async def rejected(response: object) -> None:
        raise AssertionError("not rejected")

    ws = NativeWebSocket(
        server_side,
        max_message_size=1000,
        deflate=None,
        receive_size=65536,
        close_timeout=1,
        control_frame_rate=None,
        accept_response=accepted,
        reject_response=rejected,
    )
    return ws, client_side, writes


async def test_a_batch_of_frames_is_one_write() -> None:
    ws, client_side, writes = counted_websocket()
    await ws.accept([])
    frames: list[str | bytes] = ["4one", b"\x00\x01", "4" + "x" * 70_000, "4é"]
    await ws.send([Outgoing((frame,)) for frame in frames])
    assert writes == [1]
    expected = len(encode_messages(frames))
    data = b""
    while len(data) < expected:
        data += await client_side.receive_some(1 << 20)
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(data)
    decoded = list(client.received_frames())
    assert [f.payload for f in decoded] == frames
    assert all(f.message_finished for f in decoded)


async def test_the_101_response_goes_with_the_first_frames() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    ws, client_side, writes = counted_websocket(head)
    await ws.accept([])
    assert writes == [0]
    await ws.send([Outgoing(("0{}",))])  # the Engine.IO open packet, say
    assert writes == [1]
    data = await client_side.receive_some(1 << 16)
    assert data == head + encode_messages(["0{}"])


async def test_the_101_response_goes_before_the_first_read() -> None:
    # An upgrade's WebSocket reads the client's probe first, and the client sends it only
    # once it has the 101: waiting with the response unsent would wait forever.
    head = b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    ws, client_side, writes = counted_websocket(head)
    await ws.accept([])
    async with trio.open_nursery() as nursery:
        received: list[str | bytes] = []

        async def read() -> None:
            received.append(await ws.receive())

        nursery.start_soon(read)
        with trio.fail_after(5):
            assert await client_side.receive_some(1 << 16) == head
        client = FrameProtocol(client=True, extensions=[])
        await client_side.send_all(client.send_data("2probe", fin=True))
    assert received == ["2probe"]
    assert writes == [1]


# --- static files ---------------------------------------------------------------------------


async def test_static_files(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<h1>hi</h1>")
    (tmp_path / "site" / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("secret")
    page = tmp_path / "page.html"
    page.write_text("page")
    static = {"/": page, "/static": tmp_path / "site"}
    async with native_engine(static_files=static) as e, connect(e.url) as conn:
        response = await conn.request("GET", "/")
        assert (response.status, response.body) == (200, b"page")
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        response = await conn.request("GET", "/static/app.js")
        assert response.body == b"console.log(1)"
        assert "javascript" in response.headers["content-type"]
        assert (await conn.request("GET", "/static/")).body == b"<h1>hi</h1>"
        head = await conn.request("HEAD", "/static/app.js")
        assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "14")
        for target in ("/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/nope"):
            assert (await conn.request("GET", target)).status == 404
        assert (await conn.request("POST", "/static/app.js", b"x")).status == 404
        # The connection survived all of that.
        assert (await conn.request("GET", e.target("EIO=4&transport=polling"))).status == 200


# --- TLS ------------------------------------------------------------------------------------


async def test_tls() -> None:
    server_context, client_context = loopback_tls()

    sio = trio_sio.Server()

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            partial(trio_sio.serve_native, sio, "127.0.0.1", 0, ssl_context=server_context)
        )
        assert urls[0].startswith("https://127.0.0.1:")
        host, port = host_port(urls[0])
        # Long-polling over HTTPS.
        stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=client_context)
        async with stream:
            await stream.send_all(
                b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"
                b"Host: x\r\nConnection: close\r\n\r\n"
            )
            received = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    received += chunk
        assert received.startswith(b"HTTP/1.1 200 ")
        assert b'"sid"' in received
        # WebSocket over TLS (wss), with a Socket.IO ack round trip.
        stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=client_context)
        async with stream:
            conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            target = "/socket.io/?EIO=4&transport=websocket"
            await stream.send_all(conn.send(ev.Request(host=f"{host}:{port}", target=target)))
            messages: list[str] = []

            async def next_message() -> str:
                while not messages:
                    conn.receive_data(await stream.receive_some(65536))
                    for event in conn.events():
                        if isinstance(event, ev.TextMessage):
                            messages.append(event.data)
                return messages.pop(0)

            with trio.fail_after(5):
                assert (await next_message()).startswith("0{")
                await stream.send_all(conn.send(ev.TextMessage(data="40")))
                assert (await next_message()).startswith("40{")
                await stream.send_all(conn.send(ev.TextMessage(data='421["echo","secure"]')))
                assert await next_message() == '431["secure"]'
        nursery.cancel_scope.cancel()


async def test_tls_garbage_instead_of_a_handshake_is_harmless() -> None:
    server_context, _ = loopback_tls()
    engine = EngineServer(EchoHandler())
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            partial(trio_sio.serve_native, engine, "127.0.0.1", 0, ssl_context=server_context)
        )
        received = await raw_exchange(urls[0].replace("https", "http"), b"GET / HTTP/1.1\r\n\r\n")
        assert not received.startswith(b"HTTP")
        assert engine.statistics().sessions == 0
        nursery.cancel_scope.cancel()


# --- embedding and shutdown -----------------------------------------------------------------


async def test_an_already_running_server_is_not_stopped() -> None:
    engine = EngineServer(EchoHandler())
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        host_scope = trio.CancelScope()

        async def serve(*, task_status: trio.TaskStatus[list[str]]) -> None:
            with host_scope:
                await trio_sio.serve_native(engine, "127.0.0.1", 0, task_status=task_status)

        urls = await nursery.start(serve)
        response = await request(urls[0], "GET", "/socket.io/?EIO=4&transport=polling")
        assert response.status == 200
        host_scope.cancel()
        await trio.sleep(0.1)
        assert engine.running
        assert engine.statistics().sessions == 1  # its sessions are not the host's to close
        nursery.cancel_scope.cancel()


async def test_shutdown_is_not_blocked_by_a_client_that_stopped_reading() -> None:  # R6
    """Under hypercorn a write to such a client cannot be cancelled (security.md §3); here
    shutdown cancels it and completes within its grace period."""
    engine = EngineServer(EchoHandler(), EngineOptions(ping_interval=5, ping_timeout=5))
    async with trio.open_nursery() as nursery:
        host_scope = trio.CancelScope()

        async def serve(*, task_status: trio.TaskStatus[list[str]]) -> None:
            with host_scope:
                await trio_sio.serve_native(
                    engine, "127.0.0.1", 0, path="engine.io", task_status=task_status
                )

        urls = await nursery.start(serve)
        fixture = EngineFixture(urls[0], engine, EchoHandler())
        async with fixture.websocket() as ws:
            sid = await fixture.open_websocket_session(ws)
            session = engine.get_session(sid)
            assert session is not None
            chunk = Outgoing.message("4" + "x" * 16_000)
            with trio.fail_after(10):
                # The client never reads: fill the socket until the writer is stuck.
                while session.delivery.queued()[1] < 64 * 1024:
                    assert session.offer(chunk)
                    await trio.sleep(0.001)
            start = trio.current_time()
            host_scope.cancel()
            with trio.fail_after(5):
                while engine.running or engine.statistics().session_tasks:
                    await trio.sleep(0.01)
            assert trio.current_time() - start < 3


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


async def test_a_busy_port_is_reported_and_a_failing_server_leaves_nothing_open() -> None:
    engine = EngineServer(EchoHandler())
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(partial(trio_sio.serve_native, engine, "127.0.0.1", 0))
        _, port = host_port(urls[0])
        other = EngineServer(EchoHandler())
        with pytest.raises(OSError, match="in use"):
            await nursery.start(partial(trio_sio.serve_native, other, "127.0.0.1", port))
        nursery.cancel_scope.cancel()

    class Broken(EngineServer):
        async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> Any:
            raise RuntimeError("cannot start")

    broken = Broken(EchoHandler())
    # An unclosed listener would be a ResourceWarning, an error in this test suite.
    with pytest.raises(BaseExceptionGroup) as failed:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(trio_sio.serve_native, broken, "127.0.0.1", 0))
    assert [str(e) for e in leaves(failed.value)] == ["cannot start"]


# --- a real browser -------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "permessage-deflate"])
async def test_chat_demo_in_a_browser(compression: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chat demo (examples/chat) served by the native host, in headless Chromium: two
    pages connect (upgrading to WebSocket), chat, and see the server go away. Chromium offers
    permessage-deflate, which the host accepts only when configured to."""
    browser_test = pytest.importorskip("test_browser")
    if browser_test.MISSING:
        pytest.skip(browser_test.MISSING)
    bundle = next((path for path in browser_test.BUNDLES if path.is_file()), None)
    if bundle is None:
        pytest.skip("no socket.io-client bundle: run npm ci --prefix tests/js")
    chat = browser_test.load_chat()
    static = {**chat.app.static_files, "/socket.io.min.js": bundle}
    negotiated: list[bool] = []
    negotiate = native_http.negotiate_deflate

    def recording_negotiate(offer: str | None, **kwargs: Any) -> Any:
        extension = negotiate(offer, **kwargs)
        negotiated.append(extension is not None)
        return extension

    monkeypatch.setattr(native_http, "negotiate_deflate", recording_negotiate)
    server = trio.CancelScope()
    expect = browser_test.expect

    def two_pages(browser: Any, url: str) -> None:
        first, second = browser_test.chat_on_two_pages(
            browser, url, "hello over the native host", "hello back"
        )
        trio.from_thread.run_sync(server.cancel)
        for page in (first, second):
            expect(page.locator("#state")).to_have_text(browser_test.DISCONNECTED)

    async def serve(*, task_status: trio.TaskStatus[list[str]]) -> None:
        with server:
            await trio_sio.serve_native(
                chat.sio,
                "127.0.0.1",
                0,
                static_files=static,
                config=NativeConfig(websocket_compression=compression, compression_threshold=0),
                task_status=task_status,
            )

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(serve)
        await browser_test.in_browser(two_pages, urls[0] + "/")
        server.cancel()
    # Consulted only with compression on; then Chromium's offer was accepted.
    assert negotiated == ([True, True] if compression else [])
