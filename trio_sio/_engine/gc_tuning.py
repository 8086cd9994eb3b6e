"""CPython's cyclic garbage collector, set for a server that holds many connections.

Every task parked on a connection holds a fresh chain of coroutine objects after each wake-up.
With CPython's default young-generation threshold (700 allocations) those chains are usually
still alive when a young collection runs, so they are promoted, the old generation grows by a
quarter quickly, and a full collection (a pass over every object of every connection) follows.
A young threshold of 50,000 lets them die first. Those alive at a young collection move to the
middle generation; examining that one every 100 young collections rather than every 10 lets
most of them die there too, instead of reaching the old generation. The measurements are in
the deployment guide ("Garbage collection and many connections").
"""

from __future__ import annotations

import gc
import logging
import sys

__all__ = ["MIDDLE_THRESHOLD", "YOUNG_THRESHOLD", "tune_gc"]

logger = logging.getLogger("trio_sio.engine")

#: The young-generation threshold a server sets (allocations between young collections).
YOUNG_THRESHOLD = 50_000
#: The middle generation's threshold a server sets (young collections between its own).
MIDDLE_THRESHOLD = 100

#: CPython's own thresholds (3.11-3.12, then 3.13). A program that set others keeps them.
_CPYTHON_DEFAULTS = {(700, 10, 10), (2000, 10, 10)}


def tune_gc() -> bool:
    """Raise the young and middle generations' thresholds, unless the program chose thresholds
    of its own (or the interpreter's collector works differently). Returns whether it changed
    anything."""
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 14):
        return False  # 3.14's incremental collector does not have this problem
    current = gc.get_threshold()
    if current not in _CPYTHON_DEFAULTS:
        return False
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, current[2])
    logger.debug("gc thresholds %s -> %s", current, gc.get_threshold())
    return True
