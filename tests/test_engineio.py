"""The Engine.IO server over real sockets: handshake rules, both transports, the upgrade,
limits and the hostile inputs of sections H, P, W and E of the security catalogue.

Every hostile case ends by checking that a bystander session still works and that the
attacker's session is gone (no session, no task left behind).
"""

from __future__ import annotations

import base64
import functools
import json

import pytest
import trio
import trio.lowlevel

import trio_sio
from support.engineio import NATIVE_HOSTS, EchoHandler, bystanders_ok, serve_engine, settled
from support.http import connect, request
from support.websocket import Closed, WebSocket, open_websocket
from trio_sio import DisconnectReason
from trio_sio._engine import EngineOptions, EngineServer, HttpRequest

PAYLOAD_LIMIT = 1_000_000

#: Cases the two hosts must answer identically run on both.
#: The hosts, the native one with each of its HTTP parsers.
HOSTS = ["hypercorn", *NATIVE_HOSTS]


# --- handshake -------------------------------------------------------------------------


async def test_polling_handshake_announces_settings_in_milliseconds() -> None:
    async with serve_engine(ping_interval=0.3, ping_timeout=0.2) as e:
        response = await request(e.url, "GET", e.target("EIO=4&transport=polling"))
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain")
        opening = json.loads(response.text[1:])
        assert opening["upgrades"] == ["websocket"]
        assert opening["pingInterval"] == 300
        assert opening["pingTimeout"] == 200
        assert opening["maxPayload"] == PAYLOAD_LIMIT
        assert len(opening["sid"]) == 20


async def test_websocket_handshake_offers_no_upgrade() -> None:
    async with serve_engine() as e, e.websocket() as ws:
        opening = await ws.receive()
        assert isinstance(opening, str)
        assert json.loads(opening[1:])["upgrades"] == []


@pytest.mark.parametrize(
    ("query", "method", "code"),
    [
        ("EIO=3&transport=polling", "GET", 5),  # H1
        ("EIO=5&transport=polling", "GET", 5),
        ("transport=polling", "GET", 5),
        ("EIO=4&transport=flashsocket", "GET", 0),  # H2
        ("EIO=4&transport=__proto__", "GET", 0),
        ("EIO=4", "GET", 0),
        ("EIO=4&transport=polling", "POST", 2),  # H3
        ("EIO=4&transport=polling", "PUT", 2),
        ("EIO=4&transport=polling&sid=unknown", "GET", 1),  # H4
        ("EIO=4&transport=polling&sid=__proto__", "GET", 1),
        ("EIO=4&transport=polling&sid=" + "x" * 10_000, "GET", 1),
        ("EIO=4&transport=websocket", "GET", 3),  # H5: no upgrade headers
    ],
)
async def test_bad_requests_get_engineio_error_codes(query: str, method: str, code: int) -> None:
    async with serve_engine() as e:
        response = await request(e.url, method, e.target(query))
        assert response.status == 400
        assert response.headers["content-type"] == "application/json"
        assert response.json()["code"] == code
        assert isinstance(response.json()["message"], str)
        assert e.engine.statistics().sessions == 0
        await bystanders_ok(e)


async def test_foreign_origin_is_refused_by_default_on_both_transports() -> None:  # H6
    async with serve_engine() as e:
        headers = [("Origin", "http://evil.example")]
        response = await request(e.url, "GET", e.target("EIO=4&transport=polling"), b"", headers)
        assert response.status == 403
        assert response.json() == {"code": 4, "message": "Forbidden"}
        assert "access-control-allow-origin" not in response.headers
        async with connect(e.url) as conn:
            upgrade = [
                ("Origin", "http://evil.example"),
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ]
            await conn.send_head("GET", e.target("EIO=4&transport=websocket"), upgrade)
            refused = await conn.read_response()
        assert refused.status == 403
        assert e.engine.statistics().sessions == 0


async def test_same_origin_is_allowed_and_gets_cors_headers() -> None:
    async with serve_engine() as e:
        host = e.url.removeprefix("http://")
        headers = [("Origin", f"http://{host}")]
        response = await request(e.url, "GET", e.target("EIO=4&transport=polling"), b"", headers)
        assert response.status == 200
        assert response.headers["access-control-allow-origin"] == f"http://{host}"
        assert response.headers["access-control-allow-credentials"] == "true"


