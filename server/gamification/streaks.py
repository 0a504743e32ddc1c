"""Streaks as pure functions of local dates (no I/O, no clock): the DB layer feeds them.

A streak is a run of consecutive *local* calendar dates in the user's IANA zone. Dates, not
24-hour spans, so a 23- or 25-hour day at a DST change is still one day. A streak breaks when a
whole local day passes with no activity.

Time-zone changes: the last active date was recorded in the zone the user had then. When the user
moves east, their next local date can jump by two although they missed no day *as lived*. So the
last active day also contributes the local date, in the *current* zone, of the instant it was
recorded (``last_seen_local``): the user demonstrably was active on that date too. Moving west
can repeat or go back a date; an earlier or equal date never changes the streak.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class Streak:
    current: int = 0
    longest: int = 0
    last_active_date: date | None = None


def zone(name: str | None) -> ZoneInfo:
    """The user's zone; an unknown or empty name falls back to UTC (never fails a request)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_date(instant: datetime, tz: str | ZoneInfo) -> date:
    if instant.tzinfo is None:
        raise ValueError("local_date needs a timezone-aware instant")
    return instant.astimezone(tz if isinstance(tz, ZoneInfo) else zone(tz)).date()


def advance(streak: Streak, *, today: date, last_seen_local: date | None = None) -> Streak:
    """The streak after activity on local date ``today``.

    ``last_seen_local``: the local date (in today's zone) of the instant the last active day was
    first recorded; only matters when the user changed zone.
    """
    last = streak.last_active_date
    if last is None:
        return Streak(1, max(1, streak.longest), today)
    if today <= last:
        return streak  # same day again, or a westward zone change moved the date back
    reference = max(last, last_seen_local) if last_seen_local else last
    if today <= reference:
        # An eastward zone change: the user was already active on this date as lived here.
        return Streak(streak.current, streak.longest, today)
    current = streak.current + 1 if today == reference + timedelta(days=1) else 1
    return Streak(current, max(streak.longest, current), today)


def displayed(streak: Streak, *, today: date) -> Streak:
    """What a reader sees today: a streak whose last day is before yesterday is over (0)."""
    last = streak.last_active_date
    if last is not None and today - last > timedelta(days=1) and streak.current:
        return Streak(0, streak.longest, last)
    return streak


def replay(events: list[tuple[datetime, str]], start: Streak | None = None) -> Streak:
    """The streak after a sequence of ``(instant, zone)`` activities, as the server records them:
    the first activity of each local date counts, later ones that date are no-ops."""
    streak = start or Streak()
    first_seen: dict[date, datetime] = {}
    for instant, tz in events:
        today = local_date(instant, tz)
        if today in first_seen:
            continue
        first_seen[today] = instant
        last = streak.last_active_date
        seen = first_seen.get(last) if last is not None else None
        streak = advance(streak, today=today, last_seen_local=local_date(seen, tz) if seen else None)
    return streak
