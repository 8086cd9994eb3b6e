"""One connection must not monopolise the server's event loop (issue 14, A6).

Each case floods the server from one connection, in a process of its own
(``support/flood.py``), while two bystander WebSocket sessions with a short heartbeat (300 ms
ping interval, 200 ms timeout) echo messages continuously, and a task that sleeps 1 ms at a
time records how late it wakes (the stalls of the loop). The bystanders are measured first
without the flood, then during it. Every case runs on both hosts; on the native host the
WebSocket floods also run with the control frame rate limit off, so that what keeps the
bystanders going there is the per-turn budget alone. hypercorn does not keep them going through
floods of small WebSocket frames (see ``HYPERCORN_WEBSOCKET``): those cases are expected
failures, kept for their figures.

Each case prints (and records as properties) its figures: the worst stall, the bystanders'
echo count and p99 latency before and during the flood, and what the flood got through.

The bounds hold what the server's loop did, not what the machine did to it. On two shared
cores the operating system may leave this process off the CPU for 100 ms or more (the flood
process, other test workers and browsers compete for the same cores), and a wall-clock stall
of that kind says nothing about the loop. So each interval is also measured in the CPU time of
this process's main thread, where the loop, the server and the bystanders all run: a task that
runs without yielding spends its whole stall on the CPU and is caught, while time spent
descheduled is not counted. Both are printed.

The heap is the other thing a test process does not share with a server. A full garbage
collection walks every object of the process, and a pytest worker holds those of every test it
ran before: hundreds of milliseconds of CPU on a busy worker, wherever the collection falls (a
CI run caught an 83 ms stall during a flood on hypercorn, where the worst seen alone is 3 ms).
So each case runs with the heap it inherited frozen (``gc.freeze``): collections still walk
everything the case makes, the server's and the flood's, as in a server process. The longest
collection during the flood is printed with the figures.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from wsproto.utilities import LocalProtocolError

import trio_sio
from support.engineio import EchoHandler, EngineFixture
from support.websocket import Closed
from trio_sio import NativeConfig
from trio_sio.engineio import EngineOptions, EngineServer

FLOOD_SCRIPT = Path(__file__).parent / "support" / "flood.py"
PING_INTERVAL = 0.3
PING_TIMEOUT = 0.2
BASELINE_SECONDS = 0.7
FLOOD_SECONDS = 1.5
#: Each bystander waits this long between echoes, so that the two of them leave the loop
#: mostly idle before the flood.
ECHO_PAUSE = 0.005
#: The bound issue 14 sets on the loop's worst stall during a flood, in the loop's CPU time
#: (see above).
LATENCY_BOUND = 0.050
#: The bound on the bystanders' p99 echo latency during a flood, in the loop's CPU time:
#: tighter than issue 14's 50 ms, because CPU time does not carry the machine's noise.
#: Measured on two cores with three CPU hogs running: under 1 ms on the native host (where
#: the wall clock read up to 10 ms); 27-65 ms with the reader's frame budget taken away.
ECHO_P99_BOUND = 0.010
#: The shortest window the bystanders are measured in from the flood's start. The control
#: frame rate limit may end a flood within milliseconds (close 1008), too short a time to hold
#: an echo (each bystander pauses ECHO_PAUSE between them): the window then covers the flood's
#: aftermath too, which must not stall the others either.
MIN_FLOOD_WINDOW = 0.1

HTTP_FLOODS = ["pipelined-get"]
WEBSOCKET_FLOODS = ["ping", "pong", "continuation"]
#: hypercorn 0.18 hands each read (64 KiB) to wsproto and handles all its events before it
#: reads again, awaiting nothing for a pong or a fragment: at about 10 µs a frame, a read of
#: small frames holds the loop for some 100 ms (measured: 60-150 ms stalls, p99 60-230 ms).
#: Pings fare better (each pong's write lets others run), not always well enough.
HYPERCORN_WEBSOCKET = pytest.mark.xfail(
    reason="hypercorn/wsproto handle a whole read of control frames or fragments at once",
    strict=False,
)
CASES = [
    *(pytest.param("native", kind, id=f"native-{kind}") for kind in HTTP_FLOODS),
    *(pytest.param("hypercorn", kind, id=f"hypercorn-{kind}") for kind in HTTP_FLOODS),
    *(pytest.param("native", kind, id=f"native-{kind}") for kind in WEBSOCKET_FLOODS),
    *(
        pytest.param("native-unlimited", kind, id=f"native-unlimited-{kind}")
        for kind in WEBSOCKET_FLOODS
    ),
    *(
        pytest.param("hypercorn", kind, id=f"hypercorn-{kind}", marks=HYPERCORN_WEBSOCKET)
        for kind in WEBSOCKET_FLOODS
    ),
]


@asynccontextmanager
async def serve_target(host: str) -> AsyncIterator[EngineFixture]:
    """An Engine.IO echo server at ``/engine.io/`` with a 300/200 ms heartbeat, on ``host``:
    ``native``, ``native-unlimited`` (no control frame rate limit) or ``hypercorn``."""
    handler = EchoHandler()
    options = EngineOptions(
        ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT, cors_allowed_origins=None
    )
    engine = EngineServer(handler, options)
    serve: Callable[..., Any]
    if host == "hypercorn":
        app = trio_sio.ASGIApp(engine, path="engine.io")
        serve = partial(trio_sio.serve_hypercorn, engine, "127.0.0.1", 0, app=app)
    else:
        config = NativeConfig(websocket_control_frame_rate=None) if host != "native" else None
        serve = partial(
            trio_sio.serve_native, engine, "127.0.0.1", 0, path="engine.io", config=config
        )
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(serve)
        url = next(url for url in urls if url.startswith("http://"))
        yield EngineFixture(url, engine, handler)
        nursery.cancel_scope.cancel()


@dataclass
class Bystander:
    """A WebSocket session that echoes one message at a time and times each round trip."""

    target: EngineFixture
    #: (sent at, round trip, the main thread's CPU time during it)
    echoes: list[tuple[float, float, float]] = field(default_factory=list)
    in_flight: tuple[float, float] | None = None  # the unanswered message's send times
    dropped: str | None = None
    sid: str = ""

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        async with self.target.websocket() as ws:
            self.sid = await self.target.open_websocket_session(ws)
            task_status.started()
            try:
                for n in itertools.count():
                    message = f"4{n}"
                    self.in_flight = (time.monotonic(), time.thread_time())
                    await ws.send(message)
                    while (reply := await ws.receive()) != message:
                        assert reply == "2", f"unexpected {reply!r}"
                        await ws.send("3")
                    self.echoes.append(elapsed_since(*self.in_flight))
                    self.in_flight = None
                    await trio.sleep(ECHO_PAUSE)
            except (Closed, trio.BrokenResourceError, LocalProtocolError) as exc:
                # LocalProtocolError: the server's close frame came in while sending.
                self.dropped = repr(exc)

    def finish(self) -> None:
        """Count a message still unanswered as answered now (a lower bound of its time)."""
        if self.in_flight is not None:
            self.echoes.append(elapsed_since(*self.in_flight))
            self.in_flight = None


@dataclass
class LagMonitor:
    """Sleeps 1 ms at a time and records how late it wakes."""

    #: (due at, how late it woke, the main thread's CPU time while it slept)
    lags: list[tuple[float, float, float]] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            due, cpu_before = time.monotonic() + 0.001, time.thread_time()
            await trio.sleep(0.001)
            self.lags.append(
                (due, time.monotonic() - due, max(0.0, time.thread_time() - cpu_before - 0.001))
            )


@dataclass
class CollectionRecorder:
    """Records the garbage collections of this process while installed."""

    #: (started at, wall duration, the main thread's CPU time) of each collection
    collections: list[tuple[float, float, float]] = field(default_factory=list)
    _started: tuple[float, float] = (0.0, 0.0)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.monotonic(), time.thread_time()
        else:
            self.collections.append(elapsed_since(*self._started))


@pytest.fixture
def collections() -> Iterator[CollectionRecorder]:
    """The case's collections, with the heap inherited from earlier tests frozen (see the
    module's docstring)."""
    gc.collect()
    gc.freeze()
    recorder = CollectionRecorder()
    gc.callbacks.append(recorder)
    try:
        yield recorder
    finally:
        gc.callbacks.remove(recorder)
        gc.unfreeze()


