"""Operating trio_sio (issue 15): the lifecycle log lines, the counters of ``statistics()``,
the Prometheus metrics at ``/metrics``, the native host's access log and packet tracing.

Everything runs on both hosts with real clients on 127.0.0.1: the official socket.io-client
(tests/js) for the Socket.IO lifecycle, and raw HTTP and WebSocket requests where the point is
a refusal or a misbehaving client. The fixture app is loaded with ``TRIO_SIO_METRICS=1`` here
(``conformance_env``), which adds ``/metrics`` and changes nothing else.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import trio_sio
from support.clients import JS_DIR, MODES, NODE, requires_node, run_scenario
from support.defects_app import defects_server
from support.http import request
from support.servers import HOSTS, serve_server
from support.websocket import Rejected, open_websocket
from trio_sio._engine.lifecycle import SessionInfo
from trio_sio._lifecycle import ServerListener
from trio_sio.engineio import HttpRequest

SID = r"[A-Za-z0-9_-]{20}"
REMOTE = r"127\.0\.0\.1:\d+"
TOOK = r"\d+\.\d{3}s"

ENGINE = "trio_sio.engine"
SOCKETIO = "trio_sio.socketio"
PACKETS = "trio_sio.socketio.packets"
ACCESS = "trio_sio.hosts.native.access"


@pytest.fixture
def conformance_env() -> dict[str, str]:
    return {"TRIO_SIO_METRICS": "1"}


#: What these tests read lives in the process that serves: on a cluster, in its workers.
in_process_logs = pytest.mark.not_on_cluster(
    "reads the server's log records in this process, and a cluster logs in its workers"
)
per_process_metrics = pytest.mark.not_on_cluster(
    "counts from zero in one process, and a cluster's scrape reaches one worker of two"
    " (each worker is scraped on its own, as each process of a Node cluster is)"
)


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


async def wait_for_line(
    caplog: pytest.LogCaptureFixture, logger: str, pattern: str
) -> re.Match[str]:
    """The first line of ``logger`` that matches ``pattern`` in full, waiting for it: what
    happens as a client leaves may be logged after the client's process has ended."""
    regex = re.compile(pattern)
    with trio.fail_after(10):
        while True:
            for message in messages(caplog, logger):
                match = regex.fullmatch(message)
                if match:
                    return match
            await trio.sleep(0.01)


async def run_js(url: str, mode: str, scenario: str) -> dict[str, Any]:
    assert NODE is not None
    return await run_scenario([NODE, str(JS_DIR / "sio_scenarios.mjs")], url, mode, scenario)


# --- the lifecycle at INFO ----------------------------------------------------------------


