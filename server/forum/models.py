from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Computed, DateTime, ForeignKey, Index, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import TSVECTOR, UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin, user_fk

# ON DELETE policy:
# - posts.course_id CASCADE (a course's forum goes with it); posts.lesson_id SET NULL (the
#   discussion outlives the lesson).
# - posts/replies.user_id RESTRICT: deleting a user anonymises them and never cascades away
#   other people's replies.
# - replies.post_id CASCADE; replies.parent_reply_id CASCADE (replies with children are only
#   soft-deleted, so a hard delete only ever removes leaves or whole threads).
# - likes CASCADE with their target and their user.


class ForumPost(IdMixin, TimestampMixin, Base):
    __tablename__ = "forum_posts"
    __table_args__ = (
        Index("ix_forum_posts_course_id_pinned_created", "course_id", "is_pinned", "created_at", "id"),
        Index("ix_forum_posts_search", "search", postgresql_using="gin"),
    )

    course_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("courses.id", ondelete="CASCADE"), nullable=False
    )
    lesson_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("lessons.id", ondelete="SET NULL"), index=True
    )
    user_id: Mapped[str] = user_fk("RESTRICT")
    title: Mapped[str] = mapped_column(Text, nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    # Rendered on write (docs/API.md §3); NULL on rows written before that (server.markdown.stored_html).
    html: Mapped[str | None] = mapped_column(Text)
    is_pinned: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    is_locked: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Full-text search of the course forum (migration 0009); deferred: only the search reads it.
    search: Mapped[Any] = mapped_column(TSVECTOR, Computed(
        "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
        "setweight(to_tsvector('english', coalesce(content, '')), 'B')", persisted=True), deferred=True)


class ForumReply(IdMixin, TimestampMixin, Base):
    __tablename__ = "forum_replies"
    __table_args__ = (
        Index("ix_forum_replies_post_id_parent_created", "post_id", "parent_reply_id", "created_at", "id"),
        Index("ix_forum_replies_parent_reply_id", "parent_reply_id"),
        Index("ix_forum_replies_search", "search", postgresql_using="gin"),
    )

    post_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("forum_posts.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = user_fk("RESTRICT")
    parent_reply_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("forum_replies.id", ondelete="CASCADE")
    )
    content: Mapped[str] = mapped_column(Text, nullable=False)
    html: Mapped[str | None] = mapped_column(Text)  # as on ForumPost
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    search: Mapped[Any] = mapped_column(TSVECTOR, Computed(
        "setweight(to_tsvector('english', coalesce(content, '')), 'B')", persisted=True), deferred=True)


class ForumPostLike(IdMixin, TimestampMixin, Base):
    __tablename__ = "forum_post_likes"
    __table_args__ = (UniqueConstraint("post_id", "user_id"),)

    post_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("forum_posts.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = user_fk("CASCADE")


class ForumReplyLike(IdMixin, TimestampMixin, Base):
    __tablename__ = "forum_reply_likes"
    __table_args__ = (UniqueConstraint("reply_id", "user_id"),)

    reply_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("forum_replies.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = user_fk("CASCADE")