async def test_forwarded_host_does_not_widen_the_origin_check() -> None:  # H8
    async with serve_engine() as e:
        headers = [("Origin", "http://evil.example"), ("X-Forwarded-Host", "evil.example")]
        response = await request(e.url, "GET", e.target("EIO=4&transport=polling"), b"", headers)
        assert response.status == 403


async def test_origin_allow_list_and_preflight() -> None:
    async with serve_engine(cors_allowed_origins=["http://app.example"]) as e:
        preflight = await request(
            e.url,
            "OPTIONS",
            e.target("EIO=4&transport=polling"),
            b"",
            [("Origin", "http://app.example"), ("Access-Control-Request-Headers", "x-token")],
        )
        assert preflight.status == 204
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert preflight.headers["access-control-allow-headers"] == "x-token"
        other = await request(
            e.url, "GET", e.target("EIO=4&transport=polling"), b"", [("Origin", "http://x.y")]
        )
        assert other.status == 403


async def test_allow_request_hook_refuses_with_403() -> None:
    async def deny_without_token(request: object) -> bool:
        return "token=ok" in getattr(request, "query_string", "")

    async with serve_engine(allow_request=deny_without_token) as e:
        refused = await request(e.url, "GET", e.target("EIO=4&transport=polling"))
        assert refused.status == 403
        assert refused.json()["code"] == 4
        allowed = await request(e.url, "GET", e.target("EIO=4&transport=polling&token=ok"))
        assert allowed.status == 200


# --- long-polling ----------------------------------------------------------------------


async def test_polling_batches_text_and_binary() -> None:
    async with serve_engine() as e:
        sid = await e.handshake()
        post = await e.post(sid, "4hello\x1ebAQIDBA==\x1e4world")
        assert (post.status, post.text) == (200, "ok")
        poll = await e.poll(sid)
        assert poll.text == "4hello\x1ebAQIDBA==\x1e4world"


async def test_polling_response_is_compressed_above_threshold() -> None:
    async with serve_engine() as e:
        sid = await e.handshake()
        await e.post(sid, "4" + "a" * 5000)
        response = await request(
            e.url,
            "GET",
            e.target(f"EIO=4&transport=polling&sid={sid}"),
            b"",
            [("Accept-Encoding", "gzip")],
        )
        assert response.headers["content-encoding"] == "gzip"
        import gzip

        assert gzip.decompress(response.body).decode() == "4" + "a" * 5000


async def test_close_packet_releases_pending_get_with_noop() -> None:
    async with serve_engine() as e, trio.open_nursery() as nursery:
        sid = await e.handshake()
        results: list[str] = []

        async def poll() -> None:
            results.append((await e.poll(sid)).text)

        nursery.start_soon(poll)
        await trio.sleep(0.1)
        assert (await e.post(sid, "1")).status == 200
        await e.handler.wait_closed(sid)
        await trio.sleep(0.05)
        assert results == ["6"]
        assert e.handler.closed[sid] is DisconnectReason.TRANSPORT_CLOSE
        assert (await e.poll(sid)).status == 400
        await settled(e)


@pytest.mark.parametrize("host", HOSTS)
async def test_overlapping_gets_close_the_session(host: str) -> None:  # P4
    async with serve_engine(host=host) as e:
        sid = await e.handshake()
        first: list[str] = []
        async with trio.open_nursery() as nursery:

            async def poll() -> None:
                first.append((await e.poll(sid)).text)

            nursery.start_soon(poll)
            await trio.sleep(0.1)
            second = await e.poll(sid)
        assert second.status == 400
        assert first == ["1"]
        assert e.handler.closed[sid] is DisconnectReason.TRANSPORT_ERROR
        await settled(e)
        await bystanders_ok(e)


