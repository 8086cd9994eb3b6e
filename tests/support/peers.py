"""Servers for the client's tests: the fixture app (``shared/conformance/CONTRACT.md``) on
trio_sio's two hosts and on Node's socket.io 4.8 (tests/js/client_peer_server.mjs), each able
to stop and start again on the same port (a server restart).

All three also answer ``drop-transport`` by closing the client's Engine.IO session abruptly:
a transport drop, after which a client reconnects. The fixture's environment variables (such as
``TRIO_SIO_RECOVERY=1``) are given to :class:`Peer` as ``env``; the Node server reads the same.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from support.clients import JS_DIR, NODE, NODE_MISSING

#: The servers every client behaviour is checked against.
PEERS = ["hypercorn", "native", "node"]

#: The client's ``transports`` for each mode of tests/support/clients.py.
TRANSPORTS = {
    "websocket": ("websocket",),
    "polling": ("polling",),
    "upgrade": ("polling", "websocket"),
}

MAX_PAYLOAD = 1_000_000


def conformance_module(env: Mapping[str, str]) -> Any:
    """A fresh copy of the fixture app, loaded with ``env`` set, with ``drop-transport``
    added."""
    from conftest import load_conformance_module

    import trio_sio

    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        module = load_conformance_module()
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value

    @module.sio.on("drop-transport")
    async def drop_transport(sock: trio_sio.Socket) -> None:
        sock.session.close(trio_sio.DisconnectReason.TRANSPORT_CLOSE)

    return module


class Peer:
    """One of :data:`PEERS`, served from ``nursery`` until :meth:`stop`."""

    def __init__(
        self, kind: str, nursery: trio.Nursery, env: Mapping[str, str] | None = None
    ) -> None:
        self.kind = kind
        self._nursery = nursery
        self._env = dict(env or {})
        self.port = 0
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()
        self._process: trio.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Serve (on the port of the previous run, if there was one)."""
        if self.kind == "node":
            await self._start_node()
        else:
            urls: list[str] = await self._nursery.start(self._serve_trio)
            self.port = int(urls[0].rsplit(":", 1)[1])

    async def _serve_trio(self, task_status: trio.TaskStatus[list[str]]) -> None:
        module = conformance_module(self._env)
        self._stopped = stopped = trio.Event()
        try:
            await self._serve_module(module, task_status)
        finally:
            stopped.set()

    async def _serve_module(self, module: Any, task_status: trio.TaskStatus[list[str]]) -> None:
        with trio.CancelScope() as self._scope:
            if self.kind == "native":
                await module.serve_native(self.port, task_status=task_status)
                return
            from hypercorn.config import Config
            from hypercorn.trio import serve

            config = Config()
            config.bind = [f"127.0.0.1:{self.port}"]
            config.websocket_max_message_size = MAX_PAYLOAD
            config.graceful_timeout = 0.1
            await serve(module.app, config, task_status=task_status)

    async def _start_node(self) -> None:
        assert NODE is not None
        process = await trio.lowlevel.open_process(
            [NODE, str(JS_DIR / "client_peer_server.mjs"), str(self.port)],
            cwd=JS_DIR,
            env={**os.environ, **self._env},
            stdout=subprocess.PIPE,
        )
        self._process = process
        assert process.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some()
                if not chunk:
                    raise AssertionError("the Node server exited before listening")
                line += chunk
        self.port = json.loads(line)["port"]

    async def stop(self) -> None:
        """Stop serving: every connection drops."""
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
            await self._stopped.wait()
        if self._process is not None:
            process, self._process = self._process, None
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
                assert process.stdout is not None
                await process.stdout.aclose()
        await trio.lowlevel.checkpoint()


@asynccontextmanager
async def serving_peer(
    kind: str, nursery: trio.Nursery, env: Mapping[str, str] | None = None
) -> AsyncIterator[Peer]:
    """A :class:`Peer` of ``kind``, started, and stopped after the block (without Node, the
    test skips the Node peer)."""
    if kind == "node" and NODE_MISSING is not None:
        pytest.skip(NODE_MISSING)
    served = Peer(kind, nursery, env)
    await served.start()
    yield served
    await served.stop()
