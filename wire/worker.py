"""A worker process for long CPU-bound calls, so that they never hold the event loop.

A worker *thread* does not keep the loop free when the call is into an extension that keeps the
GIL for its whole length: pycrdt (yrs, through PyO3) does, so the loop waits for the GIL as long
as the call runs (a compaction's merge of 10 MB of map updates held it 0.44 s from a thread,
measured; a thread running Python code gives the GIL back every 5 ms). A process shares no GIL.

:class:`WorkerProcess` is one such process, started on its first call (``spawn``: a fork of a
process running an event loop and threads is not safe), stopped after ``idle_s`` without calls
(a node that does not need it does not keep its memory), and started again if it died (one retry
on a fresh process). Calls queue: one long call delays the next, so each user of a worker bounds
the size of what it sends. Arguments and results cross a pipe, pickled (bytes: a copy).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from wire import grid

T = TypeVar("T")


def _leave_with(parent: int, warm: Callable[[], object] | None) -> None:
    """Worker initializer: exit once the parent process is gone (a worker of a killed server
    would otherwise wait on its task queue forever: it holds both ends of that pipe), and run
    ``warm`` (imports the calls need) before the first call."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="worker-parent-watch", daemon=True).start()
    if warm is not None:
        warm()


class WorkerProcess:
    """One worker process, started on demand; ``await worker.run(fn, *args)`` calls ``fn`` there.

    ``fn`` and ``args`` must pickle (a module-level function, plain data). ``idle_s``: stop the
    process after that long without a call (None: keep it until :meth:`stop`). ``warm``: run in
    the process when it starts (e.g. the imports of the calls), so calls do not pay for it."""

    def __init__(self, name: str, *, idle_s: float | None = None,
                 warm: Callable[[], object] | None = None) -> None:
        self.name = name
        self.idle_s = idle_s
        self.warm = warm
        self.started = 0  # processes started so far (tests, metrics)
        self._pool: ProcessPoolExecutor | None = None
        self._calls = 0  # calls submitted and not finished
        self._idle: grid.Timer | None = None

    @property
    def running(self) -> bool:
        return self._pool is not None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_leave_with, initargs=(os.getpid(), self.warm))
            self.started += 1
        return self._pool

    def start(self) -> None:
        """Start the process now (its imports then do not delay the first call)."""
        self._executor().submit(int)  # a no-op call: the pool starts its process on the first one

    def stop(self) -> None:
        """Stop the process; calls still queued fail (``CancelledError``); the next call starts a
        new one."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the worker process. Exceptions raised by ``fn`` are raised here;
        ``BrokenProcessPool`` when the process died during the call twice (a fresh one is tried
        once)."""
        loop = asyncio.get_running_loop()
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._calls += 1
        try:
            for attempt in range(2):
                pool = self._executor()
                try:
                    return await loop.run_in_executor(pool, fn, *args)
                except BrokenProcessPool:
                    if self._pool is pool:  # not already replaced by another call it failed
                        self.stop()
                    if attempt:
                        raise
            raise AssertionError("unreachable")
        finally:
            self._calls -= 1
            if not self._calls and self.idle_s is not None and self._pool is not None:
                self._idle = grid.call_later(self.idle_s, self._stop_if_idle)

    def _stop_if_idle(self) -> None:
        self._idle = None
        if not self._calls:
            self.stop()
