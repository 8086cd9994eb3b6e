"""The workers mode of the native host: several processes serving one port, sticky by session.

A supervisor process owns the listening sockets and accepts every connection. It reads the
first request line (nothing more is needed: the session id is in the query), picks the worker
(the one the ``sid`` names, round-robin for a handshake or a request without a session) and
passes the connection's file descriptor, with the bytes already read, to that worker over a
Unix ``SOCK_SEQPACKET`` socket (``SCM_RIGHTS``). The worker serves it as if it had accepted it.

Session ids start with their worker's index and a dot (``EngineServer.sid_prefix``), so the
route needs no table, survives nothing and cannot go stale: a session of a worker that died
names a worker that does not know it, which answers "Session ID unknown" as the protocol
expects, and the client reconnects.

A keep-alive connection may carry requests of several sessions (a Node process's HTTP agent
pools its connections across clients). The worker checks every request line on it before
parsing the head; one that names another worker's session goes back to the supervisor (file
descriptor and unread bytes again), which routes it anew. So each request reaches its owner,
and the worker that hands back never waits for the other one.

The messages on a worker's channel, one datagram each:

- supervisor to worker: the bytes already read, with the connection's descriptor;
- worker to supervisor: ``R`` once it serves (ready); ``H`` and the unread bytes, with the
  descriptor of a connection handed back.
"""

from __future__ import annotations

import functools
import logging
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import unquote_to_bytes

import trio

from ..._engine import EngineServer
from .._common import Endpoint, Route
from ._config import NativeConfig
from ._serve import Connections, _url, make_router, serve_host

__all__ = ["WorkerFailed", "owner_of", "serve_worker", "supervise_workers"]

logger = logging.getLogger("trio_sio.hosts.native.workers")

#: Largest datagram on a channel: a request head (``max_header_bytes``) and what came with it.
#: A connection whose unread bytes are more is closed (only a client that sends far ahead of
#: the answers gets there).
MAX_MESSAGE = 128 * 1024
_READY = b"R"
_HANDED_BACK = b"H"
#: How long a worker that was asked to stop may take before it is killed, beyond the
#: endpoint's own shutdown grace.
_STOP_MARGIN = 5.0
#: Pauses between restarts of a worker that keeps dying, doubling from the first.
_RESTART_DELAYS = (0.1, 5.0)


class WorkerFailed(Exception):
    """A worker exited before it served (the server's module failed to load in it, say)."""


def owner_of(request_line: bytes, workers: int) -> int | None:
    """The worker that owns the session a request line names (``GET /socket.io/?sid=1.abc
    HTTP/1.1``), or ``None``: no ``sid``, or none of ``workers`` made it."""
    parts = request_line.split(b" ", 2)
    if len(parts) < 2:
        return None
    for field in parts[1].partition(b"?")[2].split(b"&"):
        if field.startswith(b"sid="):
            index, dot, _ = unquote_to_bytes(field[4:]).partition(b".")
            if dot and index.isdigit() and len(index) <= 6 and int(index) < workers:
                return int(index)
            return None
    return None


async def _send_message(
    channel: socket.socket, lock: trio.Lock, data: bytes, fds: Sequence[int]
) -> bool:
    """One datagram (with the descriptors), waiting for room in the channel; whether it went
    (``False``: the other side is gone)."""
    async with lock:  # one task at a time may wait for the channel to become writable
        while True:
            try:
                socket.send_fds(channel, [data], list(fds), socket.MSG_DONTWAIT)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(channel)
            except OSError:
                return False
            else:
                return True


async def _receive_message(channel: socket.socket) -> tuple[bytes, list[int]] | None:
    """The next datagram and the descriptors it carries; ``None`` when the other side closed
    (or sent something too large, which cannot come from our own side of the channel)."""
    while True:
        await trio.lowlevel.wait_readable(channel)
        try:
            data, fds, flags, _ = socket.recv_fds(channel, MAX_MESSAGE, 4, socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue
        except OSError:
            return None
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or (not data and not fds):
            for fd in fds:
                socket.close(fd)
            return None
        return data, fds


def _stream(fd: int) -> trio.SocketStream:
    return trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=fd)))


# --- the worker ------------------------------------------------------------------------------


