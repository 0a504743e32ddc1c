"""Per-user limits on a Redis Cluster: the write rate limit and the socket caps are shared by
every node through keys tagged ``{user:<id>}`` (one slot per user), whichever master holds them."""

from __future__ import annotations

import pytest

from realtime.caps import RedisCaps
from server.errors import RateLimited
from server.ratelimit import RedisRateLimiter
from tests.support.redis_cluster import RedisCluster


async def test_rate_limit_is_shared_by_two_nodes_on_a_cluster(redis_cluster: RedisCluster) -> None:
    # two nodes' limiters, one burst of 3 per user and kind; 1 a minute refills nothing meanwhile
    a = RedisRateLimiter(1, 3, url=redis_cluster.url, prefix="limits-test", name="writes")
    b = RedisRateLimiter(1, 3, url=redis_cluster.url, prefix="limits-test", name="writes")
    try:
        for user in ("user_ann", "user_bob", "user_cy"):  # users whose keys land on different masters
            await a.hit(user, "reply")
            await b.hit(user, "reply")
            await a.hit(user, "reply")
            with pytest.raises(RateLimited):
                await b.hit(user, "reply")
            with pytest.raises(RateLimited):
                await a.hit(user, "reply")
            await b.hit(user, "post")  # another kind has its own bucket
        # (had either fallen back to per-node buckets, b's second hit would have passed)
        assert a._redis_down_until == 0.0 and b._redis_down_until == 0.0
    finally:
        await a.close()
        await b.close()


async def test_socket_cap_is_shared_by_two_nodes_on_a_cluster(redis_cluster: RedisCluster) -> None:
    a = RedisCaps(2, url=redis_cluster.url, prefix="caps-test", kind="ws", node_id="node-a", ttl=30)
    b = RedisCaps(2, url=redis_cluster.url, prefix="caps-test", kind="ws", node_id="node-b", ttl=30)
    try:
        first = await a.take("user_dee")
        second = await b.take("user_dee")
        assert first and second and not first.startswith("local:") and not second.startswith("local:")
        assert await a.take("user_dee") is None and await b.take("user_dee") is None  # 2 across nodes
        await a.release("user_dee", first)
        third = await b.take("user_dee")  # the freed place is taken on the other node
        assert third is not None and not third.startswith("local:")
    finally:
        await a.close()
        await b.close()
