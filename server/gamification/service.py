"""Gamification: activity days and streaks, learning goals, and the achievements rules engine.

Other domains call :func:`record_action` after their actions, in their own transaction; the
auth hook (see :mod:`server.gamification.activity`) calls :func:`record_activity`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, cast, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import DateTime, Text

from server.gamification import streaks
from server.gamification.models import Achievement, LearningGoal, LoginDay, UserAchievement, UserStreak
from server.gamification.requirements import COUNT_KEYS, Requirement, parse_requirement
from server.notifications.service import notify
from server.outbox.emit import emit
from server.users.models import User

# The keys of §9's requirement grammar; an action names the keys whose counts it may change.
ACTION_KEYS = frozenset(COUNT_KEYS)

# Which goal target types an action can move.
GOAL_TYPES_BY_KEY = {"lessons_completed": ("lessons", "minutes"), "flashcards_reviewed": ("flashcards",)}


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- activity and streaks -------------------------------------------------------------------


def streak_payload(streak: streaks.Streak) -> dict[str, Any]:
    return {"current_streak": streak.current, "longest_streak": streak.longest,
            "last_active_date": streak.last_active_date}


async def record_activity(session: AsyncSession, *, user_id: str, timezone: str | None,
                          now: datetime) -> streaks.Streak | None:
    """Record activity at ``now``: the first time on a local date adds a ``login_days`` row and
    advances the streak (returned when it changed). Safe under concurrency: the unique
    (user, day) row decides which request advances the streak, and the streak row is locked."""
    tz = streaks.zone(timezone)
    today = streaks.local_date(now, tz)
    inserted = (await session.execute(
        insert(LoginDay).values(user_id=user_id, day=today, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["user_id", "day"]).returning(LoginDay.id)
    )).first()
    if inserted is None:
        return None
    await session.execute(insert(UserStreak).values(user_id=user_id)
                          .on_conflict_do_nothing(index_elements=["user_id"]))
    row = (await session.execute(
        select(UserStreak).where(UserStreak.user_id == user_id).with_for_update()
    )).scalar_one()
    before = streaks.Streak(row.current_streak, row.longest_streak, row.last_active_date)
    last_seen_local: date | None = None
    if before.last_active_date is not None:
        seen = (await session.execute(
            select(LoginDay.created_at).where(LoginDay.user_id == user_id,
                                              LoginDay.day == before.last_active_date)
        )).scalar_one_or_none()
        if seen is not None:
            last_seen_local = streaks.local_date(seen, tz)
    after = streaks.advance(before, today=today, last_seen_local=last_seen_local)
    if after == before:
        return None
    row.current_streak, row.longest_streak, row.last_active_date = after.current, after.longest, \
        after.last_active_date
    await session.flush()
    await emit(session, channel=f"user:{user_id}", event="streak.updated", data=_jsonable(streak_payload(after)))
    await record_action(session, user_id=user_id, keys={"streak_days"}, now=now)
    return after


async def get_streak(session: AsyncSession, *, user_id: str, timezone: str | None,
                     now: datetime) -> streaks.Streak:
    row = (await session.execute(select(UserStreak).where(UserStreak.user_id == user_id))).scalar_one_or_none()
    stored = streaks.Streak() if row is None else streaks.Streak(row.current_streak, row.longest_streak,
                                                                 row.last_active_date)
    return streaks.displayed(stored, today=streaks.local_date(now, timezone or "UTC"))


async def activity_days(session: AsyncSession, *, user_id: str, start: date, end: date) -> list[date]:
    rows = await session.execute(
        select(LoginDay.day).where(LoginDay.user_id == user_id, LoginDay.day >= start, LoginDay.day <= end)
        .order_by(LoginDay.day)
    )
    return [d for (d,) in rows]


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, datetime):
            out[key] = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        elif isinstance(value, (date, uuid.UUID)):
            out[key] = str(value)
        else:
            out[key] = value
    return out


# --- achievements ---------------------------------------------------------------------------

# One scalar subquery per count key; a query computes only the keys it needs.
_COUNT_SQL = {
    "lessons_completed": "(SELECT count(*) FROM user_progress WHERE user_id = :uid AND status = 'completed')",
    "courses_completed": "(SELECT count(*) FROM user_courses WHERE user_id = :uid AND completed_at IS NOT NULL)",
    "streak_days": "(SELECT coalesce(max(longest_streak), 0) FROM user_streaks WHERE user_id = :uid)",
    "forum_posts": "((SELECT count(*) FROM forum_posts WHERE user_id = :uid AND deleted_at IS NULL)"
                   " + (SELECT count(*) FROM forum_replies WHERE user_id = :uid AND deleted_at IS NULL))",
    "likes_received": "((SELECT count(*) FROM forum_post_likes l JOIN forum_posts p ON p.id = l.post_id"
                      " WHERE p.user_id = :uid AND l.user_id <> :uid)"
                      " + (SELECT count(*) FROM forum_reply_likes l JOIN forum_replies r ON r.id = l.reply_id"
                      " WHERE r.user_id = :uid AND l.user_id <> :uid))",
    "flashcards_reviewed": "(SELECT count(*) FROM flashcard_reviews WHERE user_id = :uid)",
}


async def user_counts(session: AsyncSession, user_id: str, keys: Iterable[str]) -> dict[str, int]:
    """The user's counts for ``keys``, in one query."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    columns = ", ".join(f"{_COUNT_SQL[k]} AS {k}" for k in wanted)
    row = (await session.execute(text(f"SELECT {columns}"), {"uid": user_id})).mappings().one()
    return {k: int(row[k]) for k in wanted}


