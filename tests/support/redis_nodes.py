"""trio_sio nodes of a Redis cluster in their own processes (tests/support/redis_cluster_node.py),
and the Node driver that joins them (tests/js/redis_cluster.mjs): the cross-process half of the
Redis adapter tests.

:func:`trio_nodes` starts the two nodes, "A" and "B", that the cross-process tests of every
adapter share; :meth:`Cluster.drive` runs one of the driver's scenarios against them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import trio

from .clients import JS_DIR, NODE
from .processes import REPO
from .redis import RedisClusterServers, RedisServer

CLUSTER_NODE = Path(__file__).resolve().parent / "redis_cluster_node.py"
DRIVER = JS_DIR / "redis_cluster.mjs"
STARTUP_DEADLINE_S = 20.0
#: What tests/support/redis_cluster_node.py prints once it serves: its URL is group 1.
NODE_URL = r'"url": "(http://[^"]+)"'


@dataclass
class Process:
    """A server process whose output goes to files (no pipe can fill up and block it)."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    url: str = ""

    def output(self) -> str:
        out = self.stdout.read_text(errors="replace")[-3000:]
        err = self.stderr.read_text(errors="replace")[-3000:]
        return f"{self.name} stdout:\n{out}\n{self.name} stderr:\n{err}"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


def spawn(name: str, argv: Sequence[str], workdir: Path, env: dict[str, str]) -> Process:
    stdout, stderr = workdir / f"{name}.out", workdir / f"{name}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        popen = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO, env=env)
    return Process(name, popen, stdout, stderr)


def wait_for_url(process: Process, pattern: str, source: str) -> None:
    """Wait until the process printed its URL (``pattern``'s group 1) in ``source``."""
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    path = process.stdout if source == "stdout" else process.stderr
    while True:
        match = re.search(pattern, path.read_text(errors="replace"))
        if match:
            process.url = match.group(1)
            return
        if process.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} did not start\n{process.output()}")
        time.sleep(0.05)


async def run_driver(
    scenario: str, redis_url: str, node_args: Sequence[str], context: str = "", **env: str
) -> dict[str, Any]:
    """Run one scenario of tests/js/redis_cluster.mjs; returns its ``observed``."""
    assert NODE is not None
    argv = [NODE, str(DRIVER), scenario, redis_url, *node_args]
    with trio.fail_after(60):
        process = await trio.run_process(
            argv,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=REPO,
            env=dict(os.environ, **env),
        )
    stdout = process.stdout.decode(errors="replace")
    stderr = process.stderr.decode(errors="replace")
    report = f"{' '.join(argv)}\nstdout:\n{stdout[-4000:]}\nstderr:\n{stderr[-4000:]}\n{context}"
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert process.returncode == 0, report
    assert len(lines) == 1, report
    result: dict[str, Any] = json.loads(lines[0])
    assert result["ok"] is True, report
    assert result["server"] == "socket.io@4.8.1", report
    adapters = ("@socket.io/redis-adapter@8.", "@socket.io/redis-streams-adapter@0.3.")
    assert result["adapter"].startswith(adapters), report
    observed: dict[str, Any] = result["observed"]
    return observed


#: The Redis a :class:`Cluster` runs on: one server, or a Redis Cluster.
RedisT = TypeVar("RedisT", bound="RedisServer | RedisClusterServers")


@dataclass
class Cluster(Generic[RedisT]):
    """The trio_sio nodes on ``redis``; the driver joins them with a Node node whose adapter
    ``driver_env`` chooses (``REDIS_ADAPTER``, ``SUBSCRIPTION_MODE``)."""

    redis: RedisT
    nodes: list[Process]
    driver_env: Mapping[str, str] = field(default_factory=dict)

    def node_args(self) -> list[str]:
        return [f"{node.name}={node.url}" for node in self.nodes]

    def output(self) -> str:
        return "\n".join(node.output() for node in self.nodes)

    async def drive(self, scenario: str) -> dict[str, Any]:
        """Run one scenario of tests/js/redis_cluster.mjs on these nodes; its ``observed``."""
        return await run_driver(
            scenario, self.redis.url, self.node_args(), self.output(), **self.driver_env
        )


@contextmanager
def trio_nodes(
    redis: RedisT, node_args: Sequence[str] = (), driver_env: Mapping[str, str] | None = None
) -> Iterator[Cluster[RedisT]]:
    """Nodes "A" and "B" on ``redis`` (running; the caller's), each in its own process with
    ``node_args`` (the adapter and its options), stopped after the block."""
    workdir = Path(tempfile.mkdtemp(prefix="trio-sio-redis-nodes-"))
    nodes: list[Process] = []
    try:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for name in ("A", "B"):
            argv = [sys.executable, str(CLUSTER_NODE), "--redis", redis.url, "--name", name]
            nodes.append(spawn(name, [*argv, *node_args], workdir, env))
        for node in nodes:
            wait_for_url(node, NODE_URL, "stdout")
        yield Cluster(redis, nodes, driver_env or {})
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --- what the driver's scenarios must observe on any adapter ---------------------------------


async def check_rooms(cluster: Cluster[Any]) -> None:
    """A room broadcast from each of A, B and the Node node N reaches the clients of all
    three."""
    observed = await cluster.drive("rooms")
    assert observed["received"] == {name: ["A", "B", "N"] for name in ("A", "B", "N")}, observed


async def check_fetch(cluster: Cluster[Any]) -> None:
    """fetchSockets and the remote operations, from Node and from trio_sio."""
    observed = await cluster.drive("fetch")
    assert observed["node_saw"] >= 3, observed
    assert observed["trio_saw"] == 3, observed


async def check_server_side_emit(cluster: Cluster[Any]) -> None:
    """serverSideEmit with acknowledgements, from Node and from trio_sio: every other node
    answers."""
    observed = await cluster.drive("server-side-emit")
    assert sorted(observed["node_got"]) == ["pong-A-7", "pong-B-7"], observed
    assert sorted(observed["trio_got"]) == ["pong-B-8", "pong-N-8"], observed


async def check_broadcast_ack(cluster: Cluster[Any]) -> None:
    """A broadcast with acknowledgements expects one from each node's client."""
    observed = await cluster.drive("broadcast-ack")
    assert observed["trio_got"]["expected"] == 3, observed
