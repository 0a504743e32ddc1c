"""A small time-bounded memo for the ``/ws`` policy (users by token subject, granted channels)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


class TtlCache:
    """A small time-bounded memo: a reconnect storm of 1,000 sockets by a few dozen users costs a
    few dozen SQL queries, not thousands (rights changes show within ``ttl`` seconds).

    ``load`` is single-flight per key: the sockets of one user arriving together (a storm, a
    page with several tabs) wait for the first one's lookup instead of each missing the memo and
    running its own (a storm of 1,000 reconnects by 40 users ran ~900 transactions)."""

    def __init__(self, ttl: float, max_size: int = 20_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._items: dict[Any, tuple[float, Any]] = {}
        self._loading: dict[Any, asyncio.Future[Any]] = {}

    async def load(self, key: Any, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """The memoised value of ``key``, else ``fetch()``'s (memoised unless None); callers
        arriving while a fetch of ``key`` runs share its outcome, value or exception. The fetch
        runs as its own task: a caller that gives up (its socket closed) does not cancel it for
        the others."""
        found = self.get(key)
        if found is not None:
            return found
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(key, fetch))
            self._loading[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(pending)

    async def _fetch(self, key: Any, fetch: Callable[[], Awaitable[Any]]) -> Any:
        value = await fetch()
        if value is not None:
            self.put(key, value)
        return value

    def _settled(self, key: Any, done: asyncio.Future[Any]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone

    def get(self, key: Any) -> Any:
        found = self._items.get(key)
        if found is None:
            return None
        if found[0] < time.monotonic():
            del self._items[key]
            return None
        return found[1]

    def discard(self, key: Any) -> None:
        self._items.pop(key, None)

    def put(self, key: Any, value: Any) -> None:
        if len(self._items) >= self.max_size:
            self._items.clear()
        self._items[key] = (time.monotonic() + self.ttl, value)
