"""The benchmark fixture on python-socketio 5.x as an ASGI app (the same behaviour as
``trio_sio_app.py``).

Run it from the repository root under uvicorn (python-socketio's fastest setup, with uvloop,
httptools and websockets) or under hypercorn's asyncio worker::

    python -m uvicorn --app-dir benchmarks psio_app:app --loop uvloop --http httptools \\
        --ws websockets
    hypercorn -k asyncio benchmarks/psio_app.py:app
"""

from __future__ import annotations

from typing import Any

import socketio  # type: ignore[import-untyped]  # (no py.typed)

# Defaults except CORS (as for trio_sio): python-socketio's queues are unbounded.
sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")


async def echo(sid: str, *args: Any) -> tuple[Any, ...]:
    return args


async def join(sid: str, room: str) -> str:
    await sio.enter_room(sid, room)
    return room


async def bcast(sid: str, spec: dict[str, Any]) -> int:
    room: str = spec["room"]
    n: int = spec["n"]
    payload = "x" * spec["size"]
    for i in range(n):
        await sio.emit("m", (i, payload), to=room)
    return n


for _handler in (echo, join, bcast):
    sio.on(_handler.__name__, _handler)

app = socketio.ASGIApp(sio)
