"""Enrollment and progress."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# progress = completed lessons of the course ÷ lessons of the course × 100, for every enrollment;
# completed_at is set when it reaches 100 and kept (never unset by a later lesson being added).
_RECOMPUTE = text("""
WITH totals AS (
    SELECT count(*) AS n FROM lessons l JOIN units u ON u.id = l.unit_id WHERE u.course_id = :course_id
), done AS (
    SELECT p.user_id, count(*) AS n
    FROM user_progress p JOIN lessons l ON l.id = p.lesson_id JOIN units u ON u.id = l.unit_id
    WHERE u.course_id = :course_id AND p.status = 'completed'
    GROUP BY p.user_id
), enrolled AS (
    -- every enrollment (also those with nothing completed), so un-completing and removals count
    SELECT e.id, coalesce(d.n, 0) AS n
    FROM user_courses e LEFT JOIN done d ON d.user_id = e.user_id
    WHERE e.course_id = :course_id AND (CAST(:user_id AS text) IS NULL OR e.user_id = CAST(:user_id AS text))
)
UPDATE user_courses uc
SET progress = CASE WHEN t.n = 0 THEN 0 ELSE LEAST(100, e.n * 100.0 / t.n) END,
    completed_at = CASE
        WHEN t.n > 0 AND e.n >= t.n THEN coalesce(uc.completed_at, now())
        ELSE uc.completed_at END
FROM totals t, enrolled e
WHERE uc.id = e.id
""")


async def recompute_course_progress(
    session: AsyncSession, course_id: uuid.UUID, user_id: str | None = None
) -> None:
    """Recompute ``user_courses.progress`` of a course (one user, or every enrollment) in-transaction.

    Call it whenever a lesson is completed or un-completed, and when lessons are added or removed.
    """
    await session.execute(_RECOMPUTE, {"course_id": course_id, "user_id": user_id})
