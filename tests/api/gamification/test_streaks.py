"""Activity days and streaks: pure sequences over DST and zone changes, the DB step under
concurrency with a settable clock, and the real server's hook and routes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.clock import FixedClock
from server.db import make_sessionmaker
from server.gamification import service
from server.gamification.streaks import Streak, advance, displayed, local_date, replay
from tests.support import DevUser
from tests.support.motivation import make_user, notifications_of, outbox_events

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def at(zone: str, y: int, m: int, d: int, hh: int, mm: int = 0, fold: int = 0) -> datetime:
    """An instant (in UTC, so differences are real elapsed time) given as a wall-clock time in ``zone``."""
    return datetime(y, m, d, hh, mm, fold=fold, tzinfo=ZoneInfo(zone)).astimezone(UTC)


# --- pure: DST ------------------------------------------------------------------------------------


def test_new_york_spring_forward_missed_day_breaks_although_under_24_hours() -> None:
    # 2026-03-08 has 23 hours in New York. 23:50 on the 7th to 00:10 on the 9th is 23 h 20 min,
    # but the whole local day of the 8th passed without activity: the streak breaks.
    first, last = at(NY, 2026, 3, 7, 23, 50), at(NY, 2026, 3, 9, 0, 10)
    assert last - first < timedelta(hours=24)
    streak = replay([(at(NY, 2026, 3, 6, 12), NY), (first, NY), (last, NY)])
    assert streak == Streak(current=1, longest=2, last_active_date=date(2026, 3, 9))


def test_new_york_spring_forward_consecutive_days_over_46_hours_continue() -> None:
    first, last = at(NY, 2026, 3, 7, 0, 10), at(NY, 2026, 3, 8, 23, 50)
    assert last - first > timedelta(hours=46)
    streak = replay([(first, NY), (at(NY, 2026, 3, 8, 3, 30), NY), (last, NY), (at(NY, 2026, 3, 9, 8), NY)])
    assert streak == Streak(current=3, longest=3, last_active_date=date(2026, 3, 9))


def test_new_york_fall_back_25_hour_day_is_one_day() -> None:
    # 2026-11-01 has 25 hours: 00:30 EDT to 23:45 EST is 24 h 15 min on the same local date.
    early, late = at(NY, 2026, 11, 1, 0, 30), at(NY, 2026, 11, 1, 23, 45)
    assert late - early > timedelta(hours=24)
    repeated_hour = [at(NY, 2026, 11, 1, 1, 30, fold=0), at(NY, 2026, 11, 1, 1, 30, fold=1)]
    events = [(at(NY, 2026, 10, 31, 22), NY), (early, NY), *((t, NY) for t in repeated_hour), (late, NY),
              (at(NY, 2026, 11, 2, 6), NY)]
    assert replay(events) == Streak(current=3, longest=3, last_active_date=date(2026, 11, 2))


def test_berlin_spring_forward_daily_at_half_past_eleven() -> None:
    days = [at(BERLIN, 2026, 3, d, 23, 30) for d in (27, 28, 29, 30, 31)]
    assert replay([(t, BERLIN) for t in days]) == Streak(5, 5, date(2026, 3, 31))


def test_berlin_fall_back_25_hours_between_midnights_continues() -> None:
    first, second = at(BERLIN, 2026, 10, 25, 0, 15), at(BERLIN, 2026, 10, 26, 0, 15)
    assert second - first == timedelta(hours=25)
    events = [(at(BERLIN, 2026, 10, 24, 0, 15), BERLIN), (first, BERLIN), (second, BERLIN)]
    assert replay(events) == Streak(3, 3, date(2026, 10, 26))
    # …and skipping the long day breaks it.
    assert replay([(at(BERLIN, 2026, 10, 24, 23, 59), BERLIN), (at(BERLIN, 2026, 10, 26, 0, 1), BERLIN)]) \
        == Streak(1, 1, date(2026, 10, 26))


# --- pure: time-zone changes --------------------------------------------------------------------------


def test_moving_east_does_not_break_a_lived_streak() -> None:
    # Active in New York on the 9th and 10th (20:00 EDT = 01:00 the 11th in Berlin); then the user
    # sets Europe/Berlin and is next active on Berlin's 12th. Local dates jump 10 -> 12, but the user
    # was active on Berlin's 11th (the instant of the 10th's activity): no day was missed.
    events = [(at(NY, 2026, 3, 9, 20), NY), (at(NY, 2026, 3, 10, 20), NY), (at(BERLIN, 2026, 3, 12, 8), BERLIN)]
    assert replay(events) == Streak(3, 3, date(2026, 3, 12))


def test_moving_east_the_same_lived_day_does_not_count_twice() -> None:
    # 20:00 EDT on the 10th is already Berlin's 11th; activity later on Berlin's 11th is that day.
    events = [(at(NY, 2026, 3, 10, 20), NY), (at(BERLIN, 2026, 3, 11, 9), BERLIN),
              (at(BERLIN, 2026, 3, 12, 9), BERLIN)]
    assert replay(events) == Streak(2, 2, date(2026, 3, 12))


def test_moving_east_still_breaks_after_a_really_missed_day() -> None:
    events = [(at(NY, 2026, 3, 10, 20), NY), (at(BERLIN, 2026, 3, 13, 8), BERLIN)]
    assert replay(events) == Streak(1, 1, date(2026, 3, 13))


def test_moving_west_repeats_a_date_without_breaking() -> None:
    # Berlin's 11th at 23:30 is 18:30 in New York on the 11th: the date repeats, then continues.
    events = [(at(BERLIN, 2026, 3, 10, 9), BERLIN), (at(BERLIN, 2026, 3, 11, 23, 30), BERLIN),
              (at(NY, 2026, 3, 11, 22), NY), (at(NY, 2026, 3, 12, 7), NY)]
    assert replay(events) == Streak(3, 3, date(2026, 3, 12))


def test_advance_rules() -> None:
    d = date(2026, 5, 10)
    assert advance(Streak(), today=d) == Streak(1, 1, d)
    assert advance(Streak(4, 9, d), today=d) == Streak(4, 9, d)
    assert advance(Streak(4, 9, d), today=d - timedelta(days=1)) == Streak(4, 9, d)
    assert advance(Streak(4, 9, d), today=d + timedelta(days=1)) == Streak(5, 9, d + timedelta(days=1))
    assert advance(Streak(9, 9, d), today=d + timedelta(days=1)) == Streak(10, 10, d + timedelta(days=1))
    assert advance(Streak(4, 9, d), today=d + timedelta(days=2)) == Streak(1, 9, d + timedelta(days=2))
    # What a reader sees: yesterday still counts, the day before yesterday is over.
    assert displayed(Streak(4, 9, d), today=d + timedelta(days=1)).current == 4
    assert displayed(Streak(4, 9, d), today=d + timedelta(days=2)) == Streak(0, 9, d)


def test_local_date_uses_the_zone() -> None:
    instant = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    assert local_date(instant, NY) == date(2025, 12, 31)
    assert local_date(instant, BERLIN) == date(2026, 1, 1)
    assert local_date(instant, "Not/AZone") == date(2026, 1, 1)  # unknown zone -> UTC


# --- the DB step with a settable clock -----------------------------------------------------------


async def _streak_row(db: AsyncEngine, user_id: str) -> tuple[int, int, date | None]:
    async with db.connect() as conn:
        row = (await conn.execute(text(
            "SELECT current_streak, longest_streak, last_active_date FROM user_streaks WHERE user_id = :u"
        ), {"u": user_id})).one()
    return row[0], row[1], row[2]


async def _days(db: AsyncEngine, user_id: str) -> list[date]:
    async with db.connect() as conn:
        rows = await conn.execute(text("SELECT day FROM login_days WHERE user_id = :u ORDER BY day"), {"u": user_id})
        return [d for (d,) in rows]


async def test_record_activity_over_dst_and_zone_change(db: AsyncEngine) -> None:
    sessions = make_sessionmaker(db)
    user = await make_user(db, timezone=NY)
    clock = FixedClock(at(NY, 2026, 3, 7, 23, 50))

    async def act(zone: str) -> Streak | None:
        async with sessions.begin() as session:
            return await service.record_activity(session, user_id=user, timezone=zone, now=clock.now())

    assert await act(NY) == Streak(1, 1, date(2026, 3, 7))
    clock.advance(timedelta(minutes=5))  # still the 7th: no change, no second row
    assert await act(NY) is None
    clock.set(at(NY, 2026, 3, 8, 23, 55))  # the 23-hour day
    assert await act(NY) == Streak(2, 2, date(2026, 3, 8))
    clock.set(at(NY, 2026, 3, 9, 20))  # = 01:00 on the 10th in Berlin
    assert await act(NY) == Streak(3, 3, date(2026, 3, 9))
    clock.set(at(BERLIN, 2026, 3, 11, 8))  # moved east: Berlin's 11th follows its 10th as lived
    assert await act(BERLIN) == Streak(4, 4, date(2026, 3, 11))
    clock.set(at(BERLIN, 2026, 3, 13, 8))  # a whole day (the 12th) missed
    assert await act(BERLIN) == Streak(1, 4, date(2026, 3, 13))
    assert await _days(db, user) == [date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9), date(2026, 3, 11),
                                     date(2026, 3, 13)]
    assert await _streak_row(db, user) == (1, 4, date(2026, 3, 13))
    events = await outbox_events(db, f"user:{user}", "streak.updated")
    assert [e["current_streak"] for e in events] == [1, 2, 3, 4, 1]
    assert events[-1] == {"current_streak": 1, "longest_streak": 4, "last_active_date": "2026-03-13"}
    async with sessions() as session:
        shown = await service.get_streak(session, user_id=user, timezone=BERLIN, now=at(BERLIN, 2026, 3, 16, 9))
    assert shown == Streak(0, 4, date(2026, 3, 13))  # over: two whole days missed since


async def test_two_devices_at_midnight_record_one_day(db: AsyncEngine) -> None:
    sessions = make_sessionmaker(db)
    user = await make_user(db, timezone=BERLIN)
    midnight = at(BERLIN, 2026, 6, 1, 0, 0)

    async def act(now: datetime) -> Streak | None:
        async with sessions.begin() as session:
            return await service.record_activity(session, user_id=user, timezone=BERLIN, now=now)

    await act(at(BERLIN, 2026, 5, 31, 12))
    results = await asyncio.gather(*(act(midnight + timedelta(milliseconds=i)) for i in range(6)))
    assert sum(r is not None for r in results) == 1
    assert await _days(db, user) == [date(2026, 5, 31), date(2026, 6, 1)]
    assert await _streak_row(db, user) == (2, 2, date(2026, 6, 1))


async def test_week_streak_earns_the_achievement_once(db: AsyncEngine) -> None:
    sessions = make_sessionmaker(db)
    user = await make_user(db, timezone=NY)
    clock = FixedClock(at(NY, 2026, 10, 28, 21))
    for _ in range(8):  # over the fall-back Sunday
        async with sessions.begin() as session:
            await service.record_activity(session, user_id=user, timezone=NY, now=clock.now())
        clock.advance(timedelta(days=1))
    assert await _streak_row(db, user) == (8, 8, date(2026, 11, 4))
    earned = await notifications_of(db, user, "achievement")
    assert [n["title"] for n in earned] == ["Achievement earned: Week streak"]
    async with db.connect() as conn:
        progress = (await conn.execute(text(
            "SELECT ua.progress FROM user_achievements ua JOIN achievements a ON a.id = ua.achievement_id"
            " WHERE ua.user_id = :u AND a.name = 'Month streak'"), {"u": user})).scalar_one()
    assert progress == pytest.approx(100 * 8 / 30, abs=0.01)


# --- through the real server -----------------------------------------------------------------------


async def test_first_request_of_the_day_records_activity(client: httpx.AsyncClient, db: AsyncEngine,
                                                         alice: DevUser) -> None:
    # `alice` made one authenticated request; more requests the same day add nothing.
    for _ in range(3):
        assert (await client.get("/api/me", headers=alice.headers)).status_code == 200
    days = await _days(db, alice.clerk_id)
    assert len(days) == 1
    response = await client.get("/api/me/streak", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == {"current_streak": 1, "longest_streak": 1, "last_active_date": days[0].isoformat()}
    activity = await client.get("/api/me/activity", headers=alice.headers)
    assert activity.status_code == 200
    assert activity.json()["days"] == [days[0].isoformat()]
    assert activity.json()["items"] == [{"date": days[0].isoformat(), "active": True}]
    assert await _days(db, alice.clerk_id) == days
    events = await outbox_events(db, f"user:{alice.clerk_id}", "streak.updated")
    assert events == [{"current_streak": 1, "longest_streak": 1, "last_active_date": days[0].isoformat()}]


async def test_activity_range_and_errors(client: httpx.AsyncClient, db: AsyncEngine, bob: DevUser) -> None:
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO login_days (user_id, day) VALUES (:u, '2025-01-02'), (:u, '2025-01-05')"),
                           {"u": bob.clerk_id})
    response = await client.get("/api/me/activity", params={"from": "2025-01-01", "to": "2025-01-31"},
                                headers=bob.headers)
    assert response.status_code == 200
    assert response.json()["days"] == ["2025-01-02", "2025-01-05"]
    bad = await client.get("/api/me/activity", params={"from": "2025-02-01", "to": "2025-01-01"}, headers=bob.headers)
    assert bad.status_code == 422
    assert (await client.get("/api/me/activity", params={"from": "yesterday"}, headers=bob.headers)).status_code == 422
    assert (await client.get("/api/me/streak")).status_code == 401


async def test_tracker_writes_once_per_local_day(db: AsyncEngine) -> None:
    """The hot path: after the first action of a local day, the hook sends no SQL at all."""
    from typing import Any, cast

    from sqlalchemy import event

    from server.auth import Principal
    from server.gamification.activity import ActivityTracker
    from server.state import Services

    user = await make_user(db, timezone=NY)
    clock = FixedClock(at(NY, 2026, 3, 7, 9))
    svc = Services(settings=cast(Any, None), engine=db, sessions=make_sessionmaker(db), auth=cast(Any, None),
                   clock=clock)
    tracker = ActivityTracker(svc)
    in_ny = Principal(clerk_id=user, id="x", email=None, name=None, image_url=None, role="member", timezone=NY)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(db.sync_engine, "before_cursor_execute", count)
    try:
        await tracker(in_ny)
        assert statements
        statements.clear()
        for minutes in range(0, 14 * 60, 37):  # the rest of the day
            clock.set(at(NY, 2026, 3, 7, 9) + timedelta(minutes=minutes))
            await tracker(in_ny)
        assert statements == []
        clock.set(at(NY, 2026, 3, 8, 0, 5))  # local midnight passed (a 23-hour day begins)
        await tracker(in_ny)
        assert statements
        statements.clear()
        # 05:05 UTC is still the 8th in Berlin too, but a zone change re-checks the date once.
        await tracker(Principal(**{**in_ny.__dict__, "timezone": BERLIN}))
        await tracker(Principal(**{**in_ny.__dict__, "timezone": BERLIN}))
    finally:
        event.remove(db.sync_engine, "before_cursor_execute", count)
    assert await _days(db, user) == [date(2026, 3, 7), date(2026, 3, 8)]
    assert await _streak_row(db, user) == (2, 2, date(2026, 3, 8))


async def test_concurrent_first_requests_record_one_day(client: httpx.AsyncClient, db: AsyncEngine) -> None:
    sub = f"user_burst_{uuid.uuid4().hex[:10]}"
    token = (await client.post("/api/dev/token", json={"sub": sub, "name": "Burst"})).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    responses = await asyncio.gather(*(client.get("/api/me/streak", headers=headers) for _ in range(12)))
    assert all(r.status_code == 200 for r in responses)
    days = await _days(db, sub)
    assert len(days) == 1
    assert all(r.json() == {"current_streak": 1, "longest_streak": 1, "last_active_date": days[0].isoformat()}
               for r in responses)
    assert len(await outbox_events(db, f"user:{sub}", "streak.updated")) == 1
