from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Float, ForeignKey, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin, user_fk

# ON DELETE: enrollments and progress belong to both their user and their course/lesson,
# and mean nothing without either -> CASCADE on both sides. A quiz is a child of its lesson -> CASCADE.


class UserCourse(IdMixin, TimestampMixin, Base):
    __tablename__ = "user_courses"
    __table_args__ = (
        UniqueConstraint("user_id", "course_id"),
        CheckConstraint("progress >= 0 AND progress <= 100", name="progress"),
    )

    user_id: Mapped[str] = user_fk("CASCADE")
    course_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("courses.id", ondelete="CASCADE"), nullable=False, index=True
    )
    progress: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UserProgress(IdMixin, TimestampMixin, Base):
    __tablename__ = "user_progress"
    __table_args__ = (
        UniqueConstraint("user_id", "lesson_id"),
        CheckConstraint("status IN ('not_started', 'in_progress', 'completed')", name="status"),
    )

    user_id: Mapped[str] = user_fk("CASCADE")
    lesson_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("lessons.id", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="not_started")
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Quiz(IdMixin, TimestampMixin, Base):
    __tablename__ = "quizzes"
    __table_args__ = (CheckConstraint("pass_score >= 0 AND pass_score <= 1", name="pass_score"),)

    lesson_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("lessons.id", ondelete="CASCADE"), nullable=False, index=True
    )
    title: Mapped[str] = mapped_column(Text, nullable=False)
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, server_default="[]")
    pass_score: Mapped[float] = mapped_column(Float, nullable=False, server_default="0.7")


class QuizAttempt(IdMixin, TimestampMixin, Base):
    """One graded submission of a quiz (kept so learners can see their history)."""

    __tablename__ = "quiz_attempts"
    __table_args__ = (CheckConstraint("score >= 0 AND score <= 1", name="score"),)

    quiz_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("quizzes.id", ondelete="CASCADE"), nullable=False, index=True
    )
    user_id: Mapped[str] = user_fk("CASCADE")
    answers: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    passed: Mapped[bool] = mapped_column(nullable=False)
