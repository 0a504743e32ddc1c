from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('member', 'admin')", name="role"),)

    clerk_id: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    email: Mapped[str | None] = mapped_column(Text, unique=True)
    name: Mapped[str | None] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text, nullable=False, server_default="member")
    timezone: Mapped[str] = mapped_column(Text, nullable=False, server_default="UTC")
    # Last Clerk ``updated_at`` (ms) applied from a webhook; older deliveries are ignored.
    clerk_updated_at: Mapped[int | None] = mapped_column(BigInteger)
    # Set by ``user.deleted``: the row stays (anonymised) for foreign keys, and nothing refills
    # it — neither a later ``user.updated`` nor a still-valid token's claims (which get 401).
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(IdMixin, TimestampMixin, Base):
    """Svix message ids already processed (replay protection)."""

    __tablename__ = "webhook_deliveries"

    svix_id: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
