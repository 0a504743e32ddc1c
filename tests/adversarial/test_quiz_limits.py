"""Quiz attempts and definitions are bounded (storage amplification, issue 11).

Before: a short answer of up to the 1 MiB body limit was accepted and stored with every attempt
(one ``quiz_attempts`` row per request), answers could name any number of keys, and a quiz could
carry 50 options of 2,000 characters per question and any number of accepted spellings.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser
from tests.support.catalog import build_course, enroll, ok

QUIZ: dict[str, Any] = {"title": "Q", "pass_score": 0.5, "questions": [
    {"id": "q1", "kind": "single", "prompt": "p", "options": ["a", "b"], "answer": 0},
    {"id": "q2", "kind": "short", "prompt": "p", "accepted": ["yes"]},
]}


async def stored_answer_bytes(db: AsyncEngine, quiz_id: str) -> int:
    async with db.connect() as conn:
        value = (await conn.execute(text(
            "SELECT coalesce(sum(pg_column_size(answers)), 0) FROM quiz_attempts WHERE quiz_id = :q"),
            {"q": uuid.UUID(quiz_id)})).scalar_one()
    return int(value)


async def test_attempts_are_bounded(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                    bob: DevUser) -> None:
    course = await build_course(client, alice)
    await enroll(db, bob, course.id)
    quiz = ok(await client.post(f"/api/lessons/{course.first_lesson}/quizzes", json=QUIZ,
                                headers=alice.headers), 201)
    url = f"/api/quizzes/{quiz['id']}/attempts"
    for answers in ({"q2": "y" * 1001}, {"q2": "y" * 1_000_000}, {"q1": list(range(21))},
                    {f"q{i}": 0 for i in range(201)}, {"q" * 101: 0}):
        response = await client.post(url, json={"answers": answers}, headers=bob.headers)
        assert response.status_code in (413, 422), f"{str(answers)[:60]}: {response.status_code}"
    assert await stored_answer_bytes(db, quiz["id"]) == 0
    fine = ok(await client.post(url, json={"answers": {"q1": 0, "q2": " YES "}}, headers=bob.headers))
    assert fine["score"] == 1.0
    assert 0 < await stored_answer_bytes(db, quiz["id"]) < 1000
    long_ok = ok(await client.post(url, json={"answers": {"q2": "y" * 1000}}, headers=bob.headers))
    assert long_ok["results"] == {"q1": False, "q2": False}


async def test_quiz_definitions_are_bounded(client: httpx.AsyncClient, alice: DevUser) -> None:
    course = await build_course(client, alice)
    url = f"/api/lessons/{course.first_lesson}/quizzes"

    def quiz(**question: Any) -> dict[str, Any]:
        return {"title": "Q", "questions": [{"id": "q1", "prompt": "p", **question}]}

    too_big = [
        quiz(kind="single", options=[f"o{i}" for i in range(21)], answer=0),
        quiz(kind="single", options=["a", "b" * 501], answer=0),
        quiz(kind="multiple", options=["a", "b"], answer=[0] * 21),
        quiz(kind="short", accepted=[f"s{i}" for i in range(21)]),
        quiz(kind="short", accepted=["s" * 1001]),
        {"title": "Q", "questions": [{"id": f"q{i}", "kind": "short", "prompt": "p", "accepted": ["a"]}
                                     for i in range(201)]},
    ]
    for body in too_big:
        response = await client.post(url, json=body, headers=alice.headers)
        assert response.status_code == 422, f"{str(body)[:80]}: {response.status_code}"
    for _ in range(50):
        ok(await client.post(url, json=quiz(kind="short", accepted=["a"]), headers=alice.headers), 201)
    assert (await client.post(url, json=quiz(kind="short", accepted=["a"]), headers=alice.headers)).status_code == 409
