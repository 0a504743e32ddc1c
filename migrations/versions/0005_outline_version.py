"""courses.outline_version: a counter bumped by triggers whenever the outline payload changes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

``GET /api/courses/{id}/outline`` embeds the course payload (title, description, difficulty,
language{code,name}, tags, author{clerk_id,name}, is_published, published_at, rating avg/count,
enrolled_count, lesson_count, created_at, updated_at) and every unit (id, title, position) with its
lessons (id, title, content_type, position). Each node caches the rendered outline per course
under this counter, so every change to any of those facts bumps it in the writing transaction:

- courses: one BEFORE UPDATE trigger replaces ``trg_courses_updated_at``: an update that only bumps
  ``outline_version`` keeps ``updated_at``; any other update sets ``updated_at`` (as before) and bumps.
- units, lessons (through the unit; a move bumps both courses), user_courses, course_feedback,
  course_tags: AFTER INSERT/DELETE, and AFTER UPDATE when a column the outline shows changes.
- users (name, image_url of authors), tags (name), languages (code, name): AFTER UPDATE.
Deletes that cascade (a course's units, a user's enrollments, a tag's links) fire the row triggers
of the referencing tables.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every column of ``courses`` except search (generated from title/description), updated_at and
# outline_version. A new column the outline shows must be added here.
COURSE_COLUMNS = ("id", "author_id", "title", "description", "difficulty", "language_id", "is_published",
                  "published_at", "created_at")

BUMP = "UPDATE courses SET outline_version = outline_version + 1 WHERE id = {}"


def _row(prefix: str) -> str:
    return "(" + ", ".join(f"{prefix}.{c}" for c in COURSE_COLUMNS) + ")"


FUNCTIONS = {
    "outline_courses_before_update": f"""
        IF NEW.outline_version IS DISTINCT FROM OLD.outline_version
           AND {_row('NEW')} IS NOT DISTINCT FROM {_row('OLD')} THEN
            RETURN NEW;  -- a bump from another table's trigger: updated_at stays
        END IF;
        NEW.updated_at := now();
        NEW.outline_version := OLD.outline_version + 1;
        RETURN NEW;""",
    # course_id of the changed row (units, user_courses, course_feedback, course_tags)
    "outline_bump_course_id": f"""
        IF TG_OP <> 'INSERT' THEN {BUMP.format('OLD.course_id')}; END IF;
        IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.course_id IS DISTINCT FROM OLD.course_id) THEN
            {BUMP.format('NEW.course_id')};
        END IF;
        RETURN NULL;""",
    "outline_bump_lesson": f"""
        IF TG_OP <> 'INSERT' THEN
            {BUMP.format('(SELECT course_id FROM units WHERE id = OLD.unit_id)')};
        END IF;
        IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.unit_id IS DISTINCT FROM OLD.unit_id) THEN
            {BUMP.format('(SELECT course_id FROM units WHERE id = NEW.unit_id)')};
        END IF;
        RETURN NULL;""",
    "outline_bump_author": """
        UPDATE courses SET outline_version = outline_version + 1 WHERE author_id = NEW.clerk_id;
        RETURN NULL;""",
    "outline_bump_tag": """
        UPDATE courses SET outline_version = outline_version + 1
         WHERE id IN (SELECT course_id FROM course_tags WHERE tag_id = NEW.id);
        RETURN NULL;""",
    "outline_bump_language": """
        UPDATE courses SET outline_version = outline_version + 1 WHERE language_id = NEW.id;
        RETURN NULL;""",
}


def _changed(*columns: str) -> str:
    return " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns)


# (table, function, update columns that matter or None for insert/delete only)
ROW_TRIGGERS = (
    ("units", "outline_bump_course_id", ("id", "course_id", "title", "position")),
    ("lessons", "outline_bump_lesson", ("id", "unit_id", "title", "content_type", "position")),
    ("user_courses", "outline_bump_course_id", ("course_id",)),
    ("course_feedback", "outline_bump_course_id", ("course_id", "rating")),
    ("course_tags", "outline_bump_course_id", ("course_id", "tag_id")),
)
UPDATE_TRIGGERS = (
    ("users", "outline_bump_author", ("clerk_id", "name", "image_url")),
    ("tags", "outline_bump_tag", ("name",)),
    ("languages", "outline_bump_language", ("code", "name")),
)


def upgrade() -> None:
    op.add_column('courses', sa.Column('outline_version', sa.BigInteger(), server_default='0', nullable=False))
    for name, body in FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN{body}\nEND\n$$")
    op.execute("DROP TRIGGER trg_courses_updated_at ON courses")
    op.execute("CREATE TRIGGER trg_courses_updated_at BEFORE UPDATE ON courses "
               "FOR EACH ROW EXECUTE FUNCTION outline_courses_before_update()")
    for table, function, columns in ROW_TRIGGERS:
        op.execute(f"CREATE TRIGGER trg_{table}_outline AFTER INSERT OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {function}()")
        op.execute(f"CREATE TRIGGER trg_{table}_outline_update AFTER UPDATE ON {table} "
                   f"FOR EACH ROW WHEN ({_changed(*columns)}) EXECUTE FUNCTION {function}()")
    for table, function, columns in UPDATE_TRIGGERS:
        op.execute(f"CREATE TRIGGER trg_{table}_outline_update AFTER UPDATE ON {table} "
                   f"FOR EACH ROW WHEN ({_changed(*columns)}) EXECUTE FUNCTION {function}()")


def downgrade() -> None:
    for table, _, _ in ROW_TRIGGERS:
        op.execute(f"DROP TRIGGER trg_{table}_outline ON {table}")
        op.execute(f"DROP TRIGGER trg_{table}_outline_update ON {table}")
    for table, _, _ in UPDATE_TRIGGERS:
        op.execute(f"DROP TRIGGER trg_{table}_outline_update ON {table}")
    op.execute("DROP TRIGGER trg_courses_updated_at ON courses")
    op.execute("CREATE TRIGGER trg_courses_updated_at BEFORE UPDATE ON courses "
               "FOR EACH ROW EXECUTE FUNCTION set_updated_at()")
    for name in FUNCTIONS:
        op.execute(f"DROP FUNCTION {name}()")
    op.drop_column('courses', 'outline_version')
