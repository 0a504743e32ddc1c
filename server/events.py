"""Events for the live channels (§7), recorded in the same transaction as the write.

Domain code calls :func:`emit` inside its transaction; the row is the proof that the event
was recorded (a 2xx means it is in PostgreSQL). After commit the outbox is drained, in order,
to the broker, which assigns the per-channel event id.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, Table, Text, bindparam, cast, func, insert, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
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


def _pending(session: AsyncSession) -> list[int]:
    pending: list[int] = session.info.setdefault("outbox_pending", [])
    return pending


async def emit(session: AsyncSession, *, channel: str, event: str, data: dict[str, Any]) -> None:
    """Record ``event`` on ``channel`` in the caller's transaction.

    ``channel`` is the internal name: ``course:<uuid>``, ``thread:<post uuid>`` or
    ``user:<clerk_id>`` (the hub maps a client's ``user:me`` to it).
    """
    from server.http import dumps

    # Through the API's JSON encoder, so UUIDs and timestamps are stored as clients will see them;
    # encoded once and cast in SQL, by a statement built once.
    result = await session.execute(_insert_statement(), {
        "channel": channel, "event": event, "data": dumps(data).decode(),
    })
    _pending(session).append(int(result.scalar_one()))


@cache
def _insert_statement() -> Any:
    table: Table = OutboxEvent.__table__  # type: ignore[assignment]
    return insert(table).values(
        channel=bindparam("channel", type_=Text), event=bindparam("event", type_=Text),
        data=cast(bindparam("data", type_=Text), JSONB),
    ).returning(table.c.id)


def has_pending(session: AsyncSession) -> bool:
    return bool(session.info.get("outbox_pending"))
