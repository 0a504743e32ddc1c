"""wire/grid.py: the node's periodic timers share their wake-ups (each wake-up of an idle loop
costs CPU of its own), each still keeps its period, and none spins."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
import uvloop

from tests.support import run_timing
from wire import grid


def new_loop(loop_factory: str) -> asyncio.AbstractEventLoop:
    """uvloop's, as the server runs, or asyncio's own."""
    return uvloop.new_event_loop() if loop_factory == "uvloop" else asyncio.new_event_loop()


def run_on(loop: asyncio.AbstractEventLoop, seconds: float,
           steps: tuple[float, ...]) -> tuple[dict[float, list[float]], list[float]]:
    """Periodic tasks of ``steps`` and a chain of grid.call_later timers for ``seconds`` on
    ``loop`` (closed after): each one's wake-up times, and the call_later chain's."""
    fired: dict[float, list[float]] = {step: [] for step in steps}
    later: list[float] = []

    async def periodic(step: float) -> None:
        while True:
            await grid.tick(step)
            fired[step].append(loop.time())

    def again() -> None:
        later.append(loop.time())
        grid.call_later(0.37, again)  # a delay off the grid: rounded up to a point of it

    async def main() -> None:
        tasks = [asyncio.create_task(periodic(step)) for step in steps]
        grid.call_later(0.37, again)
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return fired, later


@pytest.mark.parametrize("loop_factory", ["uvloop", "asyncio"])
def test_periodic_timers_keep_their_periods_on_the_grid(loop_factory: str) -> None:
    fired, later = run_on(new_loop(loop_factory), 1.6, (grid.GRID_S, 0.1, 0.25))
    base = fired[grid.GRID_S]
    # each keeps its period: ~1.6 s of ticks, none twice for one point
    for step, times in fired.items():
        assert round(1.6 / step) - 2 <= len(times) <= round(1.6 / step) + 1, (step, len(times))
        assert all(b - a >= step / 2 for a, b in itertools.pairwise(times)), (step, times)
    assert 3 <= len(later) <= 4 and all(b - a >= 0.37 for a, b in itertools.pairwise(later)), later

    # (that they share the base ticker's wake-ups: test_one_loop_timer_per_point)
    assert all(any(abs(t - b) < 0.05 for b in base) for t in later[:-1]), (later, base)


def test_a_step_off_the_millisecond_does_not_spin() -> None:
    """uvloop rounds a timer to the nearest millisecond and may wake half a millisecond before a
    point such as 0.03125 s: the next tick is the point after it, not the same one again (which
    spun the loop until its clock reached the point: 850 ticks a second found here)."""
    fired, _ = run_on(new_loop("uvloop"), 1.0, (0.03125,))
    assert 28 <= len(fired[0.03125]) <= 33, len(fired[0.03125])


async def test_a_sleep_ends_on_a_point_of_the_grid() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    due = await grid.sleep(0.12)
    assert due >= start + 0.12 and due - (start + 0.12) <= grid.GRID_S + 1e-9
    steps = (due - grid._ORIGIN) / grid.GRID_S  # this process's grid
    assert abs(steps - round(steps)) < 1e-6
    assert loop.time() >= due - grid.EARLY_S


@pytest.mark.parametrize("loop_factory", ["uvloop", "asyncio"])
def test_one_loop_timer_per_point(loop_factory: str) -> None:
    """Three periodic tasks and a chain of call_later share the loop's timers, one per grid
    point: the loop wakes ~0.8 / GRID_S times, not once more for each timer."""
    started: list[float] = []
    base: Any = uvloop.Loop if loop_factory == "uvloop" else asyncio.SelectorEventLoop

    class Counting(base):  # type: ignore[misc,valid-type]
        def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:
            if getattr(callback, "__name__", "") == "_fire":
                started.append(when)
            return super().call_at(when, callback, *args, context=context)  # type: ignore[no-any-return]

    fired, _ = run_on(Counting(), 0.8, (grid.GRID_S, 0.1, 0.25))
    assert sum(len(times) for times in fired.values()) >= 16 + 6 + 2, fired
    assert len(started) <= 0.8 / grid.GRID_S + 4, (len(started), started)  # ~one per point


def test_a_burst_at_one_point_runs_in_slices_and_the_watch_sees_sync_work() -> None:
    """300 callbacks of 0.1 ms due at one point (sockets' pings) run in slices with the loop's
    other work between them: the loop watch, woken at that point, resumes after the first slice.
    One callback holding the loop 30 ms there is lateness the watch reports."""
    from server import loopwatch

    def run(callbacks: int, each: float) -> tuple[list[float], int]:
        loop = asyncio.new_event_loop()
        seen: list[float] = []
        ran = [0]
        done = asyncio.Event()

        def hold() -> None:
            ran[0] += 1
            end = time.perf_counter() + each
            while time.perf_counter() < end:
                pass

        def observe(late: float, waited: float) -> None:
            seen.append(late - waited)
            if ran[0] == callbacks and len(seen) >= 3:
                done.set()

        async def main() -> None:
            watcher = asyncio.create_task(loopwatch.watch(observe))
            await asyncio.sleep(0)
            now = asyncio.get_running_loop().time()
            point = grid.next_tick(grid.next_tick(now, grid.GRID_S), grid.GRID_S)  # the watch's second tick
            for _ in range(callbacks):
                grid.call_at_point(point, hold)
            await asyncio.wait_for(done.wait(), 10)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

        run_timing(loop, main())
        return seen, ran[0]

    # seen[1]: the watch's second tick, the point of the burst
    seen, ran = run(300, 0.0001)
    assert ran == 300 and seen[1] < 0.01, (ran, seen)
    seen, ran = run(1, 0.03)
    assert ran == 1 and seen[1] >= 0.025, seen


def test_a_closed_loop_is_freed() -> None:
    import gc
    import weakref

    loop = uvloop.new_event_loop()
    loop.run_until_complete(grid.sleep(0.01))

    async def pending() -> None:
        grid.call_later(60, lambda: None)  # never fires: the loop closes first

    loop.run_until_complete(pending())
    ref = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert ref() is None
