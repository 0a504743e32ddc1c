"""Enrollment and progress."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.access import visible_courses
from server.auth import Principal
from server.catalog.models import Collaborator, Course, Lesson, Unit
from server.errors import Conflict, NotFound
from server.gamification.service import record_action
from server.http import cursor_key, cursor_uuid, parse_datetime
from server.learning.models import UserCourse
from server.users.models import User

STATUSES = ("not_started", "in_progress", "completed")
RETRYABLE = ("40P01", "40001")  # deadlock detected, serialization failure

T = TypeVar("T")


async def retrying(attempt: Callable[[], Awaitable[T]], tries: int = 3) -> T:
    """Run a whole transaction again when PostgreSQL aborted it for a deadlock.

    A progress write locks the learner's enrollment then a lesson status row; deleting a lesson
    removes status rows then locks every enrollment of the course: rarely, the two deadlock.
    """
    for n in range(tries):
        try:
            return await attempt()
        except DBAPIError as exc:
            if n == tries - 1 or getattr(exc.orig, "sqlstate", None) not in RETRYABLE:
                raise
    raise AssertionError("unreachable")

# Lock the enrollments first (in id order, so two recomputes never deadlock), then count in a
# *new* statement: under READ COMMITTED that statement's snapshot sees every progress write that
# committed before we got the locks, so the last writer always stores the exact value.
_LOCK = text("""
SELECT id FROM user_courses
WHERE course_id = :course_id AND (CAST(:user_id AS text) IS NULL OR user_id = CAST(:user_id AS text))
ORDER BY id FOR UPDATE
""")

# progress = completed lessons of the course ÷ lessons of the course × 100, for every enrollment;
# completed_at is set when it reaches 100 and kept (never unset by a later lesson being added).
# n * 100.0 / n is exactly 100 in numeric arithmetic, so "all done" is 100, never 99.99 or 101.
_RECOMPUTE = text("""
WITH totals AS (
    SELECT count(*) AS n FROM lessons l JOIN units u ON u.id = l.unit_id WHERE u.course_id = :course_id
), done AS (
    SELECT uc.user_id, uc.completed_at AS was_completed_at, count(p.id) AS n
    FROM user_courses uc
    LEFT JOIN (user_progress p
               JOIN lessons l ON l.id = p.lesson_id
               JOIN units u ON u.id = l.unit_id AND u.course_id = :course_id)
           ON p.user_id = uc.user_id AND p.status = 'completed'
    WHERE uc.course_id = :course_id
      AND (CAST(:user_id AS text) IS NULL OR uc.user_id = CAST(:user_id AS text))
    GROUP BY uc.user_id, uc.completed_at
)
UPDATE user_courses uc
SET progress = CASE WHEN t.n = 0 THEN 0 ELSE LEAST(100, d.n * 100.0 / t.n) END,
    completed_at = CASE
        WHEN t.n > 0 AND d.n >= t.n THEN coalesce(uc.completed_at, now())
        ELSE uc.completed_at END
