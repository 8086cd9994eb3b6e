"""What hostile WebSocket clients cost each host, measured on the process: file descriptors,
Trio tasks and peak memory.

The hosts are attacked over real sockets on 127.0.0.1: clients that flood events faster than
their handler runs and stop reading (every fd and task must come back once their sessions end,
whether they fall silent or keep sending), and permessage-deflate bombs (the server runs in a
subprocess, so its peak RSS is its own). A bystander checks that the server kept serving
everyone else.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel
from wsproto.extensions import PerMessageDeflate

import trio_sio
from support.resources import open_fds, trio_task_names, trio_tasks
from support.websocket import Closed, WebSocket, open_websocket

REPO = Path(__file__).resolve().parents[1]

HOSTS: dict[str, Callable[..., Any]] = {
    "native": trio_sio.serve_native,
    "hypercorn": trio_sio.serve_hypercorn,
}


@asynccontextmanager
async def socketio_websocket(
    url: str, *, extensions: list[Any] | None = None, namespace: bool = True
) -> AsyncIterator[WebSocket]:
    """A raw WebSocket with an Engine.IO session (connected to ``/`` if ``namespace``)."""
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with open_websocket(ws_url, extensions=extensions or []) as ws:
        opening = await ws.receive()
        assert isinstance(opening, str)
        assert opening.startswith("0")
        if namespace:
            await ws.send("40")
            reply = await ws.receive()
            assert isinstance(reply, str)
            assert reply.startswith('40{"sid":')
        yield ws


async def echo(ws: WebSocket, n: int) -> None:
    """One event round trip on a raw Socket.IO WebSocket, answering pings on the way."""
    await ws.send(f'42{n}["echo",{n}]')
    while (message := await ws.receive()) != f"43{n}[{n}]":
        assert message == "2", message
        await ws.send("3")


async def close_code(ws: WebSocket) -> int:
    """Read until the server closes; returns its close code."""
    while True:
        try:
            await ws.receive()
        except Closed as closed:
            return int(closed.code)


async def echo_forever(url: str, rounds: list[int], *, task_status: Any) -> None:
    """A bystander: an echo round trip every 50 ms."""
    async with socketio_websocket(url) as ws:
        task_status.started()
        while True:
            await echo(ws, len(rounds) + 1)
            rounds.append(len(rounds) + 1)
            await trio.sleep(0.05)


def echo_server(**options: Any) -> trio_sio.Server:
    """A server with an ``echo`` event."""
    sio = trio_sio.Server(**options)

    @sio.on("echo")
    async def echo_handler(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    return sio


@asynccontextmanager
async def serve(host: str, sio: trio_sio.Server) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(HOSTS[host], sio, "127.0.0.1", 0)
        yield next(u for u in urls if u.startswith("http://"))
        nursery.cancel_scope.cancel()


# --- clients that flood, then fall silent -------------------------------------------------

#: Both hosts' closing handshake timeout (NativeConfig and ASGIApp defaults).
CLOSE_TIMEOUT = 2.0
#: Room for a loaded CI machine (2 shared cores) on top of what the settings allow.
SLACK = 3.0


async def keep_sending(ws: WebSocket, seconds: float) -> None:
    """Bursts of events for ``seconds`` (the server may hang up meanwhile)."""
    with trio.move_on_after(seconds), contextlib.suppress(trio.BrokenResourceError):
        while True:
            for _ in range(50):
                await ws.send('42["slow"]')
            await trio.sleep(0.01)


@pytest.mark.parametrize("after", ["silent", "sending"])
@pytest.mark.parametrize("host", list(HOSTS))
async def test_flooding_clients_that_stop_reading_leave_nothing_behind(
    host: str, after: str
) -> None:
    """Clients send events faster than their handler runs (its queue fills, and the host stops
    reading), and stop reading and answering pings. Their sessions end (ping timeout); the
    clients either fall silent or keep sending through the closing handshake (which they never
    answer), but keep their sockets open. Either way, the host gives back every fd and task
    within the heartbeat and closing timeouts of their last message, and a bystander stays
    connected throughout."""
    # A second to answer a ping, for the bystander on a loaded machine.
    ping_interval, ping_timeout = 0.5, 1.0
    sio = echo_server(ping_interval=ping_interval, ping_timeout=ping_timeout)

    @sio.on("slow")
    async def slow(sock: trio_sio.Socket, *args: Any) -> None:
        await trio.sleep_forever()

    attackers = 20
    async with serve(host, sio) as url, trio.open_nursery() as nursery:
        rounds: list[int] = []
        await nursery.start(echo_forever, url, rounds)
        await trio.sleep(0.2)
        base_fds, base_names = open_fds(), trio_task_names()
        base_tasks = base_names.total()
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(socketio_websocket(url)) for _ in range(attackers)
            ]
            async with trio.open_nursery() as senders:
                for ws in clients:
                    # The flood (200 events) fills the handler's queue, then the host's
                    # buffers; "sending" goes on past the session's end and its close timeout.
                    seconds = 0.2 if after == "silent" else ping_interval + ping_timeout + 3
                    senders.start_soon(keep_sending, ws, seconds)
            peak_fds, peak_tasks = open_fds(), trio_tasks()
            # Each attacker's own socket is one fd of this process (and no task). After the
            # last message: at most a heartbeat until the session ends, the closing
            # handshake's timeout, and (for clients still sending when it ran out) a second of
            # quiet before the ASGI handler returns.
            bound = ping_interval + ping_timeout + CLOSE_TIMEOUT + 1.0
            start = trio.current_time()
            with trio.move_on_after(bound + SLACK):
                while (fds := open_fds()) > base_fds + attackers or (
                    tasks := trio_tasks()
                ) > base_tasks:
                    await trio.sleep(0.05)
            released_after = trio.current_time() - start
            fds, names = open_fds(), trio_task_names()
            tasks = names.total()
            print(
                f"\n{host}, {after}: baseline {base_fds} fds, {base_tasks} tasks; with "
                f"{attackers} attackers {peak_fds} fds, {peak_tasks} tasks; "
                f"{released_after:.1f} s after their last message (bound {bound:.1f} s) "
                f"{fds - base_fds - attackers:+d} fds on the server's side, "
                f"{tasks - base_tasks:+d} tasks {dict(names - base_names)}"
            )
            assert fds <= base_fds + attackers
            assert tasks <= base_tasks
        await trio.sleep(0.1)
        final_fds, final_tasks = open_fds(), trio_tasks()
        print(f"{host}, {after}: attackers gone: {final_fds} fds, {final_tasks} tasks")
        assert final_fds <= base_fds
        assert final_tasks <= base_tasks
        assert sio.engine.statistics().sessions == 1
        before = len(rounds)
        await trio.sleep(0.3)
        assert len(rounds) > before  # the bystander is still echoing
        nursery.cancel_scope.cancel()


# --- permessage-deflate bombs ---------------------------------------------------------------

BOMB_APP = """
import sys

