"""Embedding: serve_hypercorn and serve_native inside a Trio program, port 0, graceful shutdown
by cancelling; and the command line of the native host."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import trio_sio
from support.http import connect, request
from support.processes import REPO, child, python_env
from support.websocket import Closed, Rejected, open_websocket
from trio_sio._cli import LOG_FORMAT, _BatchingHandler, _Formatter


async def receive_until_closed(ws: Any) -> None:
    while True:
        await ws.receive()


@pytest.mark.parametrize(
    "serve", [trio_sio.serve_hypercorn, trio_sio.serve_native], ids=["hypercorn", "native"]
)
async def test_serve_reports_its_port_and_shuts_down_gracefully(serve: Any) -> None:
    sio = trio_sio.Server()
    reasons: list[trio_sio.DisconnectReason] = []

    @sio.on("echo")
    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.on_disconnect
    async def gone(sock: trio_sio.Socket, reason: trio_sio.DisconnectReason) -> None:
        await trio.sleep(0.1)  # async cleanup still runs during shutdown
        reasons.append(reason)

    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope()

        async def serve_until_cancelled(*, task_status: trio.TaskStatus[list[str]]) -> None:
            with server_scope:
                await serve(sio, "127.0.0.1", 0, task_status=task_status)

        urls: list[str] = await nursery.start(serve_until_cancelled)
        url = next(u for u in urls if u.startswith("http://"))
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        async with connect(url) as idle:  # an idle keep-alive connection does not block
            response = await idle.request("GET", "/socket.io/?EIO=4&transport=polling")
            assert response.status == 200
            async with open_websocket(ws_url) as ws:
                await ws.receive()
                await ws.send("40")
                await ws.receive()
                await ws.send('420["echo","hi"]')
                assert await ws.receive() == '430["hi"]'
                start = trio.current_time()
                server_scope.cancel()
                with trio.fail_after(3), pytest.raises(Closed) as closed:
                    await receive_until_closed(ws)
                assert closed.value.code == 1001
        with trio.fail_after(3):
            while sio.running:
                await trio.sleep(0.01)
    assert reasons == [trio_sio.DisconnectReason.SERVER_SHUTTING_DOWN]
    assert trio.current_time() - start < 3
    assert not sio.running


async def _drive_lifespan(app: trio_sio.ASGIApp) -> list[str]:
    """Run ``app``'s lifespan to the end, as a host would; returns the message types it sent."""
    to_app, inbox = trio.open_memory_channel[dict[str, Any]](2)
    sent: list[str] = []

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await to_app.send({"type": "lifespan.startup"})
    await to_app.send({"type": "lifespan.shutdown"})
    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.receive, send)
    return sent


