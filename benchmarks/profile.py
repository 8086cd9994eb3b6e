"""Profile a server under one benchmark scenario with py-spy, and print its top frames.

    python benchmarks/profile.py echo_100            # trio_sio, 10 s window
    python benchmarks/profile.py bcast_1000 --server floor --seconds 15

The server starts fresh (pinned like in ``run.py``), the load generator connects its clients,
and py-spy (``pip install py-spy``) samples the server only during the load generator's
measurement window. The speedscope profile is written to ``--out`` (open it at
speedscope.app); the top frames by own time and by inclusive time are printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench

PY_SPY_START_TIMEOUT = 10.0

#: Frames every sample of a server has in common (process start and the event loop).
ROOTS = (
    "<module> (",
    "_run_module_as_main (",
    "_run_code (",
    "main (hypercorn",
    "run (hypercorn",
    "trio_worker (",
    "run (trio",
    "unrolled_run (",
    "run (runpy",
    "run_module (",
    "_run_module_code (",
)

#: Runs ``python -m MODULE ARGS`` with the cyclic garbage collector off (``--no-gc``).
NO_GC = (
    "import gc, runpy, sys; gc.disable(); module = sys.argv.pop(1); "
    "runpy.run_module(module, run_name='__main__', alter_sys=True)"
)


def top_frames(speedscope: Path, count: int) -> str:
    """The functions with the most samples: own (leaf) time and inclusive time."""
    data: dict[str, Any] = json.loads(speedscope.read_text())
    frames = data["shared"]["frames"]

    def function(index: int) -> str:
        frame = frames[index]
        file = str(frame.get("file", ""))
        for marker in ("site-packages/", str(bench.ROOT) + "/"):
            if marker in file:
                file = file.split(marker, 1)[1]
        file = re.sub(r".*/lib/python3\.\d+/", "", file)
        return f"{frame['name']} ({file})"

    names = [function(i) for i in range(len(frames))]
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0.0
    for profile in data["profiles"]:
        weights = profile.get("weights") or [1] * len(profile["samples"])
        for stack, weight in zip(profile["samples"], weights, strict=True):
            if not stack:
                continue
            total += weight
            own[names[stack[-1]]] += weight
            for name in {names[i] for i in stack}:
                inclusive[name] += weight
    lines = ["own time (the function itself, and C code it calls):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(count)]
    lines += ["", "inclusive time (below the event loop):"]
    shown = [
        (name, n)
        for name, n in inclusive.most_common(count + len(ROOTS))
        if not any(name.startswith(root) for root in ROOTS)
    ]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in shown[:count]]
    return "\n".join(lines)


def _without_gc(argv: Callable[[int], list[str]]) -> Callable[[int], list[str]]:
    def wrapped(port: int) -> list[str]:
        command = argv(port)
        if command[:2] != [sys.executable, "-m"]:
            raise SystemExit("--no-gc works for the Python servers only")
        return [sys.executable, "-c", NO_GC, *command[2:]]

    return wrapped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("scenario", help="a scenario key of run.py, such as echo_100")
    # One-node servers: the load generator's configuration below names one URL and one pid.
    one_node = [key for key, spec in bench.SERVERS.items() if spec.nodes == 1]
    parser.add_argument("--server", default="trio_sio", choices=one_node)
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25, help="frames to print")
    parser.add_argument("--out", type=Path, default=None, help="speedscope JSON output")
    parser.add_argument(
        "--nonblocking",
        action="store_true",
        help="py-spy --nonblocking: no pauses, but often truncated stacks",
    )
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="run a Python server with the cyclic GC disabled (its cost apart from collections)",
    )
    args = parser.parse_args()

    beside = Path(sys.executable).parent / "py-spy"  # in the same virtualenv
    py_spy = str(beside) if beside.is_file() else shutil.which("py-spy")
    if py_spy is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    scenario = next(
        (s for s in bench.scenarios(False, conn_time_limit=60) if s.key == args.scenario), None
    )
    if scenario is None:
        parser.error(f"unknown scenario {args.scenario}")
    config = dict(scenario.config, duration=args.seconds, announce=True)
    config["timeout"] = float(config.get("timeout", 120)) + args.seconds
    if scenario.config["scenario"] == "bcast":
        config["maxRepeats"] = 10_000
    bench.raise_open_file_limit(int(config["clients"]) + 1024)
    pinning = bench.choose_pinning(True)
    out = args.out or Path(f"profile-{args.server}-{args.scenario}.speedscope.json")

    with tempfile.TemporaryDirectory(prefix="bench-profile-") as logs:
        spec = bench.SERVERS[args.server]
        if args.no_gc:
            # Its Redis, pinning and environment as measured, only the command changed.
            spec = dataclasses.replace(spec, argv=_without_gc(spec.argv))
        with bench.running_server(spec, pinning, Path(logs)) as server:
            config.update(
                url=server.url,
                serverPid=server.process.pid,
                clkTck=os.sysconf("SC_CLK_TCK"),
            )
            argv = [
                *pinning.prefix(pinning.loadgen),
                "node",
                str(bench.JS / "loadgen.mjs"),
                json.dumps(config),
            ]
            loadgen = subprocess.Popen(
                argv, cwd=bench.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            spy: subprocess.Popen[bytes] | None = None
            try:
                assert loadgen.stderr is not None
                for line in loadgen.stderr:  # bounded: the load generator has a timeout
                    if line.strip() == "window-start" and spy is None:
                        spy = subprocess.Popen(
                            [
                                py_spy,
                                "record",
                                "--pid",
                                str(server.process.pid),
                                "--rate",
                                str(args.rate),
                                *(["--nonblocking"] if args.nonblocking else []),
                                "--format",
                                "speedscope",
                                "--output",
                                str(out),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    elif line.strip() == "window-end" and spy is not None:
                        spy.send_signal(signal.SIGINT)
                        spy.wait(PY_SPY_START_TIMEOUT)
                assert loadgen.stdout is not None
                result = loadgen.stdout.read()
                loadgen.wait(30)
            finally:
                if loadgen.poll() is None:
                    loadgen.kill()
                    loadgen.wait()
                if spy is not None and spy.poll() is None:
                    spy.kill()
                    spy.wait()
    print(f"load generator: {result.strip()}")
    deadline = time.monotonic() + PY_SPY_START_TIMEOUT
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not out.exists():
        print("py-spy wrote no profile", file=sys.stderr)
        return 1
    print(f"profile: {out}\n")
    print(top_frames(out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
