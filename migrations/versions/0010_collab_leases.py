"""collab_leases: one node at a time does a live lesson's shared-row duties (fencing tokens)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

With several nodes, the node holding a lesson's lease materialises its text into the lesson row,
compacts its update log and records its versions. Every such write checks the holder and token in
its own transaction, so a node paused past its lease (SIGSTOP, a long GC pause) writes nothing
stale once it resumes. A single node (no Redis) takes no lease.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "collab_leases",
        sa.Column("lesson_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["lesson_id"], ["lessons.id"], name=op.f("fk_collab_leases_lesson_id_lessons"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("lesson_id", name=op.f("pk_collab_leases")),
    )


def downgrade() -> None:
    op.drop_table("collab_leases")
