"""Periodic timers on one grid of the event loop's clock, so that they wake the loop together.

Each time an idle event loop wakes up costs CPU of its own, before any work: on the
virtual machines servers run on, a uvloop task sleeping 10-50 ms in a loop measured 80-150 us of
CPU per wake-up (its thread's schedstat), against 17 us for a bare ``epoll_wait`` in C (the first
instructions after an idle spell run on cold caches). An idle node had ~46 timer wake-ups a second:
the loop watch (20), uvicorn's tick (10), room maintenance (4), the access re-check (4), pings.
Rounded up to the grid, timers due within one grid step fire in one wake-up: ``GRID_S`` is the
loop watch's tick, so the others add no wake-up of their own.

Only background work is put on the grid; a timer whose delay a user sees (a write pace, a
deferred answer, a flush someone waits on) is not.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

GRID_S = 0.05


# Loop times are floats: a time on the grid divides to k +- a rounding error, which must not
# count as another point.
_SLACK = 1e-6
# uvloop counts its clock and timers in whole milliseconds and rounds a delay to the nearest one:
# a timer due at a point off the millisecond may fire up to half a millisecond before it.
EARLY_S = 0.001


def next_point(when: float, step: float = GRID_S) -> float:
    """The first multiple of ``step`` at or after loop time ``when``."""
    return math.ceil(when / step - _SLACK) * step


def after(delay: float, step: float = GRID_S) -> float:
    """The loop time to fire a timer of ``delay`` seconds at: the grid point at or after it."""
    return next_point(asyncio.get_running_loop().time() + delay, step)


async def sleep(delay: float, step: float = GRID_S) -> float:
    """Sleep about ``delay`` seconds (up to ``step`` more), until a grid point; return that point."""
    loop = asyncio.get_running_loop()
    due = next_point(loop.time() + delay, step)
    await asyncio.sleep(due - loop.time())
    return due


async def tick(step: float) -> float:
    """Sleep until the next multiple of ``step`` (a periodic task's next turn: a slow turn delays
    only itself, the next ones stay on their times); return that time."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    # the point after ``now``: never the one just woken for, if woken a little before it
    due = (math.floor((now + EARLY_S) / step) + 1) * step
    await asyncio.sleep(due - now)
    return due


def call_later(delay: float, callback: Callable[..., object], *args: Any) -> asyncio.TimerHandle:
    """``loop.call_later`` on the grid: ``callback`` runs at the grid point at or after ``delay``."""
    loop = asyncio.get_running_loop()
    return loop.call_at(next_point(loop.time() + delay), callback, *args)
