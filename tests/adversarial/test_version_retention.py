"""A lesson's version history is bounded (storage amplification, issue 11).

Each version stores the lesson's text and the whole document state, and one is recorded every
time the last editor leaves a room: an editor connecting and disconnecting in a loop recorded a
version per cycle, kept forever. Now: every version of the last ``VERSION_KEEP_DAYS`` days plus
the ``VERSION_KEEP_OLDER`` newest older ones, never more than ``VERSION_MAX_PER_LESSON``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db import make_sessionmaker
from server.editing import store as editing_store
from server.editing.store import PgStore
from tests.support import DevUser
from tests.support.forum import make_course

STATE = b"\x00" * 2048  # stands for a document state


async def version_ages(db: AsyncEngine, lesson_id: str) -> list[float]:
    """Ages in days of the lesson's versions, newest first."""
    async with db.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT extract(epoch FROM now() - created_at) / 86400 FROM lesson_versions "
            "WHERE lesson_id = :l ORDER BY created_at DESC"), {"l": uuid.UUID(lesson_id)})).scalars().all()
    return [float(r) for r in rows]


async def record(store: PgStore, lesson_id: str, n: int) -> None:
    for i in range(n):
        await store.record_version(lesson_id, title="T", body=f"body {i}", state=STATE, contributors=[],
                                   reason="periodic")


async def test_a_join_leave_loop_cannot_grow_the_history(client: httpx.AsyncClient, db: AsyncEngine,
                                                         alice: DevUser) -> None:
    lesson = (await make_course(db, alice)).lesson_id
    store = PgStore(make_sessionmaker(db))  # the defaults: 30 days, 50 older, 500 in all
    await record(store, lesson, 520)
    assert len(await version_ages(db, lesson)) == 500


async def test_old_versions_are_thinned_recent_ones_kept(client: httpx.AsyncClient, db: AsyncEngine,
                                                         alice: DevUser) -> None:
    lesson = (await make_course(db, alice)).lesson_id
    old = datetime.now(UTC) - timedelta(days=40)
    async with db.begin() as conn:
        for i in range(8):
            await conn.execute(text(
                "INSERT INTO lesson_versions (lesson_id, title, body, state, created_at) "
                "VALUES (:l, 'T', 'old', :s, :at)"), {"l": uuid.UUID(lesson), "s": STATE, "at": old + timedelta(hours=i)})
    retention = editing_store.VersionRetention(keep_days=30, keep_older=3, max_per_lesson=500)
    store = PgStore(make_sessionmaker(db), retention)
    await record(store, lesson, 5)
    ages = await version_ages(db, lesson)
    recent = [a for a in ages if a < 30]
    older = [a for a in ages if a >= 30]
    assert len(recent) == 5 and len(older) == 3
    assert max(older) < 40 - 4 / 24  # the newest of the old ones stayed
