"""Periodic timers on one grid of the event loop's clock, so that they wake the loop together.

Each time an idle event loop wakes up costs CPU of its own, before any work: on the
virtual machines servers run on, a uvloop task sleeping 10-50 ms in a loop measured 80-150 us of
CPU per wake-up (its thread's schedstat), against 17 us for a bare ``epoll_wait`` in C (the first
instructions after an idle spell run on cold caches). An idle node had ~46 timer wake-ups a second:
the loop watch (20), uvicorn's tick (10), room maintenance (4), the access re-check (4), pings.
Here every timer is due at a point of the grid (a multiple of its step, ``GRID_S`` by default,
the loop watch's tick, from an origin of this process's) and every callback due at one point runs
in one loop timer of that point, in the order they were added (``first``: before them; the loop
watch, whose task then resumes before the tasks woken with it). Separate loop timers would not do:
uvloop reads its clock again when it starts a timer, so two timers meant for one point land a
millisecond apart now and then. A point's callbacks run in slices of ``SLICE_S``, the loop
handling I/O in between: many sockets' pings due at one point never hold it longer.

The origin is random per process: every process on a host reads one monotonic clock, and the
workers of a node (and the nodes on one machine) would otherwise wake, and query the database,
at the same instants.

Only background work is put on the grid; a timer whose delay a user sees (a write pace, a
deferred answer, a flush someone waits on) is not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger("scriptorium.grid")

GRID_S = 0.05
SLICE_S = 0.001  # a point's callbacks run this long at most before the loop handles I/O again
_ORIGIN = random.uniform(0.0, GRID_S)  # this process's grid: k * step + _ORIGIN
# Loop times are floats: a time on the grid divides to k +- a rounding error, which must not
# count as another point.
_SLACK = 1e-6
# uvloop counts its clock and timers in whole milliseconds and rounds a delay to the nearest one:
# a timer due at a point off the millisecond may fire up to half a millisecond before it.
EARLY_S = 0.001


def next_point(when: float, step: float = GRID_S) -> float:
    """The first multiple of ``step`` at or after loop time ``when``."""
    return math.ceil((when - _ORIGIN) / step - _SLACK) * step + _ORIGIN


def next_tick(now: float, step: float) -> float:
    """The multiple of ``step`` after loop time ``now``: never the one just woken for, if woken a
    little before it."""
    return (math.floor((now + EARLY_S - _ORIGIN) / step) + 1) * step + _ORIGIN


class Timer:
    """A callback due at a grid point; :meth:`cancel` drops it (and what it holds) at once."""

    __slots__ = ("args", "callback")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.callback: Callable[..., object] | None = callback
        self.args: tuple[Any, ...] = args

    def cancel(self) -> None:
        self.callback = None
        self.args = ()


class _Points:
    """One event loop's callbacks by grid point (its time in whole microseconds), each point one
    loop timer. (The loop is not kept here: it is this map's weak key.)"""

    def __init__(self) -> None:
        self.due: dict[int, list[Timer]] = {}

    def add(self, point: float, timer: Timer, *, first: bool) -> Timer:
        key = round(point * 1e6)
        timers = self.due.get(key)
        if timers is None:
            timers = self.due[key] = []
            asyncio.get_running_loop().call_at(point, self._fire, key)
        if first:
            timers.insert(0, timer)
        else:
            timers.append(timer)
        return timer

    def _fire(self, key: int) -> None:
        _run(self.due.pop(key, []), 0)


def _run(timers: list[Timer], start: int) -> None:
    """Run ``timers[start:]`` for up to SLICE_S; the rest at the loop's next turn."""
    deadline = time.perf_counter() + SLICE_S
    index = start
    try:
        while index < len(timers):
            timer = timers[index]
            index += 1
            callback, args = timer.callback, timer.args
            if callback is None:
                continue
            timer.cancel()
            try:
                callback(*args)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:
                log.exception("a timer on the grid failed")
            if time.perf_counter() >= deadline:
                break
    finally:
        if index < len(timers):  # (also after KeyboardInterrupt: the others still run)
            asyncio.get_running_loop().call_soon(_run, timers, index)


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Points] = weakref.WeakKeyDictionary()


def _points(loop: asyncio.AbstractEventLoop) -> _Points:
    points = _loops.get(loop)
    if points is None:
        points = _loops[loop] = _Points()
    return points


def call_at_point(point: float, callback: Callable[..., object], *args: Any, first: bool = False) -> Timer:
    """Run ``callback(*args)`` at grid point ``point`` (a loop time from :func:`next_point` or
    :func:`next_tick`), with everything else due then."""
    return _points(asyncio.get_running_loop()).add(point, Timer(callback, args), first=first)


def call_later(delay: float, callback: Callable[..., object], *args: Any) -> Timer:
    """``loop.call_later`` on the grid: ``callback`` runs at the grid point at or after ``delay``."""
    return call_at_point(next_point(asyncio.get_running_loop().time() + delay), callback, *args)


def after(delay: float, step: float = GRID_S) -> float:
    """The loop time of the grid point at or after ``delay`` seconds from now."""
    return next_point(asyncio.get_running_loop().time() + delay, step)


async def _until(point: float, *, first: bool = False) -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    timer = call_at_point(point, _resolve, future, first=first)
    try:
        await future
    finally:
        timer.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def sleep(delay: float, step: float = GRID_S) -> float:
    """Sleep about ``delay`` seconds (up to ``step`` more), until a grid point; return that point."""
    due = after(delay, step)
    await _until(due)
    return due


async def tick(step: float, *, first: bool = False) -> float:
    """Sleep until the next multiple of ``step`` (a periodic task's next turn: a slow turn delays
    only itself, the next ones stay on their times); return that time. ``first``: this task
    resumes before the others woken at that point (their callbacks run before it, though)."""
    due = next_tick(asyncio.get_running_loop().time(), step)
    await _until(due, first=first)
    return due
