"""Courses for forum tests, inserted straight into the database (the catalogue REST is separate)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser


@dataclass
class CourseRef:
    id: str
    lesson_id: str


async def make_course(db: AsyncEngine, author: DevUser, *, published: bool = True) -> CourseRef:
    course_id, unit_id, lesson_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO courses (id, author_id, title, is_published, published_at) "
            "VALUES (:id, :author, :title, :pub, CASE WHEN :pub THEN now() END)"
        ), {"id": course_id, "author": author.clerk_id, "title": f"Course {course_id.hex[:6]}", "pub": published})
        await conn.execute(text("INSERT INTO units (id, course_id, title) VALUES (:id, :c, 'Unit')"),
                           {"id": unit_id, "c": course_id})
        await conn.execute(text(
            "INSERT INTO lessons (id, unit_id, title, content_type) VALUES (:id, :u, 'Lesson', 'text')"
        ), {"id": lesson_id, "u": unit_id})
    return CourseRef(str(course_id), str(lesson_id))


async def add_collaborator(db: AsyncEngine, course: CourseRef, user: DevUser, role: str = "editor") -> None:
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO collaborators (course_id, user_id, role) VALUES (:c, :u, :r)"),
                           {"c": uuid.UUID(course.id), "u": user.clerk_id, "r": role})


async def create_post(client: httpx.AsyncClient, course: CourseRef, user: DevUser, title: str = "A question",
                      content: str = "How does **this** work?", **extra: Any) -> dict[str, Any]:
    response = await client.post(f"/api/courses/{course.id}/forum/posts", headers=user.headers,
                                 json={"title": title, "content": content, **extra})
    assert response.status_code == 201, response.text
    post: dict[str, Any] = response.json()
    return post


async def create_reply(client: httpx.AsyncClient, post_id: str, user: DevUser, content: str = "An answer",
                       parent: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"content": content}
    if parent is not None:
        body["parent_reply_id"] = parent
    response = await client.post(f"/api/forum/posts/{post_id}/replies", headers=user.headers, json=body)
    assert response.status_code == 201, response.text
    reply: dict[str, Any] = response.json()
    return reply


async def outbox(db: AsyncEngine, channel: str) -> list[tuple[str, dict[str, Any]]]:
    """The events recorded for ``channel``, oldest first."""
    async with db.connect() as conn:
        rows = (await conn.execute(
            text("SELECT event, data FROM event_outbox WHERE channel = :c ORDER BY id"), {"c": channel}
        )).all()
    return [(row.event, row.data) for row in rows]


@pytest.fixture
async def only_forum_notifications(db: AsyncEngine) -> AsyncIterator[None]:
    """Tests that count notifications exactly: a first post earns "First post" (which notifies
    too), so put the forum achievements out of reach for their duration, then restore them."""
    async with db.begin() as conn:
        saved = (await conn.execute(text(
            "SELECT id, requirement FROM achievements WHERE requirement ?| array['forum_posts', 'likes_received']"
        ))).all()
        await conn.execute(text(
            "UPDATE achievements SET requirement = jsonb_build_object(k, 1000000) "
            "FROM (SELECT id AS aid, (SELECT min(key) FROM jsonb_object_keys(requirement) key) AS k "
            "      FROM achievements) keys WHERE achievements.id = keys.aid AND achievements.id = ANY(:ids)"
        ), {"ids": [row.id for row in saved]})
    try:
        yield
    finally:
        async with db.begin() as conn:
            for row in saved:
                await conn.execute(text("UPDATE achievements SET requirement = CAST(:r AS jsonb) WHERE id = :i"),
                                   {"r": json.dumps(row.requirement), "i": row.id})
