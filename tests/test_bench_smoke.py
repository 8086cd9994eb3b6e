"""The benchmark suite cannot rot: run every scenario of ``benchmarks/run.py`` against trio_sio,
with tiny sizes for about a second each (``--smoke``), and check that each one measured what it
should. This is not a benchmark; the numbers are not looked at.

The scenarios of several processes run in a second smoke run, with a private redis-server
(skipped without one): the cross-node broadcast on the sharded Redis adapter, trio_sio's and
Node's (the adapter that subscribes per room, so the scenario's wait for the cluster is
exercised too), and echo and broadcast on ``--workers 2`` and on Node's 2 workers. About 25 s:
the other adapters have their own tests.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.redis import REDIS_MISSING

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "benchmarks" / "run.py"
CLIENT_LOADGEN = ROOT / "benchmarks" / "client_loadgen.py"
NODE_SERVER = ROOT / "benchmarks" / "js" / "node_server.mjs"
NODE_MODULES = ROOT / "tests" / "js" / "node_modules"

SMOKE_TIMEOUT = 90
#: The cluster run starts 14 servers (4 of them two-node clusters) and 7 Redis servers, one
#: after the other.
CLUSTER_SMOKE_TIMEOUT = 180
CLUSTERS = ["trio_sio_sharded", "node_sharded"]
WORKERS = ["trio_sio_workers2", "node_workers2"]


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH"
    for package in ("ws", "socket.io", "socket.io-client"):
        if not (NODE_MODULES / package / "package.json").is_file():
            return f"npm package {package} is not installed: run npm ci --prefix tests/js"
    return None


MISSING = _missing()


def _smoke(
    out: Path, servers: list[str], timeout: float, *options: str
) -> tuple[dict[str, Any], str]:
    """One smoke run of the runner (raw results, Markdown report)."""
    report, raw = out / "RESULTS.md", out / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--smoke",
            "--servers",
            ",".join(servers),
            "--rounds",
            "1",
            "--no-pin",
            "--output",
            str(report),
            "--json",
            str(raw),
            *options,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    # 1: some run failed, which the tests that read it report (with its error).
    assert completed.returncode in (0, 1), completed.stderr[-4000:]
    assert raw.is_file(), completed.stderr[-4000:]
    results: dict[str, Any] = json.loads(raw.read_text())
    return results, report.read_text()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    return _smoke(tmp_path_factory.mktemp("bench"), ["trio_sio"], SMOKE_TIMEOUT)


@pytest.fixture(scope="module")
def cluster_smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    if REDIS_MISSING is not None:
        pytest.skip(REDIS_MISSING)
    scenarios = "xnode_bcast,xnode_bcast_x10,echo_100,bcast_1000"
    results, report = _smoke(
        tmp_path_factory.mktemp("bench-cluster"),
        CLUSTERS + WORKERS,
        CLUSTER_SMOKE_TIMEOUT,
        "--scenarios",
        scenarios,
    )
    # Node's own multi-process setups fail now and then on a busy machine (once,
    # @socket.io/sticky accepted no WebSocket for 10 s). A failed Node run gets one more
    # try, alone; trio_sio's runs get none.
    for scenario, by_server in results["runs"].items():
        for server, runs in by_server.items():
            if server.startswith("node") and not all(run["ok"] for run in runs):
                again, _ = _smoke(
                    tmp_path_factory.mktemp("bench-node-again"),
                    [server],
                    SMOKE_TIMEOUT,
                    "--scenarios",
                    scenario,
                )
                by_server[server] = again["runs"].get(scenario, {}).get(server, runs)
    return results, report


def _run(results: dict[str, Any], scenario: str, server: str = "trio_sio") -> dict[str, Any]:
    (run,) = results["runs"][scenario][server]
    assert run["ok"], run.get("error")
    assert run["serverCpu"] >= 0
    return dict(run)


pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(MISSING is not None, reason=MISSING or ""),
]


def test_fixture_passes_the_official_client_check(smoke_run: tuple[dict[str, Any], str]) -> None:
    results, _ = smoke_run
    assert results["sanity"]["trio_sio"]["ok"], results["sanity"]


@pytest.mark.parametrize("scenario", ["echo_1", "echo_100", "poll_echo", "poll_echo_dedicated"])
def test_echo_scenarios_measure_acks(smoke_run: tuple[dict[str, Any], str], scenario: str) -> None:
    run = _run(smoke_run[0], scenario)
    assert run["acks"] > 0
    assert run["acksPerSec"] > 0
    assert 0 < run["p50Ms"] <= run["p99Ms"]


@pytest.mark.parametrize(
    ("scenario", "clients", "burst"),
    [("bcast_1000", 20, 1), ("bcast_1000_x10", 20, 10), ("bcast_5000", 50, 1)],
)
def test_broadcast_scenarios_deliver_everything(
    smoke_run: tuple[dict[str, Any], str], scenario: str, clients: int, burst: int
) -> None:
    run = _run(smoke_run[0], scenario)
    assert run["broadcasts"] >= 3
    assert run["deliveries"] == run["broadcasts"] * clients * burst
    assert run["lastDeliveryMs"] > 0


@pytest.mark.parametrize("scenario", ["conn_ws", "conn_upgrade"])
def test_connection_scenarios_reach_their_target(
    smoke_run: tuple[dict[str, Any], str], scenario: str
) -> None:
    run = _run(smoke_run[0], scenario)
    assert run["connected"] == run["stillOpen"] == 40
    assert run["errorCount"] == 0
    assert run["handshakesPerSec"] > 0
    assert run["rssAfterKiB"] > 0


def test_report_has_a_table_per_scenario(smoke_run: tuple[dict[str, Any], str]) -> None:
    _, report = smoke_run
    assert report.startswith("# Benchmark results (smoke run")
    assert report.count("| trio_sio (hypercorn -k trio) |") == 9
    assert "## Machine" in report


def test_cluster_fixtures_pass_the_official_client_check(
    cluster_smoke_run: tuple[dict[str, Any], str],
) -> None:
    """On the clusters, the check's broadcasts go from node A to a client of node B."""
    results, _ = cluster_smoke_run
    for server in CLUSTERS + WORKERS:
        assert results["sanity"][server]["ok"], (server, results["sanity"][server])


