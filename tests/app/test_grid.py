"""wire/grid.py: the node's periodic timers share their wake-ups (each wake-up of an idle loop
costs CPU of its own), each still keeps its period, and none spins."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest
import uvloop

from wire import grid


def run_on(loop_factory: str, seconds: float, steps: tuple[float, ...]) -> tuple[dict[float, list[float]], list[float]]:
    """Periodic tasks of ``steps`` and a chain of grid.call_later timers for ``seconds`` on a
    new event loop (uvloop, as the server runs, or asyncio's own): each one's wake-up times, and
    the call_later chain's."""
    loop = uvloop.new_event_loop() if loop_factory == "uvloop" else asyncio.new_event_loop()
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
def test_periodic_timers_share_the_grid_s_wake_ups(loop_factory: str) -> None:
    fired, later = run_on(loop_factory, 1.6, (grid.GRID_S, 0.1, 0.25))
    base = fired[grid.GRID_S]
    # each keeps its period: ~1.6 s of ticks, none twice for one point
    for step, times in fired.items():
        assert round(1.6 / step) - 2 <= len(times) <= round(1.6 / step) + 1, (step, len(times))
        assert all(b - a >= step / 2 for a, b in itertools.pairwise(times)), (step, times)
    assert 3 <= len(later) <= 4 and all(b - a >= 0.37 for a, b in itertools.pairwise(later)), later

    # every slower timer fires in a wake-up of the grid's own ticker (the same loop turn: the same
    # loop time), so the loop woke ~1.6 / GRID_S times, not once more for each timer
    def near(t: float) -> bool:
        return any(abs(t - b) < 0.0015 for b in base)

    for step in (0.1, 0.25):
        assert all(near(t) for t in fired[step][:-1]), (step, fired[step], base)
    assert all(near(t) for t in later[:-1]), (later, base)
    wake_ups = Counter(round(t, 3) for times in (*fired.values(), later) for t in times)
    assert len(wake_ups) <= len(base) + 2, (len(wake_ups), len(base))


def test_a_step_off_the_millisecond_does_not_spin() -> None:
    """uvloop rounds a timer to the nearest millisecond and may wake half a millisecond before a
    point such as 0.03125 s: the next tick is the point after it, not the same one again (which
    spun the loop until its clock reached the point: 850 ticks a second found here)."""
    fired, _ = run_on("uvloop", 1.0, (0.03125,))
    assert 28 <= len(fired[0.03125]) <= 33, len(fired[0.03125])


async def test_a_sleep_ends_on_a_point_of_the_grid() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    due = await grid.sleep(0.12)
    assert due >= start + 0.12 and due - (start + 0.12) <= grid.GRID_S + 1e-9
    assert abs(due / grid.GRID_S - round(due / grid.GRID_S)) < 1e-6
    assert loop.time() >= due - grid.EARLY_S
