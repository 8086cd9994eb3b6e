"""The examples run, and do what their docstrings say.

Handlers are exercised in-process with :mod:`trio_sio.testing`; the scripts and the hypercorn
command are run as the documentation shows them, as child processes on port 0.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing
from hypercorn.config import Config

import trio_sio
from support.http import request
from support.processes import child
from support.websocket import Closed, WebSocket, open_websocket
from trio_sio.testing import TestClient, open_client, running

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def load_example(relative: str) -> ModuleType:
    """A fresh import of ``examples/<relative>``: its module-level server is new each time."""
    path = EXAMPLES / relative
    name = "example_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def try_connect(sio: trio_sio.Server, namespace: str, **options: Any) -> None:
    async with open_client(sio, namespace, **options):
        pass


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"


@asynccontextmanager
async def sio_websocket(http_url: str, namespace: str = "/") -> AsyncIterator[WebSocket]:
    """A raw WebSocket that has opened an Engine.IO session and connected to ``namespace``."""
    async with open_websocket(ws_url(http_url)) as ws:
        opening = await ws.receive()
        assert isinstance(opening, str)
        assert opening.startswith("0{")
        prefix = "" if namespace == "/" else namespace + ","
        await ws.send("40" + prefix)
        connected = await ws.receive()
        assert isinstance(connected, str)
        assert connected.startswith("40" + prefix + '{"sid":')
        yield ws


async def wait_closed(ws: WebSocket) -> int:
    """Read until the server closes the connection; its close code."""
    while True:
        try:
            await ws.receive()
        except Closed as closed:
            return closed.code


# --- the chat, tested as docs/testing.rst recommends ---------------------------------------


@pytest.fixture
async def chat_server() -> AsyncIterator[trio_sio.Server]:
    """The chat's server, running for the duration of one test (a new one each time)."""
    chat = load_example("chat/app.py")
    async with running(chat.sio) as sio:
        yield sio


@pytest.fixture
async def chat_client(chat_server: trio_sio.Server) -> AsyncIterator[TestClient]:
    """A client connected to the chat's namespace "/"."""
    async with open_client(chat_server) as client:
        yield client


async def test_chat_broadcasts_to_the_room_and_logs(
    chat_server: trio_sio.Server, chat_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_client(chat_server) as other:
        await chat_client.emit("chat message", "hello")
        for client in (chat_client, other):
            event = await client.receive()
            assert (event.name, event.args) == ("chat message", ("hello",))
        assert chat_server.statistics().rooms == 3  # "mychat" and each socket's own room
    assert "chat message: hello" in caplog.messages
    assert f"connected: {chat_client.sid}" in caplog.messages


async def test_idle_chat_clients_stay_connected(
    chat_client: TestClient, autojump_clock: trio.testing.MockClock
) -> None:
    await trio.sleep(3600)  # an hour of heartbeats, in milliseconds
    assert chat_client.connected


async def test_a_call_without_answer_times_out(autojump_clock: trio.testing.MockClock) -> None:
    sio = trio_sio.Server()

    @sio.on("ask")
    async def ask(sock: trio_sio.Socket) -> str:
        with trio.move_on_after(10):
            return str(await sock.call("question"))  # the test client never answers
        return "no answer in time"

    async with running(sio), open_client(sio) as client:
        start = trio.current_time()
        assert await client.call("ask") == "no answer in time"
        assert trio.current_time() - start == pytest.approx(10)


async def test_a_failing_handler_fails_the_test() -> None:
    sio = trio_sio.Server()

    @sio.on("divide")
    async def divide(sock: trio_sio.Socket, a: int, b: int) -> float:
        return a / b

    with pytest.RaisesGroup(ZeroDivisionError, flatten_subgroups=True):
        async with running(sio), open_client(sio) as client:
            await client.call("divide", 1, 0)


async def test_chat_serves_the_page_and_the_bundle(tmp_path: Path) -> None:
    chat = load_example("chat/app.py")
    chat.app.static_files["/socket.io.min.js"] = bundle = tmp_path / "socket.io.min.js"
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            partial(trio_sio.serve_hypercorn, chat.sio, "127.0.0.1", 0, app=chat.app)
        )
        url = urls[0]
        page = await request(url, "GET", "/")
        assert page.status == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<script src="/socket.io.min.js">' in page.text
        assert "npm ci --prefix examples/chat" in page.text  # what the page says without it
        assert (await request(url, "GET", "/socket.io.min.js")).status == 404
        await trio.Path(bundle).write_text("/* the bundle */")
        script = await request(url, "GET", "/socket.io.min.js")
        assert script.status == 200
        assert script.text == "/* the bundle */"
        nursery.cancel_scope.cancel()


