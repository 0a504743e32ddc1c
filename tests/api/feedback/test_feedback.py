"""Course feedback through a real server: who may review, one review each, upvotes, sorting, events."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser, dev_user
from tests.support.learning import build_course, enroll


async def test_only_enrolled_learners_review_once(client: httpx.AsyncClient, alice: DevUser, bob: DevUser,
                                                  db: AsyncEngine) -> None:
    course = await build_course(client, alice, title="Reviewed course")
    url = f"/api/courses/{course.id}/feedback"
    not_enrolled = await client.post(url, json={"rating": 4}, headers=bob.headers)
    assert not_enrolled.status_code == 403
    assert (await client.post(url, json={"rating": 4})).status_code == 401
    await enroll(client, bob, course.id)
    for bad in ({"rating": 0}, {"rating": 6}, {"rating": "5"}, {"rating": 4.5}, {}, {"rating": 3, "x": 1}):
        response = await client.post(url, json=bad, headers=bob.headers)
        assert response.status_code == 422, bad
        assert response.json()["errors"]
    first = await client.post(url, json={"rating": 4, "comment": "Good"}, headers=bob.headers)
    assert first.status_code == 201
    review = first.json()
    assert review["rating"] == 4 and review["comment"] == "Good" and review["upvotes"] == 0
    assert review["author"] == {"clerk_id": bob.clerk_id, "name": "Bob", "image_url": None}
    again = await client.post(url, json={"rating": 5, "comment": "Great"}, headers=bob.headers)
    assert again.status_code == 200
    assert again.json()["id"] == review["id"] and again.json()["rating"] == 5
    listed = (await client.get(url)).json()
    assert [(f["id"], f["rating"], f["comment"]) for f in listed["items"]] == [(review["id"], 5, "Great")]
    # The author is told (once, for the first review), and the course channel got the event.
    async with db.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT type, metadata FROM notifications WHERE user_id = :u"), {"u": alice.clerk_id})).all()
        events = (await conn.execute(text(
            "SELECT event, data FROM event_outbox WHERE channel = :c ORDER BY id"),
            {"c": f"course:{course.id}"})).all()
    feedback_notes = [r for r in rows if r.type == "feedback"]
    assert len(feedback_notes) == 1 and feedback_notes[0].metadata["feedback_id"] == review["id"]
    assert [e.event for e in events if e.event.startswith("feedback.")] == ["feedback.created", "feedback.updated"]


async def test_hidden_and_unknown_courses(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    draft = await build_course(client, alice, publish=False)
    assert (await client.get(f"/api/courses/{draft.id}/feedback")).status_code == 404
    assert (await client.get(f"/api/courses/{draft.id}/feedback", headers=bob.headers)).status_code == 404
    assert (await client.get(f"/api/courses/{draft.id}/feedback", headers=alice.headers)).status_code == 200
    assert (await client.post(f"/api/courses/{draft.id}/feedback", json={"rating": 3},
                              headers=bob.headers)).status_code == 404
    assert (await client.get(f"/api/courses/{uuid.uuid4()}/feedback")).status_code == 404
    assert (await client.get("/api/courses/nope/feedback")).status_code == 404
    assert (await client.put(f"/api/feedback/{uuid.uuid4()}/upvote", headers=bob.headers)).status_code == 404
    assert (await client.put("/api/feedback/123/upvote", headers=bob.headers)).status_code == 404
    course = await build_course(client, alice)
    assert (await client.get(f"/api/courses/{course.id}/feedback", params={"sort": "best"})).status_code == 422


async def test_upvotes_idempotent_not_own_and_sorting(client: httpx.AsyncClient, alice: DevUser) -> None:
    course = await build_course(client, alice)
    url = f"/api/courses/{course.id}/feedback"
    learners = [await dev_user(client, f"Reviewer {n}") for n in range(4)]
    reviews = []
    for n, learner in enumerate(learners):
        await enroll(client, learner, course.id)
        created = await client.post(url, json={"rating": n + 1, "comment": f"r{n}"}, headers=learner.headers)
        assert created.status_code == 201
        reviews.append(created.json()["id"])
    own = await client.put(f"/api/feedback/{reviews[0]}/upvote", headers=learners[0].headers)
    assert own.status_code == 403
    assert (await client.put(f"/api/feedback/{reviews[0]}/upvote")).status_code == 401
    # reviews[1] gets 3 upvotes, reviews[2] gets 1 (set twice: idempotent), others none.
    for voter in (learners[0], learners[2], learners[3]):
        vote = await client.put(f"/api/feedback/{reviews[1]}/upvote", headers=voter.headers)
        assert vote.status_code == 200 and vote.json()["upvoted_by_me"] is True
    assert vote.json()["upvotes"] == 3
    for _ in range(2):
        vote = await client.put(f"/api/feedback/{reviews[2]}/upvote", headers=alice.headers)
        assert vote.json() == {"feedback_id": reviews[2], "upvotes": 1, "upvoted_by_me": True}
    by_votes = (await client.get(url, headers=alice.headers)).json()["items"]
    assert [f["id"] for f in by_votes] == [reviews[1], reviews[2], reviews[3], reviews[0]]
    assert [f["upvotes"] for f in by_votes] == [3, 1, 0, 0]
    assert [f["upvoted_by_me"] for f in by_votes] == [False, True, False, False]
    recent = (await client.get(url, params={"sort": "recent"})).json()["items"]
    assert [f["id"] for f in recent] == list(reversed(reviews))
    assert all(f["upvoted_by_me"] is False for f in recent)
    # Keyset pages of one walk the same order.
    for sort, expected in (("upvotes", [f["id"] for f in by_votes]), ("recent", list(reversed(reviews)))):
        seen, cursor = [], None
        while True:
            params = {"limit": "1", "sort": sort} | ({"cursor": cursor} if cursor else {})
            body = (await client.get(url, params=params)).json()
            seen += [f["id"] for f in body["items"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert seen == expected, sort
    removed = await client.delete(f"/api/feedback/{reviews[2]}/upvote", headers=alice.headers)
    removed_again = await client.delete(f"/api/feedback/{reviews[2]}/upvote", headers=alice.headers)
    assert removed.json() == removed_again.json() == {"feedback_id": reviews[2], "upvotes": 0,
                                                      "upvoted_by_me": False}


async def test_list_runs_the_same_statements_for_1_or_50(client: httpx.AsyncClient, alice: DevUser,
                                                         db: AsyncEngine) -> None:
    """No N+1: a page of 50 reviews (authors, upvote counts, my upvotes) costs what a page of 1 costs."""
    course = await build_course(client, alice)
    tag = uuid.uuid4().hex[:8]
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO users (clerk_id, name) SELECT 'user_fb_' || :tag || '_' || n, 'Reviewer ' || n "
            "FROM generate_series(1, 60) n"), {"tag": tag})
        await conn.execute(text(
            "INSERT INTO user_courses (user_id, course_id) SELECT 'user_fb_' || :tag || '_' || n, :c "
            "FROM generate_series(1, 60) n"), {"tag": tag, "c": course.id})
        await conn.execute(text(
            "INSERT INTO course_feedback (course_id, user_id, rating, comment) "
            "SELECT :c, 'user_fb_' || :tag || '_' || n, 1 + n % 5, 'c' || n FROM generate_series(1, 60) n"),
            {"tag": tag, "c": course.id})
        await conn.execute(text(
            "INSERT INTO feedback_upvotes (feedback_id, user_id) SELECT f.id, :me FROM course_feedback f "
            "WHERE f.course_id = :c AND f.rating = 5"), {"me": alice.clerk_id, "c": course.id})
    url = f"/api/courses/{course.id}/feedback"
    for sort in ("upvotes", "recent"):
        one = await client.get(url, params={"limit": "1", "sort": sort}, headers=alice.headers)
        fifty = await client.get(url, params={"limit": "50", "sort": sort}, headers=alice.headers)
        assert len(one.json()["items"]) == 1 and len(fifty.json()["items"]) == 50
        assert int(one.headers["x-sql-statements"]) == int(fifty.headers["x-sql-statements"])
    top = (await client.get(url, params={"limit": "50"}, headers=alice.headers)).json()["items"]
    assert all(f["upvoted_by_me"] and f["upvotes"] == 1 and f["rating"] == 5 for f in top[:12])
    assert not any(f["upvoted_by_me"] for f in top[12:])
