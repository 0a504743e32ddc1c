"""Integers past the database's int4 in request bodies: 422, never a 500 (found by the schemathesis long run).

A flashcard's ``position`` went straight into an int4 column: 3436735797624706 came back as a 500
(asyncpg "value out of int32 range"). Unit and lesson positions are clamped to the list's length.
"""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fuzz.api_world import seed
from tests.support import ServerProcess

positions = st.one_of(st.integers(min_value=2**31 - 2, max_value=2**63 + 1), st.integers(min_value=-(2**63), max_value=-1),
                      st.integers(min_value=0, max_value=1000))


def test_out_of_range_positions_are_refused(server: ServerProcess) -> None:
    world = seed(server.base_url, tag="numbers")
    fset, card = world.ids["flashcard-sets"][-1], world.ids["flashcards"][-1]  # the author's
    unit = world.ids["units"][0]
    failures: list[str] = []

    with httpx.Client(base_url=server.base_url, headers=world.headers("author"), timeout=30,
                      limits=httpx.Limits(max_keepalive_connections=0)) as http:

        @given(position=positions)
        @example(position=3436735797624706)
        @example(position=2**31)
        @settings(max_examples=15, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        def one(position: int) -> None:
            for method, path, body in (
                ("POST", f"/api/flashcard-sets/{fset}/cards", {"front": "f", "back": "b", "position": position}),
                ("PATCH", f"/api/flashcards/{card}", {"position": position}),
                ("POST", f"/api/units/{unit}/lessons", {"title": "t", "content_type": "text", "position": position}),
            ):
                response = http.request(method, path, json=body)
                ok = response.status_code < 300 if 0 <= position < 2**31 else response.status_code == 422
                if not ok and not (path.startswith("/api/units") and response.status_code < 300 and position >= 0):
                    failures.append(f"{method} {path} position={position} -> {response.status_code}")

        one()
        # A card at the largest position, then one appended after it (position chosen by the server).
        assert http.post(f"/api/flashcard-sets/{fset}/cards",
                         json={"front": "f", "back": "b", "position": 2**31 - 1}).status_code == 201
        appended = http.post(f"/api/flashcard-sets/{fset}/cards", json={"front": "f", "back": "b"})
        if appended.status_code != 201:
            failures.append(f"appending after position 2**31-1 -> {appended.status_code}")
    assert not failures, "\n".join(failures)
