"""The connection pool's queue hands idle connections out first come, first served."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import Empty

from server.db import FairAsyncQueuePool, FairQueue, make_engine


async def get(q: FairQueue, limit: float | None = 5) -> Any:
    return await greenlet_spawn(q.get, True, limit)


async def waiting(q: FairQueue, n: int) -> None:
    # yields the loop until the started getters have run their first step and queued up
    while len(q._waiters) < n:  # noqa: ASYNC110 (no event to wait on inside the queue)
        await asyncio.sleep(0)


async def test_a_returned_item_goes_to_the_longest_waiter_and_is_never_stolen() -> None:
    q = FairQueue(1)
    q.put_nowait("conn")
    assert await get(q) == "conn"
    order: list[str] = []

    async def waiter(name: str) -> None:
        item = await get(q)
        order.append(name)
        q.put_nowait(item)  # done with it

    tasks = []
    for name in ("first", "second", "third"):
        tasks.append(asyncio.create_task(waiter(name)))
        await waiting(q, len(tasks))
    q.put_nowait("conn")
    with pytest.raises(Empty):  # a newcomer does not jump the line
        q.get_nowait()
    await asyncio.gather(*tasks)
    assert order == ["first", "second", "third"]
    assert q.get_nowait() == "conn"


async def test_a_timed_out_or_cancelled_waiter_loses_nothing() -> None:
    q = FairQueue(1)
    with pytest.raises(Empty):
        await get(q, limit=0.01)
    q.put_nowait("conn")  # the timed-out waiter does not swallow it
    assert q.qsize() == 1
    assert q.get_nowait() == "conn"

    task = asyncio.create_task(get(q))
    await waiting(q, 1)
    q.put_nowait("conn")  # handed to the waiter ...
    task.cancel()  # ... which is cancelled before it could take it
    # Either outcome is allowed (Python 3.11's wait_for may deliver it despite the cancel), but the
    # connection exists exactly once afterwards: held by the waiter, or passed on to the queue.
    outcome = await asyncio.gather(task, return_exceptions=True)
    held = [r for r in outcome if not isinstance(r, BaseException)]
    queued = [q.get_nowait() for _ in range(q.qsize())]
    assert held + queued == ["conn"], (outcome, queued)

    task = asyncio.create_task(get(q, limit=None))
    await waiting(q, 1)
    q.put_nowait("conn")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert q.qsize() == 1 and q.get_nowait() == "conn"


async def test_the_engine_uses_it_and_many_requests_share_a_small_pool(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=2, max_overflow=0)
    assert isinstance(engine.pool, FairAsyncQueuePool)
    try:
        async def one(i: int) -> int:
            async with engine.connect() as conn:
                return int((await conn.execute(text("SELECT CAST(:i AS int)"), {"i": i})).scalar_one())

        assert await asyncio.gather(*(one(i) for i in range(50))) == list(range(50))
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_an_idle_engine_reuses_its_most_recently_used_connection(database_url: str) -> None:
    """Last in, first out among idle connections: light traffic keeps running on the same few
    warm sessions (their prepared statements and PostgreSQL's per-session catalog caches) instead
    of cycling through every pooled one (the /ws fan-out bench's first bursts took 15-20 ms for a
    1.7 ms re-check on cold sessions); the others sit idle until recycled."""
    engine = make_engine(database_url, pool_size=3, max_overflow=0)
    try:
        pid = text("SELECT pg_backend_pid()")
        conns = [await engine.connect() for _ in range(3)]
        pids = [(await conn.execute(pid)).scalar_one() for conn in conns]
        assert len(set(pids)) == 3
        for conn in conns:  # returned in order: the last one back is pids[2]
            await conn.close()
        for _ in range(5):
            async with engine.connect() as conn:
                assert (await conn.execute(pid)).scalar_one() == pids[2]
        # under load every connection still serves, the longest waiter first (tests above)
        async with engine.connect() as a, engine.connect() as b:
            assert {(await a.execute(pid)).scalar_one(), (await b.execute(pid)).scalar_one()} == {pids[2], pids[1]}
    finally:
        await engine.dispose()


async def test_a_driver_connection_that_died_is_not_handed_out_again(database_url: str) -> None:
    """server.db.driver_autocommit: SQLAlchemy never sees the driver's errors, so a connection
    that failed at the connection level is invalidated there; the next checkout is a new one."""
    import asyncpg

    from server.db import driver_autocommit

    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with driver_autocommit(engine) as conn:
            victim = await conn.fetchval("SELECT pg_backend_pid()")
        killer = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            # (a connection error, AdminShutdown or "another operation is in progress", by timing)
            with pytest.raises(Exception):  # noqa: B017
                async with driver_autocommit(engine) as conn:
                    assert await conn.fetchval("SELECT pg_backend_pid()") == victim
                    await killer.execute("SELECT pg_terminate_backend($1)", victim)
                    await conn.fetchval("SELECT 1")
        finally:
            await killer.close()
        async with driver_autocommit(engine) as conn:
            assert await conn.fetchval("SELECT 1") == 1
            assert await conn.fetchval("SELECT pg_backend_pid()") != victim
    finally:
        await engine.dispose()
