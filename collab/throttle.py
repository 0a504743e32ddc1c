"""A per-socket budget for the answers that cost the server a whole-document encode.

A sync step 1 with an empty state vector is 4 bytes and asks for the entire document; a
query-awareness is 1 byte and asks for every cursor in the room. Answering each at once lets a
client turn one 64 KB write into 16,000 whole-document encodes (~4 s of event loop for a 200 KB
lesson). Answers therefore come out of a token bucket; requests beyond it are not dropped but
coalesced into one answer sent when the bucket allows (an answer computed later is a superset of
one computed earlier, so nothing a client is owed is lost).

Depends on nothing (the standard library).
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


class ReceiveBudget:
    """What one socket may make the server read: ``per_second`` bytes, bursts of ``burst``; a
    frame costs at least ``frame_cost`` (parsing a frame costs ~10 us whatever its size).

    Over budget, the socket's handler sleeps before taking its next frame; uvicorn stops reading
    a socket while its frames wait, so the sender is held back by TCP instead of being served
    at the expense of every other socket.
    """

    __slots__ = ("_allowance", "_at", "burst", "frame_cost", "per_second")

    def __init__(self, per_second: float, burst: float, frame_cost: int, now: float) -> None:
        self.per_second = max(per_second, 1.0)
        self.burst = max(burst, self.per_second)
        self.frame_cost = frame_cost
        self._allowance = self.burst
        self._at = now

    def spend(self, size: int, now: float) -> float:
        """Charge a frame of ``size`` bytes; returns how long to wait before the next (0: none)."""
        self._allowance -= max(size, self.frame_cost)
        if self._allowance >= 0:
            return 0.0
        self._allowance = min(self.burst, self._allowance + (now - self._at) * self.per_second)
        self._at = now
        return 0.0 if self._allowance >= 0 else -self._allowance / self.per_second
