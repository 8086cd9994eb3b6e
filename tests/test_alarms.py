"""The server's shared timer (``trio_sio._engine.alarms``: the sessions' heartbeats and the
connect timeout), on Trio's virtual clock: every sleeper wakes and every action runs at its
own deadline, and a cancelled or woken one leaves nothing behind."""

from __future__ import annotations

import random

import trio
import trio.testing

from trio_sio._engine.alarms import Alarms


async def test_each_sleeper_wakes_at_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    alarms = Alarms()
    start = trio.current_time()
    delays = [random.Random(7).uniform(0, 100) for _ in range(200)]
    woke: list[tuple[float, float]] = []

    async def sleeper(delay: float) -> None:
        await alarms.sleep_until(start + delay)
        woke.append((delay, trio.current_time() - start))

    with trio.fail_after(1000):  # a sleeper that is never woken fails, not hangs
        async with trio.open_nursery() as nursery:
            await nursery.start(alarms.run)
            async with trio.open_nursery() as sleepers:
                for delay in delays:
                    sleepers.start_soon(sleeper, delay)
                    # Later sleepers with earlier deadlines must move the timer forward.
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert len(woke) == len(delays)
    for delay, at in woke:
        assert at >= delay
        assert at - delay < 0.011  # on time: at the latest when that sleeper started
    assert len(alarms) == 0


async def test_cancelled_and_woken_sleeps_are_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    alarms = Alarms()
    async with trio.open_nursery() as nursery:
        await nursery.start(alarms.run)
        # Many sleeps cancelled long before their deadline: the heap is compacted, so
        # memory follows the sleepers alive, not the ones that came and went.
        for _ in range(1000):
            with trio.move_on_after(1):
                await alarms.sleep_until(trio.current_time() + 3600)
        assert len(alarms) == 0
        assert len(alarms._heap) <= 2 * 64 + 1

        woken_at: list[float] = []

        async def sleeper(task_status: trio.TaskStatus[trio.lowlevel.Task]) -> None:
            task_status.started(trio.lowlevel.current_task())
            await alarms.sleep_until(trio.current_time() + 3600)
            woken_at.append(trio.current_time())

        task = await nursery.start(sleeper)
        await trio.sleep(5)
        alarms.wake(task)
        alarms.wake(task)  # a second wake-up of the same sleep does nothing
        await trio.sleep(1)
        assert len(woken_at) == 1
        assert woken_at[0] < trio.current_time()
        assert len(alarms) == 0
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
