"""The access table for enrollment, progress, feedback, media and quiz routes (same rules and roles).

Reuses the catalogue's table machinery (``tests/test_access_table.py``): the same cast of seven
roles and the same worlds, plus a review by an outsider, a linked media item and a quiz.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.catalog_helpers import make_admin, ok
from tests.support import DevUser, dev_user
from tests.test_access_table import (
    READ_ALL,
    READ_DRAFT,
    ROLES,
    Case,
    Cast,
    World,
    check_case,
    edit,
    make_world,
)

QUIZ: dict[str, Any] = {"title": "Q", "questions": [
    {"id": "q1", "kind": "single", "prompt": "1 + 1?", "options": ["1", "2"], "answer": 1}]}

SIGNED_IN = "401 200 200 200 200 200 200"
SIGNED_IN_DRAFT = "401 404 404 200 200 200 200"

CASES: list[Case] = [
    # Enrollment and progress
    Case("PUT", "/courses/{course}/enrollment", published=SIGNED_IN, draft="401 404 404 409 409 409 409"),
    Case("DELETE", "/courses/{course}/enrollment", published=SIGNED_IN, draft=SIGNED_IN_DRAFT),
    Case("GET", "/me/courses", published=SIGNED_IN),
    Case("PUT", "/lessons/{lesson}/progress", {"status": "completed"},
         published="401 409 200 409 409 409 409", draft="401 404 404 409 409 409 409"),
    Case("GET", "/courses/{course}/progress", published=SIGNED_IN, draft=SIGNED_IN_DRAFT),
    # Feedback
    Case("GET", "/courses/{course}/feedback", published=READ_ALL, draft=READ_DRAFT),
    Case("POST", "/courses/{course}/feedback", {"rating": 4},
         published="401 403 201 403 403 403 403", draft="401 404 404 403 403 403 403"),
    Case("PUT", "/feedback/{feedback}/upvote", published=SIGNED_IN, draft=SIGNED_IN_DRAFT),
    Case("DELETE", "/feedback/{feedback}/upvote", published=SIGNED_IN, draft=SIGNED_IN_DRAFT),
    # Media and quizzes: signed-in only (§2: not part of the public catalogue)
    # Media
    Case("GET", "/lessons/{lesson}/media", published=SIGNED_IN, draft=SIGNED_IN_DRAFT),
    Case("POST", "/lessons/{lesson}/media", {"url": "https://example.org/a.png"}, **edit(201)),
    Case("DELETE", "/media/{media}", **edit(204)),
    # Quizzes
    Case("GET", "/lessons/{lesson}/quizzes", published=SIGNED_IN, draft=SIGNED_IN_DRAFT),
    Case("GET", "/quizzes/{quiz}", published=SIGNED_IN, draft=SIGNED_IN_DRAFT),
    Case("POST", "/lessons/{lesson}/quizzes", QUIZ, **edit(201)),
    Case("PATCH", "/quizzes/{quiz}", {"title": "Renamed"}, **edit(200)),
    Case("DELETE", "/quizzes/{quiz}", **edit(204)),
    Case("POST", "/quizzes/{quiz}/attempts", {"answers": {"q1": 1}}, published=SIGNED_IN, draft=SIGNED_IN_DRAFT),
]


async def learning_world(client: httpx.AsyncClient, db: AsyncEngine, cast: Cast, *, published: bool) -> World:
    world = await make_world(client, db, cast, published=published)
    author = cast.users["author"]
    assert author is not None
    course = world.ids["course"]
    # A review by the outsider (who enrolls while the course is published).
    if not published:
        ok(await client.post(f"/api/courses/{course}/publish", headers=author.headers))
    ok(await client.put(f"/api/courses/{course}/enrollment", headers=cast.outsider.headers))
    review = await client.post(f"/api/courses/{course}/feedback", json={"rating": 5},
                               headers=cast.outsider.headers)
    if not published:
        ok(await client.post(f"/api/courses/{course}/unpublish", headers=author.headers))
    lesson = world.ids["lesson"]
    media = await client.post(f"/api/lessons/{lesson}/media", json={"url": "https://example.org/v.mp4"},
                              headers=author.headers)
    quiz = await client.post(f"/api/lessons/{lesson}/quizzes", json=QUIZ, headers=author.headers)
    for created in (review, media, quiz):
        assert created.status_code == 201, created.text
    world.ids |= {"feedback": review.json()["id"], "media": media.json()["id"], "quiz": quiz.json()["id"]}
    return world


_shared: dict[tuple[int, bool], World] = {}


@pytest.fixture(scope="module")
async def roles(client: httpx.AsyncClient, db: AsyncEngine) -> Cast:
    users: dict[str, DevUser | None] = {"anonymous": None}
    for role in ROLES[1:]:
        users[role] = await dev_user(client, role.capitalize())
    admin = users["admin"]
    assert admin is not None
    await make_admin(db, admin)
    return Cast(users, await dev_user(client, "Outsider"))

PARAMS = [pytest.param(case, variant, id=f"{case.id} [{variant}]")
          for case in CASES for variant in ("published", "draft") if variant == "published" or case.draft]


@pytest.mark.parametrize(("case", "variant"), PARAMS)
async def test_learning_access(case: Case, variant: str, client: httpx.AsyncClient, db: AsyncEngine,
                               roles: Cast) -> None:
    await check_case(case, variant, client, db, roles, learning_world, _shared)
