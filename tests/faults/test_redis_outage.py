"""Redis unreachable (docs/API.md §1, faults): two nodes on a Redis of this module's own, reached
through a TCP proxy of the test's (tests/support/proxy.py).

Two outages: the proxy blackholes Redis (stops forwarding, keeps every socket open: what a network
partition looks like, neither end sees a reset), and Redis is restarted (stopped, then started on
the same port, empty). Meanwhile co-editors on each node keep editing and a REST client keeps
posting replies to a thread that a /ws client on the other node follows. Checked: each node's
room keeps working on its own (its co-editors converge, without the other node's edits: the
outage was real); afterwards both nodes converge again without anyone reconnecting or reloading;
the /ws client receives every reply answered 201, in order, each exactly once (raw frames counted,
then a marker must be the very next frame).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect

from tests.support import RedisServer, ServerProcess, dev_user
from tests.support.collab import YClient, converge, make_lesson
from tests.support.forum import CourseRef, create_post, create_reply, make_course
from tests.support.proxy import Proxy

LONG = os.environ.get("FAULTS_LONG") == "1"
OUTAGE_S = 30.0 if LONG else 10.0
ENV = {"RATE_LIMIT_PER_MINUTE": "0"}


@asynccontextmanager
async def two_nodes(database_url: str, data_dir: Path, redis_url: str) -> AsyncIterator[list[ServerProcess]]:
    nodes = [ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=redis_url,
                           env={**ENV, "NODE_ID": f"node-{name}"}) for name in "ab"]
    try:
        for node in nodes:  # in a thread: the proxy serves their Redis connections from this loop
            await asyncio.to_thread(node.start, 90)  # a loaded machine starts slowly
        yield nodes
    finally:
        for node in nodes:
            await asyncio.to_thread(node.stop)


async def next_event(ws: ClientConnection, within: float = 30) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    assert frame["type"] == "event", frame
    return frame


@pytest.mark.parametrize("outage", ["blackhole", "restart"])
async def test_rooms_and_live_events_survive_redis_being_unreachable(
        outage: str, database_url: str, data_dir: Path, db: AsyncEngine, own_redis: RedisServer) -> None:
    proxy = await Proxy([own_redis.port]).start()
    try:
        async with two_nodes(database_url, data_dir, proxy.redis_url) as (a_node, b_node):
            async with httpx.AsyncClient(base_url=a_node.base_url, timeout=30) as http:
                author = await dev_user(http, "Author")
                course: CourseRef = await make_course(db, author)
                post = await create_post(http, course, author)
                lesson = await make_lesson(db, author.clerk_id, body="")
                editors = [await YClient.connect(node.ws_url, lesson.id, author.token)
                           for node in (a_node, a_node, b_node, b_node)]
                a1, a2, b1, b2 = editors
                async with connect(f"{b_node.ws_url}/ws?token={author.token}", open_timeout=10) as ws:
                    await ws.send(json.dumps({"type": "subscribe", "channel": f"thread:{post['id']}"}))
                    assert json.loads(await ws.recv())["type"] == "subscribed"
                    answered: list[str] = []  # reply ids answered 201, in order
                    a1.body.insert(0, "[a1 before]")
                    b1.body.insert(0, "[b1 before]")
                    answered.append((await create_reply(http, post["id"], author, "before"))["id"])
                    await converge(editors, within=20)  # the nodes talk to each other

                    if outage == "blackhole":
                        proxy.stall()
                    else:
                        await asyncio.to_thread(own_redis.stop)
                    deadline, n = time.monotonic() + OUTAGE_S, 0
                    while time.monotonic() < deadline:  # the outage lasts OUTAGE_S, work goes on
                        writer, co_writer = (a1, b1) if n % 2 == 0 else (a2, b2)
                        writer.body.insert(len(writer.body), f"[a{n}]")
                        co_writer.body.insert(len(co_writer.body), f"[b{n}]")
                        answered.append((await create_reply(http, post["id"], author, f"during {n}"))["id"])
                        await asyncio.gather(writer.roundtrip(), co_writer.roundtrip())
                        n += 1
                    # each node's room kept working on its own: its co-editors converge ...
                    a_text = (await converge([a1, a2]))["body"]
                    b_text = (await converge([b1, b2]))["body"]
                    assert all(f"[a{i}]" in a_text for i in range(n)), a_text
                    assert all(f"[b{i}]" in b_text for i in range(n)), b_text
                    # ... and the outage was real: no edit made meanwhile crossed to the other node
                    assert not any(f"[b{i}]" in a_text or f"[a{i}]" in b_text for i in range(n))
                    if outage == "blackhole":
                        proxy.resume()
                    else:
                        await asyncio.to_thread(own_redis.start)

                    # cross-node convergence resumes without a reconnect or a reload
                    text = (await converge(editors, within=45))["body"]
                    assert all(f"[a{i}]" in text and f"[b{i}]" in text for i in range(n)), text
                    assert all(e.close_code is None for e in editors)
                    # every reply answered 201 arrives once, in order, then nothing but the marker
                    got = [(await next_event(ws, within=45))["data"]["id"] for _ in answered]
                    assert got == answered
                    marker = (await create_reply(http, post["id"], author, "marker"))["id"]
                    assert (await next_event(ws))["data"]["id"] == marker
                for editor in editors:
                    await editor.close()
    finally:
        await proxy.close()
