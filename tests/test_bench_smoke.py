"""The benchmark suite cannot rot: run every scenario of ``benchmarks/run.py`` against trio_sio,
with tiny sizes for about a second each (``--smoke``), and check that each one measured what it
should. This is not a benchmark; the numbers are not looked at.
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

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "benchmarks" / "run.py"
CLIENT_LOADGEN = ROOT / "benchmarks" / "client_loadgen.py"
NODE_SERVER = ROOT / "benchmarks" / "js" / "node_server.mjs"
NODE_MODULES = ROOT / "tests" / "js" / "node_modules"

SMOKE_TIMEOUT = 90


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH"
    for package in ("ws", "socket.io", "socket.io-client"):
        if not (NODE_MODULES / package / "package.json").is_file():
            return f"npm package {package} is not installed: run npm ci --prefix tests/js"
    return None


MISSING = _missing()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One smoke run of the runner (raw results, Markdown report)."""
    out = tmp_path_factory.mktemp("bench")
    report, raw = out / "RESULTS.md", out / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--smoke",
            "--servers",
            "trio_sio",
            "--rounds",
            "1",
            "--no-pin",
            "--output",
            str(report),
            "--json",
            str(raw),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results: dict[str, Any] = json.loads(raw.read_text())
    return results, report.read_text()


def _run(results: dict[str, Any], scenario: str) -> dict[str, Any]:
    (run,) = results["runs"][scenario]["trio_sio"]
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
