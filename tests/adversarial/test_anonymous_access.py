"""Without a token, only the public catalogue of §2 is readable; every other route is 401.

Before: quizzes (with their questions), a lesson's media list, ``/achievements`` and public
flashcard sets and their cards were served to anyone without a token.
"""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.adversarial.test_hostile_input import fill, spec, world
from tests.support import DevUser

# §2's public catalogue, plus what a client needs before it has a token: the web app's config,
# dev tokens (dev mode only), Clerk's webhook (signed), and the caller's access to a course or
# lesson (for an anonymous caller: "anonymous" on a published course, 404 on a draft, i.e.
# nothing GET /courses/{id} does not already say).
PUBLIC = {
    "GET /api/languages", "GET /api/tags", "GET /api/courses", "GET /api/courses/{id}",
    "GET /api/courses/{id}/outline", "GET /api/courses/{id}/feedback", "GET /api/lessons/{id}",
    "GET /api/courses/{id}/forum/posts", "GET /api/courses/{id}/forum/search", "GET /api/forum/posts/{id}", "GET /api/forum/posts/{id}/replies",
    "GET /api/config", "POST /api/dev/token", "POST /api/webhooks/clerk",
    "GET /api/courses/{id}/access", "GET /api/lessons/{id}/access",
}


def is_public(operation: dict[str, object]) -> bool:
    security = operation.get("security")
    return security is None or {} in security  # type: ignore[operator]


async def test_only_the_public_catalogue_is_declared_public(client: httpx.AsyncClient) -> None:
    declared = {f"{method.upper()} {path}" for path, methods in (await spec(client))["paths"].items()
                for method, operation in methods.items() if is_public(operation)}
    assert declared == PUBLIC


async def test_every_other_route_is_401_without_a_token(client: httpx.AsyncClient, db: AsyncEngine,
                                                       alice: DevUser, bob: DevUser) -> None:
    ids = await world(client, db, alice, bob)
    public_set = ok_set = (await client.post("/api/flashcard-sets", headers=alice.headers,
                                             json={"title": "Public", "is_public": True})).json()
    assert ok_set.get("is_public") is True, ok_set
    ids["set"] = public_set["id"]
    wrong: list[str] = []
    checked = 0
    for path, methods in (await spec(client))["paths"].items():
        for method, operation in methods.items():
            if is_public(operation):
                continue
            url = fill(path, ids, alice)
            response = await client.request(method.upper(), url, json={} if method != "get" else None)
            checked += 1
            if response.status_code != 401 or not response.headers["content-type"].startswith(
                    "application/problem+json"):
                wrong.append(f"{method.upper()} {url} -> {response.status_code}")
    assert not wrong, "served without a token:\n" + "\n".join(wrong)
    assert checked >= 60
    # What used to leak, with objects that exist and that Bob (signed in) can read.
    for url in (f"/api/lessons/{ids['lesson']}/quizzes", f"/api/quizzes/{ids['quiz']}",
                f"/api/lessons/{ids['lesson']}/media", "/api/achievements", "/api/flashcard-sets",
                f"/api/flashcard-sets/{ids['set']}", f"/api/flashcard-sets/{ids['set']}/cards"):
        assert (await client.get(url, headers=bob.headers)).status_code == 200, url
        assert (await client.get(url)).status_code == 401, url
