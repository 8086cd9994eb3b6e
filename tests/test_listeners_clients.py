"""Per-socket ``use`` and ``on_any`` seen from the official socket.io-client, on both hosts
(issue 16, item 3): the socket's middleware refuses an event without the client hearing of
it, and the socket's listeners see the rest. The semantics in detail are in
test_listeners.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

import trio_sio
from support.clients import JS_DIR, MODES, NODE, requires_node, run_scenario
from support.servers import HOSTS, serve_server


def listeners_server() -> trio_sio.Server:
    sio = trio_sio.Server(cors_allowed_origins="*")
    listeners = sio.of("/listeners")

    @listeners.on_connect
    async def connect(sock: trio_sio.Socket, auth: Any) -> None:
        seen: list[str] = []

        @sock.use
        async def no_secrets(sock: trio_sio.Socket, event: str, args: list[Any]) -> None:
            if event == "secret":
                raise PermissionError("secret refused")

        @sock.on_any
        async def record(sock: trio_sio.Socket, event: str, *args: Any) -> None:
            seen.append(event)

        @sock.on_any_outgoing
        def sent(sock: trio_sio.Socket, event: str, *args: Any) -> None:
            seen.append(f"sent {event}")

        @sock.on("echo")
        async def echo(sock: trio_sio.Socket, text: str) -> str:
            await sock.emit("echoed", text)
            return text

        @sock.on("seen")
        async def report(sock: trio_sio.Socket) -> list[str]:
            return list(seen)

    @listeners.on("secret")
    async def secret(sock: trio_sio.Socket) -> str:
        return "leaked"  # never: the socket's middleware refuses first

    return sio


@pytest.fixture(params=HOSTS)
async def listeners_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    async with serve_server(request.param, listeners_server()) as url:
        yield url


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.node
@requires_node
async def test_per_socket_listeners_js_client(
    listeners_url: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    assert NODE is not None
    command = [NODE, str(JS_DIR / "listeners_scenarios.mjs")]
    result = await run_scenario(command, listeners_url, mode, "socket-listeners")
    assert result["observed"]["seen"] == ["echo", "sent echoed", "seen"]
    refusals = [r.getMessage() for r in caplog.records if "middleware refused" in r.getMessage()]
    assert len(refusals) == 1, refusals
    assert "'secret'" in refusals[0]
    assert "secret refused" in refusals[0]
