"""The /ws policy memo (server/ws/cache.py) is single-flight: the sockets of one user arriving
together share one lookup, as a reconnect storm does (1,000 sockets of 40 users ran ~900
transactions when each socket missed the memo on its own)."""

from __future__ import annotations

import asyncio

import pytest

from server.ws.cache import TtlCache


async def test_concurrent_callers_of_one_key_share_one_fetch_and_its_value() -> None:
    memo = TtlCache(60)
    calls = 0
    release = asyncio.Event()

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "alice"

    waiters = [asyncio.ensure_future(memo.load("sub", fetch)) for _ in range(100)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == ["alice"] * 100
    assert calls == 1
    assert await memo.load("sub", fetch) == "alice" and calls == 1  # memoised now
    assert await memo.load("other", fetch) == "alice" and calls == 2  # per key


async def test_a_refusal_is_shared_by_the_callers_waiting_for_it_and_not_memoised() -> None:
    memo = TtlCache(60)
    calls = 0
    release = asyncio.Event()

    async def refuse() -> bool:
        nonlocal calls
        calls += 1
        await release.wait()
        raise PermissionError("no")

    waiters = [asyncio.ensure_future(memo.load("k", refuse)) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, PermissionError) for r in results) and calls == 1
    release.clear()
    retry = asyncio.ensure_future(memo.load("k", refuse))  # asked again: fetched again
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(PermissionError):
        await retry
    assert calls == 2


async def test_a_caller_that_gives_up_does_not_cancel_the_fetch_for_the_others() -> None:
    memo = TtlCache(60)
    release = asyncio.Event()

    async def fetch() -> str:
        await release.wait()
        return "value"

    first = asyncio.ensure_future(memo.load("k", fetch))
    second = asyncio.ensure_future(memo.load("k", fetch))
    await asyncio.sleep(0)
    first.cancel()  # its socket closed
    await asyncio.sleep(0)
    release.set()
    assert await second == "value"
    assert first.cancelled()
    assert memo.get("k") == "value"