async def serve_worker(
    server: Endpoint,
    channel_fd: int,
    index: int,
    workers: int,
    *,
    static_files: Mapping[str, str | Path] | None = None,
    path: str = "socket.io",
    endpoints: Mapping[str, Endpoint] | None = None,
    routes: Mapping[str, Route] | None = None,
    config: NativeConfig | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the connections the supervisor passes on ``channel_fd``, as worker ``index`` of
    ``workers``, until cancelled (a graceful shutdown, as :func:`serve_native`'s) or until the
    supervisor is gone (the same shutdown, then it returns)."""
    config = config or NativeConfig()
    # Every endpoint's sessions name this worker, not only the main one's: the supervisor
    # routes a polling request of ``/engine.io/`` by its sid as it does one of ``/socket.io/``.
    for endpoint in (server, *(endpoints or {}).values()):
        engine = getattr(endpoint, "engine", endpoint)
        if not isinstance(engine, EngineServer):
            raise TypeError(f"{endpoint!r} is not a trio_sio Server (nor an Engine.IO server)")
        engine.sid_prefix = f"{index}."
    channel = socket.socket(fileno=channel_fd)
    channel.setblocking(False)
    lock = trio.Lock()
    supervisor_gone = trio.Event()

    def owned_elsewhere(request_line: bytes) -> bool:
        owner = owner_of(request_line, workers)
        return owner is not None and owner != index

    async def hand_back(tcp: trio.SocketStream, unread: bytes) -> None:
        if len(unread) < MAX_MESSAGE:
            await _send_message(channel, lock, _HANDED_BACK + unread, [tcp.socket.fileno()])

    router, owned = make_router(server, static_files, path, endpoints, routes)
    connections = Connections(
        router, config, None, owned_elsewhere=owned_elsewhere, hand_back=hand_back
    )

    async def accept(nursery: trio.Nursery) -> None:
        try:
            if not await _send_message(channel, lock, _READY, []):
                return
            while (message := await _receive_message(channel)) is not None:
                received, fds = message
                for fd in fds:
                    nursery.start_soon(connections.handle, _stream(fd), received)
        finally:
            supervisor_gone.set()
            trio.lowlevel.notify_closing(channel)
            channel.close()

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_host(
                connections, owned, accept, channel.close, [], task_status=task_status
            )
        )
        task_status.started()
        await supervisor_gone.wait()
        nursery.cancel_scope.cancel()


# --- the supervisor --------------------------------------------------------------------------


class _Worker:
    """One worker's slot: its current process and channel, replaced when it restarts."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.channel: socket.socket | None = None
        self.lock = trio.Lock()
        #: The current process serves (round-robin skips a worker starting again).
        self.ready = False
        #: Set the first time a process of this slot serves.
        self.served = trio.Event()


class _Supervisor:
    def __init__(
        self, command: Callable[[int, int], list[str]], workers: int, config: NativeConfig
    ) -> None:
        self.command = command
        self.workers = [_Worker(index) for index in range(workers)]
        self.config = config
        self._next = 0
        self._nursery: trio.Nursery | None = None

    def _pick(self, request_line: bytes) -> _Worker | None:
        owner = owner_of(request_line, len(self.workers))
        if owner is not None:
            return self.workers[owner]
        for _ in self.workers:
            worker = self.workers[self._next]
            self._next = (self._next + 1) % len(self.workers)
            if worker.ready:
                return worker
        return None

    async def route(self, stream: trio.SocketStream, received: bytes = b"") -> None:
        """Pass a connection to the worker its first (unanswered) request belongs to; closed
        if the request line does not come within ``request_timeout``, or the worker cannot
        take it within as long."""
        config = self.config
        try:
            with trio.move_on_after(config.request_timeout):
                while b"\n" not in received and len(received) < config.max_header_bytes:
                    data = await stream.receive_some(16 * 1024)
                    if not data:
                        return
                    received += data
                worker = self._pick(received.partition(b"\n")[0])
                channel = worker.channel if worker is not None else None
                if worker is not None and channel is not None:
                    fd = stream.socket.fileno()
                    await _send_message(channel, worker.lock, received, [fd])
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)  # the worker holds its own descriptor

    async def _listen(self, worker: _Worker, channel: socket.socket) -> None:
        """The worker's messages: ready, and connections it hands back."""
        assert self._nursery is not None
        while (message := await _receive_message(channel)) is not None:
            data, fds = message
            if data == _READY and not fds:
                worker.ready = True
                worker.served.set()
            elif data[:1] == _HANDED_BACK and len(fds) == 1:
                self._nursery.start_soon(self.route, _stream(fds[0]), data[1:])
            else:
                for fd in fds:
                    socket.close(fd)

    async def keep_running(self, worker: _Worker) -> NoReturn:
        """Run the worker, and again whenever it exits.

        Raises:
            WorkerFailed: it exited before it ever served.
        """
        delay = _RESTART_DELAYS[0]
        while True:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            ours.setblocking(False)
            try:
                process = await trio.lowlevel.open_process(
                    self.command(worker.index, theirs.fileno()), pass_fds=[theirs.fileno()]
                )
            finally:
                theirs.close()
            worker.channel = ours
            started = trio.current_time()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._listen, worker, ours)
                    code = await process.wait()
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await _stop(process, self.config)
                worker.ready = False
                worker.channel = None
                trio.lowlevel.notify_closing(ours)
                ours.close()
            if not worker.served.is_set():
                raise WorkerFailed(f"worker {worker.index} exited with {code} before serving")
            logger.warning("worker %d exited with %s; starting it again", worker.index, code)
            if trio.current_time() - started > _RESTART_DELAYS[1]:
                delay = _RESTART_DELAYS[0]
            await trio.sleep(delay)
            delay = min(delay * 2, _RESTART_DELAYS[1])


async def _stop(process: trio.Process, config: NativeConfig) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL if it takes too long."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(config.request_timeout + _STOP_MARGIN):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


async def supervise_workers(
    command: Callable[[int, int], list[str]],
    workers: int,
    host: str,
    port: int,
    *,
    config: NativeConfig | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Listen on ``host``/``port`` and share the connections among ``workers`` processes,
    each started as ``command(index, channel_fd)`` (which runs :func:`serve_worker`) and
    started again when it exits. Returns the URLs once every worker serves; cancelling stops
    the workers gracefully (SIGTERM).

    Raises:
        WorkerFailed: a worker exited before it served for the first time.
    """
    config = config or NativeConfig()
    supervisor = _Supervisor(command, workers, config)
    listeners = await trio.open_tcp_listeners(port, host=host)
    urls = [_url(listener.socket.getsockname(), "http") for listener in listeners]
    for listener in listeners:
        listener.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    try:
        async with trio.open_nursery() as nursery:
            supervisor._nursery = nursery
            for worker in supervisor.workers:
                nursery.start_soon(supervisor.keep_running, worker)
            for worker in supervisor.workers:
                await worker.served.wait()
            serve = functools.partial(trio.serve_listeners, handler_nursery=nursery)
            nursery.start_soon(serve, supervisor.route, listeners)
            task_status.started(urls)
            await trio.sleep_forever()
    finally:
        for listener in listeners:
            listener.socket.close()
    raise AssertionError("unreachable")  # pragma: no cover
