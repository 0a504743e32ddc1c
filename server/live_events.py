"""The live events of ``WS /ws`` (docs/API.md §7): each event name, the channel that carries it and
the pydantic model of its ``data``.

Events are recorded where they happen (``server.outbox.emit``, in the writing transaction) and
relayed by the hub; this registry only describes them. Each domain declares its events' models in
its own ``schemas.py`` (``EVENTS`` there, the forum's below); this module assembles them. It is
the contract the web client reads (the README lists it), and tests/realtime/test_live_event_schemas.py
drives every event through REST and /ws and validates each payload against its model
(``extra="forbid"``: a field the server sends must be declared).
"""

from __future__ import annotations

from typing import Literal

from server.catalog.schemas import EVENTS as CATALOG_EVENTS
from server.feedback.schemas import EVENTS as FEEDBACK_EVENTS
from server.forum.schemas import LikedEvent, PostDeletedEvent, PostEvent, ReplyEvent, TypingEvent
from server.gamification.schemas import EVENTS as GAMIFICATION_EVENTS
from server.notifications.schemas import EVENTS as NOTIFICATION_EVENTS
from server.schemas import Out

FORUM_EVENTS: dict[str, type[Out]] = {
    "post.created": PostEvent,
    "post.updated": PostEvent,
    "post.deleted": PostDeletedEvent,
    "thread.updated": PostEvent,
    "reply.created": ReplyEvent,
    "reply.updated": ReplyEvent,
    "reply.deleted": ReplyEvent,
    "post.liked": LikedEvent,
    "reply.liked": LikedEvent,
    "typing": TypingEvent,
}

LIVE_EVENTS: dict[str, type[Out]] = {
    **FORUM_EVENTS, **CATALOG_EVENTS, **FEEDBACK_EVENTS, **NOTIFICATION_EVENTS, **GAMIFICATION_EVENTS,
}

# The channel kind that carries each event (``course:<id>``, ``thread:<post_id>``, ``user:me``).
LIVE_EVENT_CHANNELS: dict[str, Literal["course", "thread", "user"]] = {
    "post.created": "course", "post.updated": "course", "post.deleted": "course",
    "outline.updated": "course", "feedback.created": "course", "feedback.updated": "course",
    "thread.updated": "thread", "reply.created": "thread", "reply.updated": "thread", "reply.deleted": "thread",
    "post.liked": "thread", "reply.liked": "thread", "typing": "thread",
    "notification.created": "user", "notification.read": "user",
    "achievement.earned": "user", "streak.updated": "user",
}
