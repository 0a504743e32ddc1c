"""wire/worker.py: a call runs in another process, its errors come back, a dead process is replaced
once, an idle one stops."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from tests.support import eventually
from wire.worker import WorkerProcess


def fail(message: str) -> None:
    raise ValueError(message)


def die() -> None:
    os._exit(3)


def die_once(marker: str) -> int:
    """Dies the first time (leaving ``marker``), then answers its process id."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(3)
    return os.getpid()


async def test_a_call_runs_in_another_process_and_its_error_comes_back() -> None:
    worker = WorkerProcess("test")
    try:
        pid = await worker.run(os.getpid)
        assert pid != os.getpid() and await worker.run(os.getpid) == pid  # one process, kept
        with pytest.raises(ValueError, match="bad input"):
            await worker.run(fail, "bad input")
        assert await worker.run(os.getpid) == pid and worker.started == 1
    finally:
        worker.stop()
    assert not worker.running


async def test_a_process_that_dies_is_replaced_once(tmp_path: Path) -> None:
    worker = WorkerProcess("test")
    try:
        first = await worker.run(os.getpid)
        second = await worker.run(die_once, str(tmp_path / "marker"))
        assert second != first and worker.started == 2
        with pytest.raises(BrokenProcessPool):  # dies on the fresh process too: the error, no loop
            await worker.run(die)
        assert worker.started == 3 and not worker.running
        assert await worker.run(os.getpid) not in (first, second)  # and the next call still runs
        assert worker.started == 4
    finally:
        worker.stop()


async def test_an_idle_process_stops_and_the_next_call_starts_one() -> None:
    worker = WorkerProcess("test", idle_s=0.1)
    try:
        first = await worker.run(os.getpid)
        assert worker.running

        async def stopped() -> bool:
            return not worker.running

        await eventually(stopped, within=10)
        assert await worker.run(os.getpid) != first and worker.started == 2
    finally:
        worker.stop()


async def test_calls_that_a_death_fails_together_retry_on_one_fresh_process(tmp_path: Path) -> None:
    worker = WorkerProcess("test")
    try:
        first = await worker.run(os.getpid)
        # queued behind the call that kills the process: all fail at once, then each retries once
        results = await asyncio.gather(worker.run(die_once, str(tmp_path / "marker")),
                                       *(worker.run(os.getpid) for _ in range(3)))
        assert len(set(results)) == 1 and first not in results
        assert worker.started == 2  # one fresh process for them all, none of them cancelled
    finally:
        worker.stop()
