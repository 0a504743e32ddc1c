"""Response models of the forum routes (docs/API.md §4 Forum) and the payloads of its live events (§7)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from server.schemas import Out, Page


class ForumAuthor(Out):
    clerk_id: str
    name: str | None
    image_url: str | None


class Post(Out):
    id: uuid.UUID
    course_id: uuid.UUID
    lesson_id: uuid.UUID | None
    title: str
    content: str
    html: str
    author: ForumAuthor
    is_pinned: bool
    is_locked: bool
    like_count: int
    liked_by_me: bool
    reply_count: int
    created_at: datetime
    updated_at: datetime


class PostWithEvents(Post):
    """``GET /forum/posts/{id}``: with the newest event id of its ``thread:<id>`` channel."""

    last_event_id: int


class PostPage(Page[Post]):
    """With the newest event id of the ``course:<id>`` channel (subscribe with it as ``since``)."""

    last_event_id: int


class Reply(Out):
    id: uuid.UUID
    post_id: uuid.UUID
    parent_reply_id: uuid.UUID | None
    content: str  # "[deleted]" for a deleted reply kept for its children
    html: str
    author: ForumAuthor | None  # null once deleted
    like_count: int
    liked_by_me: bool
    reply_count: int
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ReplyNode(Reply):
    """A reply of a thread page, with its whole subtree."""

    replies: list[ReplyNode]


class ReplyPage(Page[ReplyNode]):
    last_event_id: int


class SnippetPart(Out):
    text: str
    match: bool  # one of the searched words (highlight it)


class SearchHit(Out):
    """A post or reply of a course's forum that matches a search (``GET /courses/{id}/forum/search``)."""

    kind: Literal["post", "reply"]
    id: uuid.UUID  # the post's id, or the reply's
    post_id: uuid.UUID
    reply_id: uuid.UUID | None
    post_title: str
    snippet: list[SnippetPart]
    author: ForumAuthor | None
    created_at: datetime
    rank: float


class SearchPage(Page[SearchHit]):
    """Best match first (``ts_rank``)."""


class LikeState(Out):
    like_count: int
    liked_by_me: bool


# --- live events (channel ``course:<id>`` for posts, ``thread:<post_id>`` for the rest) --------


class PostEvent(Post):
    """``post.created`` / ``post.updated`` (``course:<id>``) and ``thread.updated``
    (``thread:<post_id>``, so an open thread sees an edit, a lock or a pin at once): the post as
    REST returns it (``liked_by_me`` false)."""


class PostDeletedEvent(Post):
    """``post.deleted``: the post as it was, with the time it was deleted."""

    deleted_at: datetime


class ReplyEvent(Reply):
    """``reply.created`` / ``reply.updated`` / ``reply.deleted`` (``reply_count > 0``: it stays
    in the tree as ``[deleted]``; otherwise it is gone)."""


class LikedEvent(Out):
    """``post.liked`` / ``reply.liked``."""

    id: uuid.UUID
    like_count: int


class TypingEvent(Out):
    """``typing`` on ``thread:<post_id>``: relayed, never stored (no event id)."""

    user_id: str
    name: str | None
