"""One timer task per server for everything its sessions wait for: heartbeats, a graceful
close's deadline, and the Socket.IO layer's connect timeout.

A session is always waiting for its next ping or pong. A task of its own sleeping in
``trio.sleep_until`` would cost a task, its coroutines and a cancel scope (with its status,
its sets and its entry in trio's deadline table) for every idle session, all the time. Here a
deadline is one entry in a heap, its action a callback, and one task per server sleeps until
the earliest of them.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import NoReturn

import trio

__all__ = ["Alarm", "Alarms"]

#: Below this many entries, cancelled ones are left in the heap until their deadline.
_COMPACT_MIN = 64


class Alarm:
    """An action due at a deadline (see :meth:`Alarms.call_at`); :meth:`cancel` it if it is
    no longer wanted."""

    __slots__ = ("_alarms", "action")

    def __init__(self, alarms: Alarms, action: Callable[[], None]) -> None:
        self._alarms = alarms
        self.action: Callable[[], None] | None = action  # None once run or cancelled

    def cancel(self) -> None:
        """Do not run the action (nothing happens if it ran already)."""
        if self.action is not None:
            self.action = None
            self._alarms._forget_one()


class Alarms:
    """Runs actions at their deadlines, with one timer task (:meth:`run`)."""

    def __init__(self) -> None:
        # (deadline, sequence, alarm): tuples compare in C, where an ``Alarm.__lt__`` would be
        # a Python call for every comparison of every push and pop. The sequence keeps equal
        # deadlines in order (and never lets a comparison reach the alarms).
        self._heap: list[tuple[float, int, Alarm]] = []
        self._sequence = itertools.count()
        self._cancelled = 0
        self._timer: trio.CancelScope | None = None

    def __len__(self) -> int:
        """Actions waiting for their deadline."""
        return len(self._heap) - self._cancelled

    def call_at(self, deadline: float, action: Callable[[], None]) -> Alarm:
        """Call ``action`` (synchronous, in the timer task) once ``deadline`` has passed on
        Trio's clock. Needs :meth:`run` running."""
        alarm = Alarm(self, action)
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._sequence), alarm))
        timer = self._timer
        if heap[0][2] is alarm and timer is not None and deadline < timer.deadline:
            timer.deadline = deadline
        return alarm

    def _forget_one(self) -> None:
        heap = self._heap
        self._cancelled += 1
        if self._cancelled > _COMPACT_MIN and self._cancelled * 2 > len(heap):
            # Mostly the alarms of closed sessions: memory stays proportional to what is
            # still due, however fast sessions come and go.
            heap[:] = [entry for entry in heap if entry[2].action is not None]
            heapq.heapify(heap)
            self._cancelled = 0

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """The timer task: runs each action at its deadline."""
        heap = self._heap
        task_status.started()
        while True:
            with trio.CancelScope() as timer:
                timer.deadline = heap[0][0] if heap else math.inf
                self._timer = timer
                await trio.sleep_forever()
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                alarm = heapq.heappop(heap)[2]
                action, alarm.action = alarm.action, None
                if action is None:
                    self._cancelled -= 1
                else:
                    action()
