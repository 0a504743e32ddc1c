"""Helpers for the learning/feedback/media/quiz tests: build courses through the real REST API."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from tests.support import DevUser


@dataclass
class BuiltCourse:
    id: str
    unit_ids: list[str] = field(default_factory=list)
    lesson_ids: list[str] = field(default_factory=list)


async def build_course(client: httpx.AsyncClient, author: DevUser, *, units: int = 1, lessons_per_unit: int = 3,
                       publish: bool = True, title: str = "Course") -> BuiltCourse:
    created = await client.post("/api/courses", json={"title": title}, headers=author.headers)
    assert created.status_code == 201, created.text
    course = BuiltCourse(created.json()["id"])
    for u in range(units):
        unit = await client.post(f"/api/courses/{course.id}/units", json={"title": f"Unit {u}"},
                                 headers=author.headers)
        assert unit.status_code == 201, unit.text
        course.unit_ids.append(unit.json()["id"])
        for n in range(lessons_per_unit):
            lesson = await client.post(f"/api/units/{unit.json()['id']}/lessons",
                                       json={"title": f"Lesson {u}.{n}", "content_type": "text",
                                             "content": {"body": f"# Lesson {u}.{n}"}},
                                       headers=author.headers)
            assert lesson.status_code == 201, lesson.text
            course.lesson_ids.append(lesson.json()["id"])
    if publish:
        published = await client.post(f"/api/courses/{course.id}/publish", headers=author.headers)
        assert published.status_code == 200, published.text
    return course


async def enroll(client: httpx.AsyncClient, user: DevUser, course_id: str) -> None:
    response = await client.put(f"/api/courses/{course_id}/enrollment", headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json()["enrolled"] is True