def test_chat_bundle_is_pinned_like_the_test_clients() -> None:
    chat = json.loads((EXAMPLES / "chat" / "package.json").read_text())
    tests = json.loads((REPO / "tests" / "js" / "package.json").read_text())
    version = chat["dependencies"]["socket.io-client"]
    assert version == tests["dependencies"]["socket.io-client"]
    lock = json.loads((EXAMPLES / "chat" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/socket.io-client"]["version"] == version


async def test_chat_under_the_hypercorn_command() -> None:
    """The README's command (on port 0): page, two chat clients, log line, Ctrl+C."""
    hypercorn = ["-m", "hypercorn", "-k", "trio", "--bind", "127.0.0.1:0"]
    async with child(*hypercorn, "examples/chat/app.py:app") as server:
        url = (await server.wait_for(r"Running on (http://\S+)"))[1]
        assert (await request(url, "GET", "/")).status == 200
        async with sio_websocket(url) as alice, sio_websocket(url) as bob:
            await alice.send('42["chat message","hi there"]')
            assert await alice.receive() == '42["chat message","hi there"]'
            assert await bob.receive() == '42["chat message","hi there"]'
            await server.wait_for(r"\[chat\] chat message: hi there")
        await server.wait_for(r"disconnected: .* \(transport close\)")
        assert await server.interrupt() == 0


async def test_chat_client_joins_the_chat_as_a_second_user() -> None:
    """examples/chat_client.py, run as its docstring says, against the chat on port 0: it
    greets the room, prints what the room says, sends each line of its input, and leaves at
    the end of its input."""
    chat = load_example("chat/app.py")
    first = trio_sio.Client()
    said: trio.MemorySendChannel[str]
    said, heard = trio.open_memory_channel[str](10)

    @first.on("chat message")
    async def chat_message(msg: str) -> None:
        await said.send(msg)

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            partial(trio_sio.serve_hypercorn, chat.sio, "127.0.0.1", 0, app=chat.app)
        )
        async with (
            first.connect(urls[0]),
            child(EXAMPLES / "chat_client.py", urls[0], stdin=True) as second,
        ):
            stdin = second.process.stdin
            assert stdin is not None
            await second.wait_for(r"joined http://\S+ as \S+")
            assert await heard.receive() == "hello from Trio"
            await first.emit("chat message", "hi, Trio")
            await second.wait_for("chat: hi, Trio")
            assert await heard.receive() == "hi, Trio"  # the room includes its sender
            await stdin.send_all(b"hi, first user\n")
            assert await heard.receive() == "hi, first user"
            await stdin.aclose()
            assert await second.wait() == 0
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("command", "graceful_timeout"),
    [
        (["-m", "hypercorn", "-k", "trio", "--bind", "127.0.0.1:0", "examples/chat/app.py:app"], 3),
        (["examples/chat/app.py", "0"], 0),
    ],
    ids=["hypercorn", "script"],
)
async def test_ctrl_c_with_clients_connected(command: list[str], graceful_timeout: float) -> None:
    """docs/quickstart.rst's commands, stopped while a client is connected: the client gets
    its close frame (1001), the session closes with "server shutting down", the disconnect
    handler runs, and the process exits at once (hypercorn: after its graceful timeout,
    3 seconds by default, waiting for connections to end by themselves)."""
    async with child(*command) as server:
        url = (await server.wait_for(r"Running on (http://\S+)"))[1]
        async with sio_websocket(url) as ws:
            sid = (await server.wait_for(r"connected: (\S+)"))[1]
            start = trio.current_time()
            server.process.send_signal(signal.SIGINT)
            assert await wait_closed(ws) == 1001
        assert await server.wait() == 0
        assert trio.current_time() - start < graceful_timeout + 2
    assert f"disconnected: {sid} (server shutting down)" in server.output
    assert "Traceback" not in server.output


@pytest.mark.parametrize(
    "script", ["chat/app.py", "embedded.py", "namespaces.py", "upload.py"], ids=str
)
async def test_script_serves_until_ctrl_c(script: str, tmp_path: Path) -> None:
    async with child(EXAMPLES / script, "0", cwd=tmp_path) as server:
        url = (await server.wait_for(r"Running on (http://\S+)"))[1]
        handshake = await request(url, "GET", "/socket.io/?EIO=4&transport=polling")
        assert handshake.status == 200
        assert handshake.text.startswith('0{"sid":')
        assert await server.interrupt() == 0
    assert "Traceback" not in server.output


# --- embedding ------------------------------------------------------------------------------


