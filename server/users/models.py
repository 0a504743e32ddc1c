from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Text
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


class WebhookDelivery(IdMixin, TimestampMixin, Base):
    """Svix message ids already processed (replay protection)."""

    __tablename__ = "webhook_deliveries"

    svix_id: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
