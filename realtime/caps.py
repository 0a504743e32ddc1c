"""Open sockets per user, capped: on this node (:class:`LocalCaps`) or across nodes (:class:`RedisCaps`).

Every per-socket budget (frames, subscriptions, collab answers) would be multiplied by an account
opening N sockets, so a user may hold at most ``cap`` sockets of one kind (``/ws``, collab). With
Redis the count is cluster-wide: a sorted set per user and kind, key
``<prefix>:conns:<kind>:{user:<id>}`` (a Redis Cluster hash tag), one member per open socket
scored with its expiry on Redis's clock. A node refreshes its members every ``ttl / 3``; a node
that dies (kill -9, power) stops refreshing and its sockets drop out of every user's count within
``ttl``. A socket that closes is removed at once.

Redis down: fail open to this node's own count (a user may then hold ``cap`` sockets per node,
never more on one node); Redis is asked again after ``RETRY_REDIS_S``. Nothing here closes a
socket that is already open. Imports nothing of the server (redis when :class:`RedisCaps` is built).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

from wire import grid

log = logging.getLogger("scriptorium.caps")

REDIS_TIMEOUT_S = 0.25
RETRY_REDIS_S = 2.0

# KEYS[1] the user's set; ARGV cap, ttl (ms), member. 1: taken, 0: at the cap.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS[1] the user's set; ARGV ttl (ms), then this node's members: their expiry moves on.
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


class LocalCaps:
    """Open sockets per user on this node; ``cap`` 0: off."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: dict[str, int] = {}
        self._ids = itertools.count(1)

    async def take(self, user_id: str) -> str | None:
        """A handle for :meth:`release`, or None when the user is at the cap."""
        return self.take_local(user_id)

    def take_local(self, user_id: str) -> str | None:
        if self.cap and self.open.get(user_id, 0) >= self.cap:
            return None
        self.open[user_id] = self.open.get(user_id, 0) + 1
        return f"local:{next(self._ids)}"

    async def release(self, user_id: str, handle: str) -> None:
        self.release_local(user_id)

    def release_local(self, user_id: str) -> None:
        left = self.open.pop(user_id, 1) - 1
        if left > 0:
            self.open[user_id] = left

    async def close(self) -> None:
        pass


class RedisCaps(LocalCaps):
    """The cap across nodes (see the module's doc); falls back to :class:`LocalCaps` when Redis is down."""

    def __init__(self, cap: int, *, url: str, prefix: str, kind: str, node_id: str, ttl: float = 30.0,
                 client: Any = None) -> None:
        super().__init__(cap)
        self.prefix = f"{prefix}:conns:{kind}"
        self.node_id = node_id
        self.ttl_ms = max(1000, int(ttl * 1000))
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
        self._refresh = client.register_script(_REFRESH)
        self.held: dict[str, set[str]] = {}  # user id -> this node's members in Redis
        self._redis_down_until = 0.0
        self._task: asyncio.Task[None] | None = None

    def key(self, user_id: str) -> str:
        return f"{self.prefix}:{{user:{user_id}}}"

    def _down(self, exc: BaseException) -> None:
        log.warning("connection caps: Redis unavailable (%s); capping per node for %.0f s",
                    type(exc).__name__, RETRY_REDIS_S)
        self._redis_down_until = time.monotonic() + RETRY_REDIS_S

    async def take(self, user_id: str) -> str | None:
        if not self.cap:
            return "off"
        if time.monotonic() < self._redis_down_until:
            return self.take_local(user_id)
        member = f"{self.node_id}:{next(self._ids)}"
        try:
            taken = await self._take(keys=[self.key(user_id)], args=[self.cap, self.ttl_ms, member])
        except Exception as exc:
            self._down(exc)
            return self.take_local(user_id)
        if not int(taken):
            return None
        self.held.setdefault(user_id, set()).add(member)
        if self._task is None:
            self._task = asyncio.create_task(self._refresh_forever(), name="caps-refresh")
        return member

    async def release(self, user_id: str, handle: str) -> None:
        if handle == "off":
            return
        if handle.startswith("local:"):
            self.release_local(user_id)
            return
        members = self.held.get(user_id)
        if members is not None:
            members.discard(handle)
            if not members:
                del self.held[user_id]
        try:
            await self.client.zrem(self.key(user_id), handle)
        except Exception as exc:  # it expires within ttl
            self._down(exc)

    async def _refresh_forever(self) -> None:
        while True:
            await grid.sleep(self.ttl_ms / 3000)
            held = [(user_id, list(members)) for user_id, members in self.held.items() if members]
            for start in range(0, len(held), 500):  # pipelined: one round trip per 500 users
                pipe = self.client.pipeline(transaction=False)
                for user_id, members in held[start:start + 500]:
                    await self._refresh(keys=[self.key(user_id)], args=[self.ttl_ms, *members], client=pipe)
                try:
                    await pipe.execute()
                except Exception as exc:
                    self._down(exc)
                    break

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for user_id, members in list(self.held.items()):
            with contextlib.suppress(Exception):
                await self.client.zrem(self.key(user_id), *members)
        self.held.clear()
        with contextlib.suppress(Exception):
            await self.client.aclose()


Caps = LocalCaps | RedisCaps
