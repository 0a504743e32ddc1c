from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR, UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin, user_fk

# ON DELETE policy (one line per relation, why in brief):
# - units, lessons, collaborators, course_tags: children of a course -> CASCADE (so are media and
#   quizzes, whose models live with their domains: server/media/models.py, server/learning/models.py).
# - courses.author_id -> RESTRICT: users are anonymised, never deleted under their courses.
# - courses.language_id -> SET NULL: removing a language must not remove courses.


class Language(IdMixin, TimestampMixin, Base):
    __tablename__ = "languages"

    code: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    name: Mapped[str] = mapped_column(Text, unique=True, nullable=False)


class Tag(IdMixin, TimestampMixin, Base):
    __tablename__ = "tags"

    name: Mapped[str] = mapped_column(Text, unique=True, nullable=False)


class Course(IdMixin, TimestampMixin, Base):
    __tablename__ = "courses"
    __table_args__ = (
        CheckConstraint(
            "difficulty IS NULL OR difficulty IN ('beginner', 'intermediate', 'advanced')",
            name="difficulty",
        ),
        Index("ix_courses_search", "search", postgresql_using="gin"),
        Index("ix_courses_published_created", "is_published", "created_at", "id"),
    )

    author_id: Mapped[str] = user_fk("RESTRICT")
    title: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    difficulty: Mapped[str | None] = mapped_column(Text)
    language_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("languages.id", ondelete="SET NULL"), index=True
    )
    is_published: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Bumped by triggers (migration 0005) on every change the outline payload shows; keys the
    # per-node outline cache.
    outline_version: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    search: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
            "setweight(to_tsvector('english', coalesce(description, '')), 'B')",
            persisted=True,
        ),
    )


class CourseTag(IdMixin, TimestampMixin, Base):
    __tablename__ = "course_tags"
    __table_args__ = (UniqueConstraint("course_id", "tag_id"),)

    course_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("courses.id", ondelete="CASCADE"), nullable=False
    )
    tag_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("tags.id", ondelete="CASCADE"), nullable=False, index=True
    )


class Unit(IdMixin, TimestampMixin, Base):
    __tablename__ = "units"
    __table_args__ = (
        CheckConstraint("position >= 0", name="position"),
        Index("ix_units_course_id_position", "course_id", "position"),
    )

    course_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("courses.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")


class Lesson(IdMixin, TimestampMixin, Base):
    __tablename__ = "lessons"
    __table_args__ = (
        CheckConstraint("content_type IN ('video', 'text', 'audio', 'exercise')", name="content_type"),
        CheckConstraint("position >= 0", name="position"),
        Index("ix_lessons_unit_id_position", "unit_id", "position"),
    )

    unit_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("units.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(Text, nullable=False)
    content_type: Mapped[str] = mapped_column(Text, nullable=False)
    content: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    position: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # Bumped whenever title or body text changes (REST or live document); exposed as ``version``.
    revision: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")


class Collaborator(IdMixin, TimestampMixin, Base):
    __tablename__ = "collaborators"
    __table_args__ = (
        UniqueConstraint("course_id", "user_id"),
        CheckConstraint("role IN ('editor', 'viewer')", name="role"),
    )

    course_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("courses.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = user_fk("CASCADE")
    role: Mapped[str] = mapped_column(Text, nullable=False, server_default="editor")
