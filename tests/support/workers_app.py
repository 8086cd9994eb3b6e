"""The app that ``python -m trio_sio --workers`` serves in tests/test_workers.py.

``sio`` broadcasts through the classic Redis adapter at ``TRIO_SIO_REDIS_URL``; ``lonely`` has
no cluster adapter (the command line refuses it with ``--workers 2``). Every socket can ask
which process serves it (``pid``, an ack) and make every client of every worker hear an event
(``shout``: ``heard`` to all); ``exit`` ends its worker at once (a crash, for the restart test).
"""

from __future__ import annotations

import os

import trio_sio
from trio_sio.adapters.redis import RedisAdapter, RedisAdapterOptions

sio = trio_sio.Server(
    adapter_factory=RedisAdapter.factory(
        os.environ.get("TRIO_SIO_REDIS_URL", "redis://127.0.0.1:6379/0"),
        RedisAdapterOptions(requests_timeout=2),
    ),
)
lonely = trio_sio.Server()


@sio.on("pid")
async def pid(socket: trio_sio.Socket) -> int:
    return os.getpid()


@sio.on("shout")
async def shout(socket: trio_sio.Socket, text: str) -> None:
    await sio.emit("heard", text)


@sio.on("exit")
async def exit_now(socket: trio_sio.Socket) -> None:
    os._exit(3)
