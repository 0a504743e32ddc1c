"""Learning goals: periods in the user's zone (pure), progress and completion with a settable
clock against the database, and the REST routes through the real server."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.clock import FixedClock
from server.db import make_sessionmaker
from server.gamification import service
from server.gamification.models import LearningGoal
from tests.support import DevUser, eventually
from tests.support.motivation import complete_lesson, make_lessons, make_user, notifications_of

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def at(zone: str, y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(zone)).astimezone(UTC)


# --- pure: periods -----------------------------------------------------------------------------


def test_daily_window_is_the_local_day_even_when_23_hours_long() -> None:
    window = service.goal_window(period="daily", created_at=at(NY, 2026, 3, 1, 0), due_date=None,
                                 now=at(NY, 2026, 3, 8, 12), tz=NY)
    assert window.start == at(NY, 2026, 3, 8, 0) and window.end == at(NY, 2026, 3, 9, 0)
    assert window.end - window.start == timedelta(hours=23)


def test_weekly_window_starts_on_local_monday() -> None:
    # Sunday 2026-10-25 in Berlin (the 25-hour day): the week began Monday the 19th.
    window = service.goal_window(period="weekly", created_at=at(BERLIN, 2026, 10, 1, 0), due_date=None,
                                 now=at(BERLIN, 2026, 10, 25, 23, 30), tz=BERLIN)
    assert window.start == at(BERLIN, 2026, 10, 19, 0) and window.end == at(BERLIN, 2026, 10, 26, 0)
    assert window.end - window.start == timedelta(days=7, hours=1)


def test_once_window_runs_from_creation_to_the_end_of_the_due_date() -> None:
    created = at(NY, 2026, 5, 1, 9)
    window = service.goal_window(period="once", created_at=created, due_date=date(2026, 5, 3),
                                 now=at(NY, 2026, 5, 2, 9), tz=NY)
    assert window.start == created and window.end == at(NY, 2026, 5, 4, 0)
    open_ended = service.goal_window(period="once", created_at=created, due_date=None, now=created, tz=NY)
    assert open_ended.end == service.FAR_FUTURE


# --- with the database and a settable clock -------------------------------------------------------


async def _goal(db: AsyncEngine, user: str, *, target_type: str, target_value: int, period: str,
                created_at: datetime) -> LearningGoal:
    async with make_sessionmaker(db).begin() as session:
        goal = LearningGoal(user_id=user, title=f"{target_value} {target_type} {period}", target_type=target_type,
                            target_value=target_value, period=period, created_at=created_at, updated_at=created_at)
        session.add(goal)
    return goal


async def _views(db: AsyncEngine, user: str, now: datetime) -> list[service.GoalView]:
    async with make_sessionmaker(db).begin() as session:
        return await service.refresh_goals(session, user_id=user, now=now)


async def test_daily_lessons_goal_in_the_users_zone(db: AsyncEngine) -> None:
    sessions = make_sessionmaker(db)
    author = await make_user(db)
    user = await make_user(db, timezone=NY)
    _, lessons = await make_lessons(db, author_id=author, count=5)
    clock = FixedClock(at(NY, 2026, 3, 8, 8))
    await _goal(db, user, target_type="lessons", target_value=2, period="daily", created_at=clock.now())

    async def complete(i: int) -> None:
        async with sessions.begin() as session:
            await complete_lesson(session, user_id=user, lesson_id=lessons[i], at=clock.now())
            await service.record_action(session, user_id=user, keys={"lessons_completed"}, now=clock.now())

    await complete(0)  # 08:00 on the 8th
    (view,) = await _views(db, user, clock.now())
    assert (view.amount, view.completed) == (1, False)
    clock.set(at(NY, 2026, 3, 8, 23, 30))  # 03:30 UTC on the 9th, still the 8th in New York
    await complete(1)
    (view,) = await _views(db, user, clock.now())
    assert (view.amount, view.completed) == (2, True)
    assert view.goal.completed_at == clock.now()
    assert [n["title"] for n in await notifications_of(db, user, "goal_completed")] == ["Goal reached: 2 lessons daily"]
    await complete(2)  # a third lesson that day: no second notification
    assert len(await notifications_of(db, user, "goal_completed")) == 1

    clock.set(at(NY, 2026, 3, 9, 7))  # a new day: progress starts over, not completed
    (view,) = await _views(db, user, clock.now())
    assert (view.amount, view.completed) == (0, False)
    await complete(3)
    await complete(4)
    (view,) = await _views(db, user, clock.now())
    assert (view.amount, view.completed) == (2, True)
    assert len(await notifications_of(db, user, "goal_completed")) == 2


async def test_minutes_goal_uses_durations_and_reading_time(db: AsyncEngine) -> None:
    sessions = make_sessionmaker(db)
    author = await make_user(db)
    user = await make_user(db, timezone=BERLIN)
    _, videos = await make_lessons(db, author_id=author, count=2, content={"duration_s": 600})
    _, texts = await make_lessons(db, author_id=author, count=1, content={"body": " ".join(["word"] * 400)})
    now = at(BERLIN, 2026, 6, 3, 10)
    await _goal(db, user, target_type="minutes", target_value=22, period="weekly", created_at=now)
    async with sessions.begin() as session:
        for lesson in [*videos, *texts]:
            await complete_lesson(session, user_id=user, lesson_id=lesson, at=now)
        await service.record_action(session, user_id=user, keys={"lessons_completed"}, now=now)
    (view,) = await _views(db, user, now)
    assert view.amount == 22  # 10 + 10 minutes of video, 400 words at 200 a minute
    assert view.completed
    assert len(await notifications_of(db, user, "goal_completed")) == 1


async def test_once_goal_closes_at_its_due_date(db: AsyncEngine) -> None:
    sessions = make_sessionmaker(db)
    author = await make_user(db)
    user = await make_user(db)
    _, lessons = await make_lessons(db, author_id=author, count=1)
    created = datetime(2026, 7, 1, 9, tzinfo=UTC)
    goal = await _goal(db, user, target_type="lessons", target_value=1, period="once", created_at=created)
    async with sessions.begin() as session:
        await session.execute(text("UPDATE learning_goals SET due_date = '2026-07-02' WHERE id = :g"), {"g": goal.id})
    late = datetime(2026, 7, 3, 9, tzinfo=UTC)
    async with sessions.begin() as session:
        await complete_lesson(session, user_id=user, lesson_id=lessons[0], at=late)
        await service.record_action(session, user_id=user, keys={"lessons_completed"}, now=late)
    (view,) = await _views(db, user, late)
    assert view.amount == 0 and not view.completed
    assert await notifications_of(db, user, "goal_completed") == []


# --- REST ----------------------------------------------------------------------------------------


async def test_goal_crud(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    body = {"title": "Study daily", "target_type": "lessons", "target_value": 3, "period": "daily"}
    created = await client.post("/api/me/goals", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    goal = created.json()
    assert {k: goal[k] for k in body} == body
    assert goal["progress"] == 0 and goal["completed"] is False and goal["completed_at"] is None
    assert goal["due_date"] is None
    for bad in ({**body, "target_value": 0}, {**body, "target_type": "hours"}, {**body, "period": "monthly"},
                {"title": "x"}, {**body, "due_date": "soon"}, {**body, "extra": 1}):
        r = await client.post("/api/me/goals", json=bad, headers=alice.headers)
        assert r.status_code == 422, bad
    patched = await client.patch(f"/api/me/goals/{goal['id']}", json={"target_value": 5, "due_date": "2030-01-01"},
                                 headers=alice.headers)
    assert patched.status_code == 200
    assert patched.json()["target_value"] == 5 and patched.json()["due_date"] == "2030-01-01"
    assert patched.json()["title"] == "Study daily"
    assert (await client.patch(f"/api/me/goals/{goal['id']}", json={"target_value": -1},
                               headers=alice.headers)).status_code == 422
    assert (await client.patch(f"/api/me/goals/{goal['id']}", json={"title": "x"},
                               headers=bob.headers)).status_code == 404
    assert (await client.delete(f"/api/me/goals/{goal['id']}", headers=bob.headers)).status_code == 404
    for i in range(3):
        await client.post("/api/me/goals", json={**body, "title": f"Goal {i}"}, headers=alice.headers)
    first = (await client.get("/api/me/goals", params={"limit": 2}, headers=alice.headers)).json()
    rest = (await client.get("/api/me/goals", params={"limit": 2, "cursor": first["next_cursor"]},
                             headers=alice.headers)).json()
    titles = [g["title"] for g in first["items"] + rest["items"]]
    assert titles == ["Study daily", "Goal 0", "Goal 1", "Goal 2"] and rest["next_cursor"] is None
    assert (await client.get("/api/me/goals", headers=bob.headers)).json() == {"items": [], "next_cursor": None}
    assert (await client.delete(f"/api/me/goals/{goal['id']}", headers=alice.headers)).status_code == 204
    assert (await client.delete(f"/api/me/goals/{goal['id']}", headers=alice.headers)).status_code == 404
    assert (await client.get("/api/me/goals")).status_code == 401


async def test_flashcard_goal_completes_with_a_notification(client: httpx.AsyncClient, db: AsyncEngine,
                                                            bob: DevUser) -> None:
    goal = (await client.post("/api/me/goals", json={"title": "Three cards", "target_type": "flashcards",
                                                     "target_value": 3, "period": "daily"},
                              headers=bob.headers)).json()
    deck = (await client.post("/api/flashcard-sets", json={"title": "Deck"}, headers=bob.headers)).json()
    card = (await client.post(f"/api/flashcard-sets/{deck['id']}/cards", json={"front": "f", "back": "b"},
                              headers=bob.headers)).json()
    for rating in ("again", "good", "good"):
        r = await client.post(f"/api/flashcards/{card['id']}/review", json={"rating": rating}, headers=bob.headers)
        assert r.status_code == 200

    async def completed() -> dict[str, object] | None:
        items = (await client.get("/api/me/goals", headers=bob.headers)).json()["items"]
        found = next(g for g in items if g["id"] == goal["id"])
        return found if found["completed"] else None

    done = await eventually(completed, within=5)
    assert done["progress"] == 3 and done["percent"] == 100 and done["completed_at"]
    notes = await notifications_of(db, bob.clerk_id, "goal_completed")
    assert [n["title"] for n in notes] == ["Goal reached: Three cards"]
    assert notes[0]["metadata"] == {"goal_id": goal["id"]}
