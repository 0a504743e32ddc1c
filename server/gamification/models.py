from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import CheckConstraint, Date, DateTime, Float, ForeignKey, Integer, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin, user_fk

# ON DELETE: streaks, login days, goals and earned achievements are a user's own -> CASCADE;
# removing an achievement from the catalogue removes it from users too (CASCADE).


class UserStreak(IdMixin, TimestampMixin, Base):
    __tablename__ = "user_streaks"
    __table_args__ = (
        UniqueConstraint("user_id"),
        CheckConstraint("current_streak >= 0", name="current_streak"),
        CheckConstraint("longest_streak >= 0", name="longest_streak"),
    )

    user_id: Mapped[str] = user_fk("CASCADE", index=False)
    current_streak: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    longest_streak: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_active_date: Mapped[date | None] = mapped_column(Date)


class LoginDay(IdMixin, TimestampMixin, Base):
    __tablename__ = "login_days"
    __table_args__ = (UniqueConstraint("user_id", "day"),)

    user_id: Mapped[str] = user_fk("CASCADE", index=False)
    day: Mapped[date] = mapped_column(Date, nullable=False)


class LearningGoal(IdMixin, TimestampMixin, Base):
    __tablename__ = "learning_goals"
    __table_args__ = (
        CheckConstraint("target_type IN ('lessons', 'minutes', 'flashcards')", name="target_type"),
        CheckConstraint("period IN ('daily', 'weekly', 'once')", name="period"),
        CheckConstraint("target_value > 0", name="target_value"),
        CheckConstraint("progress >= 0", name="progress"),
    )

    user_id: Mapped[str] = user_fk("CASCADE")
    title: Mapped[str] = mapped_column(Text, nullable=False)
    target_type: Mapped[str] = mapped_column(Text, nullable=False)
    target_value: Mapped[int] = mapped_column(Integer, nullable=False)
    period: Mapped[str] = mapped_column(Text, nullable=False, server_default="once")
    due_date: Mapped[date | None] = mapped_column(Date)
    progress: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Achievement(IdMixin, TimestampMixin, Base):
    __tablename__ = "achievements"

    name: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    requirement: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    icon: Mapped[str | None] = mapped_column(Text)


class UserAchievement(IdMixin, TimestampMixin, Base):
    __tablename__ = "user_achievements"
    __table_args__ = (
        UniqueConstraint("user_id", "achievement_id"),
        CheckConstraint("progress >= 0 AND progress <= 100", name="progress"),
    )

    user_id: Mapped[str] = user_fk("CASCADE", index=False)
    achievement_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("achievements.id", ondelete="CASCADE"), nullable=False, index=True
    )
    progress: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    earned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