import trio

import trio_sio

sio = trio_sio.Server()
app = trio_sio.ASGIApp(sio)


@sio.on("echo")
async def echo(sock, *args):
    return args


async def main(host):
    if host == "serve_hypercorn":
        serve, options = trio_sio.serve_hypercorn, {}
    else:
        config = trio_sio.NativeConfig(websocket_compression=host == "native-deflate")
        serve, options = trio_sio.serve_native, {"config": config}
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(lambda task_status: serve(
            sio, "127.0.0.1", 0, task_status=task_status, **options
        ))
        print("Running on", urls[0], flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
"""

#: How each server is started: the plain hypercorn command (default settings), and the
#: embedding functions.
BOMB_COMMANDS = {
    "hypercorn command": ["-m", "hypercorn", "-k", "trio", "--bind", "127.0.0.1:0", "bomb_app:app"],
    "serve_hypercorn": ["bomb_app.py", "serve_hypercorn"],
    "native": ["bomb_app.py", "native"],
    "native-deflate": ["bomb_app.py", "native-deflate"],
}

#: The close code a bomb gets: hypercorn (compression refused) drops the connection on the
#: reserved bit without a close frame; the native host says 1002 (compression off) or 1009 (on:
#: inflating stopped at the message limit).
BOMB_CLOSE_CODES = {
    "hypercorn command": 1006,
    "serve_hypercorn": 1006,
    "native": 1002,
    "native-deflate": 1009,
}

#: Largest rise of the server's peak RSS allowed for four bombs at once (unbounded inflation
#: under hypercorn measured +335 MiB for one, +1010 MiB for four).
BOMB_RSS_BOUND = 32 * 1024 * 1024

BOMB_INFLATED = 256 * 1024 * 1024


@functools.cache
def deflate_bomb_frame() -> bytes:
    """One compressed text frame as a permessage-deflate client sends it: 256 MiB of ``4``,
    raw deflate, 255 KiB on the wire."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = b"4" * (1024 * 1024)
    payload = b"".join(compressor.compress(block) for _ in range(BOMB_INFLATED // len(block)))
    payload += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert payload.endswith(b"\x00\x00\xff\xff")
    payload = payload[:-4]  # RFC 7692 7.2.1: the sync flush's tail is left out
    # FIN, RSV1 (compressed), text; masked with an all-zero key, so the payload reads as is.
    return b"\xc1\xff" + len(payload).to_bytes(8, "big") + b"\0\0\0\0" + payload


def peak_rss(pid: int, field: str = "VmHWM") -> dict[int, int]:
    """Peak resident set size (``VmHWM``; ``VmRSS`` for the current one), in bytes, of the
    process and its descendants (the hypercorn command serves from a worker process), by pid."""
    peaks: dict[int, int] = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        proc = Path(f"/proc/{current}")
        for line in (proc / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                peaks[current] = int(line.split()[1]) * 1024
        for task in (proc / "task").iterdir():
            pending.extend(int(child) for child in (task / "children").read_text().split())
    return peaks


def growth(base: dict[int, int], now: dict[int, int]) -> int:
    """The largest rise of one process's peak RSS (a new process counts from zero)."""
    return max(peak - base.get(pid, 0) for pid, peak in now.items())


@asynccontextmanager
async def bomb_server(tmp_path: Path, how: str) -> AsyncIterator[tuple[str, int]]:
    """The server started as ``how`` says, in a subprocess; yields its URL and pid."""
    (tmp_path / "bomb_app.py").write_text(BOMB_APP)
    output = tmp_path / "output.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with output.open("wb") as sink:
        process = await trio.lowlevel.open_process(
            [sys.executable, *BOMB_COMMANDS[how]],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        with trio.fail_after(20):
            while "Running on http://" not in (text := output.read_text()):
                assert process.poll() is None, text
                await trio.sleep(0.05)
        url = text.split("Running on ", 1)[1].split()[0]
        yield url, process.pid
    finally:
        process.terminate()
        with trio.fail_after(10):
            await process.wait()
        print(output.read_text()[-2000:])


async def explode(url: str) -> int:
    """Send a bomb on a new session; returns the close code the client sees."""
    async with socketio_websocket(url, extensions=[PerMessageDeflate()], namespace=False) as ws:
        # The server may hang up before the whole frame is written.
        with contextlib.suppress(trio.BrokenResourceError):
            await ws.send_raw(deflate_bomb_frame())
        with trio.fail_after(8):
            return await close_code(ws)


@pytest.mark.parametrize("how", list(BOMB_COMMANDS))
async def test_deflate_bombs_do_not_inflate_the_server(tmp_path: Path, how: str) -> None:
    """One, then four at once, 255 KiB compressed frames that inflate to 256 MiB each: the
    server's peak RSS stays within a few MiB, each attacker is disconnected, and a bystander
    session keeps working."""
    deflate_bomb_frame()
    codes: list[int] = []

    async def attack() -> None:
        codes.append(await explode(url))

    async with bomb_server(tmp_path, how) as (url, pid), socketio_websocket(url) as bystander:
        await echo(bystander, 1)
        base = peak_rss(pid)
        figures = [f"baseline {max(base.values()) / 2**20:.0f} MiB"]
        for bombs in (1, 4):
            codes.clear()
            async with trio.open_nursery() as nursery:
                for _ in range(bombs):
                    nursery.start_soon(attack)
            rise = growth(base, peak_rss(pid))
            held = growth(base, peak_rss(pid, "VmRSS"))
            figures.append(
                f"{bombs} bomb(s): peak +{rise / 2**20:.0f} MiB, then +{held / 2**20:.0f} MiB, "
                f"closed {codes}"
            )
            print(f"\n{how}: " + "; ".join(figures))
            assert codes == [BOMB_CLOSE_CODES[how]] * bombs
            assert rise < BOMB_RSS_BOUND
            await echo(bystander, 1 + bombs)


# --- permessage-deflate negotiation under hypercorn ---------------------------------------


def negotiated(ws: WebSocket) -> list[Any]:
    """The extensions the server accepted, as the wsproto client sees them."""
    return list(ws.conn.connection._proto.extensions)


def passthrough(app: Any) -> Any:
    """A middleware that wraps ``send``, as some do (so hypercorn's is out of reach)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        async def wrapped_send(message: Any) -> None:
            await send(message)

        await app(scope, receive, wrapped_send)

    return wrapped


@pytest.mark.parametrize(
    ("app", "accepted"),
    [
        ("default", False),
        ("compression", True),
        ("other application", False),
    ],
)
async def test_serve_hypercorn_refuses_permessage_deflate_unless_asked(
    app: str, accepted: bool, caplog: pytest.LogCaptureFixture
) -> None:
    sio = echo_server()
    asgi_app: Any = None
    if app == "compression":
        asgi_app = trio_sio.ASGIApp(sio, websocket_compression=True)
    elif app == "other application":
        asgi_app = passthrough(trio_sio.ASGIApp(sio))  # not an ASGIApp itself
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(
            functools.partial(trio_sio.serve_hypercorn, sio, "127.0.0.1", 0, app=asgi_app)
        )
        url = next(u for u in urls if u.startswith("http://"))
        async with socketio_websocket(url, extensions=[PerMessageDeflate()]) as ws:
            assert bool(negotiated(ws)) is accepted
            await echo(ws, 1)
        nursery.cancel_scope.cancel()
    assert not [r for r in caplog.records if "permessage-deflate" in r.getMessage()]


async def test_compression_out_of_reach_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Behind a middleware that wraps ``send``, under plain hypercorn, the offer cannot be
    withdrawn: that is logged, once."""
    from support.servers import serve_app

    sio = echo_server()
    async with serve_app(passthrough(trio_sio.ASGIApp(sio))) as url:
        for _ in range(2):
            async with socketio_websocket(url, extensions=[PerMessageDeflate()]) as ws:
                assert negotiated(ws)
                await echo(ws, 1)
    warnings = [r for r in caplog.records if "permessage-deflate" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelname == "WARNING"


@pytest.mark.parametrize("host", list(HOSTS))
async def test_a_client_that_answers_the_close_is_let_go_at_once(host: str) -> None:
    """The drain before the ASGI handler returns ends with the client's close frame: no
    waiting for the close timeout."""
    sio = trio_sio.Server()

    @sio.on("bye")
    async def bye(sock: trio_sio.Socket) -> None:
        await sock.disconnect(close=True)

    async with serve(host, sio) as url:
        await trio.sleep(0.1)
        base_fds, base_tasks = open_fds(), trio_tasks()
        async with socketio_websocket(url) as ws:
            await ws.send('42["bye"]')
            start = trio.current_time()
            with trio.fail_after(CLOSE_TIMEOUT):
                assert await close_code(ws) == 1000  # after "41"; the client answers it
            with trio.fail_after(CLOSE_TIMEOUT):
                while await ws.stream.receive_some(1024):  # the server hangs up
                    pass
        with trio.move_on_after(CLOSE_TIMEOUT):
            while open_fds() > base_fds or trio_tasks() > base_tasks:
                await trio.sleep(0.01)
        elapsed = trio.current_time() - start
        print(f"\n{host}: released {elapsed:.2f} s after the close")
        assert open_fds() <= base_fds
        assert trio_tasks() <= base_tasks
        assert elapsed < CLOSE_TIMEOUT / 2


#: Tasks per idle WebSocket session: the connection's, which runs the session and reads (its
#: namespace's socket has none once connected and idle: it parked). The native host writes
#: into an idle connection from the sending task, so its writer task starts only once a write
#: cannot go at once (see the next test); under hypercorn, which cannot be written that way,
#: the first packet starts the writer, and hypercorn has a task of its own for the connection.
TASKS_PER_SESSION = {"native": 1, "hypercorn": 3}


async def settled_tasks(base: int, expected: int) -> int:
    """The number of tasks above ``base`` once it is ``expected`` (a task that is ending, as a
    socket's that parks, takes a moment), or what it is after the budget."""
    with trio.move_on_after(SLACK):
        while trio_tasks() - base != expected:
            await trio.sleep(0.01)
    return trio_tasks() - base


@pytest.mark.parametrize("host", list(HOSTS))
async def test_an_idle_websocket_session_has_no_task_of_its_own(host: str) -> None:
    """A session that starts on WebSocket runs in its connection's task, and its heartbeat is
    an action on the server's timer: no task of its own. Nothing of it is left once it
    ends."""
    sio = trio_sio.Server()
    clients = 10
    async with serve(host, sio) as url:
        await trio.sleep(0.1)
        base_tasks = trio_tasks()
        alarms = sio.engine._sessions.alarms
        assert len(alarms) == 0
        async with AsyncExitStack() as stack:
            for _ in range(clients):
                await stack.enter_async_context(socketio_websocket(url))
            expected = TASKS_PER_SESSION[host] * clients
            assert await settled_tasks(base_tasks, expected) == expected
            assert len(alarms) == clients  # each session's next ping
        with trio.fail_after(CLOSE_TIMEOUT + SLACK):
            while trio_tasks() > base_tasks or sio.engine.statistics().sessions:
                await trio.sleep(0.01)
        assert len(alarms) == 0


async def test_the_writer_task_starts_when_a_write_cannot_go_at_once() -> None:
    """On the native host a WebSocket session's writer task starts the first time the kernel
    does not take a write at once (here: a client that stops reading while the server sends
    it 16 MiB, more than the loopback's socket buffers hold), sends everything in order once
    the client reads again, and ends with the session."""
    sio = trio_sio.Server()
    payload = "x" * 65536
    events = 256

    @sio.on("flood")
    async def flood(sock: trio_sio.Socket) -> None:
        for n in range(events):
            await sock.emit("big", n, payload)

    async with serve("native", sio) as url:
        async with socketio_websocket(url) as ws:
            await trio.sleep(0.1)
            base_tasks = trio_tasks()
            await ws.send('42["flood"]')
            # The socket's task, started by its first event, and the writer, once a write is
            # left unsent.
            assert await settled_tasks(base_tasks, 2) == 2
            received = 0
            with trio.fail_after(SLACK + 10):
                while received < events:
                    message = await ws.receive()
                    if message == "2":
                        await ws.send("3")
                        continue
                    assert message == f'42["big",{received},"{payload}"]'
                    received += 1
        # The writer and the socket's task go with the session's own.
        with trio.fail_after(CLOSE_TIMEOUT + SLACK):
            while trio_tasks() > base_tasks - TASKS_PER_SESSION["native"]:
                await trio.sleep(0.01)


async def test_the_heartbeat_starts_no_writer_task() -> None:
    """An idle native session's pings are written by the server's timer task straight into
    the connection: after several of them the session still has its one task."""
    # The next ping comes ping_timeout after one is answered: two take about 1.1 s.
    sio = trio_sio.Server(ping_interval=0.1, ping_timeout=1.0)
    async with serve("native", sio) as url:
        await trio.sleep(0.1)
        base_tasks = trio_tasks()
        async with socketio_websocket(url) as ws:
            with trio.fail_after(1.1 + SLACK):
                for _ in range(2):
                    assert await ws.receive() == "2"
                    await ws.send("3")
            expected = TASKS_PER_SESSION["native"]
            assert await settled_tasks(base_tasks, expected) == expected
