"""users.deleted_at (a deleted user stays deleted) and media.user_id (per-user storage quota)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

``users.deleted_at`` is the tombstone of a ``user.deleted`` webhook: later or replayed
``user.updated``/``user.created`` deliveries and token claims never refill the anonymised row,
and the user's still-valid tokens are refused (401).

``media.user_id`` is who uploaded a file (null for rows from before this revision); uploads are
counted against ``MEDIA_QUOTA_BYTES`` per user.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("media", sa.Column("user_id", sa.Text(), nullable=True))
    op.create_foreign_key(op.f("fk_media_user_id_users"), "media", "users", ["user_id"], ["clerk_id"],
                          ondelete="SET NULL")
    op.create_index(op.f("ix_media_user_id"), "media", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_media_user_id"), table_name="media")
    op.drop_constraint(op.f("fk_media_user_id_users"), "media", type_="foreignkey")
    op.drop_column("media", "user_id")
    op.drop_column("users", "deleted_at")
