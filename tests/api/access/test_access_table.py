"""Who may do what: every route × every role, for a published course and for a draft.

To cover a new route, add a ``Case`` row to ``CASES`` (or ``CASES.extend([...])`` from your domain):

    Case("PATCH", "/courses/{course}", {"title": "x"},
         published="401 403 403 403 200 200 200",
         draft="401 404 404 403 200 200 200")

The status strings follow ``ROLES`` (anonymous, stranger, learner, viewer, editor, author, admin);
``-`` skips a role. Placeholders are keys of the world (``World.ids``): ``course``, ``unit``,
``lesson``, ``viewer`` (the viewer's clerk_id), ``outsider`` (a signed-in user with no relation to the
course, a valid target for "add collaborator"). A domain that needs more objects (a forum post, a
quiz, ...) appends an async ``setup(client, world)`` to ``WORLD_SETUPS`` that adds ids to
``world.ids``. Writes that are expected to succeed run against a fresh world, so rows don't depend on
each other's side effects; everything else shares one world per course state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser, dev_user
from tests.support.catalog import add_collaborator, build_course, enroll, make_admin, ok

ROLES = ("anonymous", "stranger", "learner", "viewer", "editor", "author", "admin")


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: Any = None
    published: str = ""
    draft: str | None = None
    # Writes: a GET path that shows the write's effect, read as the admin before and after each
    # call. A refused write must leave it unchanged; an allowed one must change it.
    probe: str | None = None

    def expected(self, variant: str) -> dict[str, int | None]:
        raw = self.published if variant == "published" else self.draft
        assert raw is not None
        codes = raw.split()
        assert len(codes) == len(ROLES), f"{self}: {len(codes)} statuses for {len(ROLES)} roles"
        return {role: None if code == "-" else int(code) for role, code in zip(ROLES, codes, strict=True)}

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


READ_ALL = "200 200 200 200 200 200 200"
READ_DRAFT = "404 404 404 200 200 200 200"
EDIT = "401 403 403 403 {ok} {ok} {ok}"
EDIT_DRAFT = "401 404 404 403 {ok} {ok} {ok}"
MANAGE = "401 403 403 403 403 {ok} {ok}"
MANAGE_DRAFT = "401 404 404 403 403 {ok} {ok}"


def edit(ok_status: int) -> dict[str, str]:
    return {"published": EDIT.format(ok=ok_status), "draft": EDIT_DRAFT.format(ok=ok_status)}


def manage(ok_status: int) -> dict[str, str]:
    return {"published": MANAGE.format(ok=ok_status), "draft": MANAGE_DRAFT.format(ok=ok_status)}


CASES: list[Case] = [
    # Catalogue
    Case("GET", "/languages", published=READ_ALL),
    Case("GET", "/tags", published=READ_ALL),
    Case("GET", "/courses", published=READ_ALL),
    # The admin's catalogue, newest first, shows a new course.
    Case("POST", "/courses", {"title": "New"}, published="401 201 201 201 201 201 201", probe="/courses?limit=1"),
    Case("GET", "/courses/{course}", published=READ_ALL, draft=READ_DRAFT),
    Case("PATCH", "/courses/{course}", {"title": "Renamed"}, **edit(200), probe="/courses/{course}"),
    Case("DELETE", "/courses/{course}", **manage(204), probe="/courses/{course}"),
    # Publishing a published course (or unpublishing a draft) still stamps its updated_at.
    Case("POST", "/courses/{course}/publish", **manage(200), probe="/courses/{course}"),
    Case("POST", "/courses/{course}/unpublish", **manage(200), probe="/courses/{course}"),
    Case("GET", "/courses/{course}/outline", published=READ_ALL, draft=READ_DRAFT),
    # Structure (reordering: tests/api/access/test_access_table_catalog.py, whose world has two of each)
    Case("POST", "/courses/{course}/units", {"title": "U"}, **edit(201), probe="/courses/{course}/outline"),
    Case("PATCH", "/units/{unit}", {"title": "U2"}, **edit(200), probe="/courses/{course}/outline"),
    Case("DELETE", "/units/{unit}", **edit(204), probe="/courses/{course}/outline"),
    Case("POST", "/units/{unit}/lessons", {"title": "L", "content_type": "text"}, **edit(201),
         probe="/courses/{course}/outline"),
    # Lessons
    Case("GET", "/lessons/{lesson}", published=READ_ALL, draft=READ_DRAFT),
    Case("PATCH", "/lessons/{lesson}", {"title": "L2", "content": {"body": "new"}}, **edit(200),
         probe="/lessons/{lesson}"),
    Case("DELETE", "/lessons/{lesson}", **edit(204), probe="/lessons/{lesson}"),
    # Collaborators (author and admins only)
    Case("GET", "/courses/{course}/collaborators", **manage(200)),
    Case("POST", "/courses/{course}/collaborators", {"clerk_id": "{outsider}", "role": "viewer"}, **manage(201),
         probe="/courses/{course}/collaborators"),
    Case("PATCH", "/courses/{course}/collaborators/{viewer}", {"role": "editor"}, **manage(200),
         probe="/courses/{course}/collaborators"),
    Case("DELETE", "/courses/{course}/collaborators/{viewer}", **manage(204),
         probe="/courses/{course}/collaborators"),
]


@dataclass
class World:
    published: bool
    ids: dict[str, str] = field(default_factory=dict)


@dataclass
class Cast:
    users: dict[str, DevUser | None]
    outsider: DevUser


WorldSetup = Callable[[httpx.AsyncClient, World, Cast], Awaitable[None]]
WORLD_SETUPS: list[WorldSetup] = []


async def make_cast(client: httpx.AsyncClient, db: AsyncEngine) -> Cast:
    """One signed-in user per role (the admin made admin) and an outsider; every table's fixture."""
    users: dict[str, DevUser | None] = {"anonymous": None}
    for role in ROLES[1:]:
        users[role] = await dev_user(client, role.capitalize())
    admin = users["admin"]
    assert admin is not None
    await make_admin(db, admin)
    return Cast(users, await dev_user(client, "Outsider"))


