"""Rendered HTML stored with flashcards, forum posts and forum replies

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Markdown was rendered on every read: listing 20 flashcards whose fronts were 10,000 × ``![``
took 14-19 s of the event loop. HTML is now rendered on write (docs/API.md §3) and stored next to
the text. Existing rows keep NULL until they are next written; reads then render short texts
in place and show long ones escaped (server.markdown.stored_html), never a long render.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('flashcards', sa.Column('front_html', sa.Text(), nullable=True))
    op.add_column('flashcards', sa.Column('back_html', sa.Text(), nullable=True))
    op.add_column('forum_posts', sa.Column('html', sa.Text(), nullable=True))
    op.add_column('forum_replies', sa.Column('html', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('forum_replies', 'html')
    op.drop_column('forum_posts', 'html')
    op.drop_column('flashcards', 'back_html')
    op.drop_column('flashcards', 'front_html')
