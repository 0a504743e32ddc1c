"""Building courses through the real API (and the few facts other branches own, straight in the DB)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    return response.json() if response.content else None


@dataclass
class BuiltCourse:
    id: str
    units: list[str] = field(default_factory=list)
    lessons: list[list[str]] = field(default_factory=list)

    @property
    def first_lesson(self) -> str:
        return self.lessons[0][0]


async def build_course(client: httpx.AsyncClient, author: DevUser, *, title: str = "A course",
                       units: int = 1, lessons: int = 1, publish: bool = True, **fields: Any) -> BuiltCourse:
    course = ok(await client.post("/api/courses", json={"title": title, **fields}, headers=author.headers), 201)
    built = BuiltCourse(course["id"])
    for u in range(units):
        unit = ok(await client.post(f"/api/courses/{built.id}/units", json={"title": f"Unit {u}"},
                                    headers=author.headers), 201)
        built.units.append(unit["id"])
        ids = []
        for i in range(lessons):
            lesson = ok(await client.post(
                f"/api/units/{unit['id']}/lessons",
                json={"title": f"Lesson {u}.{i}", "content_type": "text", "content": {"body": f"Text {u}.{i}"}},
                headers=author.headers), 201)
            ids.append(lesson["id"])
        built.lessons.append(ids)
    if publish:
        ok(await client.post(f"/api/courses/{built.id}/publish", headers=author.headers))
    return built


async def make_admin(db: AsyncEngine, user: DevUser) -> None:
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET role = 'admin' WHERE clerk_id = :c"), {"c": user.clerk_id})


async def enroll(db: AsyncEngine, user: DevUser, course_id: str) -> None:
    """Enrollment is the learning branch's route; the catalogue only needs the row."""
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO user_courses (user_id, course_id) VALUES (:u, :c) ON CONFLICT DO NOTHING"
        ), {"u": user.clerk_id, "c": uuid.UUID(course_id)})


async def set_status(db: AsyncEngine, user: DevUser, lesson_id: str, status: str) -> None:
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO user_progress (user_id, lesson_id, status) VALUES (:u, :l, :s) "
            "ON CONFLICT (user_id, lesson_id) DO UPDATE SET status = excluded.status"
        ), {"u": user.clerk_id, "l": uuid.UUID(lesson_id), "s": status})


async def progress_of(db: AsyncEngine, user: DevUser, course_id: str) -> float:
    async with db.connect() as conn:
        value = (await conn.execute(text(
            "SELECT progress FROM user_courses WHERE user_id = :u AND course_id = :c"
        ), {"u": user.clerk_id, "c": uuid.UUID(course_id)})).scalar_one()
    return float(value)


async def add_collaborator(client: httpx.AsyncClient, author: DevUser, course_id: str, user: DevUser,
                           role: str) -> None:
    ok(await client.post(f"/api/courses/{course_id}/collaborators", json={"clerk_id": user.clerk_id, "role": role},
                         headers=author.headers), 201)


def statements(response: httpx.Response) -> int:
    return int(response.headers["x-sql-statements"])
