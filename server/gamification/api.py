"""REST: /api/me/streak, /api/me/activity, /api/me/goals, /api/achievements, /api/me/achievements."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from server.access import ADMIN, SIGNED_IN, own_goal
from server.auth import current_user, require_user
from server.errors import Conflict, NotFound, validation
from server.gamification import service, streaks
from server.gamification.models import Achievement, LearningGoal, UserAchievement
from server.gamification.requirements import parse_requirement
from server.gamification.schemas import AchievementOut, ActivityOut, EarnedOut, GoalOut, StreakOut
from server.http import (
    decode_cursor,
    encode_cursor,
    json_response,
    no_content,
    page,
    page_limit,
    parse_datetime,
    path_id,
    read_json,
)
from server.routing import Api
from server.schemas import Page
from server.state import services

api = Api("gamification")

MAX_ACTIVITY_DAYS = 3 * 366


# --- streak and activity ----------------------------------------------------------------------


@api.get("/me/streak", access=SIGNED_IN, response=StreakOut)
async def get_streak(request: Request) -> Response:
    """Your streak: current and longest run of active days, and the last active date."""
    me = await require_user(request)
    svc = services(request)
    async with svc.sessions() as session:
        streak = await service.get_streak(session, user_id=me.clerk_id, timezone=me.timezone,
                                          now=svc.clock.now())
    return json_response(service.streak_payload(streak))


def _query_date(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise validation(f"query.{name}", "must be a date (YYYY-MM-DD)") from None
    if not 1000 <= value.year <= 9000:  # a year of days before 0001-01-01 would overflow
        raise validation(f"query.{name}", "must be a date between the years 1000 and 9000")
    return value


@api.get("/me/activity", access=SIGNED_IN, response=ActivityOut,
         query={"from": "first date (YYYY-MM-DD; default a year before `to`)",
                "to": "last date (default today in your time zone)"})
async def get_activity(request: Request) -> Response:
    """Your active days (local dates) between two dates, for a calendar heatmap."""
    me = await require_user(request)
    svc = services(request)
    end = _query_date(request, "to") or streaks.local_date(svc.clock.now(), me.timezone)
    start = _query_date(request, "from") or end - timedelta(days=364)
    if start > end:
        raise validation("query.from", "must not be after `to`")
    if (end - start).days >= MAX_ACTIVITY_DAYS:
        raise validation("query.from", f"the range may cover at most {MAX_ACTIVITY_DAYS} days")
    async with svc.sessions() as session:
        days = await service.activity_days(session, user_id=me.clerk_id, start=start, end=end)
    return json_response({"from": start, "to": end, "timezone": me.timezone, "count": len(days),
                          "days": days, "items": [{"date": d, "active": True} for d in days]})


# --- goals ------------------------------------------------------------------------------------

TargetType = Literal["lessons", "minutes", "flashcards"]
Period = Literal["daily", "weekly", "once"]


class GoalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    target_type: TargetType
    target_value: int = Field(gt=0, le=1_000_000)
    period: Period = "once"
    due_date: date | None = None


class GoalPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=200)
    target_type: TargetType | None = None
    target_value: int | None = Field(default=None, gt=0, le=1_000_000)
    period: Period | None = None
    due_date: date | None = None


async def _goal(session: AsyncSession, request: Request) -> LearningGoal:
    """The route's goal, locked (its policy, ``own_goal``, checked it is the caller's); 404 if deleted since."""
    goal = await session.get(LearningGoal, path_id(request, "id"), with_for_update=True)
    if goal is None:
        raise NotFound("No such goal.")
    return goal


@api.get("/me/goals", access=SIGNED_IN, response=Page[GoalOut],
         query={"limit": "page size", "cursor": "from next_cursor"})
async def list_goals(request: Request) -> Response:
    """Your learning goals with their progress in the current period."""
    me = await require_user(request)
    svc = services(request)
    limit = page_limit(request)
    cursor = decode_cursor(request)
    query = select(LearningGoal).where(LearningGoal.user_id == me.clerk_id)
    if cursor:
        try:
            at, last_id = parse_datetime(cursor[0]), uuid.UUID(str(cursor[1]))
        except (ValueError, IndexError):
            raise validation("query.cursor", "malformed cursor") from None
        query = query.where(tuple_(LearningGoal.created_at, LearningGoal.id) > tuple_(at, last_id))
    query = query.order_by(LearningGoal.created_at, LearningGoal.id).limit(limit + 1)
    async with svc.sessions.begin() as session:
        goals = list((await session.execute(query)).scalars())
        views = await service.evaluate_goals(session, user_id=me.clerk_id, goals=goals[:limit],
                                             now=svc.clock.now(), tz=me.timezone)
        items = [service.goal_payload(v) for v in views]
    more = len(goals) > limit and items
    next_cursor = encode_cursor([items[-1]["created_at"], items[-1]["id"]]) if more else None
    return json_response({"items": items, "next_cursor": next_cursor})


@api.post("/me/goals", access=SIGNED_IN, status=201, body=GoalCreate, response=GoalOut)
async def create_goal(request: Request) -> Response:
    """Set a learning goal (lessons, minutes or flashcards per day, week, or once by a date)."""
    me = await require_user(request)
    body = await read_json(request, GoalCreate)
    svc = services(request)
    now = svc.clock.now()
    async with svc.sessions.begin() as session:
        goal = LearningGoal(user_id=me.clerk_id, title=body.title, target_type=body.target_type,
                            target_value=body.target_value, period=body.period, due_date=body.due_date,
                            created_at=now, updated_at=now)
        session.add(goal)
        await session.flush()
        await session.refresh(goal)
        (view,) = await service.evaluate_goals(session, user_id=me.clerk_id, goals=[goal], now=now,
                                               tz=me.timezone)
        payload = service.goal_payload(view)
    return json_response(payload, 201)


@api.patch("/me/goals/{id}", access=own_goal("id"), body=GoalPatch, response=GoalOut)
async def patch_goal(request: Request) -> Response:
    """Change a goal; its progress is recomputed (a changed target can complete it)."""
    me = await require_user(request)
    body = await read_json(request, GoalPatch)
    changes = body.model_dump(exclude_unset=True)
    for key in ("title", "target_type", "target_value", "period"):
        if key in changes and changes[key] is None:
            raise validation(f"body.{key}", "must not be null")
    svc = services(request)
    async with svc.sessions.begin() as session:
        goal = await _goal(session, request)
        for key, value in changes.items():
            setattr(goal, key, value)
        if {"target_type", "target_value", "period"} & changes.keys() and goal.period == "once":
            goal.completed_at = None  # a changed goal is judged afresh
        await session.flush()
        await session.refresh(goal)
        (view,) = await service.evaluate_goals(session, user_id=me.clerk_id, goals=[goal],
                                               now=svc.clock.now(), tz=me.timezone)
        payload = service.goal_payload(view)
    return json_response(payload)


@api.delete("/me/goals/{id}", access=own_goal("id"), status=204)
async def delete_goal(request: Request) -> Response:
    """Delete a goal."""
    async with services(request).sessions.begin() as session:
        goal = await _goal(session, request)
        await session.delete(goal)
    return no_content()


# --- achievements -----------------------------------------------------------------------------


def achievement_payload(a: Achievement, earned_at: Any, progress: float | None) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "description": a.description, "icon": a.icon,
            "requirement": a.requirement, "earned": earned_at is not None, "earned_at": earned_at,
            "progress": float(progress or 0.0)}


@api.get("/achievements", access=SIGNED_IN, response=Page[AchievementOut],
         query={"limit": "page size", "cursor": "from next_cursor"})
async def list_achievements(request: Request) -> Response:
    """The achievement catalogue, with whether you earned each and your progress (0–100)."""
    me = await current_user(request)
    limit = page_limit(request)
    cursor = decode_cursor(request)
    query = select(Achievement, UserAchievement.earned_at, UserAchievement.progress)
    query = query.outerjoin(UserAchievement, and_(UserAchievement.achievement_id == Achievement.id,
                                                  UserAchievement.user_id == (me.clerk_id if me else None)))
    if cursor:
        try:
            after_name, after_id = str(cursor[0]), uuid.UUID(str(cursor[1]))
        except (ValueError, IndexError):
            raise validation("query.cursor", "malformed cursor") from None
        query = query.where(or_(Achievement.name > after_name,
                                and_(Achievement.name == after_name, Achievement.id > after_id)))
    query = query.order_by(Achievement.name, Achievement.id).limit(limit + 1)
    async with services(request).sessions() as session:
        rows = (await session.execute(query)).all()
    items = [achievement_payload(a, earned_at, progress) for a, earned_at, progress in rows]
    return json_response(page(items, limit, key=lambda a: [a["name"], a["id"]]))


class AchievementCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    icon: str | None = Field(default=None, max_length=32)
    requirement: Any


@api.post("/achievements", access=ADMIN, status=201, body=AchievementCreate, response=AchievementOut)
async def create_achievement(request: Request) -> Response:
    """Admins: add an achievement (its requirement is checked against the §9 grammar)."""
    body = await read_json(request, AchievementCreate)
    parse_requirement(body.requirement, loc="body.requirement")
    async with services(request).sessions.begin() as session:
        taken = (await session.execute(select(Achievement.id).where(Achievement.name == body.name))).first()
        if taken:
            raise Conflict("An achievement with this name exists.")
        achievement = await service.create_achievement(session, name=body.name, description=body.description,
                                                       requirement=body.requirement, icon=body.icon)
        await session.refresh(achievement)
        payload = achievement_payload(achievement, None, 0.0)
    return json_response(payload, 201)


@api.get("/me/achievements", access=SIGNED_IN, response=Page[EarnedOut],
         query={"limit": "page size", "cursor": "from next_cursor"})
async def my_achievements(request: Request) -> Response:
    """The achievements you earned, newest first."""
    me = await require_user(request)
    limit = page_limit(request)
    cursor = decode_cursor(request)
    query = (select(UserAchievement.achievement_id, Achievement.name, Achievement.description, Achievement.icon,
                    UserAchievement.earned_at, UserAchievement.progress)
             .join(Achievement, Achievement.id == UserAchievement.achievement_id)
             .where(UserAchievement.user_id == me.clerk_id, UserAchievement.earned_at.is_not(None)))
    if cursor:
        try:
            at, after_id = parse_datetime(cursor[0]), uuid.UUID(str(cursor[1]))
        except (ValueError, IndexError):
            raise validation("query.cursor", "malformed cursor") from None
        query = query.where(tuple_(UserAchievement.earned_at, UserAchievement.achievement_id) < tuple_(at, after_id))
    query = query.order_by(UserAchievement.earned_at.desc(), UserAchievement.achievement_id.desc()).limit(limit + 1)
    async with services(request).sessions() as session:
        rows = (await session.execute(query)).all()
    items = [{"achievement_id": aid, "name": name, "description": description, "icon": icon,
              "earned_at": earned_at, "progress": float(progress)}
             for aid, name, description, icon, earned_at, progress in rows]
    return json_response(page(items, limit, key=lambda a: [a["earned_at"], a["achievement_id"]]))
