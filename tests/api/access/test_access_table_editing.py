"""The access table for version history and suggested edits (same rules and roles as
tests/api/access/test_access_table.py).

The world's lesson has a recorded version (a different title, so restoring it changes the
lesson) and an open suggestion by the learner (the suggester, below the course team).
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from server.editing.models import LessonVersion
from tests.api.access.test_access_table import (
    Case,
    Cast,
    World,
    check_case,
    edit,
    make_cast,
    make_world,
)
from tests.support.catalog import ok

READERS = "401 {ok} {ok} {ok} {ok} {ok} {ok}"
READERS_DRAFT = "401 404 404 {ok} {ok} {ok} {ok}"
SUGGESTION = {"field": "title", "changes": [{"index": 0, "insert": "New "}], "base_version": "{version}"}


def readers(ok_status: int) -> dict[str, str]:
    return {"published": READERS.format(ok=ok_status), "draft": READERS_DRAFT.format(ok=ok_status)}


CASES: list[Case] = [
    # Versions: whoever reads the lesson reads its history; editors and up restore.
    Case("GET", "/lessons/{lesson}/versions", **readers(200)),
    Case("GET", "/lessons/{lesson}/versions/{version_id}", **readers(200)),
    Case("POST", "/lessons/{lesson}/versions/{version_id}/restore", **edit(200), probe="/lessons/{lesson}"),
    # Suggested edits: any reader suggests; the suggester and the team see it (others: 404).
    Case("POST", "/lessons/{lesson}/suggested-edits", SUGGESTION, **readers(201),
         probe="/lessons/{lesson}/suggested-edits"),
    Case("GET", "/lessons/{lesson}/suggested-edits", **readers(200)),
    Case("GET", "/me/suggested-edits", published=READERS.format(ok=200), draft=READERS.format(ok=200)),
    Case("GET", "/suggested-edits/{suggestion}",
         published="401 404 200 200 200 200 200", draft="401 404 404 200 200 200 200"),
    Case("POST", "/suggested-edits/{suggestion}/accept",
         published="401 404 403 403 200 200 200", draft="401 404 404 403 200 200 200",
         probe="/suggested-edits/{suggestion}"),
    Case("POST", "/suggested-edits/{suggestion}/reject",
         published="401 404 403 403 200 200 200", draft="401 404 404 403 200 200 200",
         probe="/suggested-edits/{suggestion}"),
    Case("POST", "/suggested-edits/{suggestion}/withdraw",
         published="401 404 200 403 403 403 403", draft="401 404 404 403 403 403 403",
         probe="/suggested-edits/{suggestion}"),
]


async def editing_world(client: httpx.AsyncClient, db: AsyncEngine, cast: Cast, *, published: bool) -> World:
    world = await make_world(client, db, cast, published=published)
    author, learner = cast.users["author"], cast.users["learner"]
    assert author is not None and learner is not None
    course, lesson = world.ids["course"], world.ids["lesson"]
    version_id = uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(insert(LessonVersion).values(
            id=version_id, lesson_id=uuid.UUID(lesson), title="An older title", body="An older body.",
            contributors=[author.clerk_id], reason="periodic"))
    current = ok(await client.get(f"/api/lessons/{lesson}", headers=author.headers))
    version = str(current["version"])
    if not published:  # suggested while the course was published, then it went back to draft
        ok(await client.post(f"/api/courses/{course}/publish", headers=author.headers))
    suggested = await client.post(f"/api/lessons/{lesson}/suggested-edits", headers=learner.headers,
                                  json={**SUGGESTION, "base_version": version})
    if not published:
        ok(await client.post(f"/api/courses/{course}/unpublish", headers=author.headers))
    world.ids |= {"version_id": str(version_id), "version": version, "suggestion": ok(suggested, 201)["id"]}
    return world


_shared: dict[tuple[int, bool], World] = {}


@pytest.fixture(scope="module")
async def roles(client: httpx.AsyncClient, db: AsyncEngine) -> Cast:
    return await make_cast(client, db)


PARAMS = [pytest.param(case, variant, id=f"{case.id} [{variant}]")
          for case in CASES for variant in ("published", "draft") if variant == "published" or case.draft]


@pytest.mark.parametrize(("case", "variant"), PARAMS)
async def test_editing_access(case: Case, variant: str, client: httpx.AsyncClient, db: AsyncEngine,
                              roles: Cast) -> None:
    await check_case(case, variant, client, db, roles, editing_world, _shared)
