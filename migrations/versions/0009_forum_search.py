"""Full-text search over a course's forum: generated tsvector columns on posts and replies

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

``forum_posts.search`` (title weight A, content weight B) and ``forum_replies.search`` (content,
weight B), both generated from the text (english configuration, as ``courses.search``) and
indexed with GIN, back ``GET /courses/{id}/forum/search`` (server/forum/queries.py).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POST_SEARCH = ("setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
               "setweight(to_tsvector('english', coalesce(content, '')), 'B')")
REPLY_SEARCH = "setweight(to_tsvector('english', coalesce(content, '')), 'B')"


def upgrade() -> None:
    op.add_column("forum_posts", sa.Column("search", postgresql.TSVECTOR(),
                                           sa.Computed(POST_SEARCH, persisted=True), nullable=False))
    op.add_column("forum_replies", sa.Column("search", postgresql.TSVECTOR(),
                                             sa.Computed(REPLY_SEARCH, persisted=True), nullable=False))
    op.create_index("ix_forum_posts_search", "forum_posts", ["search"], postgresql_using="gin")
    op.create_index("ix_forum_replies_search", "forum_replies", ["search"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_forum_replies_search", table_name="forum_replies", postgresql_using="gin")
    op.drop_index("ix_forum_posts_search", table_name="forum_posts", postgresql_using="gin")
    op.drop_column("forum_replies", "search")
    op.drop_column("forum_posts", "search")
