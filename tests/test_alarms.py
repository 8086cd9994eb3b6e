"""The server's shared timer (``trio_sio._engine.alarms``: the sessions' heartbeats and the
connect timeout), on Trio's virtual clock: every action runs at its own deadline, and a
cancelled one leaves nothing behind."""

from __future__ import annotations

import functools
import random

import trio
import trio.testing

from trio_sio._engine.alarms import Alarms


async def test_each_action_runs_at_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    alarms = Alarms()
    start = trio.current_time()
    delays = [random.Random(7).uniform(0, 100) for _ in range(200)]
    ran: list[tuple[float, float]] = []

    def action(delay: float) -> None:
        ran.append((delay, trio.current_time() - start))

    async with trio.open_nursery() as nursery:
        await nursery.start(alarms.run)
        for delay in delays:
            alarms.call_at(start + delay, functools.partial(action, delay))
            # Later actions with earlier deadlines must move the timer forward.
            await trio.sleep(0.01)
        await trio.sleep(200)
        nursery.cancel_scope.cancel()
    assert len(ran) == len(delays)
    for delay, at in ran:
        assert at >= delay
        assert at - delay < 0.011  # on time: at the latest when that action was added
    assert len(alarms) == 0


async def test_an_action_may_add_the_next_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # As a heartbeat does: each action schedules the next, some already due.
    alarms = Alarms()
    start = trio.current_time()
    ran: list[float] = []
    # Due now (at 10), later (30), overdue (5, run at 30), later again (40).
    then = [10.0, 30.0, 5.0, 40.0]

    def action() -> None:
        ran.append(trio.current_time() - start)
        if then:
            alarms.call_at(start + then.pop(0), action)

    async with trio.open_nursery() as nursery:
        await nursery.start(alarms.run)
        alarms.call_at(start + 10, action)
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    assert ran == [10, 10, 30, 30, 40]
    assert len(alarms) == 0


async def test_cancelled_actions_are_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    alarms = Alarms()
    async with trio.open_nursery() as nursery:
        await nursery.start(alarms.run)
        # Many actions cancelled long before their deadline: the heap is compacted, so
        # memory follows the actions still due, not the ones that came and went.
        for _ in range(1000):
            alarm = alarms.call_at(trio.current_time() + 3600, lambda: None)
            await trio.sleep(1)
            alarm.cancel()
        assert len(alarms) == 0
        assert len(alarms._heap) <= 2 * 64 + 1
        nursery.cancel_scope.cancel()


async def test_actions_run_at_their_deadline_unless_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    alarms = Alarms()
    ran: dict[str, float] = {}
    start = trio.current_time()

    def action(name: str) -> None:
        ran[name] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        await nursery.start(alarms.run)
        alarms.call_at(start + 30, lambda: action("late"))
        alarms.call_at(start + 10, lambda: action("early"))
        cancelled = alarms.call_at(start + 20, lambda: action("cancelled"))
        cancelled.cancel()
        cancelled.cancel()  # twice is harmless
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert ran == {"early": 10, "late": 30}
    assert len(alarms) == 0
