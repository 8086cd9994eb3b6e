"""Running the official clients' scenario scripts (tests/js/*.mjs, tests/clients/*.py) as
subprocesses, each printing one JSON line that is checked here."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

TESTS_DIR = Path(__file__).resolve().parent.parent
JS_DIR = TESTS_DIR / "js"
CLIENTS_DIR = TESTS_DIR / "clients"
NODE = shutil.which("node")

MODES = ["polling", "websocket", "upgrade"]

#: Each scenario's budget (the scripts' SCENARIO_TIMEOUT_MS). It catches a hang; it is not a
#: measure of speed: with every core busy with something else (scripts/under_load.py) the
#: slowest scenario takes several times what it takes on an idle machine.
SCENARIO_BUDGET_S = 30.0


def _node_missing() -> str | None:
    if NODE is None:
        return "node is not on PATH"
    if not (JS_DIR / "node_modules").is_dir():
        return "tests/js/node_modules is missing: run `npm ci --prefix tests/js`"
    return None


NODE_MISSING = _node_missing()
requires_node = pytest.mark.skipif(NODE_MISSING is not None, reason=NODE_MISSING or "")


def _tail(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else f"...{text[-limit:]}"


async def run_scenario(
    command: Sequence[str],
    url: str,
    mode: str,
    scenario: str,
    *,
    extra: Sequence[str] = (),
    budget_s: float = SCENARIO_BUDGET_S,
) -> dict[str, Any]:
    """Run one scenario script and return its JSON result, asserting it reported success.

    ``extra`` arguments follow the scenario name; the script stops itself after
    ``budget_s``, and the process is killed 20 s later as a backstop. A run that could not
    be judged (exit :data:`INCONCLUSIVE`: a client lost its session to a starved machine's
    heartbeat, see tests/js/lib/harness.mjs) runs again after a pause, up to :data:`RUNS`
    runs in all. The hypercorn host's long-polling fan-out, then with 30 clients on the
    contract's 200 ms ping timeout (10 since), was inconclusive three times in a row on one CI
    run, the runs about a second apart; the pauses double so that the later runs can fall
    outside a burst of the other test worker's load."""
    for run in range(1, RUNS):
        try:
            return await _run_scenario_once(command, url, mode, scenario, extra, budget_s)
        except _Inconclusive as inconclusive:
            pause = RERUN_PAUSE_S * 2 ** (run - 1)
            print(f"inconclusive (run {run} of {RUNS}), again in {pause} s: {inconclusive}")
            await trio.sleep(pause)
    return await _run_scenario_once(command, url, mode, scenario, extra, budget_s)


#: How many times a scenario runs before inconclusive counts as failed.
RUNS = 4

#: The pause before the first rerun of an inconclusive scenario; each later one doubles it
#: (1 + 2 + 4 s in all), so that a burst of load from another test can pass.
RERUN_PAUSE_S = 1.0


#: The exit code of a scenario that could not be judged (tests/js/lib/harness.mjs).
INCONCLUSIVE = 3


class _Inconclusive(AssertionError):
    pass


async def _run_scenario_once(
    command: Sequence[str],
    url: str,
    mode: str,
    scenario: str,
    extra: Sequence[str],
    budget_s: float,
) -> dict[str, Any]:
    argv = [*command, url, mode, scenario, *extra]
    env = {**os.environ, "SCENARIO_TIMEOUT_MS": str(int(budget_s * 1000))}
    deadline = budget_s + 20
    with trio.fail_after(deadline):
        process = await trio.run_process(
            argv,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=TESTS_DIR.parent,
            env=env,
        )
    stdout = process.stdout.decode("utf-8", "replace")
    stderr = process.stderr.decode("utf-8", "replace")
    report = f"command: {' '.join(argv)}\nstdout:\n{_tail(stdout)}\nstderr:\n{_tail(stderr)}"
    lines = [line for line in stdout.splitlines() if line.strip()]
    exit_code = process.returncode
    if exit_code == INCONCLUSIVE:
        raise _Inconclusive(f"scenario inconclusive\n{report}")
    assert exit_code == 0, f"scenario failed (exit {exit_code})\n{report}"
    assert len(lines) == 1, f"expected exactly one JSON line\n{report}"
    result: dict[str, Any] = json.loads(lines[0])
    assert result["ok"] is True, report
    assert (result["scenario"], result["mode"]) == (scenario, mode), report
    expected_transport = "polling" if mode == "polling" else "websocket"
    assert result["transport"] == expected_transport, report
    assert result["upgraded"] is (mode == "upgrade"), report
    return result


def assert_observed(result: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    observed = result["observed"]
    for key, value in expected.items():
        assert observed.get(key) == value, f"observed[{key!r}]: {observed.get(key)!r} != {value!r}"
