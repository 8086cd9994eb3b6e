"""Serving ASGI apps on 127.0.0.1 with hypercorn's trio worker, inside the test's nursery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve


@asynccontextmanager
async def serve_app(app: Any, *, max_message_size: int = 1_000_000) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port for the duration of the block; yields its URL.

    The ASGI lifespan runs, so a :class:`trio_sio.ASGIApp` starts its server by itself.
    """
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.websocket_max_message_size = max_message_size
    config.graceful_timeout = 1
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(serve, app, config)
        yield next(url for url in urls if url.startswith("http://"))
        nursery.cancel_scope.cancel()


#: The hosts every behaviour is checked on.
HOSTS = ["hypercorn", "native"]


@asynccontextmanager
async def serve_server(host: str, server: Any) -> AsyncIterator[str]:
    """Serve a :class:`trio_sio.Server` on ``host`` (``"hypercorn"`` or ``"native"``) on a free
    loopback port for the duration of the block; yields its URL."""
    import trio_sio

    serve = trio_sio.serve_native if host == "native" else trio_sio.serve_hypercorn
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(serve, server, "127.0.0.1", 0)
        yield urls[0]
        nursery.cancel_scope.cancel()
