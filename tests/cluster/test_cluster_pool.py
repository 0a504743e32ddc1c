"""More concurrent commands than a master's pool holds wait for a connection (as on one Redis,
whose pool blocks) instead of failing: 300 /ws clients subscribing at once on a Redis Cluster each
read their channel's last id, and those past the pool's 64 connections were closed 1011."""

from __future__ import annotations

import asyncio

from tests.support.redis_cluster import RedisCluster
from wire.redis import connect


async def test_commands_past_the_pool_wait_for_a_connection(redis_cluster: RedisCluster) -> None:
    client = connect(redis_cluster.url, max_connections=4, decode_responses=True)
    try:
        key = "{pool-test}:k"  # one slot, so one master's pool of 4 takes all 200
        await client.set(key, "v")
        got = await asyncio.gather(*(client.get(key) for _ in range(200)))
        assert got == ["v"] * 200
        script = client.register_script("return redis.call('GET', KEYS[1])")
        assert await asyncio.gather(*(script(keys=[key]) for _ in range(50))) == ["v"] * 50
    finally:
        await client.aclose()
