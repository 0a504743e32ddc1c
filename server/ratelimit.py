"""Per-user, per-kind write limits (§3): a token bucket; 429 with ``Retry-After`` when empty.

One node (no Redis): the buckets live in the process (:class:`RateLimiter`). Several nodes (Redis
configured): one bucket per user and kind in Redis (:class:`RedisRateLimiter`), taken by a Lua
script on Redis's own clock, so the limit holds across nodes however a user's requests are
spread; the key carries the hash tag ``{user:<id>}`` (Redis Cluster safe).

Redis down: fail open to the node's own buckets. A request is never refused (nor answered 5xx)
because Redis is away; the limit then holds per node (at worst N times the rate with N nodes)
until Redis answers again. After a failed call Redis is not asked for ``RETRY_REDIS_S``, so a dead
Redis costs one timeout per node, not one per request.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from server.errors import RateLimited

log = logging.getLogger("scriptorium.ratelimit")

REDIS_TIMEOUT_S = 0.25  # a request waits at most this for Redis before using the local bucket
RETRY_REDIS_S = 2.0


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``per_minute`` sustained with bursts of ``burst``; ``per_minute == 0`` turns it off.

    In-process state: this node's buckets (with Redis: see :class:`RedisRateLimiter`)."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(burst, 1))
        self.enabled = per_minute > 0
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    async def hit(self, user_id: str, kind: str) -> None:
        """Take one token of ``user_id``'s ``kind`` bucket, or raise :class:`RateLimited`."""
        self.hit_local(user_id, kind)

    def hit_local(self, user_id: str, kind: str, now: float | None = None) -> None:
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

    async def close(self) -> None:
        pass


# KEYS[1] the bucket (a hash: tokens, ts); ARGV rate (tokens/s), capacity. Returns the seconds to
# wait for a token ("0": one was taken), as a string (a Lua number would be cut to an integer).
_TAKE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(bucket[1]) or capacity
local ts = tonumber(bucket[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens < 1 then
  wait = (1 - tokens) / rate
else
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisRateLimiter(RateLimiter):
    """The buckets in Redis, shared by every node (falls back to this node's when Redis is down)."""

    def __init__(self, per_minute: int, burst: int, *, url: str, prefix: str, name: str,
                 client: Any = None) -> None:
        super().__init__(per_minute, burst)
        self.prefix = f"{prefix}:ratelimit:{name}"
        if client is None:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError

            from wire.redis import connect

            # One immediate retry: the first call after a Redis restart meets a dead pooled
            # connection; the retry reconnects (a Redis that is really down fails it too). A
            # cluster URL gives a RedisCluster client: the keys carry the user's hash tag.
            client = connect(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
                             retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError])
        self.client = client
        self._take = client.register_script(_TAKE)
        self._redis_down_until = 0.0

    def key(self, user_id: str, kind: str) -> str:
        return f"{self.prefix}:{{user:{user_id}}}:{kind}"

    async def hit(self, user_id: str, kind: str) -> None:
        if not self.enabled:
            return
        if time.monotonic() < self._redis_down_until:
            self.hit_local(user_id, kind)
            return
        try:
            wait = float(await self._take(keys=[self.key(user_id, kind)], args=[self.rate, self.capacity]))
        except Exception as exc:
            # Fail open to this node's buckets (see the module's doc): never a 5xx for it.
            log.warning("rate limits: Redis unavailable (%s); limiting per node for %.0f s",
                        type(exc).__name__, RETRY_REDIS_S)
            self._redis_down_until = time.monotonic() + RETRY_REDIS_S
            self.hit_local(user_id, kind)
            return
        if wait > 0:
            raise RateLimited(math.ceil(wait))

    async def close(self) -> None:
        await self.client.aclose()


def make_rate_limiter(per_minute: int, burst: int, *, redis_url: str | None, prefix: str,
                      name: str) -> RateLimiter:
    """Cluster-wide buckets when Redis is configured (and the limit is on), else this node's."""
    if redis_url and per_minute > 0:
        return RedisRateLimiter(per_minute, burst, url=redis_url, prefix=prefix, name=name)
    return RateLimiter(per_minute, burst)
