"""The fixture app (CONTRACT.md) driven by unmodified official clients, one subprocess each.

- socket.io-client 4.8.x and engine.io-client 6.6.x (Node, tests/js/*.mjs),
- python-socketio / python-engineio asyncio clients (tests/clients/*.py),

each over ``polling``, ``websocket`` and ``upgrade`` (polling first, then an upgrade that the
script requires to happen). Every script runs one scenario, checks the behaviour itself, and
prints one JSON line that is checked again here. ``conformance_url`` (tests/conftest.py) serves
tests/conformance_app.py in-process on both hosts and as a two-worker cluster per Redis adapter,
or points at ``TRIO_SIO_EXTERNAL_URL``.

Run a scenario by hand against any server:
``node tests/js/sio_scenarios.mjs http://127.0.0.1:PORT upgrade rooms``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from support.clients import (
    CLIENTS_DIR,
    JS_DIR,
    MODES,
    NODE,
    assert_observed,
    requires_node,
    run_scenario,
)

# Scenario names as the scripts define them (an unknown name makes a script exit 64).
SIO_JS_SCENARIOS = [
    "auth",
    "echo",
    "ack",
    "binary",
    "namespaces",
    "forbidden",
    "unknown",
    "rooms",
    "request-ack",
    "request-ack-timeout",
    "disconnect-me",
    "ordering",
    "large",
    "reconnect",
    "heartbeat",
    "connect-timeout",
    "fanout",
]
EIO_JS_SCENARIOS = ["echo-text", "echo-binary", "force-base64", "many", "large", "heartbeat"]
SIO_PY_SCENARIOS = [
    "auth",
    "echo",
    "ack",
    "binary",
    "namespaces",
    "forbidden",
    "unknown",
    "rooms",
    "request-ack",
    "disconnect-me",
    "ordering",
    "large",
    "reconnect",
    "heartbeat",
]
EIO_PY_SCENARIOS = ["echo-text", "echo-binary", "many", "large"]

#: The Engine.IO echo involves no adapter: a cluster of them is two unrelated servers (whose
#: polling sessions stay on their worker: tests/test_workers.py checks that).
echo_only = pytest.mark.not_on_cluster("the Engine.IO echo uses no adapter")

#: Key results the scripts report in "observed", checked here as well so that a regression
#: reads plainly in pytest's output.
SIO_JS_OBSERVED: dict[str, dict[str, Any]] = {
    "forbidden": {"message": "forbidden", "data": {"reason": "nope"}},
    "unknown": {"message": "Invalid namespace"},
    "disconnect-me": {"reason": "io server disconnect"},
    "ordering": {"acks": 100, "message_backs": 100},
    "large": {"length": 500_000},
    "connect-timeout": {"reason": "transport close"},
}
#: The fan-out scenario's receivers by mode: 10 clients over long-polling only, 30 otherwise
#: (tests/js/sio_scenarios.mjs says why).
FANOUT_RECEIVERS = {"polling": 9, "websocket": 29, "upgrade": 29}
SIO_PY_OBSERVED: dict[str, dict[str, Any]] = {
    "forbidden": {"error": {"message": "forbidden", "data": {"reason": "nope"}}},
    "unknown": {"error": {"message": "Invalid namespace"}},
    # python-socketio names the reason differently from the JS client.
    "disconnect-me": {"reason": "server disconnect"},
    "ordering": {"acks": 100, "message_backs": 100},
    "large": {"length": 500_000},
}


SIO_JS = JS_DIR / "sio_scenarios.mjs"
EIO_JS = JS_DIR / "eio_scenarios.mjs"
SIO_PY = CLIENTS_DIR / "py_sio_scenarios.py"
EIO_PY = CLIENTS_DIR / "py_eio_scenarios.py"


async def run_client(
    script: Path, conformance_url: str, mode: str, scenario: str, client: str
) -> dict[str, Any]:
    """Run ``scenario`` of ``script`` (Node's for ``.mjs``, this Python's for ``.py``) in
    ``mode``; its result, whose client must be a version of ``client``."""
    interpreter = NODE if script.suffix == ".mjs" else sys.executable
    assert interpreter is not None
    result = await run_scenario([interpreter, str(script)], conformance_url, mode, scenario)
    assert result["client"].startswith(client)
    return result


@pytest.mark.parametrize("scenario", SIO_JS_SCENARIOS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.node
@requires_node
async def test_socketio_js_client(conformance_url: str, mode: str, scenario: str) -> None:
    result = await run_client(SIO_JS, conformance_url, mode, scenario, "socket.io-client@4.")
    assert_observed(result, SIO_JS_OBSERVED.get(scenario, {}))
    if scenario == "fanout":
        assert_observed(result, {"receivers": FANOUT_RECEIVERS[mode]})


@echo_only
@pytest.mark.parametrize("scenario", EIO_JS_SCENARIOS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.node
@requires_node
async def test_engineio_js_client(conformance_url: str, mode: str, scenario: str) -> None:
    await run_client(EIO_JS, conformance_url, mode, scenario, "engine.io-client@6.")


@echo_only
@pytest.mark.node
@requires_node
async def test_engineio_js_client_oversized_post(conformance_url: str) -> None:
    # engine.io answers 413 with an empty body; engine.io-client then closes with
    # "transport error" (issue 14, A5). Its own suite checks the status and the body.
    assert NODE is not None
    result = await run_scenario([NODE, str(EIO_JS)], conformance_url, "polling", "too-large")
    assert result["observed"] == {"reason": "transport error", "status": 413, "body": ""}


@pytest.mark.parametrize("scenario", SIO_PY_SCENARIOS)
@pytest.mark.parametrize("mode", MODES)
async def test_socketio_python_client(conformance_url: str, mode: str, scenario: str) -> None:
    result = await run_client(SIO_PY, conformance_url, mode, scenario, "python-socketio@5.")
    assert_observed(result, SIO_PY_OBSERVED.get(scenario, {}))


@echo_only
@pytest.mark.parametrize("scenario", EIO_PY_SCENARIOS)
@pytest.mark.parametrize("mode", MODES)
async def test_engineio_python_client(conformance_url: str, mode: str, scenario: str) -> None:
    await run_client(EIO_PY, conformance_url, mode, scenario, "python-engineio@4.")
