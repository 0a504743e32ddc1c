from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Integer, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin, user_fk

# ON DELETE: feedback goes with its course (CASCADE); a reviewer is anonymised, never deleted
# (RESTRICT); upvotes go with their feedback and their user (CASCADE).


class CourseFeedback(IdMixin, TimestampMixin, Base):
    __tablename__ = "course_feedback"
    __table_args__ = (
        UniqueConstraint("course_id", "user_id"),
        CheckConstraint("rating >= 1 AND rating <= 5", name="rating"),
    )

    course_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("courses.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = user_fk("RESTRICT")
    rating: Mapped[int] = mapped_column(Integer, nullable=False)
    comment: Mapped[str | None] = mapped_column(Text)


class FeedbackUpvote(IdMixin, TimestampMixin, Base):
    __tablename__ = "feedback_upvotes"
    __table_args__ = (UniqueConstraint("feedback_id", "user_id"),)

    feedback_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("course_feedback.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = user_fk("CASCADE")
