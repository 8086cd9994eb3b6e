"""What a test server holds: open file descriptors and Trio tasks, counted in this process."""

from __future__ import annotations

import os

import trio


def open_fds() -> int:
    """This process's open file descriptors."""
    return len(os.listdir("/proc/self/fd"))


def trio_tasks() -> int:
    """Every task of this Trio run, found from the root task's nurseries."""
    count = 0
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count