@pytest.mark.parametrize("server", CLUSTERS)
@pytest.mark.parametrize(("scenario", "burst"), [("xnode_bcast", 1), ("xnode_bcast_x10", 10)])
def test_cross_node_broadcasts_reach_both_nodes(
    cluster_smoke_run: tuple[dict[str, Any], str], server: str, scenario: str, burst: int
) -> None:
    run = _run(cluster_smoke_run[0], scenario, server)
    assert run["broadcasts"] >= 3
    assert run["deliveries"] == run["broadcasts"] * 20 * burst
    assert run["remoteDeliveries"] == run["broadcasts"] * 10 * burst  # half the clients on B
    assert 0 < run["remoteFirstMs"] <= run["remoteLastMs"]
    assert run["localLastMs"] > 0
    assert run["redisCpu"] >= 0  # the private Redis was measured
    assert run["remoteCpuShare"] >= 0


@pytest.mark.parametrize("server", WORKERS)
def test_workers_serve_echo_and_broadcast(
    cluster_smoke_run: tuple[dict[str, Any], str], server: str
) -> None:
    """Every receiver hears every broadcast, whichever worker it landed on (the load
    generator checks each one's count)."""
    echo = _run(cluster_smoke_run[0], "echo_100", server)
    assert echo["acks"] > 0
    bcast = _run(cluster_smoke_run[0], "bcast_1000", server)
    assert bcast["deliveries"] == bcast["broadcasts"] * 20


def test_cluster_report_explains_itself(cluster_smoke_run: tuple[dict[str, Any], str]) -> None:
    _, report = cluster_smoke_run
    for expected in (
        "### Cross-node broadcast (xnode_*)",
        "### Workers on one machine",
        "## Cross-node broadcast: trio_sio against Node with the same adapter",
        "## Workers on one machine: what the second process buys",
        "## trio_sio (python -m trio_sio --workers 2, classic Redis adapter) against each peer",
        "| trio_sio_workers2 / node_workers2 |",
    ):
        assert expected in report
    # The one-node scenarios on the clusters, and the cross-node ones on the workers: none.
    assert report.count("| trio_sio (native host), 2 nodes, sharded Redis adapter |") == 2
    assert report.count("| trio_sio (python -m trio_sio --workers 2, classic Redis adapter) |") == 2
    assert "| sharded Redis adapter | xnode_bcast | deliveries/s on node B |" in report


def test_a_scenario_no_given_server_runs_is_refused() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--smoke",
            "--servers",
            "trio_sio",
            "--scenarios",
            "xnode_bcast",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 2
    assert "no server given runs ['xnode_bcast']" in completed.stderr


#: benchmarks/client_loadgen.py's options for a smoke run.
SMOKE_LOAD = ["--clients", "5", "--warmup", "0.2", "--duration", "1", "--timeout", "30"]


def _client_loadgen(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CLIENT_LOADGEN), url, *SMOKE_LOAD],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )


def test_the_trio_client_load_generator_measures_echo_acks() -> None:
    """benchmarks/client_loadgen.py, tiny, against Node's fixture (what it is compared with)."""
    server = subprocess.Popen(
        ["node", str(NODE_SERVER), "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    try:
        listening = server.stdout.readline()  # "listening PORT", or "" if it exited
        assert listening.startswith("listening "), listening
        completed = _client_loadgen(f"http://127.0.0.1:{listening.split()[1]}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()
    assert completed.returncode == 0, completed.stdout + completed.stderr[-4000:]
    run = json.loads(completed.stdout)
    assert run["ok"]
    assert run["clients"] == 5
    assert run["acks"] > 0
    assert run["acksPerSec"] > 0
    assert 0 < run["p50Ms"] <= run["p99Ms"]
    assert run["loadgenCpuShare"] > 0


def test_the_trio_client_load_generator_reports_a_failure() -> None:
    with socket.socket() as unused:  # bound, not listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        completed = _client_loadgen(f"http://127.0.0.1:{unused.getsockname()[1]}")
    assert completed.returncode == 1
    run = json.loads(completed.stdout)
    assert run["ok"] is False
    assert run["error"].startswith("ConnectError: ")
