"""Direct-DB setup for the motivation tests (catalog/learning REST is built elsewhere)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def make_user(db: AsyncEngine, *, timezone: str = "UTC", role: str = "member") -> str:
    clerk_id = f"user_direct_{uuid.uuid4().hex[:10]}"
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO users (clerk_id, name, timezone, role) VALUES (:c, :n, :tz, :r)"),
                           {"c": clerk_id, "n": "Direct", "tz": timezone, "r": role})
    return clerk_id


async def make_lessons(db: AsyncEngine, *, author_id: str, count: int,
                       content: dict[str, Any] | None = None) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A published course with one unit of ``count`` lessons; returns (course id, lesson ids)."""
    import json

    async with db.begin() as conn:
        course_id = (await conn.execute(text(
            "INSERT INTO courses (author_id, title, is_published) VALUES (:a, 'Course', true) RETURNING id"
        ), {"a": author_id})).scalar_one()
        unit_id = (await conn.execute(text(
            "INSERT INTO units (course_id, title) VALUES (:c, 'Unit') RETURNING id"), {"c": course_id}
        )).scalar_one()
        lessons = []
        for i in range(count):
            lessons.append((await conn.execute(text(
                "INSERT INTO lessons (unit_id, title, content_type, content, position)"
                " VALUES (:u, :t, 'text', CAST(:content AS jsonb), :p) RETURNING id"
            ), {"u": unit_id, "t": f"Lesson {i}", "content": json.dumps(content or {}), "p": i})).scalar_one())
    return course_id, lessons


async def complete_lesson(conn: Any, *, user_id: str, lesson_id: uuid.UUID, at: datetime) -> None:
    await conn.execute(text(
        "INSERT INTO user_progress (user_id, lesson_id, status, completed_at)"
        " VALUES (:u, :l, 'completed', :at)"
        " ON CONFLICT (user_id, lesson_id) DO UPDATE SET status = 'completed', completed_at = :at"
    ), {"u": user_id, "l": lesson_id, "at": at})


async def notifications_of(db: AsyncEngine, user_id: str, type_: str) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        rows = await conn.execute(text(
            "SELECT title, body, metadata FROM notifications WHERE user_id = :u AND type = :t ORDER BY created_at"
        ), {"u": user_id, "t": type_})
        return [dict(r) for r in rows.mappings()]


async def outbox_events(db: AsyncEngine, channel: str, event: str) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        rows = await conn.execute(text(
            "SELECT data FROM event_outbox WHERE channel = :c AND event = :e ORDER BY id"
        ), {"c": channel, "e": event})
        return [r for (r,) in rows]
