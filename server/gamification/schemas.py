"""Response models of streaks, activity, goals and achievements, and their live events on ``user:<id>``."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from server.schemas import Out

TargetType = Literal["lessons", "minutes", "flashcards"]
Period = Literal["daily", "weekly", "once"]
Percent = Annotated[float, Field(ge=0, le=100)]


class StreakOut(Out):
    """Also the data of the ``streak.updated`` event."""

    current_streak: int
    longest_streak: int
    last_active_date: date | None


class ActiveDay(Out):
    date: date
    active: Literal[True]


class ActivityOut(Out):
    """Active days (local dates of ``timezone``) from ``from`` to ``to``; ``items`` repeats ``days``."""

    from_: date = Field(alias="from")
    to: date
    timezone: str
    count: int
    days: list[date]
    items: list[ActiveDay]


class GoalOut(Out):
    """A goal with the caller's progress in its current period (``period_end`` null for ``once``)."""

    id: uuid.UUID
    title: str
    target_type: TargetType
    target_value: int
    period: Period
    due_date: date | None
    progress: int
    percent: Percent
    completed: bool
    completed_at: datetime | None
    period_start: datetime
    period_end: datetime | None
    created_at: datetime
    updated_at: datetime


class AchievementOut(Out):
    """A catalogue entry with whether the caller earned it and their progress (0-100)."""

    id: uuid.UUID
    name: str
    description: str | None
    icon: str | None
    requirement: dict[str, Any] = Field(description="the §9 requirement grammar")
    earned: bool
    earned_at: datetime | None
    progress: Percent


class EarnedOut(Out):
    """An achievement the caller earned."""

    achievement_id: uuid.UUID
    name: str
    description: str | None
    icon: str | None
    earned_at: datetime
    progress: Percent


class AchievementEarnedEvent(Out):
    """``achievement.earned``: ``id`` and ``achievement_id`` are the same."""

    id: uuid.UUID
    achievement_id: uuid.UUID
    name: str
    description: str | None
    earned_at: datetime
    progress: Literal[100]


# Live events on ``user:<id>`` and the model of their ``data``.
EVENTS: dict[str, type[Out]] = {"streak.updated": StreakOut, "achievement.earned": AchievementEarnedEvent}
