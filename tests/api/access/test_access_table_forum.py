"""The access table for the forum routes (same rules and roles as tests/api/access/test_access_table.py).

The learner writes the world's posts and replies, so "author or staff" shows both halves: the
learner (author, not staff) may edit their own, the viewer (neither) may not, editors and up
(staff) may. ``liked_post`` and ``liked_reply`` are liked by every role that may like them, so
taking a like back changes what the probe shows.
"""

from __future__ import annotations

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
    make_cast,
    make_world,
)
from tests.support.catalog import ok

SIGNED_IN = "401 {ok} {ok} {ok} {ok} {ok} {ok}"
SIGNED_IN_DRAFT = "401 404 404 {ok} {ok} {ok} {ok}"
# The learner wrote it: author or staff.
AUTHOR_OR_STAFF = "401 403 {ok} 403 {ok} {ok} {ok}"
AUTHOR_OR_STAFF_DRAFT = "401 404 404 403 {ok} {ok} {ok}"
STAFF = "401 403 403 403 {ok} {ok} {ok}"
STAFF_DRAFT = "401 404 404 403 {ok} {ok} {ok}"
# Anyone who reads it, but not its author (no liking one's own).
NOT_THE_AUTHOR = "401 {ok} 403 {ok} {ok} {ok} {ok}"


def rows(published: str, draft: str, ok_status: int) -> dict[str, str]:
    return {"published": published.format(ok=ok_status), "draft": draft.format(ok=ok_status)}


CASES: list[Case] = [
    # Posts
    Case("GET", "/courses/{course}/forum/posts", published=READ_ALL, draft=READ_DRAFT),
    Case("POST", "/courses/{course}/forum/posts", {"title": "New thread", "content": "Hello"},
         **rows(SIGNED_IN, SIGNED_IN_DRAFT, 201), probe="/courses/{course}/forum/posts"),
    Case("GET", "/forum/posts/{post}", published=READ_ALL, draft=READ_DRAFT),
    Case("GET", "/courses/{course}/forum/search?q=post", published=READ_ALL, draft=READ_DRAFT),
    Case("PATCH", "/forum/posts/{post}", {"title": "Edited"},
         **rows(AUTHOR_OR_STAFF, AUTHOR_OR_STAFF_DRAFT, 200), probe="/forum/posts/{post}"),
    Case("PATCH", "/forum/posts/{post}", {"is_pinned": True},  # pin and lock: staff only, even for the author
         **rows(STAFF, STAFF_DRAFT, 200), probe="/forum/posts/{post}"),
    Case("DELETE", "/forum/posts/{post}", **rows(AUTHOR_OR_STAFF, AUTHOR_OR_STAFF_DRAFT, 204),
         probe="/forum/posts/{post}"),
    # Replies
    Case("GET", "/forum/posts/{post}/replies", published=READ_ALL, draft=READ_DRAFT),
    Case("POST", "/forum/posts/{post}/replies", {"content": "An answer"},
         **rows(SIGNED_IN, SIGNED_IN_DRAFT, 201), probe="/forum/posts/{post}/replies"),
    Case("PATCH", "/forum/replies/{reply}", {"content": "Edited answer"},
         **rows(AUTHOR_OR_STAFF, AUTHOR_OR_STAFF_DRAFT, 200), probe="/forum/posts/{post}/replies"),
    Case("DELETE", "/forum/replies/{reply}", **rows(AUTHOR_OR_STAFF, AUTHOR_OR_STAFF_DRAFT, 204),
         probe="/forum/posts/{post}/replies"),
    # Likes
    Case("PUT", "/forum/posts/{post}/like", **rows(NOT_THE_AUTHOR, SIGNED_IN_DRAFT, 200),
         probe="/forum/posts/{post}"),
    Case("DELETE", "/forum/posts/{liked_post}/like", **rows(NOT_THE_AUTHOR, SIGNED_IN_DRAFT, 200),
         probe="/forum/posts/{liked_post}"),
    Case("PUT", "/forum/replies/{reply}/like", **rows(NOT_THE_AUTHOR, SIGNED_IN_DRAFT, 200),
         probe="/forum/posts/{post}/replies"),
    Case("DELETE", "/forum/replies/{liked_reply}/like", **rows(NOT_THE_AUTHOR, SIGNED_IN_DRAFT, 200),
         probe="/forum/posts/{liked_post}/replies"),
]


async def forum_world(client: httpx.AsyncClient, db: AsyncEngine, cast: Cast, *, published: bool) -> World:
    world = await make_world(client, db, cast, published=published)
    author, learner = cast.users["author"], cast.users["learner"]
    assert author is not None and learner is not None
    course = world.ids["course"]
    if not published:  # written while the course was published, then it went back to draft
        ok(await client.post(f"/api/courses/{course}/publish", headers=author.headers))
    ids: dict[str, str] = {}
    for name in ("post", "liked_post"):
        created = await client.post(f"/api/courses/{course}/forum/posts", headers=learner.headers,
                                    json={"title": name, "content": f"The {name}."})
        ids[name] = ok(created, 201)["id"]
        reply = await client.post(f"/api/forum/posts/{ids[name]}/replies", headers=learner.headers,
                                  json={"content": f"A reply to the {name}."})
        ids[name.replace("post", "reply")] = ok(reply, 201)["id"]
    for role in ROLES[1:]:
        user = cast.users[role]
        if user is not None and role != "learner":
            ok(await client.put(f"/api/forum/posts/{ids['liked_post']}/like", headers=user.headers))
            ok(await client.put(f"/api/forum/replies/{ids['liked_reply']}/like", headers=user.headers))
    if not published:
        ok(await client.post(f"/api/courses/{course}/unpublish", headers=author.headers))
    world.ids |= ids
    return world


_shared: dict[tuple[int, bool], World] = {}


@pytest.fixture(scope="module")
async def roles(client: httpx.AsyncClient, db: AsyncEngine) -> Cast:
    return await make_cast(client, db)


PARAMS = [pytest.param(case, variant, id=f"{case.id} {case.body or ''} [{variant}]")
          for case in CASES for variant in ("published", "draft") if variant == "published" or case.draft]


@pytest.mark.parametrize(("case", "variant"), PARAMS)
async def test_forum_access(case: Case, variant: str, client: httpx.AsyncClient, db: AsyncEngine,
                            roles: Cast) -> None:
    await check_case(case, variant, client, db, roles, forum_world, _shared)
