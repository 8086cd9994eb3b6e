"""Drive the bare Engine.IO echo server at /engine.io/ with python-engineio's AsyncClient.

    python tests/clients/py_eio_scenarios.py <base_url> <polling|websocket|upgrade> <scenario>

Prints one JSON line; see scenario_support.py for the output and exit-code contract.
"""

from __future__ import annotations

import asyncio
from typing import Any

import engineio

# The script's own directory is sys.path[0], so its sibling module imports directly.
from scenario_support import (
    Context,
    Observed,
    Scenario,
    check,
    check_equal,
    package_version,
    run_main,
)

# python-engineio's client JSON-decodes any text message that parses as JSON (and is not a
# bare number), so '{"a":1}' would come back as a dict: these texts avoid that on purpose.
TEXTS = ["hello", "héllo wörld ✓ 日本 🎉", "4not-a-packet", "b64?", "x" * 10_000]


class EchoClient:
    """An engineio.AsyncClient whose received messages land in an asyncio queue."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.eio = engineio.AsyncClient()
        self.received: asyncio.Queue[Any] = asyncio.Queue()
        self.disconnects: list[tuple[Any, ...]] = []
        self.eio.on("message", self.received.put_nowait)
        self.eio.on("disconnect", self._on_disconnect)
        ctx.cleanups.append(self.eio.disconnect)

    def _on_disconnect(self, *args: Any) -> None:
        self.disconnects.append(args)

    async def connect(self) -> None:
        self.ctx.step("connect")
        await self.eio.connect(
            self.ctx.base_url, transports=self.ctx.transports, engineio_path="engine.io"
        )
        # python-engineio upgrades inside connect(): "upgrade" must already be on websocket.
        transport = self.eio.transport()
        check(
            transport == self.ctx.expected_transport,
            f"transport is {transport}, expected {self.ctx.expected_transport}",
        )

    async def echo_all(self, messages: list[str | bytes], label: str) -> None:
        for message in messages:
            await self.eio.send(message)
        self.ctx.step(f"{label}: wait for {len(messages)} echoes")
        for i, message in enumerate(messages):
            echoed = await self.received.get()
            check_equal(echoed, message, f"{label} #{i}")


async def scenario_echo_text(ctx: Context) -> Observed:
    """Handshake values, then text messages echoed unchanged."""
    client = EchoClient(ctx)
    await client.connect()
    handshake = [client.eio.ping_interval, client.eio.ping_timeout, client.eio.upgrades]
    upgrades = [] if ctx.mode == "websocket" else ["websocket"]
    check_equal(handshake, [0.3, 0.2, upgrades], "[ping_interval s, ping_timeout s, upgrades]")
    await client.echo_all(list(TEXTS), "text")
    return {"echoed": len(TEXTS), "sid": client.eio.sid}


async def scenario_echo_binary(ctx: Context) -> Observed:
    """Binary messages echoed as bytes, also interleaved with text."""
    client = EchoClient(ctx)
    await client.connect()
    binaries: list[str | bytes] = [bytes(range(256)), b"\x00\xff", bytes(100_000), b"text-like"]
    await client.echo_all(binaries, "binary")
    await client.echo_all(["text", bytes(range(256)), "again", b"\x07"], "mixed")
    return {"echoed": len(binaries) + 4}


async def scenario_many(ctx: Context) -> Observed:
    """Many quick messages (every 10th binary) come back complete and in order."""
    client = EchoClient(ctx)
    await client.connect()
    # python-engineio's client aborts when one polling response holds more than 16 packets;
    # over polling send in bursts of 10, over websocket all 300 at once.
    burst = 10 if ctx.mode == "polling" else 300
    messages: list[str | bytes] = [
        f"bin-{i}".encode() if i % 10 == 9 else f"msg-{i}" for i in range(300)
    ]
    for start in range(0, len(messages), burst):
        await client.echo_all(messages[start : start + burst], f"messages {start}+")
    return {"echoed": len(messages), "burst": burst}


async def scenario_large(ctx: Context) -> Observed:
    """A 500 kB text and a 500 kB binary message echoed intact."""
    client = EchoClient(ctx)
    await client.connect()
    text = "".join(f"{i:x}|" for i in range(120_000))[:500_000]
    blob = bytes((i * 31) & 0xFF for i in range(500_000))
    await client.echo_all([text], "500 kB text")
    await client.echo_all([blob], "500 kB binary")
    return {"text_length": len(text), "binary_length": len(blob)}


SCENARIOS: dict[str, Scenario] = {
    "echo-text": scenario_echo_text,
    "echo-binary": scenario_echo_binary,
    "many": scenario_many,
    "large": scenario_large,
}

if __name__ == "__main__":
    run_main(f"python-engineio@{package_version('python-engineio')}", SCENARIOS)
