"""The conformance fixture app as a cluster on one machine: two worker processes behind one
port (``tests/conformance_app.py --native --workers 2``), broadcasting through a private
``redis-server`` with one of the Redis adapters (``TRIO_SIO_REDIS_ADAPTER``).

A cluster takes about 3 s to start on a busy 2-core machine (the supervisor imports the app,
then two workers do), so ``conformance_url`` keeps one per adapter and environment across tests
(:class:`Clusters`) instead of starting one per test, and starts those of the adapters it
will need together. Each cluster has its own Redis: pub/sub channels
ignore the database number, and two clusters on one Redis would count each other's nodes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from .processes import REPO, python_env
from .redis import RedisServer

CONFORMANCE_APP = REPO / "tests" / "conformance_app.py"
#: The adapters ``TRIO_SIO_REDIS_ADAPTER`` selects (tests/conformance_app.py).
ADAPTERS = ("classic", "sharded", "streams")
WORKERS = 2
#: Generous: three Python processes start on a busy 2-core machine.
START_BUDGET_S = 60.0
#: A graceful stop closes every session first; killed after this.
STOP_BUDGET_S = 20.0


class ConformanceCluster:
    """One Redis and the fixture app's supervisor with its workers, output to a log file.

    Made, it is starting; :meth:`wait` waits until it serves (so that several start at once).
    """

    def __init__(self, adapter: str, env: Mapping[str, str]) -> None:
        self.adapter = adapter
        self.url: str | None = None
        self.redis = RedisServer()
        self.redis.start()
        self.log = Path(tempfile.mkstemp(prefix=f"trio-sio-cluster-{adapter}-", suffix=".log")[1])
        environment = {
            **python_env(),
            **env,
            "TRIO_SIO_REDIS_URL": self.redis.url,
            "TRIO_SIO_REDIS_ADAPTER": adapter,
        }
        command = [sys.executable, str(CONFORMANCE_APP), "--native", "--port", "0"]
        with self.log.open("wb") as output:
            # A file, not a pipe: nothing has to read it while the tests run.
            self.process = subprocess.Popen(
                [*command, "--workers", str(WORKERS)],
                cwd=REPO,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self._deadline = time.monotonic() + START_BUDGET_S

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self) -> str:
        """Its URL, once it serves."""
        while self.url is None:
            match = re.search(r"serving on (\S+)", self.output())
            if match is not None:
                self.url = match[1]
                break
            self.check_alive()
            if time.monotonic() > self._deadline:
                raise TimeoutError(f"the {self.adapter} cluster did not start:\n{self.output()}")
            time.sleep(0.02)
        self.check_alive()
        return self.url

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the {self.adapter} cluster exited:\n{self.output()}")

    def interrupt(self) -> None:
        """Ask the supervisor to stop as Ctrl+C does (it stops its workers gracefully)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def close(self) -> None:
        """Stop it (killed if it takes too long), then its Redis."""
        self.interrupt()
        try:
            self.process.wait(timeout=STOP_BUDGET_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.redis.close()
        os.unlink(self.log)


#: Environments whose clusters stay up: the one in use and the one before (a module that
#: turns a switch off for one test, say, finds the clusters of the modules without it).
KEPT_ENVIRONMENTS = 2


class Clusters:
    """The clusters of a test session, keyed by adapter and the environment the test's
    ``conformance_env`` sets. A request may name the other adapters the same tests will need
    (``also``): their clusters start at once, in parallel. The clusters of the environment
    used least recently stop when more than :data:`KEPT_ENVIRONMENTS` would be up."""

    def __init__(self) -> None:
        #: Per environment, most recently used last: its cluster of each adapter.
        self._clusters: dict[tuple[tuple[str, str], ...], dict[str, ConformanceCluster]] = {}

    def url(self, adapter: str, env: Mapping[str, str], also: Collection[str] = ()) -> str:
        environment = tuple(sorted(env.items()))
        clusters = self._clusters.pop(environment, {})
        self._clusters[environment] = clusters
        for each in sorted({adapter, *also} - clusters.keys()):
            clusters[each] = ConformanceCluster(each, env)
        while len(self._clusters) > KEPT_ENVIRONMENTS:
            _stop(self._clusters.pop(next(iter(self._clusters))).values())
        return clusters[adapter].wait()

    def close(self) -> None:
        everything, self._clusters = self._clusters, {}
        _stop([cluster for clusters in everything.values() for cluster in clusters.values()])


def _stop(clusters: Iterable[ConformanceCluster]) -> None:
    clusters = list(clusters)
    for cluster in clusters:
        cluster.interrupt()  # all at once: their graceful shutdowns overlap
    for cluster in clusters:
        cluster.close()
