"""The cached outline never goes stale: every kind of change shows on the next GET (warm cache).

Changes go through the API where it has a route and straight into PostgreSQL otherwise (as another
node or a script would write them): the cache is keyed by ``courses.outline_version``, which the
database bumps, so both must show.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser, ServerProcess, dev_user, eventually
from tests.support.catalog import build_course, enroll, ok, statements
from tests.support.collab import YClient


async def warm_outline(client: httpx.AsyncClient, course_id: str, headers: dict[str, str] | None = None) -> Any:
    """The outline as a caller sees it; the same GET again is served from the cache: 1 statement
    (plus, when signed in, the principal's row, which auth reads on every request)."""
    first = await client.get(f"/api/courses/{course_id}/outline", headers=headers or {})
    assert first.status_code == 200, first.text
    again = await client.get(f"/api/courses/{course_id}/outline", headers=headers or {})
    assert again.content == first.content
    assert statements(again) == (2 if headers else 1), statements(again)
    return first.json()


def titles(outline: Any) -> list[tuple[str, list[str]]]:
    return [(u["title"], [lesson["title"] for lesson in u["lessons"]]) for u in outline["units"]]


async def sql(db: AsyncEngine, statement: str, **params: Any) -> None:
    async with db.begin() as conn:
        await conn.execute(text(statement), params)


async def outline_version(db: AsyncEngine, course_id: str) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(text("SELECT outline_version FROM courses WHERE id = :c"),
                                       {"c": uuid.UUID(course_id)})).scalar_one())


