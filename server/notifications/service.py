"""The single notification service: every domain creates notifications through :func:`notify`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.events import emit
from server.notifications.models import Notification

TYPES = {"reply", "like", "suggestion", "suggestion_decided", "collaborator_added", "feedback",
         "achievement", "goal_completed"}


def notification_payload(n: Notification) -> dict[str, Any]:
    return {"id": str(n.id), "type": n.type, "title": n.title, "body": n.body, "metadata": n.metadata_,
            "read_at": n.read_at, "created_at": n.created_at}


async def unread_count(session: AsyncSession, user_id: str) -> int:
    return int((await session.execute(
        select(func.count()).select_from(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
    )).scalar_one())


async def notify(
    session: AsyncSession,
    *,
    user_id: str,
    type: str,
    title: str,
    body: str | None = None,
    metadata: dict[str, Any] | None = None,
    actor_id: str | None = None,
) -> Notification | None:
    """Create a notification for ``user_id`` in the caller's transaction and push it live.

    Never notifies anyone of their own action (``actor_id == user_id`` returns None).
    """
    if type not in TYPES:
        raise ValueError(f"unknown notification type {type!r}")
    if actor_id is not None and actor_id == user_id:
        return None
    meta = dict(metadata or {})
    if actor_id is not None:
        meta.setdefault("actor_id", actor_id)
    notification = Notification(user_id=user_id, type=type, title=title, body=body, metadata_=meta)
    session.add(notification)
    await session.flush()
    await session.refresh(notification)
    data = notification_payload(notification) | {"unread_count": await unread_count(session, user_id)}
    await emit(session, channel=f"user:{user_id}", event="notification.created", data=data)
    return notification
