"""What one client can make the server hold (issue 14, B2, B3, B5, A7), each case on both
hosts where it applies, with a bystander that must keep working.

- CONNECT packets have backpressure: at most ``MAX_CONNECTS_IN_FLIGHT`` per connection are
  being handled; past it the server stops reading that client (which then also stops seeing
  its pongs). A client that sent 100,000 CONNECTs without reading used to leave about 95,000
  tasks and +400 MiB.
- Empty dynamic namespaces are forgotten, and their number is bounded.
- Static-file names the file system refuses are simply not found, without a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel

import trio_sio
from support.http import request
from support.resources import trio_tasks
from support.servers import HOSTS, serve_server
from support.websocket import open_websocket
from trio_sio._engine import HttpRequest
from trio_sio._server import MAX_CONNECTS_IN_FLIGHT
from trio_sio.adapters import RemoteSocket
from trio_sio.hosts import MemoryWebSocket
from trio_sio.testing import open_client, running


def rss_kib() -> int:
    """This process's resident memory."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def hostile_server(**options: Any) -> trio_sio.Server:
    sio = trio_sio.Server(ping_interval=1.0, ping_timeout=1.0, **options)
    rooms = sio.of_dynamic(re.compile(r"/room-\d+"))

    async def echo(sock: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    sio.on("echo")(echo)
    rooms.on("echo")(echo)
    return sio


@pytest.fixture(params=HOSTS)
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[trio_sio.Server, str]]:
    sio = hostile_server()
    async with serve_server(request.param, sio) as url:
        yield sio, url


async def bystander_echo(url: str) -> float:
    """A fresh client's echo round trip; returns its latency in seconds."""
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with open_websocket(ws_url) as ws:
        assert str(await ws.receive()).startswith("0")
        await ws.send("40")
        assert str(await ws.receive()).startswith("40")
        start = trio.current_time()
        await ws.send('420["echo","still here"]')
        while (reply := await ws.receive()) == "2":
            await ws.send("3")
        assert reply == '430["still here"]'
        return trio.current_time() - start


async def test_connects_in_flight_are_bounded(served: tuple[trio_sio.Server, str]) -> None:
    sio, url = served
    baseline = trio_tasks()
    peak = baseline
    rss_before = rss_kib()
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    sent = 0
    async with open_websocket(ws_url) as attacker:
        assert str(await attacker.receive()).startswith("0")
        # CONNECTs to distinct names, answered with CONNECT_ERROR or CONNECT, never read; a
        # blind pong now and then, as the attacker of the report sent.
        with trio.move_on_after(2):
            while sent < 100_000:
                await attacker.send(f"40/nowhere-{sent}," if sent % 2 else f"40/room-{sent},")
                sent += 1
                if sent % 100 == 0:
                    await attacker.send("3")
                    peak = max(peak, trio_tasks())
        peak = max(peak, trio_tasks())
        latency = await bystander_echo(url)
        rss_growth = rss_kib() - rss_before
    print(
        f"CONNECTs sent: {sent}; tasks: baseline {baseline}, peak {peak}; "
        f"RSS +{rss_growth} KiB; bystander echo {latency * 1000:.1f} ms"
    )
    # One client holds at most its namespaces' sockets and its CONNECTs in progress, plus a
    # few tasks of its session, its connection and the bystander's.
    assert peak - baseline <= sio.max_namespaces_per_client + MAX_CONNECTS_IN_FLIGHT + 20
    assert rss_growth < 64 * 1024  # the report measured +400 MiB
    with trio.fail_after(10):  # the attacker's session ends (it stopped answering pings)
        while sio.engine.statistics().session_tasks:
            await trio.sleep(0.05)
    assert all(not parent.children for parent in sio._parents)  # and empty again


async def test_empty_dynamic_namespaces_are_forgotten() -> None:
    sio = hostile_server(max_dynamic_namespaces=5)
    (parent,) = sio._parents
    async with running(sio):
        for i in range(200):
            async with open_client(sio, f"/room-{i}") as client:
                assert await client.call("echo", i) == i
            with trio.fail_after(5):
                while parent.children:
                    await trio.lowlevel.checkpoint()
        async with contextlib.AsyncExitStack() as stack:
            for i in range(5):
                await stack.enter_async_context(open_client(sio, f"/room-{i}"))
            with pytest.raises(trio_sio.ConnectionRefused, match="Invalid namespace"):
                async with open_client(sio, "/room-99"):
                    pass
            async with open_client(sio, "/room-0"):  # an existing child is always reachable
                pass
        with trio.fail_after(5):
            while parent.children:
                await trio.lowlevel.checkpoint()


