"""Socket I/O shortcuts for the native host.

trio's stream methods always pass through the scheduler, even when the kernel could take or
give the bytes at once. On the hot path (a WebSocket message, a small HTTP response) that is a
large share of the cost, so for plain TCP connections the host tries the non-blocking syscall
first and waits through trio only when it would block. TLS streams (and anything else) use
the stream's own methods.
"""

from __future__ import annotations

import socket

import trio

__all__ = ["Reader", "raw_socket", "send_raw"]

_DISCONNECTED = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def raw_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """The non-blocking socket under a :class:`trio.SocketStream`; ``None`` for any other
    stream, or if trio's internals change (then the stream's own methods are used)."""
    if type(stream) is not trio.SocketStream:
        return None
    raw = getattr(stream.socket, "_sock", None)
    if isinstance(raw, socket.socket) and not raw.getblocking():
        return raw
    return None


def _recv_nowait(raw: socket.socket, size: int) -> bytes | None:
    """What the kernel has for us now (``b""`` at EOF or on error), or ``None`` if nothing."""
    try:
        return raw.recv(size)
    except BlockingIOError:
        return None
    except OSError:
        return b""


class Reader:
    """Reads a Trio stream ``size`` bytes at a time, trying the kernel first on plain TCP."""

    __slots__ = ("_maybe_more", "_raw", "_size", "_stream")

    def __init__(self, stream: trio.abc.Stream, size: int) -> None:
        self._stream = stream
        self._raw = raw_socket(stream)
        self._size = size
        # Whether the kernel may hold more already. After a read that did not fill the buffer
        # it most likely does not, and asking anyway costs a system call that fails.
        self._maybe_more = True

    def receive_nowait(self) -> bytes | None:
        """Bytes the kernel already has (``b""`` at EOF or on error), or ``None``: nothing
        yet, probably nothing yet, or not a plain TCP stream."""
        raw = self._raw
        if raw is None or not self._maybe_more:
            return None
        data = _recv_nowait(raw, self._size)
        if data is not None:
            self._maybe_more = len(data) == self._size
        return data

    async def receive(self) -> bytes:
        """Wait for bytes (``b""`` at EOF or when the connection broke)."""
        raw = self._raw
        try:
            if raw is None:
                return bytes(await self._stream.receive_some(self._size))
            while True:
                await trio.lowlevel.wait_readable(raw)
                data = _recv_nowait(raw, self._size)
                if data is not None:
                    self._maybe_more = len(data) == self._size
                    return data
        except _DISCONNECTED:
            return b""


async def send_raw(raw: socket.socket, data: bytes) -> None:
    """All of ``data`` on a non-blocking socket, waiting for it to drain only if needed.

    Raises:
        OSError: the connection is broken.
    """
    try:
        sent = raw.send(data)
    except BlockingIOError:
        sent = 0
    total = len(data)
    if sent >= total:
        return
    view = memoryview(data)
    while True:
        await trio.lowlevel.wait_writable(raw)
        try:
            sent += raw.send(view[sent:])
        except BlockingIOError:
            continue
        if sent >= total:
            return
