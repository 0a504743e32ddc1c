from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin, user_fk

# ON DELETE: a user's notifications are theirs alone -> CASCADE.


class Notification(IdMixin, TimestampMixin, Base):
    __tablename__ = "notifications"
    __table_args__ = (
        # Listing newest first, and the unread subset (partial index keeps it small).
        Index("ix_notifications_user_id_created", "user_id", "created_at", "id"),
        Index(
            "ix_notifications_user_id_unread",
            "user_id",
            "created_at",
            postgresql_where=text("read_at IS NULL"),
        ),
    )

    user_id: Mapped[str] = user_fk("CASCADE", index=False)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    body: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default="{}"
    )
    # Groups likes on one target into one unread notification (e.g. "like:post:<id>").
    group_key: Mapped[str | None] = mapped_column(Text)
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