@in_process_logs
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.node
@requires_node
async def test_one_line_per_lifecycle_event_js_client(
    conformance_url: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    await run_js(conformance_url, mode, "disconnect-me")
    first = "polling" if mode != "websocket" else "websocket"
    handshake = await wait_for_line(
        caplog, ENGINE, rf"sid=({SID}) handshake transport={first} remote={REMOTE}"
    )
    sid = handshake[1]
    if mode == "upgrade":
        await wait_for_line(caplog, ENGINE, f"sid={sid} upgrade transport=websocket")
    connect = await wait_for_line(
        caplog, SOCKETIO, rf"socket=({SID}) connect namespace=/ sid={sid}"
    )
    socket_id = connect[1]
    await wait_for_line(
        caplog,
        SOCKETIO,
        f'socket={socket_id} disconnect namespace=/ reason="io server disconnect" sid={sid}',
    )
    await wait_for_line(caplog, ENGINE, f'sid={sid} close reason="transport close"')
    # One line each, no more; and nothing per packet at INFO.
    mine = [m for m in messages(caplog, ENGINE) + messages(caplog, SOCKETIO) if sid in m]
    assert len(mine) == (5 if mode == "upgrade" else 4), mine
    assert messages(caplog, PACKETS) == []


@in_process_logs
@pytest.mark.node
@requires_node
async def test_namespace_refusals_are_logged_with_their_cause(
    conformance_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    await run_js(conformance_url, "websocket", "forbidden")
    await run_js(conformance_url, "websocket", "unknown")
    await wait_for_line(
        caplog,
        SOCKETIO,
        f"sid={SID} refused namespace=/forbidden cause=middleware message=forbidden",
    )
    await wait_for_line(
        caplog,
        SOCKETIO,
        f'sid={SID} refused namespace=/\\S+ cause=invalid_namespace message="Invalid namespace"',
    )


@pytest.fixture(params=HOSTS)
async def defects_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    async with serve_server(request.param, defects_server()) as url:
        yield url


@pytest.mark.node
@requires_node
async def test_an_on_connect_refusal_is_logged(
    defects_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    assert NODE is not None
    command = [NODE, str(JS_DIR / "defects_scenarios.mjs")]
    await run_scenario(command, defects_url, "websocket", "refusals")
    await wait_for_line(
        caplog, SOCKETIO, f"sid={SID} refused namespace=\\S+ cause=on_connect message=no"
    )


# --- refused handshakes -------------------------------------------------------------------


def refusing_server() -> trio_sio.Server:
    async def allow(request: HttpRequest) -> bool:
        await trio.lowlevel.checkpoint()
        return "x-refuse" not in request.headers

    return trio_sio.Server(
        cors_allowed_origins=["http://good.example"], allow_request=allow, max_sessions=1
    )


HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


@pytest.mark.parametrize("host", HOSTS)
async def test_refused_handshakes_are_logged_and_counted_by_cause(
    host: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    sio = refusing_server()
    async with serve_server(host, sio) as url:
        evil = [("Origin", "http://evil.example")]
        assert (await request(url, "GET", HANDSHAKE, headers=evil)).status == 403
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        with pytest.raises(Rejected) as rejected:
            async with open_websocket(ws_url, headers=evil):
                pass  # pragma: no cover
        assert rejected.value.status == 403
        assert (await request(url, "GET", HANDSHAKE, headers=[("X-Refuse", "1")])).status == 403
        assert (await request(url, "GET", HANDSHAKE)).status == 200
        assert (await request(url, "GET", HANDSHAKE)).status == 503  # max_sessions=1
        origin = (
            f"sid=- refused cause=cors_allowed_origins remote={REMOTE} origin=http://evil.example"
        )
        await wait_for_line(caplog, ENGINE, f"sid=- refused cause=allow_request remote={REMOTE}")
        await wait_for_line(
            caplog, ENGINE, f"sid=- refused cause=max_sessions remote={REMOTE} limit=1"
        )
        assert len([m for m in messages(caplog, ENGINE) if re.fullmatch(origin, m)]) == 2
        stats = sio.statistics()
        assert stats.refusals == {"cors_allowed_origins": 2, "allow_request": 1, "max_sessions": 1}
        assert stats.connections == 1


# --- misbehaving and slow clients ---------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_a_protocol_error_is_logged_and_counted(
    host: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    sio = trio_sio.Server()
    async with serve_server(host, sio) as url:
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        async with open_websocket(ws_url) as ws:
            opening = await ws.receive()
            assert isinstance(opening, str)
            sid = json.loads(opening[1:])["sid"]
            await ws.send("49")  # no Socket.IO packet type 9
            await wait_for_line(caplog, ENGINE, f"sid={sid} protocol_error error=.+")
            await wait_for_line(caplog, ENGINE, f'sid={sid} close reason="parse error"')
    stats = sio.statistics()
    assert (stats.protocol_errors, stats.disconnects) == (1, {"parse error": 1})


@pytest.mark.parametrize("host", HOSTS)
async def test_a_slow_consumer_is_logged_and_counted(
    host: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A long-polling client that connects and then never polls again falls behind."""
    caplog.set_level(logging.INFO, logger="trio_sio")
    sio = trio_sio.Server(outbound_queue_packets=5)
    async with serve_server(host, sio) as url:
        opening = await request(url, "GET", HANDSHAKE)
        sid = json.loads(opening.text[1:])["sid"]
        target = f"{HANDSHAKE}&sid={sid}"
        assert (await request(url, "POST", target, b"40")).text == "ok"
        assert (await request(url, "GET", target)).text.startswith("40")
        for i in range(6):
            await sio.emit("news", i)
        await wait_for_line(
            caplog, ENGINE, rf"sid={sid} slow_consumer packets=5 bytes=\d+: closing it"
        )
        await wait_for_line(
            caplog,
            SOCKETIO,
            f'socket={SID} disconnect namespace=/ reason="slow consumer" sid={sid}',
        )
    stats = sio.statistics()
    assert stats.slow_consumers == 1
    assert stats.disconnects == {"slow consumer": 1}
    assert stats.socket_disconnects == {"slow consumer": 1}
    assert stats.events_out == 5  # the sixth did not fit
    (socket,) = [m for m in messages(caplog, SOCKETIO) if " connect " in m]
    connect_packet = "40" + json.dumps(
        {"sid": socket.split()[0][len("socket=") :]}, separators=(",", ":")
    )
    news = sum(len(f'42["news",{i}]') for i in range(5))
    assert (stats.bytes_in, stats.bytes_out) == (len("0"), len(connect_packet) + news)


# --- Prometheus ---------------------------------------------------------------------------


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` over HTTP: sample name and labels -> value."""
    response = await request(url, "GET", "/metrics")
    assert response.status == 200, response
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def scrape_until(
    url: str, expected: dict[tuple[str, tuple[tuple[str, str], ...]], float]
) -> dict[Any, float]:
    with trio.fail_after(10):
        while True:
            samples = await scrape(url)
            if all(samples.get(key) == value for key, value in expected.items()):
                return samples
            await trio.sleep(0.02)


@per_process_metrics
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.node
@requires_node
async def test_metrics_reflect_connects_and_disconnects(conformance_url: str, mode: str) -> None:
    before = await scrape(conformance_url)
    assert before[("trio_sio_connections_total", ())] == 0
    assert before[("trio_sio_sessions", (("transport", "polling"),))] == 0
    assert before[("trio_sio_disconnects_total", (("reason", "transport close"),))] == 0
    await run_js(conformance_url, mode, "disconnect-me")
    after = await scrape_until(
        conformance_url,
        {
            ("trio_sio_connections_total", ()): 1,
            ("trio_sio_socket_connects_total", ()): 1,
            ("trio_sio_socket_disconnects_total", (("reason", "io server disconnect"),)): 1,
            ("trio_sio_disconnects_total", (("reason", "transport close"),)): 1,
            ("trio_sio_sessions", (("transport", "polling"),)): 0,
            ("trio_sio_sessions", (("transport", "websocket"),)): 0,
            ("trio_sio_sockets", (("namespace", "/"),)): 0,
            ("trio_sio_upgrades_total", ()): 1 if mode == "upgrade" else 0,
        },
    )
    assert after[("trio_sio_events_received_total", ())] == 1  # disconnect-me
    assert after[("trio_sio_events_sent_total", ())] == 1  # auth
    assert after[("trio_sio_received_bytes_total", ())] > 0
    assert after[("trio_sio_sent_bytes_total", ())] > 0
    assert after[("trio_sio_refusals_total", (("cause", "middleware"),))] == 0


@per_process_metrics
@pytest.mark.node
@requires_node
async def test_metrics_show_the_connected_sockets_while_they_are(conformance_url: str) -> None:
    """Gauges while a client is connected (the heartbeat scenario stays for several pings;
    its socket's own room is a room)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_js, conformance_url, "websocket", "heartbeat")
        samples = await scrape_until(conformance_url, {})
        with trio.fail_after(10):
            while samples[("trio_sio_sockets", (("namespace", "/"),))] == 0:
                await trio.sleep(0.01)
                samples = await scrape(conformance_url)
        assert samples[("trio_sio_sessions", (("transport", "websocket"),))] >= 1
        assert samples[("trio_sio_rooms", (("namespace", "/"),))] >= 1
    samples = await scrape_until(conformance_url, {("trio_sio_sockets", (("namespace", "/"),)): 0})
    assert samples[("trio_sio_refusals_total", (("cause", "middleware"),))] == 0
    assert (await request(conformance_url, "POST", "/metrics")).status == 405


@pytest.mark.parametrize("conformance_env", [{}])
async def test_without_the_variable_the_fixture_serves_no_metrics(conformance_url: str) -> None:
    assert (await request(conformance_url, "GET", "/metrics")).status == 404


# --- the native host's access log, and packet tracing -------------------------------------


async def test_the_native_access_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    sio = trio_sio.Server()
    config = trio_sio.NativeConfig(access_log=True)
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            lambda task_status: trio_sio.serve_native(
                sio, "127.0.0.1", 0, config=config, task_status=task_status
            )
        )
        url = urls[0]
        await request(url, "GET", HANDSHAKE)
        await request(url, "GET", "/nothing-here")
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        async with open_websocket(ws_url) as ws:
            await ws.receive()
        await wait_for_line(
            caplog,
            ACCESS,
            rf'{REMOTE} "GET /socket\.io/\?EIO=4&transport=polling HTTP/1\.1" 200 \d+ {TOOK}',
        )
        await wait_for_line(caplog, ACCESS, rf'{REMOTE} "GET /nothing-here HTTP/1\.1" 404 9 {TOOK}')
        await wait_for_line(
            caplog,
            ACCESS,
            rf'{REMOTE} "GET /socket\.io/\?EIO=4&transport=websocket HTTP/1\.1" 101 0 {TOOK}',
        )
        nursery.cancel_scope.cancel()


async def test_no_access_log_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    async with serve_server("native", trio_sio.Server()) as url:
        await request(url, "GET", HANDSHAKE)
    assert messages(caplog, ACCESS) == []


@in_process_logs
@pytest.mark.node
@requires_node
async def test_packets_are_traced_at_debug(
    conformance_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=PACKETS)
    await run_js(conformance_url, "websocket", "disconnect-me")
    await wait_for_line(caplog, PACKETS, f"sid={SID} in '0'")
    await wait_for_line(caplog, PACKETS, f'socket={SID} out \'0{{"sid":"{SID}"}}\'')
    await wait_for_line(caplog, PACKETS, f"socket={SID} out '2\\[\"auth\",\\{{\\}}\\]'")
    await wait_for_line(caplog, PACKETS, f"sid={SID} in '2\\[\"disconnect-me\"\\]'")
    await wait_for_line(caplog, PACKETS, f"socket={SID} out '1'")


# --- the listeners (the hook point of the Admin UI) ---------------------------------------


class Recorder(ServerListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []

    def session_opened(self, session: SessionInfo) -> None:
        self.seen.append(("opened", session.transport.value))

    def session_upgraded(self, session: SessionInfo) -> None:
        self.seen.append(("upgraded", session.transport.value))

    def session_closed(self, session: SessionInfo, reason: trio_sio.DisconnectReason) -> None:
        self.seen.append(("closed", reason.value))

    def socket_connected(self, socket: trio_sio.Socket) -> None:
        self.seen.append(("connected", socket.namespace.name))

    def socket_disconnected(
        self, socket: trio_sio.Socket, reason: trio_sio.DisconnectReason
    ) -> None:
        self.seen.append(("disconnected", reason.value, *sorted(socket.rooms - {socket.id})))

    def rooms_joined(self, socket: trio_sio.Socket, rooms: tuple[str, ...]) -> None:
        self.seen.append(("joined", *rooms))

    def rooms_left(self, socket: trio_sio.Socket, rooms: tuple[str, ...]) -> None:
        self.seen.append(("left", *rooms))


@pytest.mark.parametrize("host", HOSTS)
async def test_listeners_see_the_lifecycle_of_an_upgraded_client(host: str) -> None:
    """By hand over real sockets: a long-polling handshake, an upgrade, rooms, a close."""
    sio = trio_sio.Server()
    recorder = Recorder()
    sio.lifecycle.listeners.append(recorder)
    sio.engine.lifecycle.listeners.append(recorder)

    @sio.on("rooms")
    async def rooms(sock: trio_sio.Socket, join: list[str], leave: list[str]) -> None:
        sock.join(*join)
        sock.leave(*leave)

    async with serve_server(host, sio) as url:
        sid = json.loads((await request(url, "GET", HANDSHAKE)).text[1:])["sid"]
        target = f"{HANDSHAKE}&sid={sid}"
        assert (await request(url, "POST", target, b"40")).text == "ok"
        assert (await request(url, "GET", target)).text.startswith("40")
        ws_url = (
            url.replace("http://", "ws://") + f"/socket.io/?EIO=4&transport=websocket&sid={sid}"
        )
        async with open_websocket(ws_url) as ws:
            await ws.send("2probe")
            assert await ws.receive() == "3probe"
            await ws.send("5")
            await ws.send('42["rooms",["a","b"],["b"]]')
            # Only what changed is told: "a" again is no news, "zzz" was never joined.
            await ws.send('42["rooms",["a","c"],["zzz"]]')
            with trio.fail_after(5):
                while ("joined", "c") not in recorder.seen:
                    await trio.sleep(0.01)
        with trio.fail_after(5):
            while not recorder.seen or recorder.seen[-1][0] != "disconnected":
                await trio.sleep(0.01)
    assert recorder.seen == [
        ("opened", "polling"),
        ("connected", "/"),
        ("upgraded", "websocket"),
        ("joined", "a", "b"),
        ("left", "b"),
        ("joined", "c"),
        ("closed", "transport close"),
        ("disconnected", "transport close", "a", "c"),
    ]
