"""/ws across nodes and failures: two nodes on one Redis, Redis restarted or down mid-stream,
history trimmed, a restarted single node (in-process broker) resuming from the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from server.db import make_engine
from server.migrate import upgrade
from server.outbox.drain import DRAIN_LOCK
from tests.support import Postgres, RedisServer, ServerProcess, eventually
from tests.support.realtime import Live, events, nothing_more, recv, send, subscribe


@asynccontextmanager
async def deployment(postgres: Postgres, data_dir: Path, *, redis_url: str | None = None, nodes: int = 1,
                     env: dict[str, str] | None = None) -> AsyncIterator[Live]:
    url = await postgres.create_database()
    await upgrade(url)
    servers = [ServerProcess(database_url=url, data_dir=data_dir, redis_url=redis_url,
                             env={"RATE_LIMIT_PER_MINUTE": "0", **(env or {})}) for _ in range(nodes)]
    for server in servers:
        await asyncio.to_thread(server.start)
    engine = make_engine(url)
    try:
        async with httpx.AsyncClient(base_url=servers[0].base_url, timeout=30) as client:
            yield Live("redis" if redis_url else "memory", servers[0], engine, client, servers[1:])
    finally:
        for server in servers:
            server.stop()
        await engine.dispose()
        await postgres.drop_database(url)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_trimmed_history_gets_reset(backend: str, postgres: Postgres, data_dir: Path,
                                          redis_url: str) -> None:
    async with deployment(postgres, data_dir, redis_url=redis_url if backend == "redis" else None,
                          env={"EVENT_HISTORY": "20", "EVENT_HISTORY_SECONDS": "0"}) as live:
        alice = await live.user("Alice")
        channel = f"course:{await live.course(alice)}"
        await live.emit_many(channel, 60)

        async def published() -> bool:
            async with live.ws(alice) as probe:
                return bool((await subscribe(probe, channel))["last_id"] == 60)

        await eventually(published)
        async with live.ws(alice) as ws:
            subscribed = await subscribe(ws, channel, since=5)
            assert subscribed == {"type": "subscribed", "channel": channel, "last_id": 60}
            assert await recv(ws) == {"type": "reset", "channel": channel}
            # still live after the reset
            await nothing_more(live, ws, channel)
            # the last 20 are kept
            await subscribe(ws, channel, since=41)
            kept = await events(ws, 20)
            assert [f["id"] for f in kept] == list(range(42, 62))


async def test_two_nodes_on_one_redis(postgres: Postgres, data_dir: Path, redis_url: str) -> None:
    async with deployment(postgres, data_dir, redis_url=redis_url, nodes=2) as live:
        node_b = live.extra[0]
        alice, bob = await live.user("Alice"), await live.user("Bob")
        channel = f"thread:{await live.thread(alice, await live.course(alice))}"
        async with live.ws(alice) as on_a, live.ws(bob, server=node_b) as on_b:
            await subscribe(on_a, channel)
            await subscribe(on_b, channel)
            await live.emit_many(channel, 50, per_tx=7)
            for ws in (on_a, on_b):
                got = await events(ws, 50)
                assert [f["data"]["n"] for f in got] == list(range(50))
                assert [f["id"] for f in got] == list(range(1, 51))
            await send(on_a, {"type": "typing", "channel": channel})
            assert (await recv(on_b))["data"] == {"user_id": alice.clerk_id, "name": "Alice"}
            # user:me crosses nodes too
            await subscribe(on_b, "user:me")
            await live.emit(f"user:{bob.clerk_id}", "notification.created", {"unread_count": 3})
            frame = await recv(on_b)
            assert frame["channel"] == "user:me" and frame["data"] == {"unread_count": 3}


async def test_another_node_takes_over_when_the_draining_node_dies(postgres: Postgres, data_dir: Path,
                                                                  redis_url: str) -> None:
    """One node drains (it holds the drain lock for the life of its session); when it is killed
    the other takes the lock and publishes what was committed meanwhile, in order, with no gap."""
    async with deployment(postgres, data_dir, redis_url=redis_url, nodes=2) as live:
        node_b = live.extra[0]
        alice = await live.user("Alice")
        channel = f"course:{await live.course(alice)}"

        async def drainer() -> ServerProcess | None:
            """The node whose drain connection holds the lock (its pid is in application_name)."""
            async with live.engine.connect() as conn:
                name = (await conn.execute(text(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                    "WHERE l.locktype = 'advisory' AND l.granted "
                    "AND ((l.classid::bigint << 32) | l.objid::bigint) = :k AND l.database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"), {"k": DRAIN_LOCK})).scalar()
            for node in (live.server, node_b):
                if name and node.proc is not None and name.endswith(f" pid={node.proc.pid}"):
                    return node
            return None

        leader = await eventually(drainer)
        survivor = node_b if leader is live.server else live.server
        async with live.ws(alice, server=survivor) as ws:
            await subscribe(ws, channel)
            await live.emit_many(channel, 10)
            assert [f["id"] for f in await events(ws, 10)] == list(range(1, 11))
            leader.kill()
            await live.emit_many(channel, 20, start=10, per_tx=3)
            got = await events(ws, 20)
            assert [f["data"]["n"] for f in got] == list(range(10, 30))
            assert [f["id"] for f in got] == list(range(11, 31))
        assert await eventually(drainer) is survivor


async def test_redis_restarted_mid_stream_loses_and_repeats_nothing(
        postgres: Postgres, data_dir: Path, redis_server: RedisServer) -> None:
    # Always the Redis this run owns (TEST_REDIS_URL may name a shared one: never restart that).
    async with deployment(postgres, data_dir, redis_url=redis_server.url, nodes=2) as live:
        alice = await live.user("Alice")
        channel = f"course:{await live.course(alice)}"
        async with live.ws(alice) as on_a, live.ws(alice, server=live.extra[0]) as on_b:
            await subscribe(on_a, channel)
            await subscribe(on_b, channel)
            await live.emit_many(channel, 100, per_tx=5)
            await asyncio.to_thread(redis_server.restart)  # empty again: no persistence
            await live.emit_many(channel, 100, start=100, per_tx=5)
            await asyncio.to_thread(redis_server.stop)
            # writes while Redis is down are recorded (they wait in the outbox)
            await live.emit_many(channel, 100, start=200, per_tx=5)
            await asyncio.to_thread(redis_server.start)
            await live.emit_many(channel, 100, start=300, per_tx=5)
            for ws in (on_a, on_b):
                got = await events(ws, 400, within=60)
                assert [f["data"]["n"] for f in got] == list(range(400))
                assert [f["id"] for f in got] == list(range(1, 401))
            await nothing_more(live, [on_a, on_b], channel)
        # and a late reader still replays across the restart
        async with live.ws(alice) as ws:
            await subscribe(ws, channel, since=150)
            got = await events(ws, 251, within=60)
            assert [f["id"] for f in got] == list(range(151, 402))


async def test_restarted_single_node_resumes_from_the_outbox(postgres: Postgres, data_dir: Path) -> None:
    async with deployment(postgres, data_dir) as live:
        alice = await live.user("Alice")
        channel = f"course:{await live.course(alice)}"
        async with live.ws(alice) as ws:
            await subscribe(ws, channel)
            await live.emit_many(channel, 30)
            seen = await events(ws, 30)
        live.server.kill()
        await live.emit_many(channel, 10, start=30)  # while no server runs
        await asyncio.to_thread(live.server.start)
        async with live.ws(alice) as ws:
            subscribed = await subscribe(ws, channel, since=seen[-1]["id"])
            assert subscribed["type"] == "subscribed"
            got = await events(ws, 10)
            assert [f["data"]["n"] for f in got] == list(range(30, 40))
            assert [f["id"] for f in got] == list(range(31, 41))
