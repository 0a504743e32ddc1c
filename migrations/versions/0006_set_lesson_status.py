"""set_lesson_status(): a learner's lesson status and course progress in one round trip

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

A progress write used to be BEGIN, lock the lesson, lock the enrollment, upsert + recompute,
COMMIT: the enrollment row lock was held across three round trips to the application, so a
learner's concurrent writes queued behind event-loop latency. The function takes the same locks in
the same order (lesson KEY SHARE, then the enrollment FOR UPDATE — a lesson deletion locks the
lesson and then the enrollments, so the two never deadlock) and then, in a new statement (a new
READ COMMITTED snapshot that sees every write committed before the lock was granted), upserts the
status and recomputes ``user_courses.progress``. Called in autocommit, the lock is held only
inside PostgreSQL; called inside a transaction, until its commit.

progress = completed lessons of the course ÷ lessons of the course × 100 (numeric: "all done" is
exactly 100); ``completed_at`` is set when it reaches 100 and kept afterwards.

Result: one row. ``outcome`` is 'no_lesson', 'not_enrolled' or 'ok'; for 'ok', the new progress
and completed_at, the lesson's previous status (null if none) and the enrollment's completed_at
before this write.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = """
CREATE FUNCTION set_lesson_status(p_user_id text, p_lesson_id uuid, p_course_id uuid, p_status text)
RETURNS TABLE (outcome text, progress double precision, completed_at timestamptz, previous text,
               was_completed_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    v_enrollment uuid;
BEGIN
    PERFORM 1 FROM lessons l WHERE l.id = p_lesson_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_lesson'::text, NULL::double precision, NULL::timestamptz, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT uc.id, uc.completed_at INTO v_enrollment, was_completed_at
    FROM user_courses uc WHERE uc.course_id = p_course_id AND uc.user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_enrolled'::text, NULL::double precision, NULL::timestamptz, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT p.status INTO previous FROM user_progress p
    WHERE p.user_id = p_user_id AND p.lesson_id = p_lesson_id;
    INSERT INTO user_progress AS up (user_id, lesson_id, status, completed_at)
    VALUES (p_user_id, p_lesson_id, p_status, CASE WHEN p_status = 'completed' THEN now() END)
    ON CONFLICT (user_id, lesson_id) DO UPDATE
    SET status = excluded.status,
        -- the first completion time is kept when a completed lesson is completed again
        completed_at = CASE WHEN excluded.status = 'completed'
                            THEN coalesce(up.completed_at, excluded.completed_at) END,
        updated_at = now();
    RETURN QUERY
    WITH totals AS (
        SELECT count(*) AS n FROM lessons l JOIN units u ON u.id = l.unit_id WHERE u.course_id = p_course_id
    ), done AS (
        SELECT count(*) AS n
        FROM user_progress p JOIN lessons l ON l.id = p.lesson_id JOIN units u ON u.id = l.unit_id
        WHERE u.course_id = p_course_id AND p.user_id = p_user_id AND p.status = 'completed'
    )
    UPDATE user_courses uc
    SET progress = CASE WHEN t.n = 0 THEN 0 ELSE LEAST(100, d.n * 100.0 / t.n) END,
        completed_at = CASE
            WHEN t.n > 0 AND d.n >= t.n THEN coalesce(uc.completed_at, now())
            ELSE uc.completed_at END
    FROM totals t, done d
    WHERE uc.id = v_enrollment
    RETURNING 'ok'::text, uc.progress, uc.completed_at, previous, was_completed_at;
END
$fn$
"""


def upgrade() -> None:
    op.execute(FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION set_lesson_status(text, uuid, uuid, text)")
