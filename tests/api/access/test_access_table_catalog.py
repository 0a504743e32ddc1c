"""The access table for the catalogue's reorders, the profile (/me), dev tokens, the Clerk webhook
and the web shell's routes (same rules and roles as tests/api/access/test_access_table.py).

Reuses the catalogue's table machinery; the world has a second unit and a second lesson, so a
reorder has an order to change. Rows on the caller's own data (``OwnCase``) read their probe as
the caller rather than as the admin: the admin cannot see another user's profile change.
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
    Case,
    Cast,
    World,
    check_case,
    edit,
    fill,
    make_cast,
    make_world,
)

SIGNED_IN = "401 200 200 200 200 200 200"
EVERYONE = "200 200 200 200 200 200 200"


@dataclass(frozen=True)
class OwnCase(Case):
    """A write on the caller's own data: the probe is read as the caller, before and after."""


CASES: list[Case] = [
    # Reordering (the world has two units and two lessons in the first: the order can change).
    Case("POST", "/courses/{course}/reorder", {"unit_ids": ["{unit2}", "{unit}"]}, **edit(200),
         probe="/courses/{course}/outline"),
    Case("POST", "/units/{unit}/reorder", {"lesson_ids": ["{lesson2}", "{lesson}"]}, **edit(200),
         probe="/courses/{course}/outline"),
    # The web shell: its config, and the caller's role where they can see the course.
    Case("GET", "/config", published=EVERYONE),
    Case("GET", "/courses/{course}/access", published=READ_ALL, draft=READ_DRAFT),
    Case("GET", "/lessons/{lesson}/access", published=READ_ALL, draft=READ_DRAFT),
    # The profile.
    Case("GET", "/me", published=SIGNED_IN),
    OwnCase("PATCH", "/me", {"name": "Renamed", "timezone": "Europe/Paris"}, published=SIGNED_IN, probe="/me"),
    # Dev tokens: anyone (dev mode only); the effect is a new identity, so the probe after the call is
    # read with the minted token (``/me`` answers for its ``sub``).
    OwnCase("POST", "/dev/token", {"sub": "minted_by_the_table"}, published=EVERYONE, probe="/me"),
    # Clerk's webhook is public (Svix signs the body); without CLERK_WEBHOOK_SECRET, as here, it
    # refuses everyone before reading anything (tests/api/users/test_auth.py covers the signed deliveries).
    Case("POST", "/webhooks/clerk", {"type": "user.deleted", "data": {"id": "{viewer}"}},
         published="503 503 503 503 503 503 503", probe="/courses/{course}/collaborators"),
]


async def catalog_world(client: httpx.AsyncClient, db: AsyncEngine, cast: Cast, *, published: bool) -> World:
    world = await make_world(client, db, cast, published=published)
    author = cast.users["author"]
    assert author is not None
    unit = await client.post(f"/api/courses/{world.ids['course']}/units", json={"title": "Second unit"},
                             headers=author.headers)
    lesson = await client.post(f"/api/units/{world.ids['unit']}/lessons",
                               json={"title": "Second lesson", "content_type": "text"}, headers=author.headers)
    for created in (unit, lesson):
        assert created.status_code == 201, created.text
    world.ids |= {"unit2": unit.json()["id"], "lesson2": lesson.json()["id"]}
    return world


async def check_own_case(case: Case, variant: str, client: httpx.AsyncClient, db: AsyncEngine, cast: Cast,
                         shared: dict[Any, Any]) -> None:
    """``check_case`` for an ``OwnCase``: the same rules, the probe read as the caller."""
    key = (id(cast), variant == "published")
    if key not in shared:
        shared[key] = await catalog_world(client, db, cast, published=variant == "published")
    world: World = shared[key]
    mismatches = []
    for role, expected in case.expected(variant).items():
        if expected is None:
            continue
        user = cast.users[role]
        headers = user.headers if user else {}
        assert case.probe is not None
        probe = "/api" + fill(case.probe, world.ids)
        before = await client.get(probe, headers=headers)
        response = await client.request(case.method, "/api" + fill(case.path, world.ids),
                                        json=fill(case.body, world.ids), headers=headers)
        if response.status_code != expected:
            mismatches.append(f"{role}: expected {expected}, got {response.status_code} {response.text[:200]}")
            continue
        if expected >= 400:
            assert response.headers["content-type"] == "application/problem+json"
        minted = response.json().get("token") if expected < 300 else None
        after = await client.get(probe, headers={"Authorization": f"Bearer {minted}"} if minted else headers)
        seen_before, seen_after = (before.status_code, before.content), (after.status_code, after.content)
        if expected >= 400 and seen_after != seen_before:
            mismatches.append(f"{role}: refused with {expected}, yet {case.probe} changed")
        elif expected < 300 and seen_after == seen_before:
            mismatches.append(f"{role}: allowed with {expected}, yet {case.probe} did not change")
    assert not mismatches, f"{case.id} ({variant}):\n" + "\n".join(mismatches)


_shared: dict[tuple[int, bool], World] = {}


@pytest.fixture(scope="module")
async def roles(client: httpx.AsyncClient, db: AsyncEngine) -> Cast:
    return await make_cast(client, db)


PARAMS = [pytest.param(case, variant, id=f"{case.id} [{variant}]")
          for case in CASES for variant in ("published", "draft") if variant == "published" or case.draft]


@pytest.mark.parametrize(("case", "variant"), PARAMS)
async def test_catalog_access(case: Case, variant: str, client: httpx.AsyncClient, db: AsyncEngine,
                              roles: Cast) -> None:
    if isinstance(case, OwnCase):
        await check_own_case(case, variant, client, db, roles, _shared)
    else:
        await check_case(case, variant, client, db, roles, catalog_world, _shared)