@pytest.mark.parametrize("host", HOSTS)
async def test_long_poll_is_released_when_its_client_goes_away(host: str) -> None:
    async with serve_engine(host=host) as e:
        sid = await e.handshake()
        async with connect(e.url) as conn:
            await conn.send_head("GET", e.target(f"EIO=4&transport=polling&sid={sid}"))
            await conn.end_body()
            await trio.sleep(0.1)
        # Had the first GET not been released, this one would "overlap" and close the session.
        with trio.fail_after(2):
            while True:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(e.post, sid, "4still here")
                    response = await e.poll(sid)
                if response.text == "4still here":
                    break
        assert e.engine.get_session(sid) is not None
        await bystanders_ok(e)


@pytest.mark.parametrize("host", HOSTS)
async def test_oversized_post_gets_413_without_reading_the_body(host: str) -> None:  # P1
    async with serve_engine(host=host) as e:
        sid = await e.handshake()
        async with connect(e.url) as conn:
            await conn.send_head(
                "POST",
                e.target(f"EIO=4&transport=polling&sid={sid}"),
                content_length=PAYLOAD_LIMIT + 1,
            )
            with trio.fail_after(5):
                response = await conn.read_response()
        # As engine.io: 413 with an empty body, and the session is not closed for it.
        assert (response.status, response.body) == (413, b"")
        assert e.engine.get_session(sid) is not None
        assert (await e.post(sid, "4still here")).text == "ok"
        await bystanders_ok(e)


@pytest.mark.parametrize("host", HOSTS)
async def test_chunked_post_growing_past_the_limit_gets_413(host: str) -> None:  # P2
    async with serve_engine(host=host) as e:
        sid = await e.handshake()
        async with connect(e.url) as conn:
            await conn.send_head(
                "POST", e.target(f"EIO=4&transport=polling&sid={sid}"), chunked=True
            )
            with trio.fail_after(5):
                for _ in range(20):
                    try:
                        await conn.send_body(b"4" + b"x" * 99_999)
                    except trio.BrokenResourceError:
                        break
                response = await conn.read_response()
        assert (response.status, response.body) == (413, b"")
        assert e.engine.get_session(sid) is not None
        await bystanders_ok(e)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"abc", DisconnectReason.PARSE_ERROR),  # E1: unknown packet type
        (b"", DisconnectReason.PARSE_ERROR),  # E1: empty packet
        (b"bnot base64!", DisconnectReason.PARSE_ERROR),  # E1: invalid base64
        (b"2", DisconnectReason.PARSE_ERROR),  # E2: clients do not ping
        (b"0", DisconnectReason.PARSE_ERROR),  # E2: nor open
        ("\x1e".join(["4a"] * 2000).encode(), DisconnectReason.PARSE_ERROR),  # P6
        (b"4\xff\xfe", DisconnectReason.PARSE_ERROR),  # P8: invalid UTF-8
    ],
)
async def test_malformed_payload_closes_only_that_session(
    body: bytes, reason: DisconnectReason
) -> None:
    async with serve_engine() as e:
        sid = await e.handshake()
        response = await e.post(sid, body)
        assert response.status == 400
        assert e.handler.closed[sid] is reason
        assert (await e.poll(sid)).status == 400
        await settled(e)
        await bystanders_ok(e)


async def test_binary_content_type_is_refused() -> None:  # P7
    async with serve_engine() as e:
        sid = await e.handshake()
        response = await request(
            e.url,
            "POST",
            e.target(f"EIO=4&transport=polling&sid={sid}"),
            b"\x01\x02",
            [("Content-Type", "application/octet-stream")],
        )
        assert response.status == 400
        assert e.handler.closed[sid] is DisconnectReason.TRANSPORT_ERROR


# --- WebSocket and the upgrade -----------------------------------------------------------


async def test_websocket_echoes_text_and_binary() -> None:
    async with serve_engine() as e, e.websocket() as ws:
        await e.open_websocket_session(ws)
        await ws.send("4hello")
        assert await ws.receive() == "4hello"
        await ws.send(b"\x01\x02\x03")
        assert await ws.receive() == b"\x01\x02\x03"


