"""Quizzes through a real server: validation, hidden answers, grading, completion by passing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser, dev_user
from tests.support.learning import build_course, enroll

QUIZ: dict[str, Any] = {
    "title": "Check yourself",
    "pass_score": 0.6,
    "questions": [
        {"id": "q1", "kind": "single", "prompt": "2 + 2?", "options": ["3", "4", "5"], "answer": 1},
        {"id": "q2", "kind": "multiple", "prompt": "Primes?", "options": ["2", "4", "5", "9"], "answer": [0, 2]},
        {"id": "q3", "kind": "short", "prompt": "Capital of France?", "accepted": ["Paris", "Paris, France"]},
    ],
}


async def make_quiz(client: httpx.AsyncClient, author: DevUser, lesson: str) -> dict[str, Any]:
    created = await client.post(f"/api/lessons/{lesson}/quizzes", json=QUIZ, headers=author.headers)
    assert created.status_code == 201, created.text
    quiz: dict[str, Any] = created.json()
    return quiz


async def test_staff_see_answers_learners_never(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    course = await build_course(client, alice, lessons_per_unit=1)
    lesson = course.lesson_ids[0]
    quiz = await make_quiz(client, alice, lesson)
    assert quiz["questions"] == QUIZ["questions"] and quiz["pass_score"] == 0.6
    staff_view = (await client.get(f"/api/lessons/{lesson}/quizzes", headers=alice.headers)).json()["items"]
    assert staff_view[0]["questions"][0]["answer"] == 1
    await enroll(client, bob, course.id)
    assert (await client.get(f"/api/lessons/{lesson}/quizzes")).status_code == 401  # signed-in only (§2)
    for headers in (bob.headers,):
        items = (await client.get(f"/api/lessons/{lesson}/quizzes", headers=headers)).json()["items"]
        assert [q["id"] for q in items] == [quiz["id"]]
        for question in items[0]["questions"]:
            assert "answer" not in question and "accepted" not in question
            assert question["prompt"]
        assert "Paris" not in str(items)
        single = (await client.get(f"/api/quizzes/{quiz['id']}", headers=headers)).json()
        assert all("answer" not in q and "accepted" not in q for q in single["questions"])


async def test_quiz_validation(client: httpx.AsyncClient, alice: DevUser) -> None:
    course = await build_course(client, alice, lessons_per_unit=1)
    url = f"/api/lessons/{course.lesson_ids[0]}/quizzes"

    def with_question(**question: Any) -> dict[str, Any]:
        return {"title": "T", "questions": [{"id": "q", "prompt": "P", **question}]}

    bad_bodies = [
        {"title": "T", "questions": []},
        {"title": "", "questions": QUIZ["questions"]},
        {"title": "T", "pass_score": 1.5, "questions": QUIZ["questions"]},
        with_question(kind="single", options=["a", "b"], answer=2),
        with_question(kind="single", options=["a", "b"], answer="0"),
        with_question(kind="single", options=["a", "b"], answer=True),
        with_question(kind="single", options=["a"], answer=0),
        with_question(kind="multiple", options=["a", "b"], answer=[0, 0]),
        with_question(kind="multiple", options=["a", "b"], answer=[3]),
        with_question(kind="multiple", options=["a", "b"], answer=1),
        with_question(kind="short", accepted=[]),
        with_question(kind="short", accepted="Paris"),
        with_question(kind="essay", options=["a", "b"], answer=0),
        {"title": "T", "questions": [QUIZ["questions"][0], QUIZ["questions"][0]]},
    ]
    for body in bad_bodies:
        response = await client.post(url, json=body, headers=alice.headers)
        assert response.status_code == 422, body
        assert response.json()["errors"]
    assert (await client.post(f"/api/lessons/{uuid.uuid4()}/quizzes", json=QUIZ,
                              headers=alice.headers)).status_code == 404
    assert (await client.post("/api/lessons/zzz/quizzes", json=QUIZ, headers=alice.headers)).status_code == 404


async def test_who_may_change_quizzes(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    course = await build_course(client, alice, lessons_per_unit=1)
    lesson = course.lesson_ids[0]
    assert (await client.post(f"/api/lessons/{lesson}/quizzes", json=QUIZ, headers=bob.headers)).status_code == 403
    assert (await client.post(f"/api/lessons/{lesson}/quizzes", json=QUIZ)).status_code == 401
    quiz = await make_quiz(client, alice, lesson)
    url = f"/api/quizzes/{quiz['id']}"
    assert (await client.patch(url, json={"title": "Mine"}, headers=bob.headers)).status_code == 403
    assert (await client.delete(url, headers=bob.headers)).status_code == 403
    patched = await client.patch(url, json={"title": "Renamed", "pass_score": 1}, headers=alice.headers)
    assert patched.status_code == 200
    assert patched.json()["title"] == "Renamed" and patched.json()["pass_score"] == 1
    assert patched.json()["questions"] == QUIZ["questions"]
    bad = await client.patch(url, json={"questions": [{"id": "x", "kind": "single", "prompt": "p",
                                                       "options": ["a", "b"], "answer": 9}]}, headers=alice.headers)
    assert bad.status_code == 422
    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    assert (await client.get(url, headers=alice.headers)).status_code == 404
    assert (await client.patch(url, json={"title": "x"}, headers=alice.headers)).status_code == 404
    assert (await client.patch("/api/quizzes/1", json={"title": "x"}, headers=alice.headers)).status_code == 404
    draft = await build_course(client, alice, publish=False, lessons_per_unit=1)
    hidden = await make_quiz(client, alice, draft.lesson_ids[0])
    assert (await client.get(f"/api/lessons/{draft.lesson_ids[0]}/quizzes", headers=bob.headers)).status_code == 404
    assert (await client.post(f"/api/quizzes/{hidden['id']}/attempts", json={"answers": {}},
                              headers=bob.headers)).status_code == 404


async def test_grading_and_completion(client: httpx.AsyncClient, alice: DevUser, db: AsyncEngine) -> None:
    course = await build_course(client, alice, lessons_per_unit=2)
    lesson = course.lesson_ids[0]
    quiz = await make_quiz(client, alice, lesson)
    learner = await dev_user(client, "Quiz Taker")
    url = f"/api/quizzes/{quiz['id']}/attempts"
    await enroll(client, learner, course.id)

    async def attempt(answers: dict[str, Any]) -> httpx.Response:
        return await client.post(url, json={"answers": answers}, headers=learner.headers)

    # Multiple choice is right only on the exact set; short answers ignore case and spacing.
    failed = await attempt({"q1": 0, "q2": [0], "q3": "  paris  "})
    assert failed.status_code == 200
    assert failed.json()["results"] == {"q1": False, "q2": False, "q3": True}
    assert abs(failed.json()["score"] - 1 / 3) < 1e-9 and failed.json()["passed"] is False
    superset = await attempt({"q2": [0, 1, 2]})
    assert superset.json()["results"]["q2"] is False and superset.json()["score"] == 0
    status = (await client.get(f"/api/courses/{course.id}/progress", headers=learner.headers)).json()
    assert status["completed_lessons"] == 0
    passed = await attempt({"q1": 1, "q2": [2, 0], "q3": "PARIS,  france"})
    assert passed.json() == {**passed.json(), "score": 1, "passed": True,
                             "results": {"q1": True, "q2": True, "q3": True}}
    status = (await client.get(f"/api/courses/{course.id}/progress", headers=learner.headers)).json()
    assert status["completed_lessons"] == 1 and status["progress"] == 50
    # A later failed attempt never takes the completion back.
    assert (await attempt({"q1": 2})).json()["passed"] is False
    status = (await client.get(f"/api/courses/{course.id}/progress", headers=learner.headers)).json()
    assert status["completed_lessons"] == 1 and status["progress"] == 50
    async with db.connect() as conn:
        stored = (await conn.execute(text(
            "SELECT passed FROM quiz_attempts WHERE user_id = :u ORDER BY created_at"), {"u": learner.clerk_id}
        )).scalars().all()
    assert stored == [False, False, True, False]


async def test_passing_without_enrollment_records_no_progress(client: httpx.AsyncClient, alice: DevUser) -> None:
    course = await build_course(client, alice, lessons_per_unit=1)
    quiz = await make_quiz(client, alice, course.lesson_ids[0])
    visitor = await dev_user(client, "Visitor")
    passed = await client.post(f"/api/quizzes/{quiz['id']}/attempts",
                               json={"answers": {"q1": 1, "q2": [0, 2], "q3": "Paris"}}, headers=visitor.headers)
    assert passed.status_code == 200 and passed.json()["passed"] is True
    assert passed.json()["lesson_status"] is None
    assert (await client.post(f"/api/quizzes/{quiz['id']}/attempts", json={"answers": {}})).status_code == 401


async def test_bad_answers_are_422(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    course = await build_course(client, alice, lessons_per_unit=1)
    quiz = await make_quiz(client, alice, course.lesson_ids[0])
    url = f"/api/quizzes/{quiz['id']}/attempts"
    for answers in ({"q1": 3}, {"q1": -1}, {"q1": [1]}, {"q1": "1"}, {"q1": True}, {"q2": 0}, {"q2": [0, 7]},
                    {"q2": "0"}, {"q3": 1}, {"q3": ["Paris"]}, {"nope": 1}):
        response = await client.post(url, json={"answers": answers}, headers=bob.headers)
        assert response.status_code == 422, answers
        assert response.json()["errors"][0]["loc"].startswith("answers."), response.json()
    for body in ({}, {"answers": []}, {"answers": {"q1": 1.5}}):
        assert (await client.post(url, json=body, headers=bob.headers)).status_code == 422, body
    assert (await client.post(f"/api/quizzes/{uuid.uuid4()}/attempts", json={"answers": {}},
                              headers=bob.headers)).status_code == 404
    assert (await client.post("/api/quizzes/nope/attempts", json={"answers": {}},
                              headers=bob.headers)).status_code == 404
