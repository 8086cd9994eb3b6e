"""The server's garbage-collector setting (docs: "Garbage collection and many connections").

Thresholds are process-wide, so each case runs in a fresh interpreter that starts a server
and reports what it finds.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

SCRIPT = """
import gc, sys, trio, trio_sio
{before}
async def main():
    sio = trio_sio.Server({options})
    async with trio.open_nursery() as nursery:
        await nursery.start(sio.run)
        print(gc.get_threshold())
        nursery.cancel_scope.cancel()
trio.run(main)
"""


def threshold_while_serving(before: str = "", options: str = "") -> tuple[int, int, int]:
    script = SCRIPT.format(before=before, options=options)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    value: tuple[int, int, int] = ast.literal_eval(result.stdout.strip())
    return value


@pytest.mark.skipif(
    sys.implementation.name != "cpython" or sys.version_info >= (3, 14),
    reason="only CPython's generational collector before 3.14 is tuned",
)
def test_a_running_server_raises_the_young_threshold_from_cpythons_default() -> None:
    default = threshold_while_serving(before="assert gc.get_threshold()[0] in (700, 2000)")
    assert default == (50_000, 100, 10)


def test_thresholds_the_program_chose_are_kept() -> None:
    assert threshold_while_serving(before="gc.set_threshold(1234, 5, 6)") == (1234, 5, 6)


def test_tune_gc_false_leaves_the_collector_alone() -> None:
    before = "default = gc.get_threshold()"
    assert threshold_while_serving(before, options="tune_gc=False")[0] in (700, 2000)
