"""Run the test suite while every CPU is busy with something else.

    python scripts/under_load.py                  # the whole suite (pytest's defaults)
    python scripts/under_load.py tests/test_delivery.py -x

CI runs on shared cores: a test whose deadline comes from an idle machine fails there. This
starts one busy process per CPU (a tight loop at normal priority, as another job on the
machine would be), runs ``python -m pytest`` with the given arguments, stops the hogs, and
exits with pytest's status.
"""

from __future__ import annotations

import os
import subprocess
import sys

HOG = "while True: pass"


def main(argv: list[str]) -> int:
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(os.cpu_count() or 1)]
    try:
        return subprocess.call([sys.executable, "-m", "pytest", *argv])
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
