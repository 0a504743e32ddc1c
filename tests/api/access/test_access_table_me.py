"""The access table for per-user routes: flashcards, goals, achievements, notifications, streak, activity.

Same roles and machinery as the learning table (``tests/api/access/test_access_table_learning.py``, whose
:class:`Row` reads a probe as the caller or as the owner of the state). The world adds, owned by the
course's author: a private flashcard set with a card, a public set with a card, a learning goal, and
the author's notification about the outsider's review. Courses play no part here, so rows have no
draft column. Others' private sets, goals and notifications are 404 (hidden like a missing one); a
public set is visible but only its owner (and admins) may change it: 403.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from server.http import encode_cursor
from tests.api.access.test_access_table import Case, Cast, World
from tests.api.access.test_access_table_learning import Row, check_row, learning_world, make_cast

SIGNED_IN = "401 200 200 200 200 200 200"
OWNER_OF_PRIVATE = "401 404 404 404 404 {ok} {ok}"  # the author owns it; admins see and change every set
OWNER_OF_PUBLIC = "401 403 403 403 403 {ok} {ok}"
OWN_ONLY = "401 404 404 404 404 {ok} 404"  # goals and notifications: no one else, admins included
CARD = {"front": "F", "back": "B"}
# A requirement no one meets: the shared test server keeps it.
ACHIEVEMENT = {"name": "Access table achievement", "requirement": {"lessons_completed": 100000}}
NOTHING_UNREAD = ("stranger", "learner", "admin")
# Goals are listed oldest first and the author has one per world: the probe pages from the world's.
GOALS = "/me/goals?cursor={goals_from}"

CASES: list[Case] = [
    # Flashcard sets
    Case("GET", "/flashcard-sets", published=SIGNED_IN),
    Row("POST", "/flashcard-sets", {"title": "S"}, published="401 201 201 201 201 201 201",
        probe="/flashcard-sets?mine=true", probe_as="caller"),
    Case("GET", "/flashcard-sets/{set}", published=OWNER_OF_PRIVATE.format(ok=200)),
    Case("GET", "/flashcard-sets/{public_set}", published=SIGNED_IN),
    Case("PATCH", "/flashcard-sets/{set}", {"title": "S2"}, published=OWNER_OF_PRIVATE.format(ok=200),
         probe="/flashcard-sets/{set}"),
    Case("PATCH", "/flashcard-sets/{public_set}", {"title": "S2"}, published=OWNER_OF_PUBLIC.format(ok=200),
         probe="/flashcard-sets/{public_set}"),
    Case("DELETE", "/flashcard-sets/{set}", published=OWNER_OF_PRIVATE.format(ok=204), probe="/flashcard-sets/{set}"),
    Case("DELETE", "/flashcard-sets/{public_set}", published=OWNER_OF_PUBLIC.format(ok=204),
         probe="/flashcard-sets/{public_set}"),
    # Cards
    Case("GET", "/flashcard-sets/{set}/cards", published=OWNER_OF_PRIVATE.format(ok=200)),
    Case("GET", "/flashcard-sets/{public_set}/cards", published=SIGNED_IN),
    Case("POST", "/flashcard-sets/{set}/cards", CARD, published=OWNER_OF_PRIVATE.format(ok=201),
         probe="/flashcard-sets/{set}/cards"),
    Case("POST", "/flashcard-sets/{public_set}/cards", CARD, published=OWNER_OF_PUBLIC.format(ok=201),
         probe="/flashcard-sets/{public_set}/cards"),
    Case("PATCH", "/flashcards/{card}", {"front": "F2"}, published=OWNER_OF_PRIVATE.format(ok=200),
         probe="/flashcard-sets/{set}/cards"),
    Case("PATCH", "/flashcards/{public_card}", {"front": "F2"}, published=OWNER_OF_PUBLIC.format(ok=200),
         probe="/flashcard-sets/{public_set}/cards"),
    Case("DELETE", "/flashcards/{card}", published=OWNER_OF_PRIVATE.format(ok=204),
         probe="/flashcard-sets/{set}/cards"),
    Case("DELETE", "/flashcards/{public_card}", published=OWNER_OF_PUBLIC.format(ok=204),
         probe="/flashcard-sets/{public_set}/cards"),
    # Studying: anyone who can read a set studies it (their own schedule)
    Case("GET", "/flashcard-sets/{set}/due", published=OWNER_OF_PRIVATE.format(ok=200)),
    Case("GET", "/flashcard-sets/{public_set}/due", published=SIGNED_IN),
    Row("POST", "/flashcards/{card}/review", {"rating": "good"}, published=OWNER_OF_PRIVATE.format(ok=200),
        probe="/me/flashcard-stats", probe_as="caller"),
    Row("POST", "/flashcards/{public_card}/review", {"rating": "good"}, published=SIGNED_IN,
        probe="/me/flashcard-stats", probe_as="caller"),
    Case("GET", "/me/flashcard-stats", published=SIGNED_IN),
    # Streak, activity, achievements
    Case("GET", "/me/streak", published=SIGNED_IN),
    Case("GET", "/me/activity", published=SIGNED_IN),
    Case("GET", "/achievements", published=SIGNED_IN),
    Case("POST", "/achievements", ACHIEVEMENT, published="401 403 403 403 403 403 201",
         probe="/achievements?limit=100"),
    Case("GET", "/me/achievements", published=SIGNED_IN),
    # Goals
    Case("GET", "/me/goals", published=SIGNED_IN),
    Row("POST", "/me/goals", {"title": "G", "target_type": "lessons", "target_value": 1},
        published="401 201 201 201 201 201 201", probe=GOALS, probe_as="caller"),
    Row("PATCH", "/me/goals/{goal}", {"title": "G2"}, published=OWN_ONLY.format(ok=200),
        probe=GOALS, probe_as="author"),
    Row("DELETE", "/me/goals/{goal}", published=OWN_ONLY.format(ok=204), probe=GOALS, probe_as="author"),
    # Notifications
    Case("GET", "/notifications", published=SIGNED_IN),
    Case("GET", "/notifications/unread-count", published=SIGNED_IN),
    Row("POST", "/notifications/read-all", published=SIGNED_IN, probe="/notifications/unread-count",
        probe_as="caller", same=NOTHING_UNREAD),
    Row("POST", "/notifications/{notification}/read", published=OWN_ONLY.format(ok=200),
        probe="/notifications/unread-count", probe_as="author"),
]


async def me_world(client: httpx.AsyncClient, db: AsyncEngine, cast: Cast, *, published: bool) -> World:
    world = await learning_world(client, db, cast, published=published)
    author = cast.users["author"]
    assert author is not None

    async def create(path: str, body: dict[str, Any]) -> str:
        response = await client.post("/api" + path, json=body, headers=author.headers)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    for name, public in (("set", False), ("public_set", True)):
        world.ids[name] = await create("/flashcard-sets", {"title": name, "is_public": public})
    world.ids["card"] = await create(f"/flashcard-sets/{world.ids['set']}/cards", CARD)
    world.ids["public_card"] = await create(f"/flashcard-sets/{world.ids['public_set']}/cards", CARD)
    goal = await client.post("/api/me/goals", json={"title": "G", "target_type": "lessons", "target_value": 5},
                             headers=author.headers)
    assert goal.status_code == 201, goal.text
    world.ids["goal"] = goal.json()["id"]
    world.ids["goals_from"] = encode_cursor([goal.json()["created_at"], "00000000-0000-0000-0000-000000000000"])
    notifications = await client.get("/api/notifications?unread=true", headers=author.headers)
    assert notifications.status_code == 200, notifications.text
    world.ids["notification"] = notifications.json()["items"][0]["id"]
    return world


_shared: dict[tuple[int, bool], World] = {}


@pytest.fixture(scope="module")
async def people(client: httpx.AsyncClient, db: AsyncEngine) -> Cast:
    return await make_cast(client, db)


PARAMS = [pytest.param(case, "published", id=case.id) for case in CASES]


@pytest.mark.parametrize(("case", "variant"), PARAMS)
async def test_me_access(case: Case, variant: str, client: httpx.AsyncClient, db: AsyncEngine,
                         people: Cast) -> None:
    await check_row(case, variant, client, db, people, me_world, _shared)
