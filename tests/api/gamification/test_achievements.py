"""Achievements: the requirement grammar, the rules engine (bounded queries, partial progress,
idempotent awarding under real concurrency), and the REST catalogue."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db import make_sessionmaker
from server.errors import ValidationFailed
from server.gamification import service
from server.gamification.catalogue import DEFAULT_ACHIEVEMENTS
from server.gamification.requirements import parse_requirement
from tests.support import DevUser, eventually
from tests.support.motivation import complete_lesson, make_lessons, make_user, notifications_of, outbox_events

NOW = datetime(2026, 4, 1, 12, tzinfo=UTC)

BAD_REQUIREMENTS: list[tuple[str, Any, str]] = [
    ("unknown key", {"lessons_watched": 3}, "requirement.lessons_watched"),
    ("unknown key nested", {"all": [{"lessons_completed": 1}, {"karma": 2}]}, "requirement.all.1.karma"),
    ("negative count", {"lessons_completed": -1}, "requirement.lessons_completed"),
    ("zero count", {"streak_days": 0}, "requirement.streak_days"),
    ("negative nested", {"any": [{"forum_posts": -5}]}, "requirement.any.0.forum_posts"),
    ("empty all", {"all": []}, "requirement.all"),
    ("empty any", {"any": []}, "requirement.any"),
    ("empty object", {}, "requirement"),
    ("two keys", {"lessons_completed": 1, "forum_posts": 1}, "requirement"),
    ("not an object", [{"lessons_completed": 1}], "requirement"),
    ("string count", {"likes_received": "10"}, "requirement.likes_received"),
    ("boolean count", {"likes_received": True}, "requirement.likes_received"),
    ("fractional count", {"likes_received": 1.5}, "requirement.likes_received"),
    ("null count", {"flashcards_reviewed": None}, "requirement"),
    ("all not a list", {"all": {"lessons_completed": 1}}, "requirement.all"),
    ("too deep", {"all": [{"all": [{"all": [{"all": [{"all": [{"all": [{"lessons_completed": 1}]}]}]}]}]}]},
     "requirement.all.0"),
]


@pytest.mark.parametrize(("raw", "loc"), [(raw, loc) for _, raw, loc in BAD_REQUIREMENTS],
                         ids=[name for name, _, _ in BAD_REQUIREMENTS])
def test_each_grammar_error_is_rejected(raw: Any, loc: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_requirement(raw)
    assert caught.value.status == 422
    assert loc in [e["loc"] for e in caught.value.errors or []]


def test_valid_requirements_and_their_evaluation() -> None:
    for entry in DEFAULT_ACHIEVEMENTS:  # the seeded catalogue obeys the grammar
        parse_requirement(entry["requirement"])
    rule = parse_requirement({"all": [{"lessons_completed": 4}, {"any": [{"streak_days": 7}, {"forum_posts": 2}]}]})
    assert rule.keys() == {"lessons_completed", "streak_days", "forum_posts"}
    assert rule.progress({"lessons_completed": 2, "forum_posts": 1}) == pytest.approx(50.0)
    assert not rule.met({"lessons_completed": 4, "streak_days": 6, "forum_posts": 1})
    assert rule.met({"lessons_completed": 5, "streak_days": 1, "forum_posts": 2})
    assert rule.to_json() == {"all": [{"lessons_completed": 4}, {"any": [{"streak_days": 7}, {"forum_posts": 2}]}]}


async def test_create_achievement_validates_on_insert(db: AsyncEngine) -> None:
    sessions = make_sessionmaker(db)
    async with sessions() as session, session.begin():
        with pytest.raises(ValidationFailed):
            await service.create_achievement(session, name="Bad", description=None, requirement={"all": []})
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM achievements WHERE name = 'Bad'"))).scalar_one() == 0


async def test_counts_are_one_query(db: AsyncEngine) -> None:
    from sqlalchemy import event

    user = await make_user(db)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(db.sync_engine, "before_cursor_execute", count)
    try:
        async with make_sessionmaker(db)() as session:
            counts = await service.user_counts(session, user, service.ACTION_KEYS)
    finally:
        event.remove(db.sync_engine, "before_cursor_execute", count)
    assert counts == dict.fromkeys(sorted(service.ACTION_KEYS), 0)
    assert len(statements) == 1


async def test_partial_progress_then_award(db: AsyncEngine) -> None:
    sessions = make_sessionmaker(db)
    author = await make_user(db)
    user = await make_user(db)
    _, lessons = await make_lessons(db, author_id=author, count=10)
    async with sessions.begin() as session:
        for lesson in lessons[:3]:
            await complete_lesson(session, user_id=user, lesson_id=lesson, at=NOW)
        await service.record_action(session, user_id=user, keys={"lessons_completed"}, now=NOW)
    progress = await _progress(db, user)
    assert progress["First lesson"] == (100.0, True)
    assert progress["Ten lessons"] == (30.0, False)
    assert "Week streak" not in progress  # not touched by this action
    async with sessions.begin() as session:
        for lesson in lessons[3:]:
            await complete_lesson(session, user_id=user, lesson_id=lesson, at=NOW)
        await service.record_action(session, user_id=user, keys={"lessons_completed"}, now=NOW)
        await service.record_action(session, user_id=user, keys={"lessons_completed"}, now=NOW)  # repeat: no-op
    progress = await _progress(db, user)
    assert progress["Ten lessons"] == (100.0, True)
    titles = [n["title"] for n in await notifications_of(db, user, "achievement")]
    assert titles == ["Achievement earned: First lesson", "Achievement earned: Ten lessons"]
    events = await outbox_events(db, f"user:{user}", "achievement.earned")
    assert [e["name"] for e in events] == ["First lesson", "Ten lessons"]
    assert events[0]["progress"] == 100 and events[0]["earned_at"].startswith("2026-04-01T12:00:00")


async def _progress(db: AsyncEngine, user: str) -> dict[str, tuple[float, bool]]:
    async with db.connect() as conn:
        rows = await conn.execute(text(
            "SELECT a.name, ua.progress, ua.earned_at IS NOT NULL FROM user_achievements ua"
            " JOIN achievements a ON a.id = ua.achievement_id WHERE ua.user_id = :u"), {"u": user})
        return {name: (float(p), bool(e)) for name, p, e in rows}


async def test_concurrent_completions_award_once(db: AsyncEngine) -> None:
    """Two transactions each complete a different first lesson and evaluate at the same time:
    the second blocks on the first's uncommitted award and, once it commits, awards nothing."""
    sessions = make_sessionmaker(db)
    author = await make_user(db)
    user = await make_user(db)
    _, (one, two) = await make_lessons(db, author_id=author, count=2)
    first = sessions()
    second = sessions()
    try:
        await first.begin()
        await complete_lesson(first, user_id=user, lesson_id=one, at=NOW)
        await service.record_action(first, user_id=user, keys={"lessons_completed"}, now=NOW)
        await second.begin()
        await complete_lesson(second, user_id=user, lesson_id=two, at=NOW)
        blocked = asyncio.create_task(service.record_action(second, user_id=user, keys={"lessons_completed"},
                                                            now=NOW))

        async def second_waits_on_a_lock() -> bool:
            async with db.connect() as conn:
                waiting = (await conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"))).scalar_one()
            return bool(waiting) or blocked.done()

        await eventually(second_waits_on_a_lock)
        assert not blocked.done()  # really concurrent: it waits for the first transaction
        await first.commit()
        await blocked
        await second.commit()
    finally:
        await first.close()
        await second.close()
    assert (await _progress(db, user))["First lesson"] == (100.0, True)
    assert [n["title"] for n in await notifications_of(db, user, "achievement")] == \
        ["Achievement earned: First lesson"]
    assert len(await outbox_events(db, f"user:{user}", "achievement.earned")) == 1


async def test_many_concurrent_actions_award_once(db: AsyncEngine) -> None:
    sessions = make_sessionmaker(db)
    author = await make_user(db)
    user = await make_user(db)
    _, lessons = await make_lessons(db, author_id=author, count=8)

    async def complete(lesson: Any) -> None:
        async with sessions.begin() as session:
            await complete_lesson(session, user_id=user, lesson_id=lesson, at=NOW)
            await service.record_action(session, user_id=user, keys={"lessons_completed"}, now=NOW)

    await asyncio.gather(*(complete(lesson) for lesson in lessons))
    assert len(await notifications_of(db, user, "achievement")) == 1
    assert (await _progress(db, user))["Ten lessons"][0] >= 10.0


async def test_unknown_action_key_is_a_programming_error(db: AsyncEngine) -> None:
    async with make_sessionmaker(db)() as session:
        with pytest.raises(ValueError, match="unknown action keys"):
            await service.record_action(session, user_id="nobody", keys={"lessons_watched"})


# --- REST ----------------------------------------------------------------------------------------


async def test_catalogue_and_my_achievements(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser) -> None:
    catalogue = await client.get("/api/achievements", headers=alice.headers)
    assert catalogue.status_code == 200
    names = {a["name"] for a in catalogue.json()["items"]}
    assert {e["name"] for e in DEFAULT_ACHIEVEMENTS} <= names
    assert all(a["earned"] is False for a in catalogue.json()["items"])
    progress = {a["name"]: a["progress"] for a in catalogue.json()["items"]}
    # Her first request of the day started a one-day streak: partial progress toward a week.
    assert progress["Week streak"] == pytest.approx(100 / 7, abs=0.01)
    assert progress["First lesson"] == 0
    assert set(catalogue.json()["items"][0]) >= {"id", "name", "description", "requirement", "earned", "progress"}

    author = await make_user(db)
    _, lessons = await make_lessons(db, author_id=author, count=2)
    async with make_sessionmaker(db).begin() as session:
        await complete_lesson(session, user_id=alice.clerk_id, lesson_id=lessons[0], at=NOW)
        await service.record_action(session, user_id=alice.clerk_id, keys={"lessons_completed"})

    async def earned() -> list[dict[str, Any]]:
        r = await client.get("/api/me/achievements", headers=alice.headers)
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    (mine,) = await eventually(earned, within=5)
    assert mine["name"] == "First lesson" and mine["progress"] == 100
    assert set(mine) >= {"achievement_id", "name", "earned_at", "progress"}
    by_name = {a["name"]: a for a in (await client.get("/api/achievements", headers=alice.headers)).json()["items"]}
    assert by_name["First lesson"]["earned"] is True
    assert by_name["Ten lessons"]["earned"] is False and by_name["Ten lessons"]["progress"] == 10
    # Pagination walks the whole catalogue without repeats.
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/achievements", params=params, headers=alice.headers)).json()
        seen += [a["name"] for a in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(by_name) and len(seen) == len(set(seen))


async def test_admin_creates_achievements_with_validated_requirements(
        client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser, bob: DevUser) -> None:
    body = {"name": "Scholar", "description": "Lessons and posts",
            "requirement": {"all": [{"lessons_completed": 3}, {"forum_posts": 1}]}}
    assert (await client.post("/api/achievements", json=body, headers=bob.headers)).status_code == 403
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET role = 'admin' WHERE clerk_id = :u"), {"u": alice.clerk_id})
    for _, raw, loc in BAD_REQUIREMENTS:
        bad = await client.post("/api/achievements", json={**body, "requirement": raw}, headers=alice.headers)
        assert bad.status_code == 422, raw
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert "body." + loc in [e["loc"] for e in bad.json()["errors"]]
    created = await client.post("/api/achievements", json=body, headers=alice.headers)
    assert created.status_code == 201
    assert created.json()["requirement"] == body["requirement"]
    assert (await client.post("/api/achievements", json=body, headers=alice.headers)).status_code == 409
