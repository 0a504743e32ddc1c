"""A small time-bounded memo for the ``/ws`` policy (users by token subject, granted channels)."""

from __future__ import annotations

import time
from typing import Any


class TtlCache:
    """A small time-bounded memo: a reconnect storm of 1,000 sockets by a few dozen users costs a
    few dozen SQL queries, not thousands (rights changes show within ``ttl`` seconds)."""

    def __init__(self, ttl: float, max_size: int = 20_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._items: dict[Any, tuple[float, Any]] = {}

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
