"""What a test server holds: open file descriptors and Trio tasks, counted in this process."""

from __future__ import annotations

import os
from collections import Counter

import trio


def open_fds() -> int:
    """This process's open file descriptors."""
    return len(os.listdir("/proc/self/fd"))


def trio_tasks() -> int:
    """Every task of this Trio run, found from the root task's nurseries."""
    return sum(trio_task_names().values())


def trio_task_names() -> Counter[str]:
    """How many tasks of this Trio run have each name."""
    names: Counter[str] = Counter()
    root = trio.lowlevel.current_root_task()
    assert root is not None
    pending = [root]
    while pending:
        task = pending.pop()
        names[task.name] += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return names
