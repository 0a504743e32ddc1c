"""Random concurrent edits by 2 and 10 clients converge, on the server and in ``lessons.content``;
the room API (apply, edit_text, record_version, compaction) used in-process against PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from collab.access import Grant
from collab.manager import RoomManager
from server.db import make_engine, make_sessionmaker
from server.editing.models import LessonSnapshot, LessonUpdate, LessonVersion
from server.editing.store import PgStore
from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient, converge, lesson_row, make_lesson

# An edit: (client index, field, position fraction, delete length, inserted text).
edit = st.tuples(st.integers(0, 9), st.sampled_from(["title", "body"]), st.floats(0, 1),
                 st.integers(0, 3), st.text(alphabet="abcXYZ é😀\n", max_size=4))


def apply_edit(client: YClient, field: str, where: float, delete: int, insert: str) -> None:
    text: Text = client.title if field == "title" else client.body
    current = str(text)
    index = int(where * len(current))
    # pycrdt indexes in UTF-8 bytes: edit through the minimal-diff helper on code points.
    new = current[:index] + insert + current[index + delete:]
    from collab.textdiff import apply_text

    with client.doc.transaction():
        apply_text(text, new)


async def run_random_edits(server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine,
                           n_clients: int, edits: list[tuple[int, str, float, int, str]]) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="Start", body="The body")
    clients = [await YClient.connect(server.ws_url, lesson.id, author.token) for _ in range(n_clients)]
    try:
        for i, (who, field, where, delete, insert) in enumerate(edits):
            apply_edit(clients[who % n_clients], field, where, delete, insert)
            if i % 7 == 0:
                await asyncio.sleep(0)  # let some edits cross in flight, others not
        text = await converge(clients)
        late = await YClient.connect(server.ws_url, lesson.id, author.token)
        assert late.text() == text  # the server's document
        await late.close()

        async def materialised() -> bool:
            row = await lesson_row(db, lesson.id)
            return row["title"] == text["title"] and row["content"]["body"] == text["body"]

        await eventually(materialised, within=5)
    finally:
        for c in clients:
            await c.close()


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(edit, min_size=1, max_size=30))
async def test_two_clients_converge(server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine,
                                    edits: list[tuple[int, str, float, int, str]]) -> None:
    await run_random_edits(server, client, db, 2, edits)


@pytest.mark.parametrize("seed", [1, 2])
async def test_ten_clients_converge(server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine,
                                    seed: int) -> None:
    rng = random.Random(seed)
    edits = [(rng.randrange(10), rng.choice(["title", "body"]), rng.random(), rng.randrange(4),
              rng.choice(["", "a", "XYZ", "é", "😀", "\n", "hello "])) for _ in range(150)]
    await run_random_edits(server, client, db, 10, edits)


# --- the room API in-process ----------------------------------------------------------------


async def _grant(scope: Any, lesson_id: str) -> Grant:
    return Grant(user_id="user_x", can_write=True)


async def _recheck(lesson_id: str, grant: Grant) -> bool:
    return True


async def test_room_api_apply_edit_text_versions_and_compaction(database_url: str, client: httpx.AsyncClient,
                                                                db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="Title", body="one two three")
    engine = make_engine(database_url)
    rooms = RoomManager(PgStore(make_sessionmaker(engine)), _grant, _recheck, compact_threshold=20)
    await rooms.start()
    try:
        assert await rooms.texts(lesson.id) == {"title": "Title", "body": "one two three"}

        def shout(doc: Doc[Any]) -> int:
            body = doc.get("body", type=Text)
            body.insert(0, "ONE! ")
            body.insert(len(str(body)), " end")
            return len(str(body))

        assert await rooms.apply(lesson.id, shout, actor=author.clerk_id) == len("ONE! one two three end")
        assert await rooms.edit_text(lesson.id, {"body": "ONE! one 2 three end 😀", "title": "Títle"},
                                     actor=author.clerk_id)
        assert not await rooms.edit_text(lesson.id, {"title": "Títle"}, actor=author.clerk_id)
        row = await lesson_row(db, lesson.id)
        assert row["title"] == "Títle" and row["content"]["body"] == "ONE! one 2 three end 😀"
        version_id = await rooms.record_version(lesson.id, "restore")
        async with db.connect() as conn:
            version = (await conn.execute(select(
                LessonVersion.body, LessonVersion.contributors, LessonVersion.reason).where(
                LessonVersion.id == uuid.UUID(version_id)))).one()
        assert version.body == "ONE! one 2 three end 😀" and version.contributors == [author.clerk_id]
        assert version.reason == "restore"
        assert await rooms.read(lesson.id, lambda doc: str(doc.get("title", type=Text))) == "Títle"

        # Many small changes pass the compaction threshold: snapshot + fewer log rows, same text.
        for i in range(30):
            await rooms.edit_text(lesson.id, {"body": f"body {i}"}, actor=None)

        async def compacted() -> bool:
            async with db.connect() as conn:
                snap = (await conn.execute(select(func.count()).select_from(LessonSnapshot).where(
                    LessonSnapshot.lesson_id == lesson.lesson_id))).scalar()
                rows = (await conn.execute(select(func.count()).select_from(LessonUpdate).where(
                    LessonUpdate.lesson_id == lesson.lesson_id))).scalar()
            return snap == 1 and (rows or 0) < 20

        await eventually(compacted, within=10)
        await rooms.flush()
    finally:
        await rooms.stop()
        await engine.dispose()
    # A fresh manager (another node, or after a restart) loads snapshot + log.
    engine = make_engine(database_url)
    again = RoomManager(PgStore(make_sessionmaker(engine)), _grant, _recheck)
    await again.start()
    try:
        assert await again.texts(lesson.id) == {"title": "Títle", "body": "body 29"}
    finally:
        await again.stop()
        await engine.dispose()


async def test_two_managers_seed_once(database_url: str, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="Once", body="seeded once")
    engines = [make_engine(database_url) for _ in range(2)]
    managers = [RoomManager(PgStore(make_sessionmaker(e)), _grant, _recheck) for e in engines]
    try:
        texts = await asyncio.gather(*(m.texts(lesson.id) for m in managers))
        assert texts == [{"title": "Once", "body": "seeded once"}] * 2
        async with db.connect() as conn:
            rows = (await conn.execute(select(func.count()).select_from(LessonUpdate).where(
                LessonUpdate.lesson_id == lesson.lesson_id))).scalar()
        assert rows == 1
    finally:
        for e in engines:
            await e.dispose()


async def test_periodic_versions_and_unloading(database_url: str, client: httpx.AsyncClient,
                                               db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="T", body="")
    engine = make_engine(database_url)
    rooms = RoomManager(PgStore(make_sessionmaker(engine)), _grant, _recheck,
                        version_interval=0.5, unload_after=1.0)
    await rooms.start()
    try:
        async def versions() -> list[tuple[str, str]]:
            return [(r.reason, r.body) for r in await version_rows()]

        async def version_rows() -> list[Any]:
            async with db.connect() as conn:
                return list((await conn.execute(
                    select(LessonVersion.reason, LessonVersion.body, LessonVersion.created_at).where(
                        LessonVersion.lesson_id == lesson.lesson_id).order_by(LessonVersion.created_at))).all())

        edits = 0

        async def two_periodic_versions() -> list[Any]:
            # Steady activity until the maintenance loop has recorded two periodic versions.
            nonlocal edits
            await rooms.edit_text(lesson.id, {"body": f"edit {edits}"}, actor=author.clerk_id)
            edits += 1
            periodic = [r for r in await version_rows() if r.reason == "periodic"]
            return periodic if len(periodic) >= 2 else []

        periodic = await eventually(two_periodic_versions, within=10, interval=0.05)
        # At most one per interval of activity (0.5 s; the loop ticks every 0.25 s), never one per edit.
        assert len(periodic) < edits
        gaps = [(b.created_at - a.created_at).total_seconds() for a, b in itertools.pairwise(periodic)]
        assert all(gap >= 0.4 for gap in gaps), gaps
        last = f"edit {edits - 1}"

        async def unloaded() -> bool:
            return lesson.id not in rooms.rooms

        await eventually(unloaded, within=5)
        # The last change is in a version (periodic or on close: the room leaves `rooms` before
        # its close version is written), recorded once.
        async def last_in_a_version() -> bool:
            return (await versions())[-1][1] == last

        await eventually(last_in_a_version, within=5)
        assert [v[1] for v in await versions()].count(last) == 1
        assert (await lesson_row(db, lesson.id))["content"]["body"] == last
        # Opening it again loads what was stored.
        assert (await rooms.texts(lesson.id))["body"] == last
    finally:
        await rooms.stop()
        await engine.dispose()


async def test_a_lesson_deleted_while_edited_does_not_block_others(
        database_url: str, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    from sqlalchemy import delete

    from server.catalog.models import Lesson

    author = await dev_user(client, "Author")
    doomed = await make_lesson(db, author.clerk_id, body="doomed")
    other = await make_lesson(db, author.clerk_id, body="other")
    engine = make_engine(database_url)
    rooms = RoomManager(PgStore(make_sessionmaker(engine)), _grant, _recheck)
    await rooms.start()
    try:
        await rooms.texts(doomed.id)
        async with db.begin() as conn:
            await conn.execute(delete(Lesson).where(Lesson.id == doomed.lesson_id))
        await rooms.edit_text(doomed.id, {"body": "edited after delete"}, actor=None)
        await rooms.edit_text(other.id, {"body": "other, edited"}, actor=None)
        await rooms.flush()
        async with db.connect() as conn:
            rows = (await conn.execute(select(func.count()).select_from(LessonUpdate).where(
                LessonUpdate.lesson_id == other.lesson_id))).scalar()
        assert rows == 2  # seed + edit
    finally:
        await rooms.stop()
        await engine.dispose()
