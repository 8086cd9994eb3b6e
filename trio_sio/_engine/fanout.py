"""What the sessions of one server share for broadcasts: the flusher task, and the pacing that
lets writers and long-polling clients keep up with a loop of broadcasts."""

from __future__ import annotations

from contextvars import ContextVar
from typing import NoReturn, Protocol

import trio

__all__ = ["MAX_COALESCE_PASSES", "MAX_PACING_PASSES", "POLL_PACING_S", "FanOut", "Flushable"]

#: Scheduler passes the flusher waits, at most, while broadcasts keep adding to the
#: connections it is about to write (a burst), before it writes anyway.
MAX_COALESCE_PASSES = 16

#: Extra scheduler passes a broadcast gives the writers, at most, while a recipient is behind.
MAX_PACING_PASSES = 4

#: How long a task's next broadcast waits, at most, for a long-polling recipient its
#: broadcasts put behind to poll again (a network round trip), before it stops waiting for
#: that client until it does poll.
POLL_PACING_S = 0.5

#: Whether this task's broadcasts put a long-polling recipient behind since its last broadcast
#: began (a context variable: each Trio task has its own).
_put_a_poll_behind: ContextVar[bool] = ContextVar("_put_a_poll_behind", default=False)


class Flushable(Protocol):
    """What the flusher writes: a session's :class:`~trio_sio._engine.delivery.Delivery`."""

    def flush(self) -> None:
        """Write what is waiting, if it still is."""
        ...


class FanOut:
    """The broadcast side of one server's sessions.

    **The flusher.** A broadcast that finds a recipient idle queues the packet without waking
    that recipient's writer and schedules a flush here; idle recipients then cost no task
    switch each where the host can write without waiting (the native host), and take a
    burst in one batch where it cannot (ASGI). The flusher task waits while
    broadcasts keep adding to the connections it is about to write, as a handler's loop of
    broadcasts does: until two scheduler passes in a row add nothing, for at most
    :data:`MAX_COALESCE_PASSES` passes, or until a recipient is behind (below). Then
    everything queued for each connection goes out in one ``send``: a burst of ten
    broadcasts is one write per client, not ten.

    **Pacing.** A broadcast never waits for a client: a recipient whose queue is full is cut
    as a slow consumer. But each broadcast ends with a schedule point (:meth:`pace`), and a
    writer may need more than one scheduler pass per packet it writes (under hypercorn, two
    per WebSocket message); a loop of broadcasts would then outrun even clients that read
    at once. So a recipient whose queue passes a sixteenth of either bound marks the server
    *behind*, and while it is, each broadcast gives the writers up to
    :data:`MAX_PACING_PASSES` more passes. A client that stopped reading costs each broadcast
    those few passes until its queue fills and it is cut.

    **Pacing long-polling clients.** Scheduler passes cannot drain a long-polling client: its
    queue empties only when its next GET arrives, a network round trip after the last. So a
    task whose broadcasts put a polling recipient behind waits, at the start of its next
    broadcast (where waiting is cancellable and nothing has happened yet), until each such
    recipient polls again, for at most :data:`POLL_PACING_S` per recipient. A loop of
    broadcasts then runs at the pace of its polling readers' round trips instead of cutting
    them, as a WebSocket loop runs at its writers' pace. A recipient that does not poll within
    that time is not waited for again until it polls: a client that stopped reading costs the
    loop one :data:`POLL_PACING_S`, and is cut once its queue fills.
    """

    def __init__(self) -> None:
        self._due: list[Flushable] = []
        self._task: trio.lowlevel.Task | None = None
        #: Packets added to deliveries already due for a flush (the sign of a burst).
        self.appended = 0
        self._flush_now = False
        self._behind = False
        #: Polling recipients behind, and until when broadcasts wait for each to poll. One
        #: whose time is up stays until it polls: it is not waited for again until then.
        self._polls_behind: dict[object, float] = {}
        self._polled = trio.lowlevel.ParkingLot()

    def schedule_flush(self, delivery: Flushable) -> None:
        """``delivery`` has just become due for a flush."""
        self._due.append(delivery)
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)

    def backlog(self, poll: object = None) -> None:
        """A recipient's queue passed the pacing mark: flush now, and pace broadcasts; if it
        is a long-polling recipient (``poll``), this task's next broadcast waits for it."""
        self._flush_now = self._behind = True
        if poll is not None:
            if poll not in self._polls_behind:
                self._polls_behind[poll] = trio.current_time() + POLL_PACING_S
            _put_a_poll_behind.set(True)

    def polled(self, poll: object) -> None:
        """A long-polling recipient took its queue (or is gone): stop waiting for it."""
        if self._polls_behind.pop(poll, None) is not None:
            self._polled.unpark_all()

    async def wait_for_polls(self) -> None:
        """The checkpoint that starts a broadcast: waits, if this task's broadcasts put
        long-polling recipients behind, until they poll or their time is up."""
        if not _put_a_poll_behind.get():
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        _put_a_poll_behind.set(False)
        behind = self._polls_behind
        waiting_for = behind.copy()  # those behind now; any put behind later wait for later
        waited = False
        while True:
            now = trio.current_time()
            # Still waited for: not polled since (same deadline), and its time not up.
            waiting_for = {p: d for p, d in waiting_for.items() if d > now and behind.get(p) == d}
            if not waiting_for:
                break
            waited = True
            with trio.move_on_at(min(waiting_for.values())):
                await self._polled.park()
        if not waited:
            await trio.lowlevel.checkpoint_if_cancelled()

    async def pace(self) -> None:
        """The schedule point that ends a broadcast (shielded: the broadcast happened): one
        scheduler pass, and up to :data:`MAX_PACING_PASSES` more while recipients are
        behind."""
        await trio.lowlevel.cancel_shielded_checkpoint()
        for _ in range(MAX_PACING_PASSES):
            if not self._behind:
                return
            self._behind = False
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def run(self) -> NoReturn:
        """The flusher's task (run by the server)."""
        while True:
            if not self._due:
                self._task = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(self._abort_wait)
            quiet_passes = passes = 0
            while quiet_passes < 2 and passes < MAX_COALESCE_PASSES and not self._flush_now:
                appended = self.appended
                await trio.lowlevel.cancel_shielded_checkpoint()
                quiet_passes = quiet_passes + 1 if self.appended == appended else 0
                passes += 1
            due, self._due = self._due, []
            self._flush_now = False
            for delivery in due:
                delivery.flush()
            await trio.lowlevel.checkpoint()

    def _abort_wait(self, _: object) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED
