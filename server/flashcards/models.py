from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin, user_fk

# ON DELETE: a set belongs to its owner (CASCADE) and survives its course (SET NULL);
# cards go with their set, progress and reviews with their card and their user (CASCADE).


class FlashcardSet(IdMixin, TimestampMixin, Base):
    __tablename__ = "flashcard_sets"

    user_id: Mapped[str] = user_fk("CASCADE")
    course_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("courses.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    is_public: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")


class Flashcard(IdMixin, TimestampMixin, Base):
    __tablename__ = "flashcards"
    __table_args__ = (Index("ix_flashcards_set_id_position", "set_id", "position"),)

    set_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("flashcard_sets.id", ondelete="CASCADE"), nullable=False
    )
    front: Mapped[str] = mapped_column(Text, nullable=False)
    back: Mapped[str] = mapped_column(Text, nullable=False)
    # Rendered on write (docs/API.md §3); NULL on cards written before that (server.markdown.stored_html).
    front_html: Mapped[str | None] = mapped_column(Text)
    back_html: Mapped[str | None] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")


class UserFlashcardProgress(IdMixin, TimestampMixin, Base):
    __tablename__ = "user_flashcard_progress"
    __table_args__ = (
        UniqueConstraint("user_id", "flashcard_id"),
        CheckConstraint("mastery_level >= 0 AND mastery_level <= 5", name="mastery_level"),
        CheckConstraint("review_count >= 0", name="review_count"),
        Index("ix_user_flashcard_progress_user_id_due_at", "user_id", "due_at"),
    )

    user_id: Mapped[str] = user_fk("CASCADE", index=False)
    flashcard_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("flashcards.id", ondelete="CASCADE"), nullable=False, index=True
    )
    mastery_level: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The FSRS scheduler's card state (fsrs.Card.to_dict()).
    state: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    last_reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")


class FlashcardReview(IdMixin, TimestampMixin, Base):
    """Review history, so a learner can see their retention over time."""

    __tablename__ = "flashcard_reviews"
    __table_args__ = (
        CheckConstraint("rating IN ('again', 'hard', 'good', 'easy')", name="rating"),
        Index("ix_flashcard_reviews_user_id_reviewed_at", "user_id", "reviewed_at"),
    )

    user_id: Mapped[str] = user_fk("CASCADE", index=False)
    flashcard_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("flashcards.id", ondelete="CASCADE"), nullable=False, index=True
    )
    rating: Mapped[str] = mapped_column(Text, nullable=False)
    reviewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    state: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
