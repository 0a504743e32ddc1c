"""Event-loop lag: a tiny task that sleeps a fixed tick and records how late it wakes.

A handler that holds the loop (a quadratic diff, a huge Markdown render, a deep JSON dump)
shows up here as one long observation. Exposed in /metrics as
``scriptorium_event_loop_lag_seconds`` (a histogram); the adversarial tests read it before and
after an attack to prove the loop was never held past their bound. Once a second it also sets
``scriptorium_event_loop_lag_recent_max_seconds`` and ``scriptorium_asyncio_tasks`` (bench/soak).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.state import Services

TICK = 0.05


async def watch(observe: Callable[[float], None]) -> None:
    """Sleep ``TICK`` forever; report each wake-up's lateness to ``observe(seconds)``."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(TICK)
        late = loop.time() - before - TICK
        observe(max(0.0, late))


SAMPLE_S = 1.0


def sampler(svc: Services) -> Callable[[float], None]:
    """``observe`` for :func:`watch`: the histogram, and once a second the gauges of the last
    second's longest lag and of the number of asyncio tasks (a soak's leak detectors)."""
    metrics = svc.metrics
    window = {"max": 0.0, "since": 0.0}

    def observe(late: float) -> None:
        metrics.loop_lag.observe(late)
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
