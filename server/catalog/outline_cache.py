"""Per-process cache of rendered course outlines, keyed by ``courses.outline_version``.

Exact across nodes: every change the outline shows bumps ``outline_version`` in the writing
transaction (triggers of migration 0005), and each request reads the current version before it
serves cached bytes. Only the variant without per-user ``status`` is cached (anonymous callers and
signed-in callers who are not enrolled see the same bytes).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict


class OutlineCache:
    """LRU map course id → (outline_version, rendered JSON bytes)."""

    def __init__(self, capacity: int = 1_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[uuid.UUID, tuple[int, bytes]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, course_id: uuid.UUID, version: int) -> bytes | None:
        found = self._entries.get(course_id)
        if found is None or found[0] != version:
            self.misses += 1
            return None
        self._entries.move_to_end(course_id)
        self.hits += 1
        return found[1]

    def put(self, course_id: uuid.UUID, version: int, payload: bytes) -> None:
        current = self._entries.get(course_id)
        if current is not None and current[0] > version:
            return  # a slower request built an older snapshot; keep the newer one
        self._entries[course_id] = (version, payload)
        self._entries.move_to_end(course_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