async def test_too_many_namespaces_per_client_are_refused() -> None:
    sio = hostile_server(max_namespaces_per_client=3)
    async with running(sio), contextlib.AsyncExitStack() as stack:
        # testing's clients each open a session of their own: speak raw Engine.IO for one.
        ws = MemoryWebSocket()
        request_ = HttpRequest("GET", "/socket.io/", "EIO=4&transport=websocket", {})
        nursery = await stack.enter_async_context(trio.open_nursery())
        nursery.start_soon(sio.handle_websocket, request_, ws)
        assert str(await ws.from_server.receive()).startswith("0")
        for i in range(4):
            await ws.to_server.send(f"40/room-{i},")
        answers = [str(await ws.from_server.receive()) for _ in range(4)]
        assert sum(a.startswith("40/room-") for a in answers) == 3
        assert '44/room-3,{"message":"Too many namespaces"}' in answers
        await ws.to_server.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("host", HOSTS)
async def test_static_names_the_file_system_refuses_are_not_found(
    host: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "index.html").write_text("<p>hi</p>")
    sio = trio_sio.Server()
    async with serve_server(host, sio, static_files={"/": tmp_path}) as url:
        for target in ("/%00", "/a%00b.html", "/" + "x" * 300, "/" + "y" * 5000 + ".js"):
            response = await request(url, "GET", target)
            assert response.status == 404, target
        assert (await request(url, "GET", "/")).text == "<p>hi</p>"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_remote_socket_join_has_the_local_call_shape() -> None:
    sio = trio_sio.Server()
    async with running(sio), open_client(sio):
        (sock,) = sio.main.sockets.values()
        remote = RemoteSocket(sio.main, sock.id, frozenset({sock.id}), {}, {})
        for target in (sock, remote):  # the same call for both, without await
            target.join("together")
        with trio.fail_after(5):
            while "together" not in sock.rooms:
                await trio.lowlevel.checkpoint()
        remote.leave("together")
        with trio.fail_after(5):
            while "together" in sock.rooms:
                await trio.lowlevel.checkpoint()


async def test_events_waiting_are_bounded_per_client_not_per_namespace() -> None:
    # Each namespace used to have its own queue of handler_queue_size events, so a client in
    # many namespaces could make the server hold that many times more (issue 14, B2).
    sio = trio_sio.Server(handler_queue_size=4)
    names = ["/", "/a", "/b", "/c"]
    for name in names:

        @sio.of(name).on("stuck")
        async def stuck(sock: trio_sio.Socket) -> None:
            await trio.sleep_forever()

    async with running(sio), trio.open_nursery() as nursery:
        ws = MemoryWebSocket()
        request_ = HttpRequest("GET", "/socket.io/", "EIO=4&transport=websocket", {})
        nursery.start_soon(sio.handle_websocket, request_, ws)
        assert str(await ws.from_server.receive()).startswith("0")
        for name in names:
            await ws.to_server.send("40" if name == "/" else f"40{name},")
            assert str(await ws.from_server.receive()).startswith("40")
        sent = 0
        with trio.move_on_after(1):  # the server stops reading; then sends block
            for _ in range(50):
                for name in names:
                    prefix = "" if name == "/" else f"{name},"
                    await ws.to_server.send(f'42{prefix}["stuck"]')
                    sent += 1
        await trio.testing.wait_all_tasks_blocked()
        sockets = [s for n in names for s in sio.of(n).sockets.values()]
        held = sum(s.statistics().queued_events for s in sockets) + len(sockets)  # + running
        print(f"sent {sent}; held by the server: {held} events")
        assert held <= sio.handler_queue_size + sio.max_concurrent_handlers + len(names)
        await ws.to_server.aclose()
        nursery.cancel_scope.cancel()
