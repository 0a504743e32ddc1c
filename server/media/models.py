"""Media attached to lessons: uploaded files (under MEDIA_DIR) and external URLs."""

from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Integer, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, IdMixin, TimestampMixin

# ON DELETE: media are children of their lesson -> CASCADE; the uploader -> SET NULL (the file
# stays with the lesson when its uploader's account goes).


class Media(IdMixin, TimestampMixin, Base):
    __tablename__ = "media"
    __table_args__ = (CheckConstraint("size_bytes IS NULL OR size_bytes >= 0", name="size_bytes"),)

    lesson_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("lessons.id", ondelete="CASCADE"), nullable=False, index=True
    )
    media_type: Mapped[str] = mapped_column(Text, nullable=False)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    mime_type: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    # Path relative to MEDIA_DIR for uploaded files; null for external URLs.
    storage_path: Mapped[str | None] = mapped_column(Text)
    # Who added it: uploads count against that user's MEDIA_QUOTA_BYTES (null before 0007).
    user_id: Mapped[str | None] = mapped_column(
        Text, ForeignKey("users.clerk_id", ondelete="SET NULL"), index=True
    )
