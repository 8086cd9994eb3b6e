"""Engine.IO helpers for tests: an echo application and raw protocol steps."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import trio

import trio_sio
from support.http import Response, request
from support.websocket import WebSocket, open_websocket
from trio_sio.engineio import EngineOptions, EngineServer, Outgoing, Session

ROOT = "/engine.io/"
#: The native host with each of its HTTP parsers (``NativeConfig.http_parser``).
NATIVE_HOSTS = {"native": "httptools", "native-h11": "h11"}


@dataclass
class EchoHandler:
    """Echoes every message; records how sessions ended."""

    closed: dict[str, trio_sio.DisconnectReason] = field(default_factory=dict)
    closed_event: trio.Event = field(default_factory=trio.Event)

    def on_open(self, session: Session) -> None:
        pass

    async def on_message(self, session: Session, data: str | bytes) -> None:
        await session.send(Outgoing.message(data))

    def on_close(self, session: Session, reason: trio_sio.DisconnectReason) -> None:
        self.closed[session.sid] = reason
        self.closed_event.set()
        self.closed_event = trio.Event()

    async def wait_closed(self, sid: str) -> trio_sio.DisconnectReason:
        while sid not in self.closed:
            await self.closed_event.wait()
        return self.closed[sid]


@dataclass
class EngineFixture:
    url: str
    engine: EngineServer
    handler: EchoHandler

    def target(self, query: str) -> str:
        return f"{ROOT}?{query}"

    async def handshake(self) -> str:
        response = await request(self.url, "GET", self.target("EIO=4&transport=polling"))
        assert response.status == 200, response
        assert response.text.startswith("0")
        sid: str = json.loads(response.text[1:])["sid"]
        return sid

    async def post(self, sid: str, body: bytes | str) -> Response:
        data = body.encode() if isinstance(body, str) else body
        return await request(
            self.url, "POST", self.target(f"EIO=4&transport=polling&sid={sid}"), data
        )

    async def poll(self, sid: str) -> Response:
        return await request(self.url, "GET", self.target(f"EIO=4&transport=polling&sid={sid}"))

    def ws_url(self, query: str = "EIO=4&transport=websocket") -> str:
        return self.url.replace("http://", "ws://") + self.target(query)

    @asynccontextmanager
    async def websocket(self, query: str = "EIO=4&transport=websocket") -> AsyncIterator[WebSocket]:
        async with open_websocket(self.ws_url(query)) as ws:
            yield ws

    async def open_websocket_session(self, ws: WebSocket) -> str:
        opening = await ws.receive()
        assert isinstance(opening, str)
        assert opening.startswith("0")
        sid: str = json.loads(opening[1:])["sid"]
        return sid

    async def echo_ok_websocket(self) -> None:
        """A bystander: a fresh WebSocket session that gets an echo back."""
        async with self.websocket() as ws:
            await self.open_websocket_session(ws)
            await ws.send("4bystander")
            assert await ws.receive() == "4bystander"

    async def echo_ok_polling(self) -> None:
        """A bystander over long-polling."""
        sid = await self.handshake()
        assert (await self.post(sid, "4bystander")).text == "ok"
        assert (await self.poll(sid)).text == "4bystander"


async def settled(fixture: EngineFixture) -> None:
    """Wait until the server has no session and no session task left."""
    with trio.fail_after(5):
        while True:
            stats = fixture.engine.statistics()
            if stats.sessions == 0 and stats.session_tasks == 0:
                return
            await trio.sleep(0.01)


async def bystanders_ok(fixture: EngineFixture) -> None:
    """Fresh sessions over both transports still get their echo."""
    await fixture.echo_ok_websocket()
    await fixture.echo_ok_polling()


@asynccontextmanager
async def serve_engine(
    *,
    host: str = "hypercorn",
    host_message_limit: int = 1_000_000,
    native_config: Any = None,
    static_files: dict[str, Any] | None = None,
    **options: object,
) -> AsyncIterator[EngineFixture]:
    """An Engine.IO echo server at ``/engine.io/`` on a free loopback port, on ``host``
    (``"hypercorn"``, with ``host_message_limit`` as its WebSocket limit, or ``"native"``,
    with ``native_config`` and ``static_files``; ``"native-h11"`` is the native host with its
    h11 parser instead of httptools)."""
    from support.servers import serve_app

    settings: dict[str, object] = {
        "ping_interval": 5.0,
        "ping_timeout": 5.0,
        "cors_allowed_origins": None,
    }
    settings.update(options)
    handler = EchoHandler()
    engine = EngineServer(handler, EngineOptions(**settings))  # type: ignore[arg-type]
    if host in NATIVE_HOSTS:
        config = native_config or trio_sio.NativeConfig()
        native_config = replace(config, http_parser=NATIVE_HOSTS[host])
        async with trio.open_nursery() as nursery:
            urls: list[str] = await nursery.start(
                partial(
                    trio_sio.serve_native,
                    engine,
                    "127.0.0.1",
                    0,
                    path="engine.io",
                    config=native_config,
                    static_files=static_files,
                )
            )
            yield EngineFixture(urls[0], engine, handler)
            nursery.cancel_scope.cancel()
        return
    app = trio_sio.ASGIApp(engine, path="engine.io")
    async with serve_app(app, max_message_size=host_message_limit) as url:
        yield EngineFixture(url, engine, handler)