def elapsed_since(wall: float, cpu: float) -> tuple[float, float, float]:
    """(``wall``, the wall time since, the main thread's CPU time since ``cpu``)."""
    return wall, time.monotonic() - wall, time.thread_time() - cpu


async def flood(kind: str, url: str, seconds: float) -> dict[str, Any]:
    """Run ``support/flood.py`` against ``url``; its figures once it is finished."""
    command = [sys.executable, str(FLOOD_SCRIPT), kind, url, str(seconds)]
    output = b""
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        async for chunk in process.stdout:
            output += chunk
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    assert process.returncode == 0, output
    figures: dict[str, Any] = json.loads(output.splitlines()[-1])
    return figures


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)] if ordered else math.inf


def overlapping(
    samples: list[tuple[float, float, float]], start: float, end: float, *, cpu: bool = False
) -> list[float]:
    """The durations of the samples (start, wall duration, CPU duration) that overlap
    ``start`` to ``end``: the CPU durations if ``cpu``, else the wall ones."""
    return [
        cpu_time if cpu else wall
        for at, wall, cpu_time in samples
        if at <= end and at + wall >= start
    ]


@pytest.mark.parametrize(("host", "kind"), CASES)
async def test_one_flooding_connection_does_not_starve_the_others(
    host: str,
    kind: str,
    record_property: Callable[[str, object], None],
    collections: CollectionRecorder,
) -> None:
    async with serve_target(host) as target, trio.open_nursery() as nursery:
        monitor = LagMonitor()
        nursery.start_soon(monitor.run)
        bystanders = [Bystander(target) for _ in range(2)]
        for bystander in bystanders:
            await nursery.start(bystander.run)
        baseline_start = time.monotonic()
        await trio.sleep(BASELINE_SECONDS)
        with trio.fail_after(FLOOD_SECONDS + 20):
            report = await flood(kind, target.url, FLOOD_SECONDS)
        # The flooding process's clock is ours (time.monotonic is system-wide), and a stalled
        # loop would read its output late.
        flood_start, flood_end = report.pop("started"), report.pop("ended")
        flood_end = max(flood_end, flood_start + MIN_FLOOD_WINDOW)
        # For the echoes under way to come back.
        await trio.sleep(max(0.2, flood_end + 0.1 - time.monotonic()))
        for bystander in bystanders:
            bystander.finish()
        # Before the bystanders leave, which closes their sessions.
        dropped = [b.dropped or target.handler.closed.get(b.sid) for b in bystanders]
        nursery.cancel_scope.cancel()

    echoes = [echo for bystander in bystanders for echo in bystander.echoes]
    before, during = (
        overlapping(echoes, baseline_start, flood_start, cpu=True),
        overlapping(echoes, flood_start, flood_end, cpu=True),
    )
    stall_before = max(overlapping(monitor.lags, baseline_start, flood_start, cpu=True))
    stall_during = max(
        overlapping(monitor.lags, flood_start, flood_end, cpu=True), default=math.inf
    )
    wall_stall_during = max(overlapping(monitor.lags, flood_start, flood_end), default=math.inf)
    figures = {
        "worst_stall_cpu_ms": round(stall_during * 1000, 1),
        "worst_stall_wall_ms": round(wall_stall_during * 1000, 1),
        "worst_stall_before_cpu_ms": round(stall_before * 1000, 1),
        "worst_collection_cpu_ms": round(
            max(overlapping(collections.collections, flood_start, flood_end, cpu=True), default=0)
            * 1000,
            1,
        ),
        "echo_p99_cpu_ms": round(p99(during) * 1000, 1),
        "echo_p99_wall_ms": round(p99(overlapping(echoes, flood_start, flood_end)) * 1000, 1),
        "echo_p99_before_cpu_ms": round(p99(before) * 1000, 1),
        "echoes": len(during),
        "echoes_before": len(before),
        "flood": report,
    }
    for name, value in figures.items():
        record_property(name, value)
    print(f"\n{host} {kind}: {json.dumps(figures)}")

    assert dropped == [None, None]
    assert during, "no echo during the flood"
    assert p99(during) < ECHO_P99_BOUND
    # A worst case is more exposed to the machine than a percentile: the bound allows twice
    # the worst stall seen without the flood.
    assert stall_during < max(LATENCY_BOUND, 2 * stall_before)
