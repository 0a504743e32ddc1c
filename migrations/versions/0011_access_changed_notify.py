"""access_changed: NOTIFY at each commit that changes a fact of who may edit a lesson

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

A node re-checks its live collab rooms' users when one of these facts changes (and, as a safety
net, once a minute), instead of every 2 s whether or not anything changed: who authored or
published a course, its collaborators, which course a lesson is in (through its unit), and a
user's role, deletion or id. The notification is delivered at commit, so a re-check started on
it reads the change. Statement-level triggers: one notification per statement (and PostgreSQL
folds identical ones of a transaction into one). An UPDATE that only sets other columns (a
lesson's content, a user's name) notifies nothing. Enrollments are not among the facts: a peer
is an author, collaborator or admin, whatever their enrollment.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> the events that change a fact of the collab access decision
WATCHED = {
    "courses": "UPDATE OF author_id, is_published OR DELETE",
    "collaborators": "INSERT OR UPDATE OR DELETE",
    "units": "UPDATE OF course_id OR DELETE",
    "lessons": "UPDATE OF unit_id OR DELETE",
    "users": "UPDATE OF role, deleted_at, clerk_id OR DELETE",
}


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION access_changed_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('access_changed', '');
            RETURN NULL;
        END $$
    """)
    for table, events in WATCHED.items():
        op.execute(f"""
            CREATE TRIGGER access_changed_notify AFTER {events} ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION access_changed_notify()
        """)
        op.execute(f"""
            CREATE TRIGGER access_changed_notify_truncate AFTER TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION access_changed_notify()
        """)


def downgrade() -> None:
    for table in WATCHED:
        op.execute(f"DROP TRIGGER IF EXISTS access_changed_notify ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS access_changed_notify_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS access_changed_notify()")