async def test_every_change_shows_on_a_warm_cache(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser) -> None:
    course = await build_course(client, alice, title="Cached", units=2, lessons=2, tags=["one"])
    cid, h = course.id, alice.headers
    stranger = await dev_user(client, "Stranger")
    outline = await warm_outline(client, cid)
    assert titles(outline) == [("Unit 0", ["Lesson 0.0", "Lesson 0.1"]), ("Unit 1", ["Lesson 1.0", "Lesson 1.1"])]
    # Anonymous and signed-in strangers share the cached bytes.
    assert await warm_outline(client, cid, stranger.headers) == outline

    # Units: add, rename, delete.
    unit = ok(await client.post(f"/api/courses/{cid}/units", json={"title": "Unit 2"}, headers=h), 201)
    assert [u["title"] for u in (await warm_outline(client, cid))["units"]] == ["Unit 0", "Unit 1", "Unit 2"]
    ok(await client.patch(f"/api/units/{unit['id']}", json={"title": "Unit two"}, headers=h))
    assert [u["title"] for u in (await warm_outline(client, cid))["units"]] == ["Unit 0", "Unit 1", "Unit two"]
    ok(await client.delete(f"/api/units/{unit['id']}", headers=h), 204)
    assert [u["title"] for u in (await warm_outline(client, cid))["units"]] == ["Unit 0", "Unit 1"]

    # Lessons: add, rename, move to another unit, reorder, delete.
    lesson = ok(await client.post(f"/api/units/{course.units[0]}/lessons",
                                  json={"title": "New", "content_type": "text", "content": {"body": "x"}},
                                  headers=h), 201)
    outline = await warm_outline(client, cid)
    assert titles(outline)[0] == ("Unit 0", ["Lesson 0.0", "Lesson 0.1", "New"])
    assert outline["course"]["lesson_count"] == 5
    ok(await client.patch(f"/api/lessons/{lesson['id']}", json={"title": "Renamed"}, headers=h))
    assert titles(await warm_outline(client, cid))[0] == ("Unit 0", ["Lesson 0.0", "Lesson 0.1", "Renamed"])
    ok(await client.patch(f"/api/lessons/{lesson['id']}", json={"unit_id": course.units[1], "position": 0}, headers=h))
    assert titles(await warm_outline(client, cid)) == [("Unit 0", ["Lesson 0.0", "Lesson 0.1"]),
                                                       ("Unit 1", ["Renamed", "Lesson 1.0", "Lesson 1.1"])]
    ok(await client.patch(f"/api/lessons/{lesson['id']}", json={"position": 2}, headers=h))
    assert titles(await warm_outline(client, cid))[1] == ("Unit 1", ["Lesson 1.0", "Lesson 1.1", "Renamed"])
    await sql(db, "UPDATE lessons SET content_type = 'audio' WHERE id = :l", l=uuid.UUID(lesson["id"]))
    assert (await warm_outline(client, cid))["units"][1]["lessons"][2]["content_type"] == "audio"
    # A change the outline does not show (the body) leaves the cached bytes valid.
    version = await outline_version(db, cid)
    ok(await client.patch(f"/api/lessons/{lesson['id']}", json={"content": {"body": "changed"}}, headers=h))
    assert await outline_version(db, cid) == version
    ok(await client.delete(f"/api/lessons/{lesson['id']}", headers=h), 204)
    outline = await warm_outline(client, cid)
    assert titles(outline)[1] == ("Unit 1", ["Lesson 1.0", "Lesson 1.1"])
    assert outline["course"]["lesson_count"] == 4

    # A lesson moved to another course (in SQL) leaves one outline and joins the other.
    other = await build_course(client, alice, title="Other", units=1, lessons=1)
    await warm_outline(client, other.id)
    await sql(db, "UPDATE lessons SET unit_id = :u WHERE id = :l",
              u=uuid.UUID(other.units[0]), l=uuid.UUID(course.lessons[0][0]))
    assert titles(await warm_outline(client, cid))[0] == ("Unit 0", ["Lesson 0.1"])
    assert titles(await warm_outline(client, other.id)) == [("Unit 0", ["Lesson 0.0", "Lesson 0.0"])]

    # Enrollment add/remove (API and SQL) → enrolled_count.
    learner = await dev_user(client, "Learner")
    ok(await client.put(f"/api/courses/{cid}/enrollment", headers=learner.headers))
    assert (await warm_outline(client, cid))["course"]["enrolled_count"] == 1
    await enroll(db, stranger, cid)
    assert (await warm_outline(client, cid))["course"]["enrolled_count"] == 2
    # The enrolled see their status per lesson (not cached), strangers still the shared outline.
    mine = (await client.get(f"/api/courses/{cid}/outline", headers=stranger.headers)).json()
    assert mine["units"][0]["lessons"][0]["status"] == "not_started"
    assert "status" not in (await warm_outline(client, cid, alice.headers))["units"][0]["lessons"][0]
    await sql(db, "DELETE FROM user_courses WHERE user_id = :u AND course_id = :c",
              u=stranger.clerk_id, c=uuid.UUID(cid))
    assert (await warm_outline(client, cid))["course"]["enrolled_count"] == 1
    assert "status" not in (await warm_outline(client, cid, stranger.headers))["units"][0]["lessons"][0]

    # Feedback add/change (API) and delete (SQL) → rating.
    ok(await client.post(f"/api/courses/{cid}/feedback", json={"rating": 4}, headers=learner.headers), 201)
    course_payload = (await warm_outline(client, cid))["course"]
    assert (course_payload["rating_avg"], course_payload["rating_count"]) == (4, 1)
    ok(await client.post(f"/api/courses/{cid}/feedback", json={"rating": 2}, headers=learner.headers))
    assert (await warm_outline(client, cid))["course"]["rating_avg"] == 2
    await sql(db, "DELETE FROM course_feedback WHERE course_id = :c", c=uuid.UUID(cid))
    course_payload = (await warm_outline(client, cid))["course"]
    assert (course_payload["rating_avg"], course_payload["rating_count"]) == (None, 0)

    # Tags: replaced via the API, a tag renamed in SQL.
    ok(await client.patch(f"/api/courses/{cid}", json={"tags": ["one", "two"]}, headers=h))
    assert (await warm_outline(client, cid))["course"]["tags"] == ["one", "two"]
    renamed = f"renamed-{uuid.uuid4().hex[:6]}"
    await sql(db, "UPDATE tags SET name = :n WHERE name = 'two'", n=renamed)
    assert (await warm_outline(client, cid))["course"]["tags"] == ["one", renamed]

    # The course's own columns, its language, its author's name.
    ok(await client.patch(f"/api/courses/{cid}", json={"description": "Now described", "language": "de"}, headers=h))
    course_payload = (await warm_outline(client, cid))["course"]
    assert course_payload["description"] == "Now described"
    assert course_payload["language"] == {"code": "de", "name": "German"}
    ok(await client.patch("/api/me", json={"name": "Alice Renamed"}, headers=h))
    assert (await warm_outline(client, cid))["course"]["author"]["name"] == "Alice Renamed"

    # Unpublish: strangers get 404 with a warm cache, the author still sees the draft; publish again.
    before = (await warm_outline(client, cid))["course"]["updated_at"]
    ok(await client.post(f"/api/courses/{cid}/unpublish", headers=h))
    for headers in ({}, stranger.headers):
        assert (await client.get(f"/api/courses/{cid}/outline", headers=headers)).status_code == 404
    draft = (await warm_outline(client, cid, h))["course"]
    assert draft["is_published"] is False and draft["updated_at"] != before
    for headers in ({}, stranger.headers):
        assert (await client.get(f"/api/courses/{cid}/outline", headers=headers)).status_code == 404
    ok(await client.post(f"/api/courses/{cid}/publish", headers=h))
    assert (await warm_outline(client, cid))["course"]["is_published"] is True

    # Deleted: 404, not the cached copy.
    ok(await client.delete(f"/api/courses/{other.id}", headers=h), 204)
    assert (await client.get(f"/api/courses/{other.id}/outline")).status_code == 404


async def test_bumps_only_keep_the_course_updated_at(client: httpx.AsyncClient, db: AsyncEngine,
                                                     alice: DevUser) -> None:
    """A change elsewhere (an enrollment) refreshes the outline without touching the course's updated_at."""
    course = await build_course(client, alice, units=1, lessons=1)
    before = (await warm_outline(client, course.id))["course"]
    learner = await dev_user(client, "Learner")
    await enroll(db, learner, course.id)
    after = (await warm_outline(client, course.id))["course"]
    assert after["enrolled_count"] == 1 and after["updated_at"] == before["updated_at"]


async def test_live_materialisation_of_a_title_shows(server: ServerProcess, client: httpx.AsyncClient,
                                                    alice: DevUser) -> None:
    course = await build_course(client, alice, units=1, lessons=1)
    assert titles(await warm_outline(client, course.id)) == [("Unit 0", ["Lesson 0.0"])]
    writer = await YClient.connect(server.ws_url, course.first_lesson, alice.token)
    try:
        writer.title.insert(0, "Live ")

        async def shown() -> bool:
            outline = (await client.get(f"/api/courses/{course.id}/outline")).json()
            return bool(titles(outline) == [("Unit 0", ["Live Lesson 0.0"])])

        await eventually(shown, within=10)
        await warm_outline(client, course.id)
    finally:
        await writer.close()
