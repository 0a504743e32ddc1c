"""Response models of notifications, and the payloads of their live events on ``user:<id>``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from server.schemas import Out

NotificationType = Literal["reply", "like", "suggestion", "suggestion_decided", "collaborator_added", "feedback",
                           "achievement", "goal_completed"]


class NotificationOut(Out):
    id: uuid.UUID
    type: NotificationType
    title: str
    body: str | None
    metadata: dict[str, Any]
    read_at: datetime | None
    created_at: datetime


class NotificationReadOut(NotificationOut):
    """The notification marked read, with the caller's unread count after it."""

    unread_count: int


class NotificationCreatedEvent(NotificationReadOut):
    """``notification.created``: the new (or grouped) notification and the unread count it makes."""


class UnreadCountOut(Out):
    unread_count: int


class ReadAllOut(Out):
    marked: int
    unread_count: int


class NotificationReadEvent(Out):
    """``notification.read``: which notifications were read (``"all"`` after read-all) and the count left."""

    ids: list[uuid.UUID] | Literal["all"]
    unread_count: int


# Live events on ``user:<id>`` and the model of their ``data``.
EVENTS: dict[str, type[Out]] = {"notification.created": NotificationCreatedEvent,
                                "notification.read": NotificationReadEvent}
