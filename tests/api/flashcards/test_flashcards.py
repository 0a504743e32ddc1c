"""Flashcards: sets and cards through the real server (visibility, ownership, sanitised Markdown),
FSRS scheduling and mastery as pure functions, due lists per caller, reviews and their history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.flashcards.service import mastery_level, review
from tests.support import DevUser, dev_user

T0 = datetime(2026, 2, 1, 9, tzinfo=UTC)


# --- pure FSRS ----------------------------------------------------------------------------------


def _history(ratings: list[str]) -> dict[str, Any] | None:
    state: dict[str, Any] | None = None
    now = T0
    for rating in ratings:
        card = review(state, rating, now)
        state, now = dict(card.to_dict()), card.due
    return state


@pytest.mark.parametrize("before", [[], ["good"], ["good", "good"], ["good", "good", "good"], ["easy", "again"]],
                         ids=["new", "learning", "review", "review-long", "relearning"])
def test_again_is_due_sooner_and_never_more_mastered_than_easy(before: list[str]) -> None:
    state = _history(before)
    now = T0 + timedelta(days=60)
    again, easy = review(state, "again", now), review(state, "easy", now)
    assert again.due < easy.due
    assert mastery_level(again) <= mastery_level(easy)
    hard, good = review(state, "hard", now), review(state, "good", now)
    assert again.due <= hard.due <= good.due <= easy.due


def test_mastery_levels() -> None:
    assert mastery_level(None) == 0
    learning = review(None, "good", T0)
    assert mastery_level(learning) == 1
    levels = []
    state: dict[str, Any] | None = None
    now = T0
    for _ in range(6):
        card = review(state, "easy", now)
        levels.append(mastery_level(card))
        state, now = dict(card.to_dict()), card.due
    assert levels == sorted(levels) and levels[-1] == 5 and all(0 <= m <= 5 for m in levels)
    lapsed = review(state, "again", now)
    assert mastery_level(lapsed) == 1


def test_schedule_is_reproducible() -> None:
    assert review(None, "good", T0).to_dict() == review(None, "good", T0).to_dict()


# --- REST ----------------------------------------------------------------------------------------


async def _set(client: httpx.AsyncClient, user: DevUser, **body: Any) -> dict[str, Any]:
    r = await client.post("/api/flashcard-sets", json={"title": "Spanish verbs", **body}, headers=user.headers)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def _card(client: httpx.AsyncClient, user: DevUser, set_id: str, front: str, back: str) -> dict[str, Any]:
    r = await client.post(f"/api/flashcard-sets/{set_id}/cards", json={"front": front, "back": back},
                          headers=user.headers)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def test_private_set_is_404_to_others(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    private = await _set(client, alice)
    assert private["is_public"] is False and private["card_count"] == 0
    card = await _card(client, alice, private["id"], "**hablar**", "to speak")
    for path in (f"/api/flashcard-sets/{private['id']}", f"/api/flashcard-sets/{private['id']}/cards",
                 f"/api/flashcard-sets/{private['id']}/due"):
        assert (await client.get(path, headers=bob.headers)).status_code == 404, path
        assert (await client.get(path, headers=alice.headers)).status_code == 200, path
    assert (await client.get(f"/api/flashcard-sets/{private['id']}")).status_code == 401  # anonymous (§2)
    r = await client.post(f"/api/flashcards/{card['id']}/review", json={"rating": "good"}, headers=bob.headers)
    assert r.status_code == 404
    assert (await client.patch(f"/api/flashcards/{card['id']}", json={"back": "x"}, headers=bob.headers)).status_code == 404
    assert (await client.delete(f"/api/flashcard-sets/{private['id']}", headers=bob.headers)).status_code == 404
    listed = (await client.get("/api/flashcard-sets", headers=bob.headers)).json()["items"]
    assert private["id"] not in [s["id"] for s in listed]
    assert private["id"] in [s["id"] for s in (await client.get("/api/flashcard-sets", headers=alice.headers)).json()["items"]]
    assert (await client.get("/api/flashcard-sets/not-a-uuid", headers=alice.headers)).status_code == 404


async def test_public_set_readable_but_owner_writes(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    public = await _set(client, alice, is_public=True, description="Verbs")
    card = await _card(client, alice, public["id"], "*comer* <script>alert(1)</script>", "to eat")
    assert "<script" not in card["front_html"]
    assert "<em>comer</em>" in card["front_html"]
    got = await client.get(f"/api/flashcard-sets/{public['id']}", headers=bob.headers)
    assert got.status_code == 200 and got.json()["card_count"] == 1
    assert (await client.get(f"/api/flashcard-sets/{public['id']}")).status_code == 401  # anonymous (§2)
    cards = (await client.get(f"/api/flashcard-sets/{public['id']}/cards", headers=bob.headers)).json()["items"]
    assert [c["id"] for c in cards] == [card["id"]]
    forbidden = [
        client.patch(f"/api/flashcard-sets/{public['id']}", json={"title": "Mine"}, headers=bob.headers),
        client.post(f"/api/flashcard-sets/{public['id']}/cards", json={"front": "a", "back": "b"}, headers=bob.headers),
        client.patch(f"/api/flashcards/{card['id']}", json={"front": "a"}, headers=bob.headers),
        client.delete(f"/api/flashcards/{card['id']}", headers=bob.headers),
        client.delete(f"/api/flashcard-sets/{public['id']}", headers=bob.headers),
    ]
    for request in forbidden:
        assert (await request).status_code == 403
    patched = await client.patch(f"/api/flashcard-sets/{public['id']}", json={"title": "Verbos", "is_public": False},
                                 headers=alice.headers)
    assert patched.status_code == 200 and patched.json()["title"] == "Verbos" and patched.json()["is_public"] is False
    assert (await client.get(f"/api/flashcard-sets/{public['id']}", headers=bob.headers)).status_code == 404
    edited = await client.patch(f"/api/flashcards/{card['id']}", json={"back": "to **eat**"}, headers=alice.headers)
    assert edited.status_code == 200 and edited.json()["back_html"] == "<p>to <strong>eat</strong></p>\n"
    assert (await client.patch(f"/api/flashcards/{card['id']}", json={"front": ""}, headers=alice.headers)).status_code == 422
    assert (await client.delete(f"/api/flashcards/{card['id']}", headers=alice.headers)).status_code == 204
    assert (await client.delete(f"/api/flashcard-sets/{public['id']}", headers=alice.headers)).status_code == 204
    assert (await client.get(f"/api/flashcard-sets/{public['id']}", headers=alice.headers)).status_code == 404
    assert (await client.post("/api/flashcard-sets", json={}, headers=alice.headers)).status_code == 422
    assert (await client.post("/api/flashcard-sets", json={"title": "x"})).status_code == 401


async def test_reviews_schedule_per_caller(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                           bob: DevUser) -> None:
    deck = await _set(client, alice, is_public=True)
    cards = [await _card(client, alice, deck["id"], f"front {i}", f"back {i}") for i in range(3)]
    due = (await client.get(f"/api/flashcard-sets/{deck['id']}/due", headers=alice.headers)).json()
    assert [c["id"] for c in due["items"]] == [c["id"] for c in cards]  # never reviewed: all due, in order
    assert all(c["mastery_level"] == 0 and set(c) >= {"id", "front", "back", "due_at", "mastery_level"}
               for c in due["items"])

    again = await client.post(f"/api/flashcards/{cards[0]['id']}/review", json={"rating": "again"},
                              headers=alice.headers)
    easy = await client.post(f"/api/flashcards/{cards[1]['id']}/review", json={"rating": "easy"},
                             headers=alice.headers)
    assert again.status_code == 200 and easy.status_code == 200
    assert set(again.json()) >= {"due_at", "mastery_level", "state"}
    assert again.json()["due_at"] < easy.json()["due_at"]
    assert again.json()["mastery_level"] <= easy.json()["mastery_level"]
    assert again.json()["state"] == "learning" and easy.json()["state"] == "review"
    bad = await client.post(f"/api/flashcards/{cards[0]['id']}/review", json={"rating": "meh"}, headers=alice.headers)
    assert bad.status_code == 422

    # Alice's due list: the easy card is no longer due; the "again" card is due in a minute.
    mine = [c["id"] for c in (await client.get(f"/api/flashcard-sets/{deck['id']}/due", headers=alice.headers)).json()["items"]]
    assert cards[1]["id"] not in mine and cards[2]["id"] in mine
    # Bob studies the same public set from scratch: Alice's reviews are not his.
    bobs = (await client.get(f"/api/flashcard-sets/{deck['id']}/due", headers=bob.headers)).json()["items"]
    assert [c["id"] for c in bobs] == [c["id"] for c in cards]
    assert all(c["mastery_level"] == 0 for c in bobs)

    # Paging through a due list.
    first = (await client.get(f"/api/flashcard-sets/{deck['id']}/due", params={"limit": 2}, headers=bob.headers)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = (await client.get(f"/api/flashcard-sets/{deck['id']}/due",
                             params={"limit": 2, "cursor": first["next_cursor"]}, headers=bob.headers)).json()
    assert [c["id"] for c in first["items"] + rest["items"]] == [c["id"] for c in cards]
    assert rest["next_cursor"] is None

    async with db.connect() as conn:
        history = (await conn.execute(text(
            "SELECT rating FROM flashcard_reviews WHERE user_id = :u ORDER BY reviewed_at"), {"u": alice.clerk_id})).all()
        progress = (await conn.execute(text(
            "SELECT review_count, state ->> 'state' FROM user_flashcard_progress WHERE user_id = :u"
            " AND flashcard_id = :c"), {"u": alice.clerk_id, "c": cards[1]["id"]})).one()
    assert [r for (r,) in history] == ["again", "easy"]
    assert progress[0] == 1 and progress[1] == "2"


async def test_card_shark_counts_reviews(client: httpx.AsyncClient, db: AsyncEngine) -> None:
    carol = await dev_user(client, "Carol")
    deck = await _set(client, carol)
    card = await _card(client, carol, deck["id"], "q", "a")
    for _ in range(5):
        r = await client.post(f"/api/flashcards/{card['id']}/review", json={"rating": "good"}, headers=carol.headers)
        assert r.status_code == 200
    by_name = {a["name"]: a for a in (await client.get("/api/achievements", headers=carol.headers)).json()["items"]}
    assert by_name["Card shark"]["progress"] == 5 and by_name["Card shark"]["earned"] is False


async def test_sets_of_a_course(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser, bob: DevUser) -> None:
    from tests.support.motivation import make_lessons

    course_id, _ = await make_lessons(db, author_id=alice.clerk_id, count=1)
    unknown = await client.post("/api/flashcard-sets", headers=alice.headers,
                                json={"title": "x", "course_id": "00000000-0000-4000-8000-000000000000"})
    assert unknown.status_code == 422
    about = await _set(client, alice, course_id=str(course_id), is_public=True)
    own_private = await _set(client, bob, course_id=str(course_id))
    other = await _set(client, alice, is_public=True)
    listed = (await client.get("/api/flashcard-sets", params={"course_id": str(course_id)},
                               headers=bob.headers)).json()["items"]
    assert {s["id"] for s in listed} == {about["id"], own_private["id"]}
    mine = (await client.get("/api/flashcard-sets", params={"mine": "true"}, headers=bob.headers)).json()["items"]
    assert own_private["id"] in [s["id"] for s in mine] and other["id"] not in [s["id"] for s in mine]
    assert (await client.get("/api/flashcard-sets", params={"course_id": "nope"},
                             headers=bob.headers)).status_code == 422


async def test_retention_stats(client: httpx.AsyncClient) -> None:
    dana = await dev_user(client, "Dana")
    deck = await _set(client, dana)
    cards = [await _card(client, dana, deck["id"], f"q{i}", "a") for i in range(2)]
    empty = (await client.get("/api/me/flashcard-stats", headers=dana.headers)).json()
    assert empty["reviews"] == 0 and empty["retention"] is None
    for card, rating in zip(cards * 2, ["again", "good", "good", "easy"], strict=True):
        r = await client.post(f"/api/flashcards/{card['id']}/review", json={"rating": rating}, headers=dana.headers)
        assert r.status_code == 200
    stats = (await client.get("/api/me/flashcard-stats", headers=dana.headers)).json()
    assert stats["reviews"] == 4 and stats["by_rating"] == {"again": 1, "hard": 0, "good": 2, "easy": 1}
    assert stats["retention"] == 0.75 and stats["cards_studied"] == 2
    assert (await client.get("/api/me/flashcard-stats", params={"days": "0"}, headers=dana.headers)).status_code == 422