FROM totals t, done d
WHERE uc.course_id = :course_id AND d.user_id = uc.user_id
RETURNING uc.user_id, uc.progress, uc.completed_at, d.was_completed_at
""")


async def recompute_course_progress(
    session: AsyncSession, course_id: uuid.UUID, user_id: str | None = None, *, locked: bool = False
) -> dict[str, tuple[float, datetime | None]]:
    """Recompute ``user_courses.progress`` of a course (one user, or every enrollment) in-transaction.

    Call it whenever a lesson is completed or un-completed, and when lessons are added or removed.
    ``locked``: the caller already holds the enrollment row lock(s) (taken before its own writes).
    Learners whose course becomes complete here get ``record_action(courses_completed)``.
    Returns ``{user_id: (progress, completed_at)}`` of the enrollments it updated.
    """
    params = {"course_id": course_id, "user_id": user_id}
    if not locked:
        await session.execute(_LOCK, params)
    rows = (await session.execute(_RECOMPUTE, params)).all()
    for row in rows:
        # e.g. the last lesson a learner had not done was deleted, or a finished learner re-enrolled
        if row.completed_at is not None and row.was_completed_at is None:
            await record_action(session, user_id=row.user_id, keys={"courses_completed"})
    return {row.user_id: (float(row.progress), row.completed_at) for row in rows}


# --- enrollment ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrollment:
    enrolled: bool
    progress: float
    completed_at: datetime | None

    def payload(self, course_id: uuid.UUID) -> dict[str, Any]:
        return {"course_id": course_id, "enrolled": self.enrolled, "progress": self.progress,
                "completed_at": self.completed_at}


async def enroll(session: AsyncSession, *, course_id: uuid.UUID, user_id: str) -> Enrollment:
    """Enroll (idempotent). Earlier progress of the user in the course counts again."""
    await session.execute(
        insert(UserCourse).values(user_id=user_id, course_id=course_id)
        .on_conflict_do_nothing(index_elements=["user_id", "course_id"])
    )
    progress, completed_at = (await recompute_course_progress(session, course_id, user_id))[user_id]
    return Enrollment(True, progress, completed_at)


async def unenroll(session: AsyncSession, *, course_id: uuid.UUID, user_id: str) -> Enrollment:
    """Leave a course (idempotent). Lesson statuses are kept for a later re-enrollment."""
    await session.execute(
        delete(UserCourse).where(UserCourse.course_id == course_id, UserCourse.user_id == user_id)
    )
    return Enrollment(False, 0.0, None)


# The lesson status and the course progress in one statement (migration 0006 has the function and
# why): locks the lesson (KEY SHARE) then the enrollment, then upserts and recomputes in a fresh
# snapshot, so the last of a learner's concurrent writes always stores the exact value.
_SET_STATUS = text("SELECT * FROM set_lesson_status(:user_id, :lesson_id, :course_id, :status)")


@dataclass(frozen=True)
class StatusWrite:
    payload: dict[str, Any]
    actions: tuple[str, ...]  # achievement keys the write touched, in the order they were earned


async def set_lesson_status(
    db: AsyncSession | AsyncConnection, *, course_id: uuid.UUID, lesson_id: uuid.UUID, user_id: str,
    status: str,
) -> StatusWrite:
    """Set the caller's status of a lesson and recompute the course progress (one statement).

    404 for a lesson gone meanwhile, 409 when the user is not enrolled. In a transaction the locks
    last until its commit; on an autocommit connection they are held only inside PostgreSQL. The
    caller then records ``actions`` (:func:`record_completions`).
    """
    row = (await db.execute(_SET_STATUS, {
        "user_id": user_id, "lesson_id": lesson_id, "course_id": course_id, "status": status,
    })).one()
    if row.outcome == "no_lesson":
        raise NotFound("No such lesson.")
    if row.outcome == "not_enrolled":
        raise Conflict("Enroll in the course first.")
    actions = []
    if status == "completed" and row.previous != "completed":
        actions.append("lessons_completed")
    if row.completed_at is not None and row.was_completed_at is None:
        actions.append("courses_completed")
    payload = {"lesson_id": lesson_id, "course_id": course_id, "status": status,
               "progress": float(row.progress), "course_completed_at": row.completed_at}
    return StatusWrite(payload, tuple(actions))


async def record_completions(session: AsyncSession, user_id: str, actions: tuple[str, ...]) -> None:
    """Evaluate the achievements a status write touched (lessons before courses)."""
    for key in actions:
        await record_action(session, user_id=user_id, keys={key})


async def course_progress(session: AsyncSession, *, course_id: uuid.UUID, user_id: str) -> dict[str, Any]:
    enrollment = (await session.execute(
        select(UserCourse.progress, UserCourse.completed_at)
        .where(UserCourse.course_id == course_id, UserCourse.user_id == user_id)
    )).one_or_none()
    counts = (await session.execute(text("""
        SELECT count(*) AS total,
               count(*) FILTER (WHERE p.status = 'completed') AS completed
        FROM lessons l JOIN units u ON u.id = l.unit_id
        LEFT JOIN user_progress p ON p.lesson_id = l.id AND p.user_id = :user_id
        WHERE u.course_id = :course_id
    """), {"course_id": course_id, "user_id": user_id})).one()
    return {
        "course_id": course_id,
        "enrolled": enrollment is not None,
        "progress": float(enrollment.progress) if enrollment else 0.0,
        "completed_lessons": int(counts.completed),
        "total_lessons": int(counts.total),
        "completed_at": enrollment.completed_at if enrollment else None,
    }


async def my_courses(
    session: AsyncSession, *, user: Principal, limit: int, after: list[Any] | None
) -> list[dict[str, Any]]:
    """The user's enrollments, newest first, as course summaries with progress (one query).

    A course taken back to draft drops out of the list unless the user may see drafts of it.
    """
    user_id = user.clerk_id
    lesson_count = (
        select(func.count(Lesson.id)).join(Unit, Unit.id == Lesson.unit_id)
        .where(Unit.course_id == Course.id).correlate(Course).scalar_subquery()
    )
    query = (
        select(UserCourse, Course, User, lesson_count.label("lesson_count"))
        .join(Course, Course.id == UserCourse.course_id)
        .join(User, User.clerk_id == Course.author_id)
        .where(UserCourse.user_id == user_id, visible_courses(user))
        .order_by(UserCourse.created_at.desc(), UserCourse.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        created, last_id = cursor_key(after, parse_datetime, cursor_uuid)
        query = query.where(
            (UserCourse.created_at < created)
            | ((UserCourse.created_at == created) & (UserCourse.id < last_id))
        )
    items = []
    for enrollment, course, author, lessons in (await session.execute(query)).all():
        items.append({
            "id": course.id, "title": course.title, "description": course.description,
            "difficulty": course.difficulty, "is_published": course.is_published,
            "author": {"clerk_id": author.clerk_id, "name": author.name, "image_url": author.image_url},
            "lesson_count": int(lessons),
            "progress": float(enrollment.progress), "completed_at": enrollment.completed_at,
            "enrolled_at": enrollment.created_at, "_cursor": [enrollment.created_at, enrollment.id],
        })
    return items


async def team_courses(
    session: AsyncSession, *, user: Principal, limit: int, after: list[Any] | None
) -> list[dict[str, Any]]:
    """The courses the user authors or collaborates on (drafts included), newest first, with
    their role on each (one query)."""
    user_id = user.clerk_id
    lesson_count = (
        select(func.count(Lesson.id)).join(Unit, Unit.id == Lesson.unit_id)
        .where(Unit.course_id == Course.id).correlate(Course).scalar_subquery()
    )
    query = (
        select(Course, Collaborator.role, lesson_count.label("lesson_count"))
        .outerjoin(Collaborator, (Collaborator.course_id == Course.id) & (Collaborator.user_id == user_id))
        .where((Course.author_id == user_id) | (Collaborator.user_id == user_id))
        .order_by(Course.created_at.desc(), Course.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        created, last_id = cursor_key(after, parse_datetime, cursor_uuid)
        query = query.where((Course.created_at < created) | ((Course.created_at == created) & (Course.id < last_id)))
    items = []
    for course, collaborator_role, lessons in (await session.execute(query)).all():
        items.append({
            "id": course.id, "title": course.title, "description": course.description,
            "difficulty": course.difficulty, "is_published": course.is_published,
            "role": "author" if course.author_id == user_id else collaborator_role,
            "lesson_count": int(lessons), "created_at": course.created_at, "updated_at": course.updated_at,
            "_cursor": [course.created_at, course.id],
        })
    return items