async def create_achievement(session: AsyncSession, *, name: str, description: str | None,
                             requirement: Any, icon: str | None = None) -> Achievement:
    """Insert a catalogue entry; the requirement is validated against the grammar (422)."""
    parsed = parse_requirement(requirement)
    achievement = Achievement(name=name, description=description, requirement=parsed.to_json(), icon=icon)
    session.add(achievement)
    await session.flush()
    return achievement


def achievement_event(achievement_id: uuid.UUID, name: str, description: str | None,
                      earned_at: datetime) -> dict[str, Any]:
    return _jsonable({"id": achievement_id, "achievement_id": achievement_id, "name": name,
                      "description": description, "earned_at": earned_at, "progress": 100})


@cache
def _candidates_statement() -> Any:
    """Built once (it runs on every forum post, lesson completion, like, review)."""
    return (
        select(Achievement.id, Achievement.name, Achievement.description, Achievement.requirement)
        .outerjoin(UserAchievement, (UserAchievement.achievement_id == Achievement.id)
                   & (UserAchievement.user_id == bindparam("user_id", type_=Text)))
        .where(UserAchievement.earned_at.is_(None),
               cast(Achievement.requirement, Text).op("~")(bindparam("pattern", type_=Text)))
    )


def candidate_pattern(keys: Iterable[str]) -> str:
    """The ``:pattern`` of the candidates statement for the action keys ``keys``."""
    return f'"({"|".join(sorted(set(keys)))})"'


def achievements_to_evaluate() -> Any:
    """SQL (binds ``:user_id``, ``:pattern``): whether :func:`record_action` would find a candidate
    achievement, for a write that can ask along with its own statement and skip the call (then a
    no-op) when there is none. For keys without goal types only (``forum_posts``, ``likes_received``)."""
    return _candidates_statement().exists()


async def evaluate_achievements(session: AsyncSession, *, user_id: str, keys: Iterable[str],
                                now: datetime) -> list[uuid.UUID]:
    """Update progress of the unearned achievements that mention ``keys``; award those now met.

    A bounded number of statements whatever the catalogue size: one to read the candidates, one
    for all counts, one upsert; then a notification and an event per award. Idempotent under
    concurrency: the unique (user, achievement) row and ``WHERE earned_at IS NULL`` let exactly
    one transaction set ``earned_at``; only that one notifies.
    """
    touched = set(keys)
    if not touched:
        return []
    candidates = (await session.execute(
        _candidates_statement(), {"user_id": user_id, "pattern": candidate_pattern(touched)}
    )).all()
    rules: list[tuple[uuid.UUID, str, str | None, Requirement]] = []
    for achievement_id, name, description, raw in candidates:
        try:
            requirement = Requirement.model_validate(raw)
        except ValueError:
            continue  # a row written around the validator: never award from it
        if requirement.keys() & touched:
            rules.append((achievement_id, name, description, requirement))
    if not rules:
        return []
    counts = await user_counts(session, user_id, set().union(*(r.keys() for _, _, _, r in rules)))
    rows = []
    for achievement_id, _, _, requirement in sorted(rules, key=lambda r: r[0]):  # stable lock order
        met = requirement.met(counts)
        rows.append({"user_id": user_id, "achievement_id": achievement_id,
                     "progress": 100.0 if met else min(99.0, round(requirement.progress(counts), 2)),
                     "earned_at": now if met else None})
    upsert = insert(UserAchievement).values(rows)
    stmt = upsert.on_conflict_do_update(
        index_elements=["user_id", "achievement_id"],
        set_={"progress": func.greatest(UserAchievement.progress, upsert.excluded.progress),
              "earned_at": func.coalesce(UserAchievement.earned_at, upsert.excluded.earned_at)},
        where=UserAchievement.earned_at.is_(None),
    ).returning(UserAchievement.achievement_id, UserAchievement.earned_at)
    written = (await session.execute(stmt)).all()
    earned = {aid: at for aid, at in written if at is not None}
    awarded: list[uuid.UUID] = []
    for achievement_id, name, description, _ in rules:
        if achievement_id not in earned:
            continue
        awarded.append(achievement_id)
        await notify(session, user_id=user_id, type="achievement", title=f"Achievement earned: {name}",
                     body=description, metadata={"achievement_id": str(achievement_id), "name": name})
        await emit(session, channel=f"user:{user_id}", event="achievement.earned",
                   data=achievement_event(achievement_id, name, description, earned[achievement_id]))
    return awarded


