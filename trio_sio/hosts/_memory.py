"""The in-memory host of :mod:`trio_sio.testing`: a WebSocket made of memory channels, so that
a test client talks to the server without sockets, on Trio's clock."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from .._engine import HttpResponse, WebSocketClosed
from .._protocol import Outgoing

__all__ = ["MemoryWebSocket"]


class MemoryWebSocket:
    """An in-memory WebSocket: the server's end is a
    :class:`~trio_sio._engine.host.WebSocketConnection`, the client's end two memory channels
    (``to_server`` and ``from_server``). Every write goes through the scheduler."""

    def __init__(self) -> None:
        self.to_server, self._from_client = trio.open_memory_channel[str | bytes](64)
        self._to_client, self.from_server = trio.open_memory_channel[str | bytes](64)
        self.accepted = trio.Event()
        self.rejection: HttpResponse | None = None
        self.close_code: int | None = None
        #: Set when the server closes its end (seen even by a client that stopped reading).
        self.closed = trio.Event()

    async def accept(self, headers: list[tuple[str, str]]) -> None:
        self.accepted.set()

    async def reject(self, response: HttpResponse) -> None:
        self.rejection = response
        self.accepted.set()
        await self._to_client.aclose()

    async def receive(self) -> str | bytes:
        try:
            return await self._from_client.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise WebSocketClosed(1000) from None

    async def send(self, items: Sequence[Outgoing]) -> None:
        try:
            for item in items:
                for frame in item.frames:
                    await self._to_client.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise WebSocketClosed from None

    async def close(self, code: int = 1000) -> None:
        if self.close_code is None:
            self.close_code = code
        self.closed.set()
        await self._to_client.aclose()
