"""One timer task that wakes many sleeping tasks: the sessions' heartbeats.

``trio.sleep_until`` enters a cancel scope for each sleep: with its status, its sets and its
entry in trio's deadline table, about 1.9 KB for every idle session, all the time (a session
is always waiting for its next ping or pong). Here a sleeping task is one entry in a heap,
and one task per server sleeps until the earliest of them.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import NoReturn

import trio

__all__ = ["Alarms"]

#: Below this many entries, cancelled ones are left in the heap until their deadline.
_COMPACT_MIN = 64


class _Alarm:
    __slots__ = ("deadline", "sequence", "task")

    def __init__(self, deadline: float, sequence: int, task: trio.lowlevel.Task) -> None:
        self.deadline = deadline
        self.sequence = sequence  # keeps equal deadlines in order
        self.task: trio.lowlevel.Task | None = task  # None once it was woken or cancelled

    def __lt__(self, other: _Alarm) -> bool:
        return (self.deadline, self.sequence) < (other.deadline, other.sequence)


class Alarms:
    """Sleeps until a deadline for any number of tasks, with one timer task (:meth:`run`)."""

    def __init__(self) -> None:
        self._heap: list[_Alarm] = []
        self._sequence = itertools.count()
        self._cancelled = 0
        self._timer: trio.CancelScope | None = None

    def __len__(self) -> int:
        """Tasks sleeping now."""
        return len(self._heap) - self._cancelled

    async def sleep_until(self, deadline: float) -> None:
        """Like :func:`trio.sleep_until` (a checkpoint, cancellable) but with no cancel scope
        of its own; :meth:`wake` ends it early. Needs :meth:`run` running."""
        await trio.lowlevel.checkpoint_if_cancelled()
        task = trio.lowlevel.current_task()
        alarm = task.custom_sleep_data = _Alarm(deadline, next(self._sequence), task)
        heap = self._heap
        heapq.heappush(heap, alarm)
        timer = self._timer
        if heap[0] is alarm and timer is not None and deadline < timer.deadline:
            timer.deadline = deadline

        def abort(_: object) -> trio.lowlevel.Abort:
            self._forget(alarm)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def wake(self, task: trio.lowlevel.Task) -> None:
        """End ``task``'s :meth:`sleep_until` now, if it is in one."""
        alarm = task.custom_sleep_data
        if isinstance(alarm, _Alarm) and alarm.task is task:
            self._forget(alarm)
            trio.lowlevel.reschedule(task)

    def _forget(self, alarm: _Alarm) -> None:
        alarm.task = None
        heap = self._heap
        self._cancelled += 1
        if self._cancelled > _COMPACT_MIN and self._cancelled * 2 > len(heap):
            # Mostly the sleeps of closed sessions: memory stays proportional to the
            # sessions alive, however fast they come and go.
            heap[:] = [alive for alive in heap if alive.task is not None]
            heapq.heapify(heap)
            self._cancelled = 0

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """The timer task: wakes each sleeping task at its deadline."""
        heap = self._heap
        task_status.started()
        while True:
            with trio.CancelScope() as timer:
                timer.deadline = heap[0].deadline if heap else math.inf
                self._timer = timer
                await trio.sleep_forever()
            now = trio.current_time()
            while heap and heap[0].deadline <= now:
                alarm = heapq.heappop(heap)
                task, alarm.task = alarm.task, None
                if task is None:
                    self._cancelled -= 1
                else:
                    trio.lowlevel.reschedule(task)
