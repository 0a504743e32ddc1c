"""Per-user, per-kind write limits (§3): a token bucket; 429 with ``Retry-After`` when empty."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from server.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``per_minute`` sustained with bursts of ``burst``; ``per_minute == 0`` turns it off.

    In-process state: with several nodes each node limits on its own (documented).
    """

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(burst, 1))
        self.enabled = per_minute > 0
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def hit(self, user_id: str, kind: str, now: float | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get((user_id, kind))
        if bucket is None:
            bucket = self._buckets[(user_id, kind)] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            raise RateLimited(math.ceil((1.0 - bucket.tokens) / self.rate))
        bucket.tokens -= 1.0
        if len(self._buckets) > 100_000:  # forget full buckets so memory stays bounded
            self._buckets = {k: b for k, b in self._buckets.items()
                             if b.tokens + (now - b.updated) * self.rate < self.capacity}
