"""The access table for enrollment, progress, feedback, media and quiz routes (same rules and roles).

Reuses the catalogue's table machinery (``tests/api/access/test_access_table.py``): the same cast of seven
roles and the same worlds, plus a review by an outsider, a review by another learner that every
role upvoted, a linked media item and a quiz.

Per-user state (my enrollment, my progress, my upvote) needs two things the catalogue's rows do not
(:class:`Row`): a probe read by the caller (``probe_as="caller"``) or by the state's owner, since
the admin cannot see it; and ``same``, the roles for which an allowed idempotent write changes
nothing because the state already is so (leaving a course you are not enrolled in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.access.test_access_table import (
    READ_ALL,
    READ_DRAFT,
    ROLES,
    Case,
    Cast,
    World,
    check_case,
    edit,
    fill,
    make_world,
)
from tests.support import DevUser, dev_user
from tests.support.catalog import make_admin, ok

QUIZ: dict[str, Any] = {"title": "Q", "questions": [
    {"id": "q1", "kind": "single", "prompt": "1 + 1?", "options": ["1", "2"], "answer": 1}]}

SIGNED_IN = "401 200 200 200 200 200 200"
SIGNED_IN_DRAFT = "401 404 404 200 200 200 200"
NOT_ENROLLED = ("stranger", "viewer", "editor", "author", "admin")


@dataclass(frozen=True)
class Row(Case):
    """A :class:`Case` whose probe is read by ``probe_as`` ("admin", "caller", or the role that owns
    the per-user state), where the roles in ``same`` are allowed a write that changes nothing."""

    probe_as: str = "admin"
    same: tuple[str, ...] = ()

CASES: list[Case] = [
    # Enrollment and progress
    Row("PUT", "/courses/{course}/enrollment", published=SIGNED_IN, draft="401 404 404 409 409 409 409",
        probe="/courses/{course}", same=("learner",)),  # enrolled_count
    Row("DELETE", "/courses/{course}/enrollment", published=SIGNED_IN, draft=SIGNED_IN_DRAFT,
        probe="/courses/{course}", same=NOT_ENROLLED),
    Case("GET", "/me/courses", published=SIGNED_IN),
    Case("GET", "/me/team-courses", published=SIGNED_IN),
    Row("PUT", "/lessons/{lesson}/progress", {"status": "completed"},
        published="401 409 200 409 409 409 409", draft="401 404 404 409 409 409 409",
        probe="/courses/{course}/progress", probe_as="caller"),
    Case("GET", "/courses/{course}/progress", published=SIGNED_IN, draft=SIGNED_IN_DRAFT),
    # Feedback
    Case("GET", "/courses/{course}/feedback", published=READ_ALL, draft=READ_DRAFT),
    Case("POST", "/courses/{course}/feedback", {"rating": 4},
         published="401 403 201 403 403 403 403", draft="401 404 404 403 403 403 403",
         probe="/courses/{course}/feedback"),
    Case("PUT", "/feedback/{feedback}/upvote", published=SIGNED_IN, draft=SIGNED_IN_DRAFT,
         probe="/courses/{course}/feedback"),
    Case("DELETE", "/feedback/{upvoted}/upvote", published=SIGNED_IN, draft=SIGNED_IN_DRAFT,
         probe="/courses/{course}/feedback"),
    # Media and quizzes: signed-in only (§2: not part of the public catalogue)
    # Media
    Case("GET", "/lessons/{lesson}/media", published=SIGNED_IN, draft=SIGNED_IN_DRAFT),
    Case("GET", "/courses/{course}/media", **edit(200)),
    Case("POST", "/lessons/{lesson}/media", {"url": "https://example.org/a.png"}, **edit(201),
         probe="/lessons/{lesson}/media"),
    Case("DELETE", "/media/{media}", **edit(204), probe="/lessons/{lesson}/media"),
    # Quizzes
    Case("GET", "/lessons/{lesson}/quizzes", published=SIGNED_IN, draft=SIGNED_IN_DRAFT),
    Case("GET", "/quizzes/{quiz}", published=SIGNED_IN, draft=SIGNED_IN_DRAFT),
    Case("POST", "/lessons/{lesson}/quizzes", QUIZ, **edit(201), probe="/lessons/{lesson}/quizzes"),
    Case("PATCH", "/quizzes/{quiz}", {"title": "Renamed"}, **edit(200), probe="/quizzes/{quiz}"),
    Case("DELETE", "/quizzes/{quiz}", **edit(204), probe="/quizzes/{quiz}"),
    # Attempts are not readable; a passing one completes the lesson for an enrolled learner.
    Row("POST", "/quizzes/{quiz}/attempts", {"answers": {"q1": 1}}, published=SIGNED_IN, draft=SIGNED_IN_DRAFT,
        probe="/courses/{course}/progress", probe_as="caller", same=NOT_ENROLLED),
]


async def learning_world(client: httpx.AsyncClient, db: AsyncEngine, cast: Cast, *, published: bool) -> World:
    world = await make_world(client, db, cast, published=published)
    author = cast.users["author"]
    assert author is not None
    course = world.ids["course"]
    # A review by the outsider, and one by another learner that every role upvoted (reviews and
    # upvotes are made while the course is published).
    if not published:
        ok(await client.post(f"/api/courses/{course}/publish", headers=author.headers))
    reviews = []
    for reviewer in (cast.outsider, cast.users["reviewer"]):
        assert reviewer is not None
        ok(await client.put(f"/api/courses/{course}/enrollment", headers=reviewer.headers))
        reviews.append(await client.post(f"/api/courses/{course}/feedback", json={"rating": 5},
                                         headers=reviewer.headers))
    upvoted = reviews[1].json()["id"]
    for role in ROLES[1:]:
        voter = cast.users[role]
        assert voter is not None
        ok(await client.put(f"/api/feedback/{upvoted}/upvote", headers=voter.headers))
    if not published:
        ok(await client.post(f"/api/courses/{course}/unpublish", headers=author.headers))
    lesson = world.ids["lesson"]
    media = await client.post(f"/api/lessons/{lesson}/media", json={"url": "https://example.org/v.mp4"},
                              headers=author.headers)
    quiz = await client.post(f"/api/lessons/{lesson}/quizzes", json=QUIZ, headers=author.headers)
    for created in (*reviews, media, quiz):
        assert created.status_code == 201, created.text
    world.ids |= {"feedback": reviews[0].json()["id"], "upvoted": upvoted, "media": media.json()["id"],
                  "quiz": quiz.json()["id"]}
    return world


_shared: dict[tuple[int, bool], World] = {}


async def make_cast(client: httpx.AsyncClient, db: AsyncEngine) -> Cast:
    """The seven roles, the outsider and a second reviewer (``users["reviewer"]``, not a role)."""
    users: dict[str, DevUser | None] = {"anonymous": None}
    for role in ROLES[1:]:
        users[role] = await dev_user(client, role.capitalize())
    admin = users["admin"]
    assert admin is not None
    await make_admin(db, admin)
    users["reviewer"] = await dev_user(client, "Reviewer")
    return Cast(users, await dev_user(client, "Outsider"))


@pytest.fixture(scope="module")
async def roles(client: httpx.AsyncClient, db: AsyncEngine) -> Cast:
    return await make_cast(client, db)


async def check_row(case: Case, variant: str, client: httpx.AsyncClient, db: AsyncEngine, cast: Cast,
                    make: Any, shared: dict[Any, Any]) -> None:
    """``check_case`` for a :class:`Row`: the same statuses, with the probe read by ``probe_as`` and
    no change required from the roles in ``same``."""
    if not isinstance(case, Row):
        await check_case(case, variant, client, db, cast, make, shared)
        return
    published = variant == "published"
    key = (id(cast), published)
    if key not in shared:
        shared[key] = await make(client, db, cast, published=published)
    mismatches = []
    for role, expected in case.expected(variant).items():
        if expected is None:
            continue
        world = shared[key]
        if 200 <= expected < 300:
            world = await make(client, db, cast, published=published)
        user = cast.users[role]
        reader = cast.users[role if case.probe_as == "caller" else case.probe_as]
        before = await _probe(client, case, world, reader)
        response = await client.request(
            case.method, "/api" + fill(case.path, world.ids),
            json=fill(case.body, world.ids) if case.body is not None else None,
            headers=user.headers if user else {},
        )
        if response.status_code != expected:
            mismatches.append(f"{role}: expected {expected}, got {response.status_code} {response.text[:200]}")
            continue
        if expected >= 400:
            assert response.headers["content-type"] == "application/problem+json"
        after = await _probe(client, case, world, reader)
        if (expected >= 400 or role in case.same) and after != before:
            mismatches.append(f"{role}: {expected} and no change expected, yet {case.probe} changed: "
                              f"{before} -> {after}")
        elif expected < 300 and role not in case.same and after == before:
            mismatches.append(f"{role}: allowed with {expected}, yet {case.probe} did not change")
    assert not mismatches, f"{case.id} ({variant}):\n" + "\n".join(mismatches)


async def _probe(client: httpx.AsyncClient, case: Case, world: World, reader: DevUser | None) -> Any:
    assert case.probe is not None
    response = await client.get("/api" + fill(case.probe, world.ids), headers=reader.headers if reader else {})
    return response.status_code, response.content


PARAMS = [pytest.param(case, variant, id=f"{case.id} [{variant}]")
          for case in CASES for variant in ("published", "draft") if variant == "published" or case.draft]


@pytest.mark.parametrize(("case", "variant"), PARAMS)
async def test_learning_access(case: Case, variant: str, client: httpx.AsyncClient, db: AsyncEngine,
                               roles: Cast) -> None:
    await check_row(case, variant, client, db, roles, learning_world, _shared)
