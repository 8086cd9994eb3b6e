"""Shared plumbing for the python-socketio / python-engineio scenario scripts.

The scripts run as subprocesses (``python tests/clients/py_sio_scenarios.py URL MODE SCENARIO``)
under asyncio, because those clients are asyncio-only, while the test suite runs under Trio.

Output contract (the same as tests/js/lib/harness.mjs): exactly one JSON line on stdout with
``"ok": true`` and exit code 0 on success; ``"ok": false`` plus ``"error"`` (also written to
stderr) and exit code 1 on a failed check or client error, 2 on the overall timeout
(``SCENARIO_TIMEOUT_MS``, default 10 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

TRANSPORT_MODES: dict[str, list[str]] = {
    "polling": ["polling"],
    "websocket": ["websocket"],
    "upgrade": ["polling", "websocket"],
}

Observed = dict[str, Any]


class ScenarioFailure(Exception):
    """A check failed: the server did not behave as CONTRACT.md says."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise ScenarioFailure(message)


def short(value: object, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def check_equal(actual: object, expected: object, what: str) -> None:
    """Equality that also insists on the same types (bytes stay bytes, tuples are lists)."""
    if not _same(actual, expected):
        raise ScenarioFailure(f"{what}: expected {short(expected)}, got {short(actual)}")


def _same(actual: object, expected: object) -> bool:
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(actual, (list, tuple))
            and len(actual) == len(expected)
            and all(_same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(_same(actual[k], v) for k, v in expected.items())
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, (bytes, bytearray)):
        return isinstance(actual, (bytes, bytearray)) and bytes(actual) == bytes(expected)
    if isinstance(expected, (int, float)):
        return isinstance(actual, (int, float)) and actual == expected
    return type(actual) is type(expected) and actual == expected


@dataclass
class Context:
    """What a scenario gets: where to connect, how, and a place to register clean-ups."""

    base_url: str
    mode: str
    transports: list[str]
    current_step: str = "start"
    cleanups: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    def step(self, label: str) -> None:
        self.current_step = label

    @property
    def expected_transport(self) -> str:
        return "polling" if self.mode == "polling" else "websocket"


Scenario = Callable[[Context], Awaitable[Observed]]


class EventLog:
    """Records events per (namespace, name) in arrival order, awaitable one by one."""

    def __init__(self) -> None:
        self._queues: defaultdict[tuple[str, str], asyncio.Queue[tuple[Any, ...]]] = defaultdict(
            asyncio.Queue
        )
        self.seen: defaultdict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)

    def record(self, namespace: str, event: str, args: tuple[Any, ...]) -> None:
        self.seen[(namespace, event)].append(args)
        self._queues[(namespace, event)].put_nowait(args)

    async def next(self, event: str, namespace: str = "/") -> tuple[Any, ...]:
        return await self._queues[(namespace, event)].get()

    def count(self, event: str, namespace: str = "/") -> int:
        return len(self.seen[(namespace, event)])


def package_version(name: str) -> str:
    return version(name)


def run_main(client: str, scenarios: dict[str, Scenario]) -> None:
    """Parse argv, run one scenario under the overall timeout, print the JSON line, exit."""
    args = sys.argv[1:]
    if len(args) != 3 or args[1] not in TRANSPORT_MODES or args[2] not in scenarios:
        sys.stderr.write(
            f"usage: python {sys.argv[0]} <base_url> <polling|websocket|upgrade> <scenario>\n"
            f"scenarios: {', '.join(scenarios)}\n"
        )
        sys.exit(64)
    base_url, mode, scenario = args
    timeout = float(os.environ.get("SCENARIO_TIMEOUT_MS", "10000")) / 1000
    ctx = Context(base_url=base_url.rstrip("/"), mode=mode, transports=TRANSPORT_MODES[mode])
    result: dict[str, Any] = {
        "client": client,
        "scenario": scenario,
        "mode": mode,
        "base_url": base_url,
    }
    started = time.monotonic()
    code, extra = asyncio.run(_run(scenarios[scenario], ctx, timeout))
    line = json.dumps({**result, **extra, "elapsed_ms": round((time.monotonic() - started) * 1000)})
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if code:
        sys.stderr.write(f"{scenario} [{mode}] FAILED: {extra['error']}\n")
    sys.exit(code)


async def _run(scenario: Scenario, ctx: Context, timeout: float) -> tuple[int, dict[str, Any]]:
    code: int
    extra: dict[str, Any]
    try:
        observed = await asyncio.wait_for(scenario(ctx), timeout)
    except asyncio.TimeoutError:
        code = 2
        extra = {"ok": False, "error": f"timeout after {timeout:g} s in step {ctx.current_step!r}"}
    except ScenarioFailure as exc:
        code, extra = 1, {"ok": False, "error": f"step {ctx.current_step!r}: {exc}"}
    except Exception as exc:
        detail = "".join(traceback.format_exception(exc)).strip()
        code, extra = 1, {"ok": False, "error": f"step {ctx.current_step!r}: unexpected {detail}"}
    else:
        code = 0
        extra = {"ok": True, "transport": ctx.expected_transport, "observed": observed}
        extra["upgraded"] = ctx.mode == "upgrade"
    # Closing is best effort: the verdict is already made.
    for cleanup in reversed(ctx.cleanups):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(cleanup(), 2)
    return code, extra
