"""A private ``redis-server`` for a test: its own free loopback port, no persistence; and
built from it, a private Redis Cluster (:class:`RedisClusterServers`) and a primary watched by
a Sentinel (:class:`RedisSentinelServers`).

Never the system's Redis: every server here is started by the test on a port it picked, and
stopped (killed) by it. Tests that need one skip, with the reason, when ``redis-server`` (or,
for a cluster, ``redis-cli``) is not installed (CI installs both: Debian's ``redis-server``
package brings ``redis-cli``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import trio

REDIS_SERVER = shutil.which("redis-server")
REDIS_MISSING = (
    None
    if REDIS_SERVER
    else "redis-server is not installed (Debian: apt-get install redis-server; CI installs it)"
)

REDIS_CLI = shutil.which("redis-cli")
REDIS_CLUSTER_MISSING = REDIS_MISSING or (
    None if REDIS_CLI else "redis-cli is not installed (Debian: it comes with redis-server)"
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


_Started = TypeVar("_Started", bound="_StartedInBlock")


class _StartedInBlock(ABC):
    """Servers usable as a context manager from a sync fixture: started on entry (closed again
    if that fails), closed on exit."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self: _Started) -> _Started:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisServer(_StartedInBlock):
    """One ``redis-server`` process on a fixed loopback port, which survives restarts.

    Usable from sync fixtures (:meth:`start`, :meth:`stop`, or ``with``) and from Trio code
    (:meth:`astart`, or ``async with``).
    """

    def __init__(
        self, port: int | None = None, *, extra_args: Sequence[str] = (), config: str = ""
    ) -> None:
        """``extra_args`` are added to the command line; ``config``, if given, is written to a
        configuration file that Redis reads (and may rewrite: a Sentinel must have one)."""
        if REDIS_SERVER is None:
            raise RuntimeError(REDIS_MISSING)
        self.port = port if port is not None else free_port()
        self.extra_args = list(extra_args)
        self._dir = tempfile.TemporaryDirectory(prefix="trio-sio-redis-")
        self._config: Path | None = None
        if config:
            self._config = self.directory / "redis.conf"
            self._config.write_text(config)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def directory(self) -> Path:
        """Its working directory (its own, removed by :meth:`close`)."""
        return Path(self._dir.name)

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
                *([str(self._config)] if self._config else []),
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
                *self.extra_args,
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

    async def __aenter__(self) -> RedisServer:
        try:
            await self.astart()
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} {'running' if self.process else 'stopped'}>"


def _info_field(port: int, section: str, field: str) -> str | None:
    """One field of ``INFO``/``CLUSTER INFO`` of the server on ``port`` (``None``: no answer)."""
    assert REDIS_CLI is not None
    command = ["CLUSTER", "INFO"] if section == "cluster" else ["INFO", section]
    try:
        output = subprocess.run(
            [REDIS_CLI, "-p", str(port), *command],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
    except subprocess.TimeoutExpired:
        return None
    for line in output.splitlines():
        name, _, value = line.strip().partition(":")
        if name == field:
            return value
    return None


def _wait_for_field(
    port: int, section: str, field: str, value: str, deadline: float, failure: str
) -> None:
    """Poll ``field`` of ``section`` on ``port`` until it reads ``value``; past ``deadline`` (a
    ``time.monotonic()``), ``TimeoutError(failure)``."""
    while _info_field(port, section, field) != value:
        if time.monotonic() > deadline:
            raise TimeoutError(failure)
        time.sleep(0.05)


class RedisClusterServers(_StartedInBlock):
    """A Redis Cluster of ``primaries`` primaries (no replicas), each a :class:`RedisServer`
    with cluster mode on, its slots spread evenly by ``redis-cli --cluster create``.

    Use as a context manager from a sync fixture; the servers stay up until it exits.
    """

    def __init__(self, primaries: int = 3) -> None:
        if REDIS_CLUSTER_MISSING is not None:
            raise RuntimeError(REDIS_CLUSTER_MISSING)
        self.servers = [
            RedisServer(
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",  # in the server's own directory (its cwd and --dir)
                    # The bus port defaults to port + 10000, past 65535 for a high free port.
                    "--cluster-port",
                    str(free_port()),
                    "--cluster-node-timeout",
                    "5000",
                ]
            )
            for _ in range(primaries)
        ]

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    @property
    def url(self) -> str:
        """The adapters' URL of this cluster, every node a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> None:
        assert REDIS_CLI is not None
        for server in self.servers:
            server.start()
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        # Every node must see the whole cluster before a client's view of it is complete.
        deadline = time.monotonic() + STARTUP_DEADLINE_S * 3
        for port in self.ports:
            failure = f"the cluster node on port {port} did not become ok"
            _wait_for_field(port, "cluster", "cluster_state", "ok", deadline, failure)

    def close(self) -> None:
        for server in self.servers:
            server.close()


class RedisSentinelServers(_StartedInBlock):
    """A primary :class:`RedisServer`, with ``replicas`` replicas, and one Sentinel watching it
    as ``service`` (quorum 1, quick to act: a failover may be asked for at once).

    Use as a context manager from a sync fixture.
    """

    def __init__(self, service: str = "trio-sio-primary", *, replicas: int = 0) -> None:
        self.service = service
        self.primary = RedisServer()
        self.replicas = [
            RedisServer(extra_args=["--replicaof", "127.0.0.1", str(self.primary.port)])
            for _ in range(replicas)
        ]
        self.sentinel = RedisServer(
            extra_args=["--sentinel"],
            config=(
                f"sentinel monitor {service} 127.0.0.1 {self.primary.port} 1\n"
                f"sentinel down-after-milliseconds {service} 1000\n"
                f"sentinel failover-timeout {service} 5000\n"
            ),
        )

    @property
    def url(self) -> str:
        """The adapters' URL of the service, through the Sentinel."""
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}"

    def start(self) -> None:
        self.primary.start()
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        for replica in self.replicas:
            replica.start()
            # In sync before the Sentinel first looks, so that it knows the replica at once.
            failure = f"the replica on port {replica.port} is not in sync"
            _wait_for_field(
                replica.port, "replication", "master_link_status", "up", deadline, failure
            )
        self.sentinel.start()
        # The Sentinel answers PING before it has looked at the primary: wait until it has,
        # with a budget of its own (a busy machine's replica sync may have used the other).
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        failure = "the Sentinel does not watch the primary"
        _wait_for_field(self.sentinel.port, "sentinel", "sentinel_masters", "1", deadline, failure)

    def close(self) -> None:
        self.sentinel.close()
        for replica in self.replicas:
            replica.close()
        self.primary.close()
