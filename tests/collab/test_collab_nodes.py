"""Durability across kill -9, and two server processes on one Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import distinct as distinct_
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.editing.models import LessonUpdate
from tests.support import RedisServer, ServerProcess, dev_user, eventually
from tests.support.collab import YClient, co_editors, converge, lesson_row, make_lesson


@pytest.fixture(scope="module")
def two_nodes(database_url: str, data_dir: Path,
              redis_server: RedisServer) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    # The Redis this run owns, whatever TEST_REDIS_URL says: a test below restarts it.
    redis_url = redis_server.url
    env = {"RATE_LIMIT_PER_MINUTE": "0"}
    a = ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=redis_url,
                      env={**env, "NODE_ID": "node-a"}).start()
    b = ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=redis_url,
                      env={**env, "NODE_ID": "node-b"}).start()
    yield a, b
    a.stop()
    b.stop()


async def test_kill_9_keeps_what_others_saw(database_url: str, data_dir: Path, db: AsyncEngine) -> None:
    node = ServerProcess(database_url=database_url, data_dir=data_dir,
                         env={"RATE_LIMIT_PER_MINUTE": "0"}).start()
    try:
        async with httpx.AsyncClient(base_url=node.base_url) as http:
            author = await dev_user(http, "Author")
        lesson = await make_lesson(db, author.clerk_id, body="")
        writer = await YClient.connect(node.ws_url, lesson.id, author.token)
        watcher = await YClient.connect(node.ws_url, lesson.id, author.token)
        for i in range(40):
            writer.body.insert(len(str(writer.body)), f"<{i}>")
            if i % 10 == 0:
                await writer.roundtrip()  # in a few batches: the server has taken this one

        async def all_seen() -> bool:
            return str(watcher.body).endswith("<39>")

        await eventually(all_seen, within=10)
        seen = str(watcher.body)
        await writer.saved()  # "Saved": every update the writer sent is committed
        node.kill()
        await writer.wait_closed()
        await watcher.wait_closed()
        node.start()
        again = await YClient.connect(node.ws_url, lesson.id, author.token)
        assert str(again.body) == seen
        # The lesson row follows after the restart too.
        again.body.insert(0, "!")

        async def materialised() -> bool:
            return (await lesson_row(db, lesson.id))["content"]["body"] == "!" + seen

        await eventually(materialised, within=5)
        await again.close()
    finally:
        node.stop()


async def test_two_nodes_converge_even_across_a_redis_restart(
        two_nodes: tuple[ServerProcess, ServerProcess], redis_server: RedisServer, db: AsyncEngine) -> None:
    a_node, b_node = two_nodes
    pair = await co_editors(db, a_node, b_node, title="T", body="start")
    author, lesson, a, b = pair.author, pair.lesson, pair.a, pair.b
    assert a.text() == b.text() == {"title": "T", "body": "start"}
    a.body.insert(0, "A:")
    b.body.insert(len(str(b.body)), ":B")
    assert (await converge([a, b], within=5))["body"] == "A:start:B"

    await a.set_awareness({"user": "a"})
    await eventually(lambda: _has(b, {"user": "a"}), within=2)

    redis_server.restart()
    # Edits made while Redis is away (or just back) still reach the other node.
    a.body.insert(0, "1")
    b.body.insert(0, "2")
    text = await converge([a, b], within=15)
    assert set(text["body"][:2]) == {"1", "2"}
    a.title.insert(1, "itle")
    assert (await converge([a, b], within=10))["title"] == "Title"

    # Exactly one node persisted each update: no update bytes twice in the log.
    async with db.connect() as conn:
        rows, distinct = (await conn.execute(
            select(func.count(), func.count(distinct_(LessonUpdate.update)))
            .where(LessonUpdate.lesson_id == lesson.lesson_id))).one()
    assert rows == distinct and rows > 1
    # A third client on node B starts late and sees everything.
    c = await YClient.connect(b_node.ws_url, lesson.id, author.token)
    assert c.text() == a.text()
    await a.close()
    await eventually(lambda: _lacks(b, {"user": "a"}), within=10)
    for client in (b, c):
        await client.close()

    async def materialised() -> bool:
        row = await lesson_row(db, lesson.id)
        return row["title"] == "Title" and row["content"]["body"] == text["body"]

    await eventually(materialised, within=5)


async def _has(client: YClient, state: object) -> bool:
    return state in client.awareness.values()


async def _lacks(client: YClient, state: object) -> bool:
    return state not in client.awareness.values()


async def test_revoking_closes_sockets_on_every_node(
        two_nodes: tuple[ServerProcess, ServerProcess], db: AsyncEngine) -> None:
    from sqlalchemy import delete

    from server.catalog.models import Collaborator

    a_node, b_node = two_nodes
    async with httpx.AsyncClient(base_url=a_node.base_url) as http:
        author = await dev_user(http, "Author")
        editor = await dev_user(http, "Editor")
    lesson = await make_lesson(db, author.clerk_id, editors=(editor.clerk_id,))
    on_a = await YClient.connect(a_node.ws_url, lesson.id, editor.token)
    on_b = await YClient.connect(b_node.ws_url, lesson.id, editor.token)
    author_b = await YClient.connect(b_node.ws_url, lesson.id, author.token)
    async with db.begin() as conn:
        await conn.execute(delete(Collaborator).where(Collaborator.course_id == lesson.course_id))
    assert await on_a.wait_closed(within=5) == 4404
    assert await on_b.wait_closed(within=5) == 4404
    assert author_b.close_code is None
    await author_b.close()


async def test_cursors_of_a_dead_node_disappear_on_the_others(
        database_url: str, data_dir: Path, redis_url: str, db: AsyncEngine) -> None:
    env = {"RATE_LIMIT_PER_MINUTE": "0"}
    doomed = ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=redis_url,
                           env={**env, "NODE_ID": "node-doomed"}).start()
    survivor = ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=redis_url,
                             env={**env, "NODE_ID": "node-survivor"}).start()
    try:
        async with httpx.AsyncClient(base_url=survivor.base_url) as http:
            author = await dev_user(http, "Author")
        lesson = await make_lesson(db, author.clerk_id)
        on_doomed = await YClient.connect(doomed.ws_url, lesson.id, author.token)
        on_survivor = await YClient.connect(survivor.ws_url, lesson.id, author.token)
        await on_doomed.set_awareness({"user": "doomed"})
        await eventually(lambda: _has(on_survivor, {"user": "doomed"}), within=2)
        doomed.kill()
        await on_doomed.wait_closed()
        await eventually(lambda: _lacks(on_survivor, {"user": "doomed"}), within=10)
        # The lesson opens at once on the surviving node for new clients too (no lease).
        again = await YClient.connect(survivor.ws_url, lesson.id, author.token)
        assert again.text() == on_survivor.text()
        await again.close()
        await on_survivor.close()
    finally:
        doomed.stop()
        survivor.stop()


async def _metric(node: ServerProcess, name: str) -> float:
    async with httpx.AsyncClient(base_url=node.base_url) as http:
        text = (await http.get("/metrics")).text
    return next(float(line.split(" ")[1]) for line in text.splitlines() if line.split(" ")[0] == name)


async def test_a_room_alone_on_its_node_publishes_nothing_and_a_later_node_misses_nothing(
        two_nodes: tuple[ServerProcess, ServerProcess], db: AsyncEngine) -> None:
    """A room no other node has open does not publish its updates to Redis. A node that opens it
    while some of them are not even committed yet (so not in what it loads) still gets them: the
    first node answers its question from the live document. From then on both relay. (A node that
    publishes would send those updates after their commit anyway; alone, the answer is their only
    way to node B: the test fails when the answer leaves them out.)"""
    a_node, b_node = two_nodes
    async with httpx.AsyncClient(base_url=a_node.base_url) as http:
        author = await dev_user(http, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="T", body="")
    a = await YClient.connect(a_node.ws_url, lesson.id, author.token)

    async def alone() -> bool:
        return await _metric(a_node, "scriptorium_collab_rooms_alone") >= 1

    await eventually(alone, within=10)
    published = await _metric(a_node, "scriptorium_collab_relay_updates_published_total")
    for n in range(40):
        a.body.insert(len(str(a.body)), f"{n},")
        await a.roundtrip()
    await a.saved()
    # 40 updates committed one by one, none published (where another node listens: one per commit)
    assert await _metric(a_node, "scriptorium_collab_relay_updates_published_total") - published < 5
    saved = "".join(f"{n}," for n in range(40))
    expected = saved + "".join(f"{n}," for n in range(40, 80))

    # Node A's appends wait on a lock (reads go on): 40 more updates are applied there, neither
    # committed nor published, when node B loads the room.
    async with db.connect() as conn:
        await conn.execute(text(f"LOCK TABLE {LessonUpdate.__tablename__} IN EXCLUSIVE MODE"))
        for n in range(40, 80):
            a.body.insert(len(str(a.body)), f"{n},")
        await a.roundtrip()
        b = await YClient.connect(b_node.ws_url, lesson.id, author.token)
        assert b.text()["body"] == saved
        await conn.rollback()
    assert (await converge([a, b], within=5))["body"] == expected
    # and from now on A publishes: B's edits and A's reach each other live
    b.body.insert(0, "B:")
    a.body.insert(len(str(a.body)), ":A")
    assert (await converge([a, b], within=5))["body"] == "B:" + expected + ":A"
    assert await _metric(a_node, "scriptorium_collab_rooms_alone") == 0
    for client in (a, b):
        await client.close()