@pytest.mark.parametrize("host", HOSTS)
async def test_upgrade_from_polling_releases_the_pending_get(host: str) -> None:
    async with serve_engine(host=host) as e:
        sid = await e.handshake()
        released: list[str] = []
        poll_done = trio.Event()
        async with trio.open_nursery() as nursery:

            async def poll() -> None:
                released.append((await e.poll(sid)).text)
                poll_done.set()

            nursery.start_soon(poll)
            await trio.sleep(0.05)
            async with e.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
                await ws.send("2probe")
                assert await ws.receive() == "3probe"
                with trio.fail_after(2):
                    await poll_done.wait()
                assert released == ["6"]
                await ws.send("5")
                await ws.send("4after upgrade")
                assert await ws.receive() == "4after upgrade"
                # P9: the polling transport is refused from now on; the WebSocket is untouched.
                assert (await e.poll(sid)).status == 400
                assert (await e.post(sid, "4x")).status == 400
                await ws.send("4still here")
                assert await ws.receive() == "4still here"
                assert e.engine.statistics().websocket == 1


async def test_packets_queued_during_upgrade_arrive_over_the_websocket() -> None:
    async with serve_engine() as e:
        sid = await e.handshake()
        async with e.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
            await ws.send("2probe")
            assert await ws.receive() == "3probe"
            assert (await e.post(sid, "4queued")).text == "ok"
            await ws.send("5")
            assert await ws.receive() == "4queued"


@pytest.mark.parametrize("host", HOSTS)
async def test_abandoned_upgrade_keeps_polling_session(host: str) -> None:  # W5
    async with serve_engine(host=host, upgrade_timeout=0.2) as e:
        sid = await e.handshake()
        async with e.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
            await ws.send("2probe")
            assert await ws.receive() == "3probe"
            with trio.fail_after(2), pytest.raises(Closed):
                await ws.receive()
        assert (await e.post(sid, "4still polling")).text == "ok"
        assert (await e.poll(sid)).text == "4still polling"


@pytest.mark.parametrize("host", HOSTS)
async def test_second_websocket_for_a_session_is_closed(host: str) -> None:  # W6
    async with serve_engine(host=host) as e:
        sid = await e.handshake()
        async with e.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
            await ws.send("2probe")
            assert await ws.receive() == "3probe"
            await ws.send("5")
            async with e.websocket(f"EIO=4&transport=websocket&sid={sid}") as intruder:
                with trio.fail_after(2), pytest.raises(Closed):
                    await intruder.receive()
            await ws.send("4hello")
            assert await ws.receive() == "4hello"


