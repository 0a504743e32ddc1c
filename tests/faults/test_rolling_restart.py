"""A rolling restart of two nodes behind a proxy while editing and posting go on (docs/API.md §1).

Node A and node B on one database and a Redis of this module's own, behind the test's TCP proxy
(tests/support/proxy.py: round robin, skipping a node that refuses connections). SIGTERM A (it
drains: rooms saved, sockets closed 1012), clients reconnect through the proxy to B; restart A;
SIGTERM B; restart B. All along a co-editor keeps typing and asking "saved?" (reconnecting with the
edits it kept), a REST client keeps posting replies, and a /ws client follows the thread
(resuming with ``since``). At the end every edit covered by a "saved" answer is in PostgreSQL,
every reply answered 201 is in PostgreSQL, and the /ws client received every stored reply's
event exactly once, in order (raw frames, nothing deduplicated).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
from pycrdt import Doc, Text
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from server.editing.models import LessonSnapshot, LessonUpdate
from server.forum.models import ForumReply
from tests.support import RedisServer, ServerProcess, dev_user, eventually
from tests.support.collab import YClient, make_lesson
from tests.support.forum import create_post, make_course
from tests.support.proxy import Proxy

LONG = os.environ.get("FAULTS_LONG") == "1"
ROUNDS = 2 if LONG else 1  # rolling restarts (A then B) in a row
PROGRESS = 10 if LONG else 4  # acknowledgements each client must get between two steps
RETRYABLE = (OSError, TimeoutError, ConnectionClosed, InvalidHandshake)


class Typist:
    """Types keys ``<n>`` into the body, asks "saved?" every 5 keys; reconnects (through the proxy)
    when its socket closes, sending the edits it kept. ``acked``: keys typed before a "saved" answer."""

    def __init__(self, url: str, lesson_id: str, token: str) -> None:
        self.url, self.lesson_id, self.token = url, lesson_id, token
        self.typed = 0
        self.acked = 0
        self.connections = 0
        self.closes: list[int | None] = []
        self.stop = asyncio.Event()
        self.state: bytes | None = None

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                client = await YClient.connect(self.url, self.lesson_id, self.token)
            except RETRYABLE:
                await asyncio.sleep(0.05)  # reconnect pacing: no node accepts right now
                continue
            self.connections += 1
            if self.state is not None:
                client.doc.apply_update(self.state)  # re-sends what the last node may not have saved
            try:
                while not self.stop.is_set() and client.close_code is None:
                    for _ in range(5):
                        client.body.insert(len(str(client.body)), f"<{self.typed}>")
                        self.typed += 1
                    asked = self.typed
                    answered = asyncio.create_task(client.saved(within=20))
                    await asyncio.wait([answered, asyncio.shield(client._task)],
                                       return_when=asyncio.FIRST_COMPLETED)
                    if answered.done() and answered.exception() is None:
                        self.acked = asked
                    else:
                        answered.cancel()
                        with contextlib.suppress(BaseException):
                            await answered
                        break
            finally:
                self.state = client.doc.get_update()
                self.closes.append(client.close_code)
                await client.close()

    def text(self) -> str:
        doc: Doc = Doc()
        if self.state is not None:
            doc.apply_update(self.state)
        return str(doc.get("body", type=Text))


class Poster:
    """Posts replies to a thread through the proxy; ``acked``: ids answered 201."""

    def __init__(self, url: str, post_id: str, headers: dict[str, str]) -> None:
        self.url, self.post_id, self.headers = url, post_id, headers
        self.acked: list[str] = []
        self.statuses: list[int] = []
        self.failed = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            async with httpx.AsyncClient(base_url=self.url, timeout=15) as http:
                while not self.stop.is_set():
                    try:
                        response = await http.post(f"/api/forum/posts/{self.post_id}/replies",
                                                   headers=self.headers, json={"content": f"reply {n}"})
                    except httpx.HTTPError:
                        self.failed += 1  # its connection died: maybe stored, never acknowledged
                        break  # a fresh client: a new connection through the proxy
                    n += 1
                    self.statuses.append(response.status_code)
                    if response.status_code == 201:
                        self.acked.append(response.json()["id"])


class Follower:
    """Follows the thread on /ws through the proxy, resuming with ``since`` after a close."""

    def __init__(self, url: str, channel: str, token: str) -> None:
        self.url, self.channel, self.token = url, channel, token
        self.frames: list[dict[str, Any]] = []
        self.connections = 0

    async def run(self) -> None:
        while True:
            since = self.frames[-1]["id"] if self.frames else 0
            try:
                async with connect(f"{self.url}/ws?token={self.token}", open_timeout=10) as ws:
                    self.connections += 1
                    await ws.send(json.dumps({"type": "subscribe", "channel": self.channel, "since": since}))
                    subscribed = json.loads(await ws.recv())
                    assert subscribed["type"] == "subscribed", subscribed
                    async for raw in ws:
                        frame = json.loads(raw)
                        assert frame["type"] == "event", (frame, len(self.frames))
                        self.frames.append(frame)
            except RETRYABLE:
                await asyncio.sleep(0.05)  # reconnect pacing


async def stored_body(db: AsyncEngine, lesson_id: str) -> str:
    lid = uuid.UUID(lesson_id)
    async with db.connect() as conn:
        snapshot = (await conn.execute(select(LessonSnapshot.state).where(LessonSnapshot.lesson_id == lid))).scalar()
        rows = (await conn.execute(select(LessonUpdate.update).where(LessonUpdate.lesson_id == lid)
                                   .order_by(LessonUpdate.id))).scalars().all()
    doc: Doc = Doc()
    for update in ([snapshot] if snapshot is not None else []) + list(rows):
        doc.apply_update(update)
    return str(doc.get("body", type=Text))


async def stored_replies(db: AsyncEngine, post_id: str) -> set[str]:
    async with db.connect() as conn:
        rows = (await conn.execute(select(ForumReply.id).where(ForumReply.post_id == uuid.UUID(post_id)))).scalars()
        return {str(r) for r in rows}


async def test_rolling_restart_behind_a_proxy_loses_and_repeats_nothing(
        database_url: str, data_dir: Path, db: AsyncEngine, own_redis: RedisServer) -> None:
    nodes = [ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=own_redis.url,
                           env={"RATE_LIMIT_PER_MINUTE": "0", "NODE_ID": f"node-{name}"}) for name in "ab"]
    proxy = await Proxy([node.port for node in nodes]).start()
    tasks: list[asyncio.Task[None]] = []
    try:
        for node in nodes:
            await asyncio.to_thread(node.start, 90)  # a loaded machine starts slowly
        async with httpx.AsyncClient(base_url=nodes[0].base_url, timeout=30) as http:
            author = await dev_user(http, "Author")
            course = await make_course(db, author)
            post = await create_post(http, course, author)
        lesson = await make_lesson(db, author.clerk_id, body="")
        typist = Typist(proxy.ws_url, lesson.id, author.token)
        poster = Poster(proxy.http_url, post["id"], author.headers)
        follower = Follower(proxy.ws_url, f"thread:{post['id']}", author.token)
        tasks = [asyncio.create_task(c.run()) for c in (typist, poster, follower)]

        async def progress() -> None:
            """Both writers get PROGRESS more acknowledgements (through whichever node is up)."""
            keys, replies = typist.acked, len(poster.acked)

            async def moved() -> bool:
                for task in tasks:  # a client that crashed fails the test now, not at the end
                    if task.done():
                        task.result()
                return typist.acked >= keys + 5 * PROGRESS and len(poster.acked) >= replies + PROGRESS

            await eventually(moved, within=90, interval=0.05)

        await progress()
        for _ in range(ROUNDS):
            for node in nodes:
                await asyncio.to_thread(node.stop)  # SIGTERM, waits for the exit
                await progress()  # served by the other node alone
                await asyncio.to_thread(node.start, 90)
                await progress()
        typist.stop.set()
        poster.stop.set()
        await asyncio.wait_for(asyncio.gather(tasks[0], tasks[1]), 60)

        # every "saved" edit and every 201 reply is in PostgreSQL
        body = await stored_body(db, lesson.id)
        missing = [n for n in range(typist.acked) if f"<{n}>" not in body]
        assert not missing, (missing[:10], typist.acked)
        stored = await stored_replies(db, post["id"])
        assert set(poster.acked) <= stored, set(poster.acked) - stored
        assert set(poster.statuses) <= {201}, poster.statuses  # a drained node finishes, never 5xx
        # the /ws follower got every stored reply exactly once, in order of the channel's ids
        def follower_alive() -> None:
            """The follower's task ended (an unexpected frame, say): fail with its reason now."""
            if tasks[2].done():
                tasks[2].result()
                raise AssertionError("the /ws follower stopped")

        async def delivered() -> bool:
            follower_alive()
            return len(follower.frames) >= len(stored)

        await eventually(delivered, within=60, interval=0.05)
        ids = [f["id"] for f in follower.frames]
        assert ids == list(range(ids[0], ids[0] + len(ids))), ids
        assert sorted(f["data"]["id"] for f in follower.frames) == sorted(stored)
        acked_order = [f["data"]["id"] for f in follower.frames if f["data"]["id"] in set(poster.acked)]
        assert acked_order == poster.acked  # posted one after the other: delivered in that order
        # and nothing more is pending: the next frame is a fresh marker
        async with httpx.AsyncClient(base_url=proxy.http_url, timeout=30) as http:
            marker = await http.post(f"/api/forum/posts/{post['id']}/replies", headers=author.headers,
                                     json={"content": "marker"})
        assert marker.status_code == 201, marker.text
        count = len(follower.frames)

        async def marker_arrived() -> bool:
            follower_alive()
            return len(follower.frames) > count

        await eventually(marker_arrived, within=30)
        assert [f["data"]["id"] for f in follower.frames[count:]] == [marker.json()["id"]]
        # the clients really went through the restarts: both nodes were stopped, so each socket was
        # closed at least once
        assert typist.connections >= 2 and follower.connections >= 2, (typist.connections, follower.connections)
        assert 1012 in typist.closes, typist.closes
        print(f"rolling restart: {typist.acked} keys saved over {typist.connections} connections, "
              f"{len(poster.acked)} replies (201) and {poster.failed} cut requests, "
              f"{len(follower.frames)} events over {follower.connections} /ws connections")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await proxy.close()
        for node in nodes:
            await asyncio.to_thread(node.stop)
