"""Merge point of the parallel branches' migrations (web branch only, so its tests can migrate).

The lead re-chains the branch migrations at merge time; drop this file then.

Revision ID: 9008
Revises: 0003, 0004
"""

from __future__ import annotations

revision: str = "9008"
down_revision: tuple[str, ...] = ("0003", "0004")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