async def test_upgrade_with_another_protocol_revision_is_refused() -> None:  # W4
    async with serve_engine() as e:
        sid = await e.handshake()
        for query in (f"EIO=3&transport=websocket&sid={sid}", f"transport=websocket&sid={sid}"):
            async with connect(e.url) as conn:
                headers = [
                    ("Connection", "Upgrade"),
                    ("Upgrade", "websocket"),
                    ("Sec-WebSocket-Version", "13"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ]
                await conn.send_head("GET", e.target(query), headers)
                response = await conn.read_response()
            assert response.status == 400
            assert response.json()["code"] == 5
        assert (await e.post(sid, "4untouched")).text == "ok"
        assert (await e.poll(sid)).text == "4untouched"


@pytest.mark.parametrize(
    ("host_message_limit", "reason"),
    [
        # hypercorn enforces the limit itself and only tells us the connection closed.
        (PAYLOAD_LIMIT, DisconnectReason.TRANSPORT_CLOSE),
        # hypercorn lets it through; the session's own check refuses it.
        (2 * PAYLOAD_LIMIT, DisconnectReason.TRANSPORT_ERROR),
    ],
)
async def test_oversized_websocket_message_closes_with_1009(
    host_message_limit: int, reason: DisconnectReason
) -> None:  # W1
    async with serve_engine(host_message_limit=host_message_limit) as e:
        async with e.websocket() as ws:
            sid = await e.open_websocket_session(ws)
            await ws.send("4" + "x" * PAYLOAD_LIMIT)
            with trio.fail_after(5), pytest.raises(Closed) as closed:
                await ws.receive()
            assert closed.value.code == 1009
            with trio.fail_after(2):
                assert await e.handler.wait_closed(sid) is reason
        await settled(e)
        await bystanders_ok(e)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("frame", ["", "9", "x", "0", "2", "b!"])
async def test_invalid_websocket_packet_closes_the_session(  # E1, E2, W7
    frame: str, host: str
) -> None:
    async with serve_engine(host=host) as e:
        async with e.websocket() as ws:
            sid = await e.open_websocket_session(ws)
            await ws.send(frame)
            with trio.fail_after(5), pytest.raises(Closed):
                await ws.receive()
        assert e.handler.closed[sid] is DisconnectReason.PARSE_ERROR
        await settled(e)
        await bystanders_ok(e)


# --- heartbeat -------------------------------------------------------------------------


async def test_pings_and_ping_timeout_over_websocket() -> None:  # E3
    async with serve_engine(ping_interval=0.2, ping_timeout=0.2) as e:
        async with e.websocket() as ws:
            sid = await e.open_websocket_session(ws)
            for _ in range(3):
                with trio.fail_after(1):
                    assert await ws.receive() == "2"
                await ws.send("3")
            start = trio.current_time()
            with trio.fail_after(2):
                assert await ws.receive() == "2"
                reason = await e.handler.wait_closed(sid)
            assert reason is DisconnectReason.PING_TIMEOUT
            assert trio.current_time() - start < 0.5
        await settled(e)


async def test_ping_timeout_over_polling() -> None:
    async with serve_engine(ping_interval=0.2, ping_timeout=0.2) as e:
        sid = await e.handshake()
        with trio.fail_after(2):
            assert await e.handler.wait_closed(sid) is DisconnectReason.PING_TIMEOUT
        assert (await e.poll(sid)).status == 400


async def test_pong_flood_is_harmless() -> None:  # E4
    async with serve_engine(ping_interval=0.2, ping_timeout=0.5) as e, e.websocket() as ws:
        sid = await e.open_websocket_session(ws)
        for _ in range(10_000):
            await ws.send("3")
        await ws.send("4alive")
        with trio.fail_after(5):
            while (message := await ws.receive()) == "2":
                await ws.send("3")
        assert message == "4alive"
        assert e.engine.get_session(sid) is not None


# --- slow consumers, shutdown and leaks -------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_slow_consumer_is_disconnected_and_its_memory_bounded(host: str) -> None:  # W3
    queue_bytes = 256 * 1024
    async with serve_engine(
        host=host, outbound_queue_bytes=queue_bytes, outbound_queue_packets=64
    ) as e:
        from trio_sio.engineio import Outgoing

        async with e.websocket() as ws:
            sid = await e.open_websocket_session(ws)
            session = e.engine.get_session(sid)
            assert session is not None
            chunk = Outgoing.message("4" + "x" * 16_000)
            offered = 0
            with trio.fail_after(10):
                # The client never reads: TCP buffers fill, then the queue, then the policy.
                while session.offer(chunk):
                    offered += 1
                    await trio.lowlevel.checkpoint()
            assert e.handler.closed[sid] is DisconnectReason.SLOW_CONSUMER
            assert session.delivery.peak_bytes <= queue_bytes
            assert session.delivery.queued() == (0, 0)
            assert offered > 0
        await settled(e)
        await bystanders_ok(e)


@pytest.mark.parametrize("host", HOSTS)
async def test_a_session_keeps_its_handshake_request_without_the_hosts_callables(
    host: str,
) -> None:
    # Kept for Socket.handshake as long as the session lives, the request must not keep the
    # host's read_body, wait_disconnected or answer_nowait (bound to its connection) alive.
    async with serve_engine(host=host) as e:
        polling_sid = await e.handshake()
        polling = e.engine.get_session(polling_sid)
        async with e.websocket() as ws:
            websocket = e.engine.get_session(await e.open_websocket_session(ws))
            for session in (polling, websocket):
                assert session is not None
                request = session.request
                assert (request.method, request.path) == ("GET", "/engine.io/")
                assert "transport=" in request.query_string
                assert "host" in request.headers
                assert request.read_body is None
                assert request.answer_nowait is None
                assert request.wait_disconnected is trio.sleep_forever
        assert (await e.post(polling_sid, "1")).text == "ok"  # the client closes
        await settled(e)


def test_a_request_without_host_callables_is_kept_as_it_is() -> None:
    async def read_body(limit: int) -> bytes:
        return b""

    plain = HttpRequest("GET", "/engine.io/", "EIO=4", {"host": "x"}, client=("127.0.0.1", 1))
    assert plain.without_host_callables() is plain
    for callables in (
        {"read_body": read_body},
        {"wait_disconnected": trio.sleep_forever, "answer_nowait": lambda response: True},
    ):
        request = HttpRequest("POST", "/engine.io/", "EIO=4", {"host": "x"}, **callables)
        kept = request.without_host_callables()
        assert kept is not request
        assert (kept.read_body, kept.answer_nowait) == (None, None)
        assert kept.wait_disconnected is trio.sleep_forever
        assert (kept.method, kept.query_string, kept.headers, kept.time) == (
            request.method,
            request.query_string,
            request.headers,
            request.time,
        )


async def test_sessions_end_with_the_server_and_leave_no_tasks() -> None:
    async with serve_engine() as e:
        async with e.websocket() as ws:
            await e.open_websocket_session(ws)
            sid = await e.handshake()
            assert e.engine.statistics().sessions == 2
        await e.post(sid, "1")
        await settled(e)


@pytest.mark.parametrize("host", HOSTS)
async def test_slow_post_body_times_out(host: str) -> None:  # P3
    async with serve_engine(host=host, http_read_timeout=0.3) as e:
        sid = await e.handshake()
        async with connect(e.url) as conn:
            await conn.send_head(
                "POST", e.target(f"EIO=4&transport=polling&sid={sid}"), content_length=100
            )
            await conn.send_body(b"4")  # then nothing more
            with trio.fail_after(3):
                response = await conn.read_response()
        assert response.status == 408
        assert e.handler.closed[sid] is DisconnectReason.TRANSPORT_ERROR
        await settled(e)
        await bystanders_ok(e)


async def test_overlapping_posts_close_the_session() -> None:  # P5
    async with serve_engine(http_read_timeout=5) as e:
        sid = await e.handshake()
        async with connect(e.url) as first:
            await first.send_head(
                "POST", e.target(f"EIO=4&transport=polling&sid={sid}"), content_length=10
            )
            await first.send_body(b"4")  # still being delivered...
            await trio.sleep(0.1)
            second = await e.post(sid, "4x")  # ...when a second POST arrives
        assert second.status == 400
        assert e.handler.closed[sid] is DisconnectReason.TRANSPORT_ERROR
        await settled(e)
        await bystanders_ok(e)


async def test_max_sessions_answers_503_and_recovers() -> None:  # H9
    async with serve_engine(max_sessions=2) as e:
        sids = [await e.handshake(), await e.handshake()]
        refused = await request(e.url, "GET", e.target("EIO=4&transport=polling"))
        assert refused.status == 503
        await e.post(sids[0], "1")
        await e.handler.wait_closed(sids[0])
        await e.echo_ok_polling()


async def test_origin_with_control_characters_is_never_echoed() -> None:  # H7
    async with serve_engine(cors_allowed_origins="*") as e:
        async with connect(e.url) as conn:
            # h11 (the test client) refuses to send such a header, so write it by hand.
            await conn.stream.send_all(
                b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\n"
                + f"Host: {conn.host}\r\n".encode()
                + b"Origin: http://a.example\x01evil\r\n\r\n"
            )
            data = b""
            with trio.fail_after(5):
                while b"\r\n\r\n" not in data:
                    data += await conn.stream.receive_some(65536)
        assert data.startswith((b"HTTP/1.1 400", b"HTTP/1.1 403"))
        assert b"evil" not in data
        assert b"access-control-allow-origin" not in data.lower()
        await bystanders_ok(e)


# --- issue 14: the upgrade, forceBase64, header hooks --------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_a_get_during_the_upgrade_takes_what_is_queued_at_once(host: str) -> None:  # A3
    # The sequence of issue 14: engine.io answers the GET with the echo at once; trio_sio
    # answered a noop at the 100 ms upgrade check and sent the echo over the WebSocket later.
    async with serve_engine(host=host) as e:
        sid = await e.handshake()
        async with e.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
            await ws.send("2probe")
            assert await ws.receive() == "3probe"
            assert (await e.post(sid, "4during the upgrade")).text == "ok"
            start = trio.current_time()
            response = await e.poll(sid)
            elapsed = trio.current_time() - start
            assert response.text == "4during the upgrade"
            assert elapsed < 0.1  # not held until the upgrade check
            await ws.send("5")
            await ws.send("4after")
            assert await ws.receive() == "4after"


@pytest.mark.parametrize("host", HOSTS)
async def test_a_get_during_the_upgrade_gets_a_noop_at_the_check(host: str) -> None:
    async with serve_engine(host=host) as e:
        sid = await e.handshake()
        async with e.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
            await ws.send("2probe")
            assert await ws.receive() == "3probe"
            with trio.fail_after(2):
                assert (await e.poll(sid)).text == "6"


@pytest.mark.parametrize("host", HOSTS)
async def test_force_base64_binary_over_websocket(host: str) -> None:  # A4
    # engine.io-client's forceBase64 sends binary as a text frame "b<base64>"; engine.io
    # takes it as a binary message (it used to close the connection with 1002).
    async with serve_engine(host=host) as e, e.websocket() as ws:
        await e.open_websocket_session(ws)
        await ws.send("b" + base64.b64encode(b"\x00\x01\xff").decode())
        assert await ws.receive() == b"\x00\x01\xff"
        await ws.send("bnot base64!")  # invalid base64 is a parse error, as before
        with trio.fail_after(5), pytest.raises(Closed):
            await ws.receive()


@pytest.mark.parametrize("host", HOSTS)
async def test_header_hooks_reach_handshakes_and_polls(host: str) -> None:  # C
    def initial(request: HttpRequest) -> list[tuple[str, str]]:
        return [("Set-Cookie", "mine=1; Path=/")]

    def every(request: HttpRequest) -> list[tuple[str, str]]:
        return [("X-Served-By", "trio_sio")]

    async with serve_engine(host=host, initial_headers=initial, headers=every) as e:
        opening = await request(e.url, "GET", e.target("EIO=4&transport=polling"))
        assert opening.headers["set-cookie"] == "mine=1; Path=/"
        assert opening.headers["x-served-by"] == "trio_sio"
        sid = json.loads(opening.text[1:])["sid"]
        posted = await e.post(sid, "4x")
        assert posted.headers["x-served-by"] == "trio_sio"
        assert "set-cookie" not in posted.headers
        async with e.websocket() as ws:
            assert ws.accept_headers["set-cookie"] == "mine=1; Path=/"
            assert ws.accept_headers["x-served-by"] == "trio_sio"


@pytest.mark.parametrize("host", NATIVE_HOSTS)
async def test_stopping_the_engine_closes_the_sessions_that_run_in_host_tasks(
    host: str,
) -> None:
    """A session that started on WebSocket runs in the host's task for its connection, not in
    the engine's nursery: cancelling the engine still closes it ("server shutting down",
    close code 1001), as it closes the sessions in its nursery. (Under hypercorn the engine
    stops only with the host.)"""
    handler = EchoHandler()
    engine = EngineServer(handler, EngineOptions(ping_interval=5.0, ping_timeout=5.0))
    config = trio_sio.NativeConfig(http_parser=NATIVE_HOSTS[host])  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        engine_scope = trio.CancelScope()

        async def run_engine(*, task_status: trio.TaskStatus[None]) -> None:
            with engine_scope:
                await engine.run(task_status=task_status)

        await nursery.start(run_engine)
        urls: list[str] = await nursery.start(
            functools.partial(trio_sio.serve_native, engine, "127.0.0.1", 0, config=config)
        )
        url = next(u for u in urls if u.startswith("http://"))
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        async with open_websocket(ws_url) as ws:
            opening = await ws.receive()
            assert isinstance(opening, str)
            sid = json.loads(opening[1:])["sid"]
            engine_scope.cancel()
            with trio.fail_after(5):
                assert await handler.wait_closed(sid) is DisconnectReason.SERVER_SHUTTING_DOWN
                assert await close_code(ws) == 1001
        nursery.cancel_scope.cancel()


async def close_code(ws: WebSocket) -> int:
    """Read until the server closes; its close code."""
    while True:
        try:
            await ws.receive()
        except Closed as closed:
            return closed.code
