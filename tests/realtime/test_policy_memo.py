"""The /ws policy memo (server/ws/cache.py) is single-flight: the sockets of one user arriving
together share one lookup, as a reconnect storm does (1,000 sockets of 40 users ran ~900
transactions when each socket missed the memo on its own)."""

from __future__ import annotations

import asyncio

import pytest

from server.ws.cache import TtlCache


class _Gated:
    """A fetch that counts its calls and finishes (with ``outcome``, or raising it) once released."""

    def __init__(self, outcome: object) -> None:
        self.outcome, self.calls, self.release = outcome, 0, asyncio.Event()

    async def __call__(self) -> object:
        self.calls += 1
        await self.release.wait()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


async def test_concurrent_callers_of_one_key_share_one_fetch_and_its_value() -> None:
    memo = TtlCache(60)
    fetch = _Gated("alice")
    waiters = [asyncio.ensure_future(memo.load("sub", fetch)) for _ in range(100)]
    await asyncio.sleep(0)
    fetch.release.set()
    assert await asyncio.gather(*waiters) == ["alice"] * 100
    assert fetch.calls == 1
    assert await memo.load("sub", fetch) == "alice" and fetch.calls == 1  # memoised now
    assert await memo.load("other", fetch) == "alice" and fetch.calls == 2  # per key


async def test_a_refusal_is_shared_by_the_callers_waiting_for_it_and_not_memoised() -> None:
    memo = TtlCache(60)
    refuse = _Gated(PermissionError("no"))
    waiters = [asyncio.ensure_future(memo.load("k", refuse)) for _ in range(10)]
    await asyncio.sleep(0)
    refuse.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, PermissionError) for r in results) and refuse.calls == 1
    with pytest.raises(PermissionError):  # asked again: fetched again (released already)
        await memo.load("k", refuse)
    assert refuse.calls == 2


async def test_a_caller_that_gives_up_does_not_cancel_the_fetch_for_the_others() -> None:
    memo = TtlCache(60)
    fetch = _Gated("value")
    first = asyncio.ensure_future(memo.load("k", fetch))
    second = asyncio.ensure_future(memo.load("k", fetch))
    await asyncio.sleep(0)
    first.cancel()  # its socket closed
    await asyncio.sleep(0)
    fetch.release.set()
    assert await second == "value"
    assert first.cancelled()
    assert memo.get("k") == "value"
