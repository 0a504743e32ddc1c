"""A per-socket budget for the answers that cost the server a whole-document encode.

A sync step 1 with an empty state vector is 4 bytes and asks for the entire document; a
query-awareness is 1 byte and asks for every cursor in the room. Answering each at once lets a
client turn one 64 KB write into 16,000 whole-document encodes (~4 s of event loop for a 200 KB
lesson). Answers therefore come out of a token bucket; requests beyond it are not dropped but
coalesced into one answer sent when the bucket allows (an answer computed later is a superset of
one computed earlier, so nothing a client is owed is lost).
"""

from __future__ import annotations


class AnswerBudget:
    """A token bucket: ``burst`` answers at once, then ``per_second``."""

    __slots__ = ("_at", "_tokens", "burst", "per_second")

    def __init__(self, burst: int, per_second: float, now: float) -> None:
        self.burst = max(1, burst)
        self.per_second = max(per_second, 0.001)
        self._tokens = float(self.burst)
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.per_second)
            self._at = now

    def take(self, now: float) -> bool:
        """Spend one answer if the budget has one."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds until the next answer may be spent."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self.per_second)
