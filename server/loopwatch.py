"""Event-loop lag: a tiny task that sleeps a fixed tick and records how late it wakes.

A handler that holds the loop (a quadratic diff, a huge Markdown render, a deep JSON dump)
shows up here as one long observation. Exposed in /metrics as
``scriptorium_event_loop_lag_seconds`` (a histogram). ``scriptorium_event_loop_held_seconds``
is the same lateness less the time the loop's own thread spent runnable but waiting for a CPU
meanwhile (Linux's ``/proc/thread-self/schedstat``): what the server's own work held the loop (a
long callback, a blocking call, a GC pause, its other threads holding the GIL), not the machine's
scheduler leaving the loop off a busy shared CPU. Only the loop thread's wait is subtracted: the
waits of other threads overlap and add up, and subtracting them would excuse a real hold. The adversarial tests read it before and after an
attack to prove the loop was never held past their bound. Once a second it also sets
``scriptorium_event_loop_lag_recent_max_seconds`` and ``scriptorium_asyncio_tasks`` (bench/soak).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from wire import grid, schedstat

if TYPE_CHECKING:
    from server.state import Services

TICK = grid.GRID_S  # the node's periodic timers fire on these ticks' wake-ups (wire/grid.py)
SCHEDSTAT = schedstat.PATH


def runqueue_wait() -> float:
    """Seconds the calling thread has spent runnable but waiting for a CPU (0.0 where Linux's
    schedstat is missing: then every late wake-up counts as held)."""
    stats = schedstat.read()
    return 0.0 if stats is None else stats[1]


async def watch(observe: Callable[[float, float], None]) -> None:
    """Wake at every ``TICK`` of the loop's clock forever; report each wake-up's lateness and
    the time the loop's thread waited for a CPU meanwhile to ``observe(late, waited)``
    (seconds). One schedstat read per tick: each reading ends one interval and starts the next.

    The node's other periodic work shares these wake-ups (wire/grid.py). Callbacks due with the
    tick (pings; their first slice, up to ``grid.SLICE_S``) run before the watch resumes and count
    as lateness, as any callback holding the loop does; tasks woken with it (maintenance,
    re-checks) resume after it, as they would have a moment later in a wake-up of their own."""
    loop = asyncio.get_running_loop()
    waited_before = runqueue_wait()
    while True:
        due = await grid.tick(TICK, first=True)
        late = loop.time() - due
        waited = runqueue_wait()
        observe(max(0.0, late), waited - waited_before)
        waited_before = waited


SAMPLE_S = 1.0


def sampler(svc: Services) -> Callable[[float, float], None]:
    """``observe`` for :func:`watch`: the histogram, and once a second the gauges of the last
    second's longest lag and of the number of asyncio tasks (a soak's leak detectors)."""
    metrics = svc.metrics
    window = {"max": 0.0, "since": 0.0}

    def observe(late: float, waited: float) -> None:
        metrics.loop_lag.observe(late)
        metrics.loop_held.observe(max(0.0, late - waited))
        window["max"] = max(window["max"], late)
        now = asyncio.get_running_loop().time()
        if now - window["since"] >= SAMPLE_S:
            metrics.loop_lag_recent.set(window["max"])
            metrics.tasks.set(len(asyncio.all_tasks()))
            window["max"], window["since"] = 0.0, now

    return observe


def gc_timer(svc: Services) -> Callable[[str, dict[str, int]], None]:
    """A ``gc.callbacks`` entry: each collector pass's duration, by generation (a full pass over a
    large heap is a loop hold no handler shows)."""
    pause = svc.metrics.gc_pause
    by_generation = {generation: pause.labels(str(generation)) for generation in (0, 1, 2)}
    started = 0.0

    def callback(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            by_generation[info["generation"]].observe(time.perf_counter() - started)

    return callback


@asynccontextmanager
async def component(svc: Services) -> AsyncIterator[None]:
    task = asyncio.create_task(watch(sampler(svc)), name="loop-lag-watch")
    timer = gc_timer(svc)
    gc.callbacks.append(timer)
    try:
        yield
    finally:
        gc.callbacks.remove(timer)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
