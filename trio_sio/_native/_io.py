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

__all__ = ["raw_socket", "recv_nowait", "recv_raw", "send_raw"]


def raw_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """The non-blocking socket under a :class:`trio.SocketStream`; ``None`` for any other
    stream, or if trio's internals change (then the stream's own methods are used)."""
    if type(stream) is not trio.SocketStream:
        return None
    raw = getattr(stream.socket, "_sock", None)
    if isinstance(raw, socket.socket) and not raw.getblocking():
        return raw
    return None


def recv_nowait(raw: socket.socket, size: int) -> bytes | None:
    """What the kernel has for us now (``b""`` at EOF or on error), or ``None`` if nothing."""
    try:
        return raw.recv(size)
    except BlockingIOError:
        return None
    except OSError:
        return b""


async def recv_raw(raw: socket.socket, size: int) -> bytes:
    """Wait until the socket is readable, then read (``b""`` at EOF or on error)."""
    while True:
        await trio.lowlevel.wait_readable(raw)
        data = recv_nowait(raw, size)
        if data is not None:
            return data


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
