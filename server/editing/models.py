"""Suggested edits and the storage of live lesson documents (update log, snapshots, versions)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin, user_fk

# ON DELETE: everything here belongs to a lesson -> CASCADE with it. A suggester is anonymised,
# never deleted (RESTRICT); the decider may go (SET NULL keeps the decision).


class SuggestedEdit(IdMixin, TimestampMixin, Base):
    __tablename__ = "suggested_edits"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'accepted', 'rejected', 'withdrawn')", name="status"),
        Index("ix_suggested_edits_lesson_id_status", "lesson_id", "status", "created_at"),
    )

    lesson_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("lessons.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = user_fk("RESTRICT")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="open")
    decided_by: Mapped[str | None] = user_fk("SET NULL", nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LessonUpdate(Base):
    """Append-only log of binary Yjs updates of a lesson's live document."""

    __tablename__ = "lesson_updates"
    __table_args__ = (Index("ix_lesson_updates_lesson_id_id", "lesson_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    lesson_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("lessons.id", ondelete="CASCADE"), nullable=False
    )
    update: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    # Clerk id of the writer, for version contributors; null for server-made changes.
    user_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class LessonSnapshot(Base):
    """The merged state of a lesson's document up to ``last_update_id`` of its log."""

    __tablename__ = "lesson_snapshots"

    lesson_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("lessons.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    state_vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    last_update_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class LessonVersion(IdMixin, Base):
    """A point in a lesson's history: its text and the whole document state at that time."""

    __tablename__ = "lesson_versions"
    __table_args__ = (Index("ix_lesson_versions_lesson_id_created", "lesson_id", "created_at"),)

    lesson_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("lessons.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(Text, nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[bytes | None] = mapped_column(LargeBinary)
    contributors: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    reason: Mapped[str] = mapped_column(Text, nullable=False, server_default="periodic")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class CollabLease(Base):
    """Which node does a live lesson's shared-row duties (materialise, compact, versions).

    ``token`` grows by one at every change of holder (and when a lapsed lease is taken again);
    each fenced write checks, in its own transaction, that its token is still the valid one, so a
    node paused past its lease writes nothing (see collab.persistence.PgLeases)."""

    __tablename__ = "collab_leases"

    lesson_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("lessons.id", ondelete="CASCADE"), primary_key=True
    )
    holder: Mapped[str] = mapped_column(Text, nullable=False)
    token: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
