"""Events for the live channels (§7), recorded in the same transaction as the write.

Domain code calls :func:`emit` inside its transaction; the row is the proof that the event
was recorded (a 2xx means it is in PostgreSQL). After commit the outbox is drained, in order,
to the broker, which assigns the per-channel event id.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Table, Text, bindparam, cast, insert
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from server.http import dumps
from server.outbox.models import OutboxEvent


def _pending(session: AsyncSession) -> list[int]:
    pending: list[int] = session.info.setdefault("outbox_pending", [])
    return pending


async def emit(session: AsyncSession, *, channel: str, event: str, data: dict[str, Any]) -> None:
    """Record ``event`` on ``channel`` in the caller's transaction.

    ``channel`` is the internal name: ``course:<uuid>``, ``thread:<post uuid>`` or
    ``user:<clerk_id>`` (the hub maps a client's ``user:me`` to it).
    """
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


def recorded(session: AsyncSession, event_id: int) -> None:
    """An event inserted by the caller's own statement (not :func:`emit`), e.g. in a CTE with the
    write it describes: counted as pending like the others."""
    _pending(session).append(event_id)


def has_pending(session: AsyncSession) -> bool:
    return bool(session.info.get("outbox_pending"))
