"""Serving ASGI apps on 127.0.0.1 with hypercorn's trio worker, inside the test's nursery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
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
async def serve_server(
    host: str, server: Any, *, static_files: Mapping[str, str | Path] | None = None
) -> AsyncIterator[str]:
    """Serve a :class:`trio_sio.Server` on ``host`` (``"hypercorn"`` or ``"native"``) on a free
    loopback port for the duration of the block; yields its URL. ``static_files`` are served
    beside it (by the native host, or by the :class:`trio_sio.ASGIApp` under hypercorn)."""
    import trio_sio

    if host == "native":
        start = partial(trio_sio.serve_native, server, "127.0.0.1", 0, static_files=static_files)
    elif static_files is not None:
        app = trio_sio.ASGIApp(server, static_files=static_files)
        start = partial(trio_sio.serve_hypercorn, server, "127.0.0.1", 0, app=app)
    else:
        start = partial(trio_sio.serve_hypercorn, server, "127.0.0.1", 0)
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(start)
        yield urls[0]
        nursery.cancel_scope.cancel()