async def test_other_app_without_lifespan_support_is_fine() -> None:
    async def no_lifespan(scope: Any, receive: Any, send: Any) -> None:
        raise TypeError(f"unsupported scope {scope['type']}")

    app = trio_sio.ASGIApp(trio_sio.Server(), other_asgi_app=no_lifespan)
    assert await _drive_lifespan(app) == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_other_app_failing_after_startup_is_not_hidden() -> None:
    async def fails_at_shutdown(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("cleanup bug")

    app = trio_sio.ASGIApp(trio_sio.Server(), other_asgi_app=fails_at_shutdown)
    with pytest.RaisesGroup(
        pytest.RaisesExc(RuntimeError, match="cleanup bug"), flatten_subgroups=True
    ):
        await _drive_lifespan(app)


# --- the command line: python -m trio_sio MODULE:SERVER ----------------------------------

CLI_APP = """
import trio_sio

sio = trio_sio.Server()
app = trio_sio.ASGIApp(sio)
"""


@contextmanager
def command_line(arguments: list[str], cwd: Path) -> Iterator[str]:
    """``python -m trio_sio *arguments`` serving; yields its URL, then stops it with Ctrl+C."""
    command = [sys.executable, "-m", "trio_sio", *arguments, "--port", "0"]
    with subprocess.Popen(
        command, cwd=cwd, env=python_env(), stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # bounded: the server prints it once it listens
            assert line.startswith("serving on http://127.0.0.1:"), line
            yield line.split()[2].rstrip("/")
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(10)
    assert process.returncode == 0  # Ctrl+C is a clean stop, not a traceback


def polling_handshake(url: str) -> str:
    with urllib.request.urlopen(f"{url}/socket.io/?EIO=4&transport=polling", timeout=10) as page:
        open_packet: str = page.read().decode()
    assert open_packet.startswith("0{")
    return open_packet


def test_command_line_serves_a_server_and_its_files_on_the_native_host(tmp_path: Path) -> None:
    (tmp_path / "cli_app.py").write_text(CLI_APP)
    (tmp_path / "index.html").write_text("<p>chat</p>")
    static = ["--static", f"/={tmp_path / 'index.html'}"]
    with command_line(["cli_app:sio", *static], tmp_path) as url:
        with urllib.request.urlopen(f"{url}/", timeout=10) as page:
            assert page.read() == b"<p>chat</p>"
        open_packet = polling_handshake(url)
        assert json.loads(open_packet[1:])["upgrades"] == ["websocket"]


def test_command_line_takes_a_file_path_like_hypercorn(tmp_path: Path) -> None:
    """``path/to/app.py:attribute``, as in ``hypercorn -k trio examples/chat/app.py:app``; the
    file imports its neighbours, as it would when run from its own directory."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "cli_neighbour.py").write_text("import trio_sio\n\nsio = trio_sio.Server()\n")
    (site / "cli_app_by_path.py").write_text("from cli_neighbour import sio\n")
    with command_line(["site/cli_app_by_path.py:sio"], tmp_path) as url:
        polling_handshake(url)
    with command_line([str(site / "cli_app_by_path.py") + ":sio"], REPO) as url:
        polling_handshake(url)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["no_colon"], "expected MODULE:ATTRIBUTE"),
        (["no_such_module_here:sio"], "No module named"),
        (["cli_app:app"], "cli_app:app is not a trio_sio Server"),
        (["./cli_app.py:app"], "./cli_app.py:app is not a trio_sio Server"),
        (["elsewhere/cli_app.py:sio"], "no such file: elsewhere/cli_app.py"),
        (["site/signal.py:sio"], "is shadowed by the module 'signal'"),
        (["cli_app:sio", "--static", "index.html"], "expected /URL=PATH"),
        (["cli_app:sio", "--certfile", "cert.pem"], "--certfile and --keyfile go together"),
    ],
)
def test_command_line_refuses_bad_arguments(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    (tmp_path / "cli_app.py").write_text(CLI_APP)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "signal.py").write_text(CLI_APP)  # the standard library's came first
    result = subprocess.run(
        [sys.executable, "-m", "trio_sio", *arguments],
        cwd=tmp_path,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr


#: The command line's log lines: time, level, logger, message.
LOG_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>[\w.]+): "
HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


@given(created=st.floats(min_value=0, max_value=4e9))
def test_the_command_lines_formatter_writes_what_logging_s_own_does(created: float) -> None:
    # It formats each second's time once (logging formats it for every record).
    ours, logging_s = _Formatter(LOG_FORMAT), logging.Formatter(LOG_FORMAT)
    for at in (created, created + 0.0005, created + 1.0):
        record = logging.LogRecord("trio_sio.engine", logging.INFO, "", 0, "sid=%s", ("x",), None)
        record.created, record.msecs = at, (at - int(at)) * 1000
        assert ours.format(record) == logging_s.format(record)


class _Writes(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)


async def test_the_command_lines_handler_writes_a_scheduler_pass_s_records_together() -> None:
    stream = _Writes()
    handler = _BatchingHandler()
    handler.setStream(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("tests.batching")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handler.write_batches)
            await trio.testing.wait_all_tasks_blocked()
            for i in range(3):  # in one scheduler pass
                log.info("record %d", i)
            assert stream.writes == []
            await trio.testing.wait_all_tasks_blocked()
            assert stream.writes == ["record 0\nrecord 1\nrecord 2\n"]
            # Another thread's record is written at once: the writer task is not its.
            await trio.to_thread.run_sync(log.info, "from a thread")
            assert stream.writes[-1] == "from a thread\n"
            log.info("pending when the run stops")
            nursery.cancel_scope.cancel()
        assert stream.writes[-1] == "pending when the run stops\n"
        log.info("after")  # no writer task: at once
        assert stream.writes[-1] == "after\n"
    finally:
        log.removeHandler(handler)


async def test_command_line_logs_the_lifecycle_at_info_with_time_and_level(
    tmp_path: Path,
) -> None:
    (tmp_path / "cli_app.py").write_text(CLI_APP)
    async with child("-m", "trio_sio", "cli_app:sio", "--port", "0", cwd=tmp_path) as server:
        url = (await server.wait_for(r"serving on (http://\S+)"))[1]
        await request(url, "GET", HANDSHAKE)
        handshake = (
            LOG_LINE + r"sid=(?P<sid>\S+) handshake transport=polling remote=127\.0\.0\.1:\d+\n"
        )
        found = await server.wait_for(handshake)
        assert (found["level"], found["logger"]) == ("INFO", "trio_sio.engine")
        assert await server.interrupt() == 0
    closed = LOG_LINE + f'sid={found["sid"]} close reason="server shutting down"\n'
    assert re.search(closed, server.output), server.output
    assert "trio_sio.hosts.native.access" not in server.output  # off by default


async def test_command_line_log_level_and_access_log(tmp_path: Path) -> None:
    (tmp_path / "cli_app.py").write_text(CLI_APP)
    arguments = ["-m", "trio_sio", "cli_app:sio", "--port", "0"]
    async with child(*arguments, "--log-level", "warning", "--access-log", cwd=tmp_path) as server:
        url = (await server.wait_for(r"serving on (http://\S+)"))[1]
        await request(url, "GET", HANDSHAKE)
        assert await server.interrupt() == 0
    assert " INFO " not in server.output, server.output
    async with child(*arguments, "--access-log", cwd=tmp_path) as server:
        url = (await server.wait_for(r"serving on (http://\S+)"))[1]
        await request(url, "GET", HANDSHAKE)
        access = (
            LOG_LINE
            + r'127\.0\.0\.1:\d+ "GET /socket\.io/\?EIO=4&transport=polling HTTP/1\.1" 200 '
        )
        found = await server.wait_for(access)
        assert (found["level"], found["logger"]) == ("INFO", "trio_sio.hosts.native.access")
        assert await server.interrupt() == 0


# --- the wrong ASGI server -----------------------------------------------------------------

WRONG_LOOP = "trio_sio runs on Trio: use `hypercorn -k trio`"


async def test_hypercorn_without_the_trio_worker_stops_at_start_up(tmp_path: Path) -> None:
    """hypercorn's default worker is asyncio's: the lifespan fails, naming ``-k trio``, and
    hypercorn exits instead of answering every request with a 503. (It exits with status 0
    all the same, after its worker's traceback.)"""
    (tmp_path / "cli_app.py").write_text(CLI_APP)
    command = ["-m", "hypercorn", "--bind", "127.0.0.1:0", "cli_app:app"]
    async with child(*command, cwd=tmp_path) as server:
        await server.wait_for(re.escape(WRONG_LOOP))
        await server.wait()
    assert "Running on" not in server.output


async def test_uvicorn_fails_at_start_up_and_refuses_requests(tmp_path: Path) -> None:
    (tmp_path / "cli_app.py").write_text(CLI_APP)
    uvicorn = ["-m", "uvicorn", "--host", "127.0.0.1", "--port", "0", "cli_app:app"]
    async with child(*uvicorn, cwd=tmp_path) as server:
        await server.wait_for(re.escape(WRONG_LOOP))
        assert await server.wait() != 0
    # Without the lifespan the server starts; each request gets the message.
    async with child(*uvicorn, "--lifespan", "off", cwd=tmp_path) as server:
        url = (await server.wait_for(r"Uvicorn running on (http://\S+)"))[1]
        response = await request(url, "GET", "/socket.io/?EIO=4&transport=polling")
        assert (response.status, response.text) == (500, WRONG_LOOP)
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        with pytest.raises(Rejected) as rejected:
            async with open_websocket(ws_url):
                pass
        assert (rejected.value.status, rejected.value.body) == (500, WRONG_LOOP.encode())
        await server.wait_for(re.escape(WRONG_LOOP))  # in the log, too