async def record_action(session: AsyncSession, *, user_id: str, keys: Iterable[str],
                        now: datetime | None = None) -> None:
    """Evaluate ``user_id``'s achievements and goals touched by ``keys`` in the caller's transaction.

    Called after: a lesson completed (``lessons_completed``), a course completed
    (``courses_completed``), a post or reply created (``forum_posts``), a like received — for the
    liked content's author (``likes_received``), a card reviewed (``flashcards_reviewed``), the
    streak advanced (``streak_days``). ``now`` defaults to the wall clock (tests pass one).
    """
    touched = set(keys)
    unknown = touched - ACTION_KEYS
    if unknown:
        raise ValueError(f"unknown action keys: {sorted(unknown)}")
    at = now or _utcnow()
    await evaluate_achievements(session, user_id=user_id, keys=touched, now=at)
    goal_types = {t for k in touched for t in GOAL_TYPES_BY_KEY.get(k, ())}
    if goal_types:
        await refresh_goals(session, user_id=user_id, now=at, target_types=goal_types)


# --- learning goals -------------------------------------------------------------------------

GOAL_TYPES = ("lessons", "minutes", "flashcards")
PERIODS = ("daily", "weekly", "once")
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
WORDS_PER_MINUTE = 200


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime  # exclusive


def _local_midnight(day: date, tz: str) -> datetime:
    # A local midnight that a DST change skips resolves forward (zoneinfo fold=0 semantics).
    return datetime.combine(day, time(0), tzinfo=streaks.zone(tz)).astimezone(UTC)


def goal_window(*, period: str, created_at: datetime, due_date: date | None, now: datetime,
                tz: str) -> Window:
    """The span whose activity counts toward a goal, in the user's zone: today (daily), this
    ISO week from Monday (weekly), or from the goal's creation to the end of its due date (once)."""
    today = streaks.local_date(now, tz)
    if period == "daily":
        return Window(_local_midnight(today, tz), _local_midnight(today + timedelta(days=1), tz))
    if period == "weekly":
        monday = today - timedelta(days=today.weekday())
        return Window(_local_midnight(monday, tz), _local_midnight(monday + timedelta(days=7), tz))
    end = _local_midnight(due_date + timedelta(days=1), tz) if due_date else FAR_FUTURE
    return Window(created_at, end)


# Minutes: the ``duration_s`` of each lesson completed in the window (video/audio), else an
# estimate of its reading time from the Markdown body at 200 words a minute.
_GOAL_AMOUNTS = text(f"""
SELECT w.id,
  CASE w.kind
    WHEN 'lessons' THEN (
      SELECT count(*) FROM user_progress p
      WHERE p.user_id = :uid AND p.status = 'completed' AND p.completed_at >= w.s AND p.completed_at < w.e)
    WHEN 'flashcards' THEN (
      SELECT count(*) FROM flashcard_reviews r
      WHERE r.user_id = :uid AND r.reviewed_at >= w.s AND r.reviewed_at < w.e)
    ELSE (
      SELECT floor(coalesce(sum(
        CASE WHEN jsonb_typeof(l.content -> 'duration_s') = 'number'
             THEN (l.content ->> 'duration_s')::numeric
             ELSE coalesce(array_length(regexp_split_to_array(
                    btrim(coalesce(l.content ->> 'body', '')), '\\s+'), 1), 0) * 60.0 / {WORDS_PER_MINUTE}
        END), 0) / 60)
      FROM user_progress p JOIN lessons l ON l.id = p.lesson_id
      WHERE p.user_id = :uid AND p.status = 'completed' AND p.completed_at >= w.s AND p.completed_at < w.e)
  END AS amount
FROM unnest(:ids, :kinds, :starts, :ends) AS w(id, kind, s, e)
""").bindparams(
    bindparam("ids", type_=ARRAY(PG_UUID(as_uuid=True))),
    bindparam("kinds", type_=ARRAY(Text)),
    bindparam("starts", type_=ARRAY(DateTime(timezone=True))),
    bindparam("ends", type_=ARRAY(DateTime(timezone=True))),
)


