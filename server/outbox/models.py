"""The outbox tables: events recorded with the writes they describe, and each channel's newest id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base


class OutboxEvent(Base):
    __tablename__ = "event_outbox"
    __table_args__ = (
        Index("ix_event_outbox_pending", "id", postgresql_where=text("published_at IS NULL")),
        Index("ix_event_outbox_channel_seq", "channel", "seq"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    channel: Mapped[str] = mapped_column(Text, nullable=False)
    event: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The event's id on its channel, assigned by the drain (durably, before publishing).
    seq: Mapped[int | None] = mapped_column(BigInteger)


class EventChannel(Base):
    """The newest event id assigned on each channel (ids survive a broker that lost its data)."""

    __tablename__ = "event_channels"

    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
