"""/ws live events (docs/API.md §7) with two nodes on a Redis Cluster: a reply posted on node A
reaches a socket on node B, a dropped socket resumes with ``since``, and the master that owns the
thread's slot dies mid-stream: every reply acknowledged with a 2xx reaches the subscriber on the
other node exactly once, in order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection

from server.db import make_engine
from server.migrate import upgrade
from tests.support import DevUser, Postgres, ServerProcess, dev_user
from tests.support.forum import create_post, create_reply, make_course
from tests.support.redis_cluster import RedisCluster


@pytest.fixture(scope="module")
async def nodes(postgres: Postgres, data_dir: Path, redis_cluster: RedisCluster) -> AsyncIterator[list[ServerProcess]]:
    url = await postgres.create_database()
    await upgrade(url)
    servers = [ServerProcess(database_url=url, data_dir=data_dir, redis_url=redis_cluster.url,
                             env={"RATE_LIMIT_PER_MINUTE": "0", "NODE_ID": f"live-{n}"}) for n in "ab"]
    try:
        for node in servers:
            await asyncio.to_thread(node.start, 120)
        yield servers
    finally:
        for node in servers:
            node.stop()
        await postgres.drop_database(url)


@pytest.fixture(scope="module")
async def db(nodes: list[ServerProcess]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(nodes[0].database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def on_a(nodes: list[ServerProcess]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=nodes[0].base_url, timeout=30,
                                 limits=httpx.Limits(keepalive_expiry=2.0)) as client:
        yield client


def socket(node: ServerProcess, user: DevUser) -> Any:
    return websockets.connect(f"{node.ws_url}/ws?token={user.token}", open_timeout=10)


async def frame(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    return message


async def subscribe(ws: ClientConnection, channel: str, since: int | None = None) -> int:
    request: dict[str, Any] = {"type": "subscribe", "channel": channel}
    if since is not None:
        request["since"] = since
    await ws.send(json.dumps(request))
    while True:
        message = await frame(ws)
        assert message["type"] != "error", message
        if message["type"] == "subscribed" and message["channel"] == channel:
            last: int = message["last_id"]
            return last


async def replies(ws: ClientConnection, channel: str, count: int, within: float = 30.0) -> list[dict[str, Any]]:
    """The next ``count`` ``reply.created`` events of ``channel`` (a reset is a failure)."""
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while len(found) < count:
            message = await frame(ws, within)
            assert message["type"] != "reset", message
            if message["type"] == "event" and message["channel"] == channel and message["event"] == "reply.created":
                found.append(message)
    return found


async def test_a_reply_on_node_a_reaches_node_b_and_a_socket_resumes_with_since(
        nodes: list[ServerProcess], on_a: httpx.AsyncClient, db: AsyncEngine) -> None:
    node_b = nodes[1]
    alice, bob = await dev_user(on_a, "Alice"), await dev_user(on_a, "Bob")
    course = await make_course(db, alice)
    post = await create_post(on_a, course, alice)
    channel = f"thread:{post['id']}"
    async with socket(node_b, alice) as ws:
        await subscribe(ws, channel)
        reply = await create_reply(on_a, post["id"], bob, "across the cluster")
        [event] = await replies(ws, channel, 1)
        assert event["data"] == reply
        seen = event["id"]
    # written while the socket is away: replayed after `since`, then live again
    missed = [await create_reply(on_a, post["id"], bob, f"while away {n}") for n in range(5)]
    async with socket(node_b, alice) as ws:
        # (the outbox may not have published all five yet: the rest then arrive live)
        assert await subscribe(ws, channel, since=seen) >= seen
        got = await replies(ws, channel, 5)
        assert [e["data"]["id"] for e in got] == [r["id"] for r in missed]
        assert [e["id"] for e in got] == sorted(e["id"] for e in got) and got[0]["id"] > seen
        live = await create_reply(on_a, post["id"], bob, "live again")
        [event] = await replies(ws, channel, 1)
        assert event["data"] == live


async def test_failover_of_the_threads_master_loses_and_repeats_no_acknowledged_reply(
        nodes: list[ServerProcess], on_a: httpx.AsyncClient, db: AsyncEngine,
        redis_cluster: RedisCluster) -> None:
    node_b = nodes[1]
    alice, bob = await dev_user(on_a, "Alice"), await dev_user(on_a, "Bob")
    course = await make_course(db, alice)
    post = await create_post(on_a, course, alice)
    channel = f"thread:{post['id']}"
    acknowledged: list[str] = []
    failed_over = asyncio.Event()
    midway = asyncio.Event()
    after_failover = 0

    async def write(until: int) -> None:
        nonlocal after_failover
        n = 0
        while after_failover < until:
            response = await on_a.post(f"/api/forum/posts/{post['id']}/replies", headers=bob.headers,
                                       json={"content": f"reply {n}"})
            n += 1
            if 200 <= response.status_code < 300:
                acknowledged.append(response.json()["id"])
                if len(acknowledged) == 10:
                    midway.set()
                if failed_over.is_set():
                    after_failover += 1

    async with socket(node_b, alice) as ws:
        await subscribe(ws, channel)
        writer = asyncio.create_task(write(until=20))
        try:
            await asyncio.wait_for(midway.wait(), 30)  # mid-stream
            await asyncio.to_thread(redis_cluster.fail_over_master_of, "{" + channel + "}")
            failed_over.set()
            await asyncio.wait_for(writer, 60)
        finally:
            writer.cancel()
            await asyncio.to_thread(redis_cluster.heal)  # the dead master rejoins (as a replica)
        got = await replies(ws, channel, len(acknowledged), within=60)
        assert [e["data"]["id"] for e in got] == acknowledged
        assert [e["id"] for e in got] == sorted(set(e["id"] for e in got))
        # and nothing more is pending: the next reply is the very next frame
        last = await create_reply(on_a, post["id"], bob, "after")
        [event] = await replies(ws, channel, 1)
        assert event["data"] == last