@dataclass
class GoalView:
    goal: LearningGoal
    window: Window
    amount: int

    @property
    def completed(self) -> bool:
        done = self.goal.completed_at
        return done is not None and done >= self.window.start


async def user_timezone(session: AsyncSession, user_id: str) -> str:
    tz = (await session.execute(select(User.timezone).where(User.clerk_id == user_id))).scalar_one_or_none()
    return tz or "UTC"


async def evaluate_goals(session: AsyncSession, *, user_id: str, goals: Sequence[LearningGoal],
                         now: datetime, tz: str) -> list[GoalView]:
    """Progress of ``goals`` in their current windows (one query), persisted; a goal met for the
    first time in its period gets ``completed_at`` and a ``goal_completed`` notification —
    exactly once even when two writes meet it together (conditional UPDATE)."""
    if not goals:
        return []
    windows = {g.id: goal_window(period=g.period, created_at=g.created_at, due_date=g.due_date, now=now, tz=tz)
               for g in goals}
    amounts: dict[uuid.UUID, Any] = dict((await session.execute(_GOAL_AMOUNTS, {
        "uid": user_id, "ids": [g.id for g in goals], "kinds": [g.target_type for g in goals],
        "starts": [windows[g.id].start for g in goals], "ends": [windows[g.id].end for g in goals],
    })).all())
    views: list[GoalView] = []
    for goal in goals:
        window = windows[goal.id]
        amount = int(amounts.get(goal.id) or 0)
        view = GoalView(goal, window, amount)
        closed = goal.period == "once" and (goal.completed_at is not None or now >= window.end)
        if not closed and amount != goal.progress:
            goal.progress = amount
        if not closed and amount >= goal.target_value and not view.completed:
            won = (await session.execute(
                update(LearningGoal).where(
                    LearningGoal.id == goal.id,
                    LearningGoal.completed_at.is_(None) | (LearningGoal.completed_at < window.start))
                .values(completed_at=now, progress=amount).returning(LearningGoal.id)
                .execution_options(synchronize_session=False)
            )).first()
            if won is not None:
                goal.completed_at = now
                await notify(session, user_id=user_id, type="goal_completed",
                             title=f"Goal reached: {goal.title}",
                             body=f"{amount} of {goal.target_value} {goal.target_type} ({goal.period}).",
                             metadata={"goal_id": str(goal.id)})
            else:
                await session.refresh(goal)
        views.append(view)
    await session.flush()
    return views


async def refresh_goals(session: AsyncSession, *, user_id: str, now: datetime,
                        target_types: Iterable[str] | None = None) -> list[GoalView]:
    query = select(LearningGoal).where(LearningGoal.user_id == user_id)
    if target_types is not None:
        query = query.where(LearningGoal.target_type.in_(sorted(set(target_types))))
    goals = list((await session.execute(query.order_by(LearningGoal.id))).scalars())  # stable lock order
    if not goals:
        return []
    return await evaluate_goals(session, user_id=user_id, goals=goals, now=now,
                                tz=await user_timezone(session, user_id))


def goal_payload(view: GoalView) -> dict[str, Any]:
    g = view.goal
    return {
        "id": g.id, "title": g.title, "target_type": g.target_type, "target_value": g.target_value,
        "period": g.period, "due_date": g.due_date, "progress": view.amount,
        "percent": min(100.0, round(100.0 * view.amount / g.target_value, 2)),
        "completed": view.completed, "completed_at": g.completed_at,
        "period_start": view.window.start, "period_end": None if view.window.end == FAR_FUTURE else view.window.end,
        "created_at": g.created_at, "updated_at": g.updated_at,
    }