@pytest.fixture(scope="module")
async def cast(client: httpx.AsyncClient, db: AsyncEngine) -> Cast:
    return await make_cast(client, db)


async def make_world(client: httpx.AsyncClient, db: AsyncEngine, cast: Cast, *, published: bool) -> World:
    def user(role: str) -> DevUser:
        found = cast.users[role]
        assert found is not None
        return found

    author = user("author")
    course = await build_course(client, author, title="Access table course", units=1, lessons=1)
    await add_collaborator(client, author, course.id, user("viewer"), "viewer")
    await add_collaborator(client, author, course.id, user("editor"), "editor")
    await enroll(db, user("learner"), course.id)
    if not published:
        ok(await client.post(f"/api/courses/{course.id}/unpublish", headers=author.headers))
    world = World(published, {"course": course.id, "unit": course.units[0], "lesson": course.first_lesson,
                              "viewer": user("viewer").clerk_id, "outsider": cast.outsider.clerk_id})
    for setup in WORLD_SETUPS:
        await setup(client, world, cast)
    return world


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


_shared: dict[tuple[int, bool], World] = {}


# Rows without a ``draft`` column (routes with no per-course state) run on the published world only.
PARAMS = [pytest.param(case, variant, id=f"{case.id} [{variant}]")
          for case in CASES for variant in ("published", "draft") if variant == "published" or case.draft]


async def check_case(case: Case, variant: str, client: httpx.AsyncClient, db: AsyncEngine, cast: Cast,
                     make: Any, shared: dict[Any, Any]) -> None:
    """Run one route for every role of ``cast`` in a world built by ``make`` (a shared world for reads,
    a fresh one for each successful write) and compare the statuses with the table."""
    published = variant == "published"
    key = (id(cast), published)
    if key not in shared:
        shared[key] = await make(client, db, cast, published=published)
    mismatches = []
    for role, expected in case.expected(variant).items():
        if expected is None:
            continue
        world = shared[key]
        if case.method != "GET" and 200 <= expected < 300:
            world = await make(client, db, cast, published=published)
        user = cast.users[role]
        before = await _observe(client, case, world, cast)
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
        after = await _observe(client, case, world, cast)
        if expected >= 400 and after != before:
            mismatches.append(f"{role}: refused with {expected}, yet {case.probe} changed: {before} -> {after}")
        elif expected < 300 and case.probe is not None and after == before:
            mismatches.append(f"{role}: allowed with {expected}, yet {case.probe} did not change")
    assert not mismatches, f"{case.id} ({variant}):\n" + "\n".join(mismatches)


async def _observe(client: httpx.AsyncClient, case: Case, world: World, cast: Cast) -> Any:
    """What the write's probe shows (read as the admin, who sees drafts); None for reads."""
    if case.method == "GET" or case.probe is None:  # tests/api/access/test_route_coverage.py wants a probe on every write
        return None
    admin = cast.users["admin"]
    assert admin is not None
    response = await client.get("/api" + fill(case.probe, world.ids), headers=admin.headers)
    return response.status_code, response.content


@pytest.mark.parametrize(("case", "variant"), PARAMS)
async def test_access(case: Case, variant: str, client: httpx.AsyncClient, db: AsyncEngine, cast: Cast) -> None:
    await check_case(case, variant, client, db, cast, make_world, _shared)
