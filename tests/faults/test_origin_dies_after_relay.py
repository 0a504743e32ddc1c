"""An update a peer on another node has seen is durable, even when its origin node dies the
moment after relaying it (docs/API.md §1; the "origin node dies after relaying" issue).

Client A on node 0 types; client B on node 1 sees the edit (relayed over Redis); node 0 is killed
(kill -9) at once, then node 1 too: nobody asked "saved". After a restart, the edit B saw is in
the lesson: the update log replayed directly, and a fresh client. Real server processes, the
run's PostgreSQL and a Redis this module starts and stops itself (never the machine's shared one).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Text
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.editing.models import LessonSnapshot, LessonUpdate
from tests.support import RedisServer, ServerProcess, dev_user
from tests.support.collab import YClient, make_lesson

CYCLES = 3
ENV = {"RATE_LIMIT_PER_MINUTE": "0"}


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this module's own (never the machine's shared one)."""
    server = RedisServer().start()
    yield server
    server.stop()


async def stored_body(db: AsyncEngine, lesson_id: str) -> str:
    """The lesson's body as PostgreSQL holds it: the snapshot, then the log in id order."""
    lid = uuid.UUID(lesson_id)
    async with db.connect() as conn:
        snapshot = (await conn.execute(select(LessonSnapshot.state).where(LessonSnapshot.lesson_id == lid))).scalar()
        rows = (await conn.execute(select(LessonUpdate.update).where(LessonUpdate.lesson_id == lid)
                                   .order_by(LessonUpdate.id))).scalars().all()
    doc: Doc[Any] = Doc()
    for update in ([snapshot] if snapshot is not None else []) + list(rows):
        doc.apply_update(update)
    return str(doc.get("body", type=Text))


async def sees(client: YClient, marker: str, within: float = 10) -> None:
    """Wait (on the document's change events) until ``client``'s body holds ``marker``."""
    seen = asyncio.Event()

    def check(_event: Any = None) -> None:
        if marker in str(client.body):
            seen.set()

    subscription = client.body.observe(check)
    try:
        check()
        await asyncio.wait_for(seen.wait(), within)
    finally:
        client.body.unobserve(subscription)


async def test_an_edit_seen_on_another_node_survives_both_nodes_kill_9(
        database_url: str, data_dir: Path, own_redis: RedisServer, db: AsyncEngine) -> None:
    nodes = [ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=own_redis.url,
                           env={**ENV, "NODE_ID": f"relay-{i}"}) for i in (0, 1)]
    try:
        for node in nodes:
            node.start()
        async with httpx.AsyncClient(base_url=nodes[0].base_url) as http:
            author = await dev_user(http, "Author")
        lesson = await make_lesson(db, author.clerk_id, body="")
        expected = ""
        for cycle in range(CYCLES):
            for node in nodes:
                if node.proc is None:
                    node.start()
            reader = await YClient.connect(nodes[1].ws_url, lesson.id, author.token)
            writer = await YClient.connect(nodes[0].ws_url, lesson.id, author.token)
            assert writer.text()["body"] == expected == reader.text()["body"], f"cycle {cycle}"
            marker = f"<edit {cycle}>"
            writer.body.insert(len(str(writer.body)), marker)
            expected += marker
            await sees(reader, marker)  # B has seen it: from now on it must be durable
            nodes[0].kill()  # the origin, the moment B saw the edit
            nodes[1].kill()  # then the node B is on: no one asked "saved"
            assert await stored_body(db, lesson.id) == expected, f"cycle {cycle}: not in the log"
            await writer.wait_closed()
            await reader.wait_closed()
            nodes[0].start()
            fresh = await YClient.connect(nodes[0].ws_url, lesson.id, author.token)
            assert fresh.text()["body"] == expected, f"cycle {cycle}"
            await fresh.close()
    finally:
        for node in nodes:
            node.stop()