async def test_embedded_program_serves_beside_its_own_work() -> None:
    embedded = load_example("embedded.py")
    sio: trio_sio.Server = embedded.sio
    reasons: list[trio_sio.DisconnectReason] = []

    @sio.on_disconnect
    async def gone(sock: trio_sio.Socket, reason: trio_sio.DisconnectReason) -> None:
        reasons.append(reason)

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(partial(embedded.program, 0, interval=0.01))
        url = next(url for url in urls if url.startswith("http://"))
        async with sio_websocket(url) as ws:
            await ws.send('420["watch"]')
            ticks: list[int] = []
            acked = False
            while not acked or len(ticks) < 3:
                message = await ws.receive()
                assert isinstance(message, str)
                if message.startswith("430["):
                    acked = True
                else:
                    name, count = json.loads(message.removeprefix("42"))
                    assert name == "tick"
                    ticks.append(count)
            assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
            nursery.cancel_scope.cancel()  # how the program stops
            with trio.fail_after(5):
                await wait_closed(ws)
    assert reasons == [trio_sio.DisconnectReason.SERVER_SHUTTING_DOWN]
    assert not sio.running


# --- namespaces and middleware ---------------------------------------------------------------


async def test_namespaces_refuse_unknown_users_and_non_admins() -> None:
    example = load_example("namespaces.py")
    async with running(example.sio):
        with pytest.raises(trio_sio.ConnectionRefused) as refused:
            await try_connect(example.sio, "/chat")
        assert refused.value.message == "not signed in"
        assert refused.value.data == {"hint": "connect with auth.token"}
        with pytest.raises(trio_sio.ConnectionRefused, match="not signed in"):
            await try_connect(example.sio, "/chat", auth={"token": "forged"})
        with pytest.raises(trio_sio.ConnectionRefused, match="admins only"):
            await try_connect(example.sio, "/admin", auth={"token": "bob-token"})
        assert example.sio.statistics().sockets == 0


async def test_namespaces_chat_and_an_admin_kick() -> None:
    example = load_example("namespaces.py")
    sio = example.sio
    async with (
        running(sio),
        open_client(sio, "/chat", auth={"token": "bob-token"}) as bob,
        open_client(sio, "/chat", auth={"token": "alice-token"}) as alice,
        open_client(sio, "/admin", auth={"token": "alice-token"}) as admin,
    ):
        assert (await bob.receive("joined")).args == ("bob",)
        assert (await bob.receive("joined")).args == ("alice",)
        await bob.emit("say", "hello")
        assert (await alice.receive("said")).args == ("bob", "hello")
        assert await admin.call("kick", "bob") == 1
        assert await bob.wait_disconnected() == "io server disconnect"
        assert alice.connected
        assert await admin.call("kick", "bob") == 0


# --- binary upload ------------------------------------------------------------------------


async def test_upload_in_chunks_with_progress(tmp_path: Path) -> None:
    example = load_example("upload.py")
    sio = example.create_server(tmp_path)
    data = bytes(range(256)) * 3000  # 768,000 bytes: three chunks
    async with running(sio), open_client(sio) as client:
        answer = await client.call("upload", "../report.bin", len(data))
        size = answer["chunkSize"]
        progress = [
            (await client.call("chunk", data[offset : offset + size]))["received"]
            for offset in range(0, len(data), size)
        ]
        assert progress == [262_144, 524_288, 768_000]
        assert await client.call("done") == {"name": "report.bin", "size": len(data)}
    assert await trio.Path(tmp_path / "report.bin").read_bytes() == data
    assert [path.name for path in await trio.Path(tmp_path).iterdir()] == ["report.bin"]


async def test_upload_refusals_and_no_partial_file_left(tmp_path: Path) -> None:
    example = load_example("upload.py")
    sio = example.create_server(tmp_path)
    async with running(sio), open_client(sio) as client:
        assert "error" in await client.call("upload", ".hidden", 10)
        assert "error" in await client.call("upload", "big.bin", 10**12)
        assert "error" in await client.call("chunk", b"no upload yet")
        assert "chunkSize" in await client.call("upload", "small.bin", 4)
        assert "error" in await client.call("chunk", "text")
        assert "error" in await client.call("chunk", b"too much")  # cancels the upload
        assert "error" in await client.call("done")
        assert "chunkSize" in await client.call("upload", "left.bin", 4)
        assert (await client.call("chunk", b"ab"))["received"] == 2
        assert await trio.Path(tmp_path / "left.bin.part").exists()
        # Leaving the block disconnects mid-upload: the disconnect handler removes the file.
    assert list(await trio.Path(tmp_path).iterdir()) == []


# --- deployment settings ----------------------------------------------------------------------


def test_hypercorn_config_matches_the_server_limits() -> None:
    config = Config.from_toml(EXAMPLES / "hypercorn.toml")
    assert config.worker_class == "trio"
    assert config.websocket_max_message_size == trio_sio.Server().engine.options.max_payload
    assert config.graceful_timeout <= 3
