"""A private ``redis-server`` for a test: its own free loopback port, no persistence.

Never the system's Redis: every server here is started by the test on a port it picked, and
stopped (killed) by it. Tests that need one skip, with the reason, when ``redis-server`` is not
installed (CI installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import trio

REDIS_SERVER = shutil.which("redis-server")
REDIS_MISSING = (
    None
    if REDIS_SERVER
    else "redis-server is not installed (Debian: apt-get install redis-server; CI installs it)"
)

STARTUP_DEADLINE_S = 10.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


async def _aping(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    async with stream:
        try:
            with trio.fail_after(0.5):
                await stream.send_all(b"PING\r\n")
                return (await stream.receive_some(64)).startswith(b"+PONG")
        except (OSError, trio.BrokenResourceError, trio.TooSlowError):
            return False


class RedisServer:
    """One ``redis-server`` process on a fixed loopback port, which survives restarts.

    Usable from sync fixtures (:meth:`start`, :meth:`stop`) and from Trio code
    (:meth:`astart`).
    """

    def __init__(self, port: int | None = None) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError(REDIS_MISSING)
        self.port = port if port is not None else free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="trio-sio-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> None:
        assert REDIS_SERVER is not None
        if self.process is not None:
            raise RuntimeError("already running")
        # Its own working directory: nothing can land in the repository.
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self._dir.name,
        )

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited")

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        self._spawn()
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while not _ping(self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    async def astart(self) -> None:
        """:meth:`start`, without blocking the Trio run."""
        self._spawn()
        with trio.fail_after(STARTUP_DEADLINE_S):
            while not await _aping(self.port):
                self._check_alive()
                await trio.sleep(0.02)

    def stop(self) -> None:
        """Kill it (an outage as abrupt as they come); idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} {'running' if self.process else 'stopped'}>"
