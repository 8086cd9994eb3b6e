"""trio_sio.Client as the load generator: the echo scenario of ``js/loadgen.mjs`` (closed-loop
echo with acknowledgements, each WebSocket client keeping one ``echo`` outstanding), so that
the Trio client's rate can be set beside the Node generator's against the same server
(issue 19)::

    node benchmarks/js/node_server.mjs 3000 &        # prints "listening 3000"
    python benchmarks/client_loadgen.py http://127.0.0.1:3000 --clients 100 --duration 10
    node benchmarks/js/loadgen.mjs \\
        '{"url": "http://127.0.0.1:3000", "scenario": "echo", "clients": 100,
          "warmup": 2, "duration": 10}'

Any server of the benchmark fixtures works (``echo(*args)`` acknowledges with its arguments).
Prints exactly one JSON line on stdout: ``{"ok": true, ...}`` with the keys of loadgen.mjs's
echo result that a client can measure (``acks``, ``elapsed``, ``acksPerSec``, ``p50Ms``,
``p99Ms``, ``loadgenCpuShare``: this process's CPU seconds per second of the window, where 1.0
is one core, so near 1.0 the generator is the bottleneck), or ``{"ok": false, "error": ...}``
with exit status 1. Everything is bounded: the whole run by ``--timeout``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import trio

import trio_sio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

#: Latency samples kept (as loadgen.mjs); acks beyond them are counted, not sampled.
MAX_SAMPLES = 4_000_000
#: Clients connecting at once.
CONNECT_CONCURRENCY = 100


def percentile(ordered: Sequence[float], p: float) -> float:
    """The ``p``-th percentile of sorted samples, as loadgen.mjs computes it."""
    if not ordered:
        return math.nan
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


async def echo(
    url: str, *, clients: int, warmup: float, duration: float, payload_size: int
) -> dict[str, Any]:
    """Connect ``clients`` WebSocket clients, echo in a closed loop for ``warmup`` seconds,
    then measure for ``duration`` seconds."""
    payload = "x" * payload_size
    latencies: list[float] = []
    acks = 0
    measuring = False
    running = True

    async def loop(client: trio_sio.Client) -> None:
        nonlocal acks
        while running:
            sent = time.perf_counter()
            reply = await client.call("echo", payload)
            if measuring:
                acks += 1
                if len(latencies) < MAX_SAMPLES:
                    latencies.append((time.perf_counter() - sent) * 1000)
            if reply != payload:
                raise ValueError(f"bad ack {reply!r}")

    pool = [trio_sio.Client(reconnection=False) for _ in range(clients)]
    async with trio.open_nursery() as connections:
        limiter = trio.CapacityLimiter(CONNECT_CONCURRENCY)

        async def connect(client: trio_sio.Client) -> None:
            async with limiter:
                await connections.start(partial(client.run, url, transports=("websocket",)))

        async with trio.open_nursery() as connecting:
            for client in pool:
                connecting.start_soon(connect, client)
        async with trio.open_nursery() as loops:
            for client in pool:
                loops.start_soon(loop, client)
            await trio.sleep(warmup)
            cpu_at_start = time.process_time()
            started = time.perf_counter()
            measuring = True
            await trio.sleep(duration)
            measuring = False
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_at_start
            running = False  # each loop ends after its call under way
        connections.cancel_scope.cancel()  # every client disconnects
    latencies.sort()
    return {
        "generator": f"trio_sio.Client {trio_sio.__version__}",
        "clients": clients,
        "acks": acks,
        "elapsed": elapsed,
        "acksPerSec": acks / elapsed,
        "p50Ms": percentile(latencies, 50),
        "p99Ms": percentile(latencies, 99),
        "loadgenCpuShare": cpu / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the server, http://host:port")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--payload-size", type=int, default=16, help="characters echoed")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds for the whole run (default: +60)"
    )
    args = parser.parse_args(argv)
    if args.clients < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--clients >= 1, --duration > 0, --warmup >= 0")
    timeout = args.timeout or args.warmup + args.duration + 60
    run = partial(
        echo,
        args.url,
        clients=args.clients,
        warmup=args.warmup,
        duration=args.duration,
        payload_size=args.payload_size,
    )

    async def bounded() -> dict[str, Any]:
        with trio.fail_after(timeout):
            return await run()

    try:
        result: dict[str, Any] = {"ok": True, **trio.run(bounded)}
    except trio.TooSlowError:
        result = {"ok": False, "error": f"overall timeout of {timeout:g}s"}
    except Exception as exc:  # reported, as loadgen.mjs reports its failures
        error: BaseException = exc
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]  # the first failure (clients often fail alike)
        result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
