"""Enrollment and progress through a real server: idempotency, exactness, concurrency, bad input."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser, dev_user
from tests.support.learning import build_course, enroll


async def test_enrollment_is_idempotent_and_listed(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    course = await build_course(client, alice, title="Idempotent enrolment")
    first = await client.put(f"/api/courses/{course.id}/enrollment", headers=bob.headers)
    again = await client.put(f"/api/courses/{course.id}/enrollment", headers=bob.headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["enrolled"] is True and first.json()["progress"] == 0
    assert again.json() == first.json()
    mine = (await client.get("/api/me/courses", headers=bob.headers)).json()
    assert [c["id"] for c in mine["items"]] == [course.id]
    item = mine["items"][0]
    assert item["title"] == "Idempotent enrolment" and item["progress"] == 0 and item["lesson_count"] == 3
    assert item["author"]["clerk_id"] == alice.clerk_id
    left = await client.delete(f"/api/courses/{course.id}/enrollment", headers=bob.headers)
    left_again = await client.delete(f"/api/courses/{course.id}/enrollment", headers=bob.headers)
    assert left.status_code == left_again.status_code == 200
    assert left.json()["enrolled"] is False and left_again.json()["enrolled"] is False
    assert (await client.get("/api/me/courses", headers=bob.headers)).json()["items"] == []


async def test_me_courses_keyset_pages(client: httpx.AsyncClient, alice: DevUser) -> None:
    learner = await dev_user(client, "Pager")
    ids = []
    for n in range(5):
        course = await build_course(client, alice, lessons_per_unit=1, title=f"Paged {n}")
        await enroll(client, learner, course.id)
        ids.append(course.id)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/api/me/courses", params=params, headers=learner.headers)).json()
        assert len(body["items"]) <= 2
        seen += [c["id"] for c in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    bad = await client.get("/api/me/courses", params={"limit": "0"}, headers=learner.headers)
    assert bad.status_code == 422


async def test_enrollment_needs_a_readable_published_course(client: httpx.AsyncClient, alice: DevUser,
                                                            bob: DevUser) -> None:
    draft = await build_course(client, alice, publish=False)
    assert (await client.put(f"/api/courses/{draft.id}/enrollment", headers=bob.headers)).status_code == 404
    own_draft = await client.put(f"/api/courses/{draft.id}/enrollment", headers=alice.headers)
    assert own_draft.status_code == 409
    assert (await client.put(f"/api/courses/{uuid.uuid4()}/enrollment", headers=bob.headers)).status_code == 404
    assert (await client.put("/api/courses/not-a-uuid/enrollment", headers=bob.headers)).status_code == 404
    published = await build_course(client, alice)
    anonymous = await client.put(f"/api/courses/{published.id}/enrollment")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"


async def test_progress_is_exact_and_completion_is_recorded(client: httpx.AsyncClient, alice: DevUser,
                                                             bob: DevUser) -> None:
    course = await build_course(client, alice, lessons_per_unit=3)
    await enroll(client, bob, course.id)
    url = "/api/lessons/{}/progress"
    one = await client.put(url.format(course.lesson_ids[0]), json={"status": "completed"}, headers=bob.headers)
    assert one.status_code == 200
    assert one.json()["lesson_id"] == course.lesson_ids[0] and one.json()["status"] == "completed"
    assert abs(one.json()["progress"] - 100 / 3) < 1e-9
    started = await client.put(url.format(course.lesson_ids[1]), json={"status": "in_progress"},
                               headers=bob.headers)
    assert abs(started.json()["progress"] - 100 / 3) < 1e-9
    for lesson in course.lesson_ids[1:]:
        done = await client.put(url.format(lesson), json={"status": "completed"}, headers=bob.headers)
    assert done.json()["progress"] == 100
    progress = (await client.get(f"/api/courses/{course.id}/progress", headers=bob.headers)).json()
    assert progress["progress"] == 100 and progress["completed_lessons"] == progress["total_lessons"] == 3
    assert progress["completed_at"] is not None
    # A lesson deleted from a finished course: still exactly 100, never 101 nor 99.
    deleted = await client.delete(f"/api/lessons/{course.lesson_ids[2]}", headers=alice.headers)
    assert deleted.status_code == 204
    after = (await client.get(f"/api/courses/{course.id}/progress", headers=bob.headers)).json()
    assert after["progress"] == 100 and after["completed_lessons"] == after["total_lessons"] == 2
    # Un-completing lowers progress; completed_at of the course stays (it was completed once).
    undone = await client.put(url.format(course.lesson_ids[0]), json={"status": "not_started"},
                              headers=bob.headers)
    assert undone.json()["progress"] == 50
    back = await client.put(url.format(course.lesson_ids[0]), json={"status": "completed"}, headers=bob.headers)
    assert back.json()["progress"] == 100
    listed = (await client.get("/api/me/courses", headers=bob.headers)).json()["items"]
    assert [(c["id"], c["progress"]) for c in listed] == [(course.id, 100)]


async def test_progress_exact_after_lesson_deleted_from_partial_course(client: httpx.AsyncClient,
                                                                      alice: DevUser, bob: DevUser) -> None:
    course = await build_course(client, alice, lessons_per_unit=4)
    await enroll(client, bob, course.id)
    for lesson in course.lesson_ids[:3]:
        await client.put(f"/api/lessons/{lesson}/progress", json={"status": "completed"}, headers=bob.headers)
    assert (await client.get(f"/api/courses/{course.id}/progress", headers=bob.headers)).json()["progress"] == 75
    # Removing the one lesson left makes the course complete: exactly 100 and completed_at set.
    await client.delete(f"/api/lessons/{course.lesson_ids[3]}", headers=alice.headers)
    now = (await client.get(f"/api/courses/{course.id}/progress", headers=bob.headers)).json()
    assert now["progress"] == 100 and now["completed_at"] is not None
    # A new lesson lowers it again (to 3 of 4).
    await client.post(f"/api/units/{course.unit_ids[0]}/lessons", json={"title": "New", "content_type": "text"},
                      headers=alice.headers)
    assert (await client.get(f"/api/courses/{course.id}/progress", headers=bob.headers)).json()["progress"] == 75


async def test_progress_bad_input(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    course = await build_course(client, alice, lessons_per_unit=1)
    lesson = course.lesson_ids[0]
    not_enrolled = await client.put(f"/api/lessons/{lesson}/progress", json={"status": "completed"},
                                    headers=bob.headers)
    assert not_enrolled.status_code == 409
    assert not_enrolled.headers["content-type"] == "application/problem+json"
    await enroll(client, bob, course.id)
    typo = await client.put(f"/api/lessons/{lesson}/progress", json={"status": "complete"}, headers=bob.headers)
    assert typo.status_code == 422 and typo.json()["errors"][0]["loc"] == "status"
    missing = await client.put(f"/api/lessons/{lesson}/progress", json={}, headers=bob.headers)
    assert missing.status_code == 422
    not_json = await client.put(f"/api/lessons/{lesson}/progress", content=b"{", headers=bob.headers)
    assert not_json.status_code == 400
    unknown = await client.put(f"/api/lessons/{uuid.uuid4()}/progress", json={"status": "completed"},
                               headers=bob.headers)
    assert unknown.status_code == 404
    bad_id = await client.put("/api/lessons/42/progress", json={"status": "completed"}, headers=bob.headers)
    assert bad_id.status_code == 404
    anonymous = await client.put(f"/api/lessons/{lesson}/progress", json={"status": "completed"})
    assert anonymous.status_code == 401
    assert (await client.get(f"/api/courses/{course.id}/progress")).status_code == 401
    stranger = await dev_user(client, "Stranger")
    mine = (await client.get(f"/api/courses/{course.id}/progress", headers=stranger.headers)).json()
    assert mine["enrolled"] is False and mine["progress"] == 0 and mine["total_lessons"] == 1


async def test_concurrent_progress_writes_lose_nothing(client: httpx.AsyncClient, alice: DevUser,
                                                       db: AsyncEngine) -> None:
    """Hundreds of concurrent PUTs by several learners: every final value is exact."""
    course = await build_course(client, alice, units=2, lessons_per_unit=10)
    learners = [await dev_user(client, f"Racer {n}") for n in range(4)]
    for learner in learners:
        await enroll(client, learner, course.id)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=str(client.base_url), timeout=60, limits=limits) as burst:
        async def put(learner: DevUser, lesson: str, status: str) -> int:
            response = await burst.put(f"/api/lessons/{lesson}/progress", json={"status": status},
                                       headers=learner.headers)
            return response.status_code

        # Round 1: each learner starts every lesson and completes it, all at once (interleaved).
        calls = []
        for lesson in course.lesson_ids:
            for learner in learners:
                calls += [put(learner, lesson, "in_progress")]
        assert set(await asyncio.gather(*calls)) == {200}
        # Every learner completes every lesson, except learner 0 who skips the last 5 of 20 (75).
        calls = [put(learner, lesson, "completed")
                 for i, lesson in enumerate(course.lesson_ids) for learner in learners
                 if not (learner is learners[0] and i >= 15)]
        assert set(await asyncio.gather(*calls)) == {200}
    for n, learner in enumerate(learners):
        progress = (await client.get(f"/api/courses/{course.id}/progress", headers=learner.headers)).json()
        expected = 75 if n == 0 else 100
        assert progress["progress"] == expected, (n, progress)
        assert (progress["completed_at"] is not None) == (expected == 100)
    async with db.connect() as conn:
        stored = (await conn.execute(text(
            "SELECT user_id, progress FROM user_courses WHERE course_id = :c"), {"c": course.id})).all()
    assert sorted(p for _, p in stored) == [75, 100, 100, 100]


async def test_me_courses_runs_the_same_statements_for_1_or_50(client: httpx.AsyncClient, alice: DevUser,
                                                               db: AsyncEngine) -> None:
    learner = await dev_user(client, "Collector")
    async with db.begin() as conn:
        await conn.execute(text(
            "WITH c AS (INSERT INTO courses (author_id, title, is_published) "
            "SELECT :a, 'Bulk ' || n, true FROM generate_series(1, 55) n RETURNING id) "
            "INSERT INTO user_courses (user_id, course_id) SELECT :u, id FROM c"),
            {"a": alice.clerk_id, "u": learner.clerk_id})
    one = await client.get("/api/me/courses", params={"limit": "1"}, headers=learner.headers)
    fifty = await client.get("/api/me/courses", params={"limit": "50"}, headers=learner.headers)
    assert len(one.json()["items"]) == 1 and len(fifty.json()["items"]) == 50
    assert int(one.headers["x-sql-statements"]) == int(fifty.headers["x-sql-statements"])


async def test_progress_stays_exact_while_lessons_are_deleted(client: httpx.AsyncClient, alice: DevUser) -> None:
    """Completions racing with lesson deletions: no 5xx, and everyone ends at exactly 100."""
    course = await build_course(client, alice, units=2, lessons_per_unit=8)
    learners = [await dev_user(client, f"Deletion racer {n}") for n in range(3)]
    for learner in learners:
        await enroll(client, learner, course.id)
    doomed = set(course.lesson_ids[::4])
    async with httpx.AsyncClient(base_url=str(client.base_url), timeout=60,
                                 limits=httpx.Limits(max_connections=40)) as burst:
        async def complete(learner: DevUser, lesson: str) -> int:
            response = await burst.put(f"/api/lessons/{lesson}/progress", json={"status": "completed"},
                                       headers=learner.headers)
            return response.status_code

        async def remove(lesson: str) -> int:
            return (await burst.delete(f"/api/lessons/{lesson}", headers=alice.headers)).status_code

        calls = [complete(learner, lesson) for lesson in course.lesson_ids for learner in learners]
        for k, lesson in enumerate(sorted(doomed)):
            calls.insert(3 + 9 * k, remove(lesson))
        statuses = await asyncio.gather(*calls)
    assert set(statuses) <= {200, 204, 404}, statuses
    for learner in learners:
        progress = (await client.get(f"/api/courses/{course.id}/progress", headers=learner.headers)).json()
        assert progress["total_lessons"] == len(course.lesson_ids) - len(doomed)
        assert progress["progress"] == 100 and progress["completed_lessons"] == progress["total_lessons"]


async def test_routes_are_documented(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    expected = {
        "/api/courses/{id}/enrollment": {"put", "delete"}, "/api/me/courses": {"get"},
        "/api/lessons/{id}/progress": {"put"}, "/api/courses/{id}/progress": {"get"},
        "/api/courses/{id}/feedback": {"get", "post"}, "/api/feedback/{id}/upvote": {"put", "delete"},
        "/api/lessons/{id}/media": {"get", "post"}, "/api/media/{id}": {"delete"},
        "/api/lessons/{id}/quizzes": {"get", "post"}, "/api/quizzes/{id}": {"get", "patch", "delete"},
        "/api/quizzes/{id}/attempts": {"post"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    upload = paths["/api/lessons/{id}/media"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload and "application/json" in upload


async def test_a_course_back_in_draft_leaves_my_list(client: httpx.AsyncClient, alice: DevUser) -> None:
    learner = await dev_user(client, "Draft watcher")
    course = await build_course(client, alice, lessons_per_unit=1)
    await enroll(client, learner, course.id)
    assert [c["id"] for c in (await client.get("/api/me/courses", headers=learner.headers)).json()["items"]] == [
        course.id]
    assert (await client.post(f"/api/courses/{course.id}/unpublish", headers=alice.headers)).status_code == 200
    assert (await client.get("/api/me/courses", headers=learner.headers)).json()["items"] == []
    assert (await client.put(f"/api/lessons/{course.lesson_ids[0]}/progress", json={"status": "completed"},
                             headers=learner.headers)).status_code == 404
