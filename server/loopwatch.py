"""Event-loop lag: a tiny task that sleeps a fixed tick and records how late it wakes.

A handler that holds the loop (a quadratic diff, a huge Markdown render, a deep JSON dump)
shows up here as one long observation. Exposed in /metrics as
``scriptorium_event_loop_lag_seconds`` (a histogram). ``scriptorium_event_loop_held_seconds``
is the same lateness less the time the process's threads spent runnable but waiting for a CPU
meanwhile (Linux's ``/proc/self/task/*/schedstat``; a thread of ours waiting for a CPU while it
holds the GIL stalls the loop too): what the server's own work held the loop (a long callback, a
blocking call, a GC pause, its own threads holding the GIL while they run), not the machine's
scheduler leaving it off a busy shared CPU. The adversarial tests read it before and after an
attack to prove the loop was never held past their bound. Once a second it also sets
``scriptorium_event_loop_lag_recent_max_seconds`` and ``scriptorium_asyncio_tasks`` (bench/soak).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.state import Services

TICK = 0.05
TASKS = "/proc/self/task"


def runqueue_wait() -> float:
    """Seconds the process's live threads have spent runnable but waiting for a CPU (0.0 where
    Linux's schedstat is missing: then every late wake-up counts as held). A thread that exits
    takes its wait with it: the difference of two readings can only under-state the wait."""
    try:
        threads = os.listdir(TASKS)
    except OSError:
        return 0.0
    total = 0
    for tid in threads:
        try:
            with open(f"{TASKS}/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
    return total / 1e9


async def watch(observe: Callable[[float, float], None]) -> None:
    """Sleep ``TICK`` forever; report each wake-up's lateness and the time the process's threads
    waited for a CPU meanwhile to ``observe(late, waited)`` (seconds)."""
    loop = asyncio.get_running_loop()
    while True:
        before, waited_before = loop.time(), runqueue_wait()
        await asyncio.sleep(TICK)
        late = loop.time() - before - TICK
        observe(max(0.0, late), runqueue_wait() - waited_before)


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


@asynccontextmanager
async def component(svc: Services) -> AsyncIterator[None]:
    task = asyncio.create_task(watch(sampler(svc)), name="loop-lag-watch")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
