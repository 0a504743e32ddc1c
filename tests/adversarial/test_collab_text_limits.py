"""The live document obeys the REST text limits (issue 11, item 3; docs/API.md §5).

Materialisation used to write a title or body of any size into ``lessons`` (REST caps them at
200 and 200,000 characters), so one editor's 1.5 MB title reached every outline. Now an update
that takes ``title`` or ``body`` over its limit is refused: not relayed, persisted or
materialised; the room's document is rebuilt without it and its sender is closed with 4413.
Limits count characters (code points), not pycrdt's UTF-8 length.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pycrdt import Doc, Text
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from collab.access import Grant
from collab.manager import RoomManager
from collab.room import TextTooLong
from server.db import make_engine, make_sessionmaker
from server.editing.models import LessonUpdate
from server.editing.store import PgStore
from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient, converge, lesson_row, make_lesson

TOO_LARGE = 4413


async def _materialised(db: AsyncEngine, lesson_id: str, body: str) -> None:
    async def done() -> bool:
        return bool((await lesson_row(db, lesson_id))["content"]["body"] == body)

    await eventually(done, within=6)


async def test_an_oversized_title_is_refused_and_never_materialised(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    editor = await dev_user(client, "Editor")
    lesson = await make_lesson(db, author.clerk_id, title="Limits", body="Body.", editors=(editor.clerk_id,))
    honest = await YClient.connect(server.ws_url, lesson.id, author.token)
    attacker = await YClient.connect(server.ws_url, lesson.id, editor.token)
    attacker.title.insert(0, "x" * 1_500_000)  # one update, under the 2 MiB message limit
    assert await attacker.wait_closed() == TOO_LARGE

    honest.body.insert(len(str(honest.body)), " More.")
    await honest.roundtrip()
    await _materialised(db, lesson.id, "Body. More.")
    row = await lesson_row(db, lesson.id)
    print(f"\nlesson title after the attack: {len(row['title'])} characters")
    assert row["title"] == "Limits"
    # The room forgot it: a newcomer syncs the honest document, and the log never had it.
    late = await YClient.connect(server.ws_url, lesson.id, author.token)
    assert await converge([honest, late]) == {"title": "Limits", "body": "Body. More."}
    await honest.saved()
    async with db.connect() as conn:
        sizes = (await conn.execute(select(LessonUpdate.update).where(
            LessonUpdate.lesson_id == lesson.lesson_id))).scalars().all()
    assert max(len(u) for u in sizes) < 10_000
    await honest.close()
    await late.close()


async def test_limits_count_characters(server: ServerProcess, client: httpx.AsyncClient,
                                       db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="", body="")
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    a.title.insert(0, "😀" * 200)  # 200 characters, 800 UTF-8 bytes: within the limit
    a.body.insert(0, "é" * 199_990)
    await a.roundtrip()
    await _materialised(db, lesson.id, "é" * 199_990)
    assert (await lesson_row(db, lesson.id))["title"] == "😀" * 200
    a.body.insert(0, "é" * 10)  # exactly 200,000
    await a.roundtrip()
    await _materialised(db, lesson.id, "é" * 200_000)
    a.title.insert(0, "😀")  # 201
    assert await a.wait_closed() == TOO_LARGE
    b = await YClient.connect(server.ws_url, lesson.id, author.token)
    b.body.insert(0, "é")  # 200,001
    assert await b.wait_closed() == TOO_LARGE
    c = await YClient.connect(server.ws_url, lesson.id, author.token)
    assert len(c.text()["title"]) == 200 and len(c.text()["body"]) == 200_000
    del c.body[0:2]  # making room first is fine (pycrdt indexes UTF-8 bytes: one "é")
    c.body.insert(0, "x")
    await c.roundtrip()
    await _materialised(db, lesson.id, "x" + "é" * 199_999)
    assert c.close_code is None
    await c.close()


async def test_a_server_change_over_a_limit_is_undone(database_url: str, client: httpx.AsyncClient,
                                                      db: AsyncEngine) -> None:
    """``RoomManager.apply(..., enforce_limits=True)`` (for accepting suggestions and restores)."""
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="Short", body="Body.")
    engine = make_engine(database_url)
    rooms = RoomManager(PgStore(make_sessionmaker(engine)), _grant, _recheck)
    await rooms.start()
    try:
        def lengthen(doc: Doc[Any]) -> None:
            doc.get("title", type=Text).insert(0, "x" * 196)  # 201 characters

        with pytest.raises(TextTooLong):
            await rooms.apply(lesson.id, lengthen, actor=author.clerk_id, enforce_limits=True)
        assert await rooms.texts(lesson.id) == {"title": "Short", "body": "Body."}

        def fits(doc: Doc[Any]) -> None:
            doc.get("title", type=Text).insert(0, "x" * 195)  # 200

        await rooms.apply(lesson.id, fits, actor=author.clerk_id, enforce_limits=True)
        assert (await rooms.texts(lesson.id))["title"] == "x" * 195 + "Short"

        def fails(doc: Doc[Any]) -> None:
            doc.get("body", type=Text).insert(0, "half-done ")
            raise RuntimeError("the change failed midway")

        with pytest.raises(RuntimeError):
            await rooms.apply(lesson.id, fails, actor=author.clerk_id)
        assert (await rooms.texts(lesson.id))["body"] == "Body."
    finally:
        await rooms.stop()
        await engine.dispose()


async def _grant(scope: Any, lesson_id: str) -> Grant:
    return Grant(user_id="user_x", can_write=True)


async def _recheck(lesson_id: str, grant: Grant) -> bool:
    return True
