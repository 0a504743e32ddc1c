"""Text PostgreSQL cannot store (NUL, unpaired surrogates) in bodies, queries and token claims: 4xx, never 5xx.

Found by the schemathesis long run (bench/fuzz): a ``\\u0000`` in any JSON string reached an
INSERT and came back as a 500 (asyncpg ``CharacterNotInRepertoireError``); so did one in a search
query and in a token's ``name`` claim.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.fuzz.api_world import seed
from tests.support import ServerProcess

NUL = "a\u0000b"


def _writes(ids: dict[str, list[str]]) -> list[tuple[str, str, str, dict[str, Any]]]:
    course, unit, lesson = ids["courses"][0], ids["units"][0], ids["lessons"][0]
    post, fset = ids["forum/posts"][0], ids["flashcard-sets"][0]
    return [
        ("author", "POST", "/api/courses", {"title": NUL}),
        ("author", "POST", "/api/courses", {"title": "ok", "description": NUL}),
        ("author", "POST", "/api/courses", {"title": "ok", "tags": [NUL]}),
        ("author", "PATCH", f"/api/courses/{course}", {"description": NUL}),
        ("author", "POST", f"/api/courses/{course}/units", {"title": NUL}),
        ("author", "POST", f"/api/units/{unit}/lessons", {"title": NUL, "content_type": "text"}),
        ("author", "PATCH", f"/api/lessons/{lesson}", {"content": {"body": NUL}}),
        ("learner", "POST", f"/api/courses/{course}/forum/posts", {"title": "t", "content": NUL}),
        ("learner", "POST", f"/api/forum/posts/{post}/replies", {"content": NUL}),
        ("learner", "POST", "/api/flashcard-sets", {"title": NUL}),
        ("learner", "POST", f"/api/flashcard-sets/{fset}/cards", {"front": NUL, "back": "b"}),
        ("learner", "POST", "/api/me/goals", {"title": NUL, "target_type": "lessons", "target_value": 1}),
        ("learner", "PATCH", "/api/me", {"name": NUL}),
        ("learner", "POST", f"/api/courses/{course}/feedback", {"rating": 3, "comment": NUL}),
    ]


def test_unstorable_text_is_refused_not_a_crash(server: ServerProcess) -> None:
    world = seed(server.base_url, tag="nultext")
    failures: list[str] = []

    def check(label: str, response: httpx.Response) -> None:
        if response.status_code >= 500 or (response.status_code >= 400 and
                                           response.headers.get("content-type") != "application/problem+json"):
            failures.append(f"{label} -> {response.status_code} {response.text[:120]}")

    # No keep-alive: uvicorn drops the connection after an unhandled error, which would fail the next case.
    with httpx.Client(base_url=server.base_url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        for role, method, path, body in _writes(world.ids):
            check(f"{method} {path} {body}", http.request(method, path, json=body, headers=world.headers(role)))
        for name in ("q", "tag", "language", "author"):
            check(f"GET /api/courses?{name}=NUL", http.get("/api/courses", params={name: NUL},
                                                           headers=world.headers("learner")))
        token = http.post("/api/dev/token", json={"sub": "user_nul_name", "name": NUL})
        if token.status_code == 200:
            check("GET /api/me with a NUL in the name claim",
                  http.get("/api/me", headers={"Authorization": f"Bearer {token.json()['token']}"}))
        else:
            check("POST /api/dev/token with a NUL name", token)
        # Nothing was half-written: the server still answers the learner normally.
        assert http.get("/api/me", headers=world.headers("learner")).status_code == 200
    assert not failures, "\n".join(failures)
