"""The live events of ``WS /ws`` (API.md §7): each event name, the channel that carries it and
the pydantic model of its ``data``.

Events are recorded where they happen (``server.events.emit``, in the writing transaction) and
relayed by the hub; this registry only describes them. It is the contract the web client reads
(the README lists it) and tests/test_live_event_schemas.py drives every event through REST and
/ws and validates each payload against its model (``extra="forbid"``: a field the server sends
must be declared here).

The forum's payloads are in :mod:`server.forum.schemas`. The few events of other domains
(feedback, notifications, gamification) are modelled below until those domains have a
``schemas.py`` of their own; they may move there without changing the registry.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from server.forum.schemas import (
    ForumAuthor,
    LikedEvent,
    PostDeletedEvent,
    PostEvent,
    ReplyEvent,
    TypingEvent,
)
from server.schemas import Out

# --- events of other domains -----------------------------------------------------------------


class FeedbackEvent(Out):
    """``feedback.created`` / ``feedback.updated`` on ``course:<id>``: the review as REST lists it."""

    id: uuid.UUID
    course_id: uuid.UUID
    rating: int
    comment: str | None
    author: ForumAuthor
    upvotes: int
    upvoted_by_me: bool  # the reviewer's own upvote (reviews are not self-upvoted: false)
    created_at: datetime
    updated_at: datetime


NotificationType = Literal["reply", "like", "suggestion", "suggestion_decided", "collaborator_added", "feedback",
                           "achievement", "goal_completed"]


class NotificationCreatedEvent(Out):
    """``notification.created`` on ``user:me``: the notification (a grouped one, e.g. likes,
    comes again with the same ``id``) and the user's unread count after it."""

    id: uuid.UUID
    type: NotificationType
    title: str
    body: str | None
    metadata: dict[str, Any]  # per type: course_id, post_id, actor_id, actor_name, link, count, ...
    read_at: datetime | None
    created_at: datetime
    unread_count: int


class NotificationReadEvent(Out):
    """``notification.read`` on ``user:me``: which were marked read (``"all"`` for read-all)."""

    ids: list[uuid.UUID] | Literal["all"]
    unread_count: int


class AchievementEarnedEvent(Out):
    """``achievement.earned`` on ``user:me``."""

    id: uuid.UUID
    achievement_id: uuid.UUID
    name: str
    description: str | None
    earned_at: datetime
    progress: int  # always 100


class StreakUpdatedEvent(Out):
    """``streak.updated`` on ``user:me``: the streak after the day's first activity."""

    current_streak: int
    longest_streak: int
    last_active_date: date | None


# --- the registry ----------------------------------------------------------------------------

LIVE_EVENTS: dict[str, type] = {
    "post.created": PostEvent,
    "post.updated": PostEvent,
    "post.deleted": PostDeletedEvent,
    "feedback.created": FeedbackEvent,
    "feedback.updated": FeedbackEvent,
    "reply.created": ReplyEvent,
    "reply.updated": ReplyEvent,
    "reply.deleted": ReplyEvent,
    "post.liked": LikedEvent,
    "reply.liked": LikedEvent,
    "typing": TypingEvent,
    "notification.created": NotificationCreatedEvent,
    "notification.read": NotificationReadEvent,
    "achievement.earned": AchievementEarnedEvent,
    "streak.updated": StreakUpdatedEvent,
}

# The channel kind that carries each event (``course:<id>``, ``thread:<post_id>``, ``user:me``).
LIVE_EVENT_CHANNELS: dict[str, Literal["course", "thread", "user"]] = {
    "post.created": "course", "post.updated": "course", "post.deleted": "course",
    "feedback.created": "course", "feedback.updated": "course",
    "reply.created": "thread", "reply.updated": "thread", "reply.deleted": "thread",
    "post.liked": "thread", "reply.liked": "thread", "typing": "thread",
    "notification.created": "user", "notification.read": "user",
    "achievement.earned": "user", "streak.updated": "user",
}
