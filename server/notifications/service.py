"""The single notification service: every domain creates notifications through :func:`notify`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Table, Text, bindparam, func, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.errors import NotFound
from server.http import jsonable
from server.notifications.models import Notification
from server.outbox.emit import emit

TYPES = {"reply", "like", "suggestion", "suggestion_decided", "collaborator_added", "feedback",
         "achievement", "goal_completed"}


def notification_payload(n: Notification) -> dict[str, Any]:
    return {"id": str(n.id), "type": n.type, "title": n.title, "body": n.body, "metadata": n.metadata_,
            "read_at": n.read_at, "created_at": n.created_at}


async def lock_user_notifications(session: AsyncSession, user_id: str) -> None:
    """Serialise changes to one user's notifications until the transaction ends.

    So each pushed ``unread_count`` is exact in commit order (the last event a client gets
    matches REST), and simultaneous likes fold into one unread row instead of making two.
    A transaction that notifies several users should do so in sorted ``user_id`` order (no
    lock-order deadlocks).
    """
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                          {"key": f"notifications:{user_id}"})


async def unread_count(session: AsyncSession, user_id: str) -> int:
    return int((await session.execute(
        select(func.count()).select_from(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
    )).scalar_one())


@cache
def _insert_statement() -> Any:
    table: Table = Notification.__table__  # type: ignore[assignment]
    user_id = bindparam("user_id", type_=Text)
    inserted = insert(table).values(
        user_id=user_id, type=bindparam("type", type_=Text), title=bindparam("title", type_=Text),
        body=bindparam("body", type_=Text), metadata=bindparam("metadata", type_=table.c.metadata.type),
        group_key=bindparam("group_key", type_=Text),
    ).returning(table.c.id, table.c.created_at).cte("inserted")
    unread = (select(func.count()).select_from(table)
              .where(table.c.user_id == user_id, table.c.read_at.is_(None)).scalar_subquery())
    return select(inserted.c.id, inserted.c.created_at, unread + 1)


async def notify(
    session: AsyncSession,
    *,
    user_id: str,
    type: str,
    title: str,
    body: str | None = None,
    metadata: dict[str, Any] | None = None,
    actor_id: str | None = None,
    group_key: str | None = None,
    grouped_title: Callable[[int], str] | None = None,
) -> Notification | None:
    """Create a notification for ``user_id`` in the caller's transaction and push it live.

    Never notifies anyone of their own action (``actor_id == user_id`` returns None).

    With ``group_key`` (e.g. ``like:post:<id>``) there is at most ONE unread notification per
    key: a later one folds into it (``metadata.count`` + 1, ``metadata.actor_ids``, newest
    metadata, ``grouped_title(count)`` as its title, moved to the top) and is pushed again as
    ``notification.created`` with the same ``id`` (clients upsert by id).
    """
    if type not in TYPES:
        raise ValueError(f"unknown notification type {type!r}")
    if actor_id is not None and actor_id == user_id:
        return None
    meta = dict(metadata or {})
    if actor_id is not None:
        meta.setdefault("actor_id", actor_id)
    await lock_user_notifications(session, user_id)
    notification = None
    if group_key is not None:
        notification = await _fold_into_group(session, user_id=user_id, group_key=group_key, meta=meta,
                                              actor_id=actor_id, title=title, body=body,
                                              grouped_title=grouped_title)
    if notification is None:
        if group_key is not None:
            meta["count"] = 1
            meta["actor_ids"] = [actor_id] if actor_id else []
        # One statement: the row, and the unread count it makes (the count's snapshot does not
        # see the row being inserted, which is unread: + 1), instead of INSERT, SELECT, SELECT.
        row = (await session.execute(_insert_statement(), {
            "user_id": user_id, "type": type, "title": title, "body": body, "metadata": meta,
            "group_key": group_key,
        })).one()
        notification = Notification(id=row[0], user_id=user_id, type=type, title=title, body=body,
                                    metadata_=meta, group_key=group_key, read_at=None, created_at=row[1])
        count = int(row[2])
    else:
        count = await unread_count(session, user_id)
    data = notification_payload(notification) | {"unread_count": count}
    await emit(session, channel=f"user:{user_id}", event="notification.created", data=jsonable(data))
    return notification


MAX_GROUP_ACTORS = 20


async def _fold_into_group(
    session: AsyncSession,
    *,
    user_id: str,
    group_key: str,
    meta: dict[str, Any],
    actor_id: str | None,
    title: str,
    body: str | None,
    grouped_title: Callable[[int], str] | None,
) -> Notification | None:
    current = (await session.execute(
        select(Notification).where(Notification.user_id == user_id, Notification.group_key == group_key,
                                   Notification.read_at.is_(None))
        .order_by(Notification.created_at.desc()).limit(1)
    )).scalar_one_or_none()
    if current is None:
        return None
    previous = list(current.metadata_.get("actor_ids", []))
    actors = [a for a in previous if a != actor_id]
    if actor_id:
        actors = [*actors, actor_id][-MAX_GROUP_ACTORS:]
    # The same person liking again (after an unlike) does not count twice.
    count = int(current.metadata_.get("count", 1)) + (0 if actor_id in previous else 1)
    merged = current.metadata_ | meta | {"count": count, "actor_ids": actors}
    # ``read_at IS NULL`` again: a read-all that committed meanwhile wins, and we start a new row.
    updated = (await session.execute(
        update(Notification)
        .where(Notification.id == current.id, Notification.read_at.is_(None))
        .values(metadata_=merged, title=grouped_title(count) if grouped_title else title, body=body,
                created_at=func.now())
        .returning(Notification)
        .execution_options(populate_existing=True, synchronize_session=False)
    )).scalar_one_or_none()
    return updated


# --- reading and marking read ----------------------------------------------------------------


async def list_notifications(
    session: AsyncSession, *, user_id: str, unread_only: bool, limit: int, after: tuple[Any, Any] | None
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """Newest first, keyset on (created_at, id); returns (items, next key)."""
    stmt = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    if after is not None:
        stmt = stmt.where(tuple_(Notification.created_at, Notification.id) < tuple_(*after))
    rows = (await session.execute(
        stmt.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit + 1)
    )).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [notification_payload(n) for n in rows], ([rows[-1].created_at, rows[-1].id] if more and rows else None)


async def mark_read(session: AsyncSession, *, user_id: str, notification_id: uuid.UUID) -> dict[str, Any]:
    """Mark one of the user's notifications read (idempotent); pushes ``notification.read``.

    The route's policy (``own_notification``) checked that it is theirs; 404 if deleted since."""
    await lock_user_notifications(session, user_id)
    notification = (await session.execute(
        select(Notification).where(Notification.id == notification_id).with_for_update()
    )).scalar_one_or_none()
    if notification is None:
        raise NotFound("No such notification.")
    changed = notification.read_at is None
    if changed:
        notification.read_at = datetime.now(UTC)
        await session.flush()
    count = await unread_count(session, user_id)
    if changed:
        await emit(session, channel=f"user:{user_id}", event="notification.read",
                   data={"ids": [str(notification.id)], "unread_count": count})
    return notification_payload(notification) | {"unread_count": count}


async def mark_all_read(session: AsyncSession, *, user_id: str) -> dict[str, Any]:
    """Mark read what exists now; a notification created after this point stays unread.

    The user's notification lock orders read-all against notify(): what committed before it is
    marked, what comes after stays unread (never a half-counted state).
    """
    await lock_user_notifications(session, user_id)
    marked = (await session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=func.now())
        .returning(Notification.id)
        .execution_options(synchronize_session=False)
    )).scalars().all()
    count = await unread_count(session, user_id)
    await emit(session, channel=f"user:{user_id}", event="notification.read",
               data={"ids": "all", "unread_count": count})
    return {"marked": len(marked), "unread_count": count}
