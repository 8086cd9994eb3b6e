"""What hostile WebSocket clients cost each host, measured on the process: file descriptors
and Trio tasks.

The hosts are attacked over real sockets on 127.0.0.1 by clients that flood events faster than
their handler runs and then stop reading: every fd and task must come back once their sessions
end. A bystander checks that the server kept serving everyone else.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.lowlevel

import trio_sio
from support.websocket import Closed, WebSocket, open_websocket

HOSTS: dict[str, Callable[..., Any]] = {
    "native": trio_sio.serve_native,
    "hypercorn": trio_sio.serve_hypercorn,
}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def trio_tasks() -> int:
    """Every task of this Trio run, found from the root task's nurseries."""
    count = 0
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


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
    ping_interval = ping_timeout = 0.5
    sio = echo_server(ping_interval=ping_interval, ping_timeout=ping_timeout)

    @sio.on("slow")
    async def slow(sock: trio_sio.Socket, *args: Any) -> None:
        await trio.sleep_forever()

    attackers = 20
    async with serve(host, sio) as url, trio.open_nursery() as nursery:
        rounds: list[int] = []
        await nursery.start(echo_forever, url, rounds)
        await trio.sleep(0.2)
        base_fds, base_tasks = open_fds(), trio_tasks()
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
            fds, tasks = open_fds(), trio_tasks()
            print(
                f"\n{host}, {after}: baseline {base_fds} fds, {base_tasks} tasks; with "
                f"{attackers} attackers {peak_fds} fds, {peak_tasks} tasks; "
                f"{released_after:.1f} s after their last message (bound {bound:.1f} s) "
                f"{fds - base_fds - attackers:+d} fds on the server's side, "
                f"{tasks - base_tasks:+d} tasks"
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
