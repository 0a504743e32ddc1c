"""Writing in course forums: posts, replies nested to any depth, likes; events and notifications.

Every write runs in the caller's transaction and records its live event there (outbox), so a
2xx means the event is recorded. Who may write is the route's policy (server/access.py:
``member_of_post``, ``post_author_or_staff``, ...), checked before the handler runs; these
functions trust their caller and keep only the rules that depend on the row's state (a locked
thread, liking one's own post). The reads are in :mod:`server.forum.queries`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.access import CourseAccess, ForumAccess, require
from server.auth import Principal
from server.errors import Conflict, NotFound, validation
from server.forum.models import ForumPost, ForumPostLike, ForumReply, ForumReplyLike
from server.forum.queries import (
    DELETED,
    author_of,
    check_lesson,
    course_channel,
    deleted_html,
    post_payload,
    reply_payload,
    thread_channel,
)
from server.gamification.service import record_action
from server.http import jsonable
from server.notifications.service import notify
from server.outbox.emit import emit


@dataclass(frozen=True)
class PostContext:
    """A live post, loaded in the caller's session, and the caller's access to its course."""

    post: ForumPost
    access: CourseAccess


async def post_context(session: AsyncSession, grant: ForumAccess) -> PostContext:
    """The post the route's policy granted (``grant``), in the caller's session (the policy read
    it on its own connection; a write needs the row here)."""
    post = await session.get(ForumPost, grant.post_id, populate_existing=True)
    if post is None or post.deleted_at is not None:  # deleted since the policy looked
        raise NotFound("No such post.")
    return PostContext(post, grant.access)


# --- writing posts ---------------------------------------------------------------------------


async def create_post(
    session: AsyncSession,
    *,
    access: CourseAccess,
    author: Principal,
    title: str,
    content: str,
    html: str,
    lesson_id: uuid.UUID | None,
) -> dict[str, Any]:
    """``html``: ``content`` rendered by the caller before its transaction (server.markdown.render)."""
    if lesson_id is not None:
        await check_lesson(session, access.course_id, lesson_id, "lesson_id")
    post = ForumPost(course_id=access.course_id, lesson_id=lesson_id, user_id=author.clerk_id,
                     title=title, content=content, html=html)
    session.add(post)
    await session.flush()
    payload = await post_payload(session, post.id, author)
    await emit(session, channel=course_channel(access.course_id), event="post.created", data=_event(payload))
    await record_action(session, user_id=author.clerk_id, keys={"forum_posts"})
    return payload


async def update_post(
    session: AsyncSession, *, ctx: PostContext, user: Principal, changes: dict[str, Any]
) -> dict[str, Any]:
    """``changes`` with ``content`` carry its rendered ``html`` too (rendered before the transaction)."""
    post = ctx.post
    for name, value in changes.items():
        setattr(post, name, value)
    if changes:
        post.updated_at = datetime.now(UTC)
    await session.flush()
    payload = await post_payload(session, post.id, user)
    if changes:
        await emit(session, channel=course_channel(post.course_id), event="post.updated", data=_event(payload))
        await emit(session, channel=thread_channel(post.id), event="thread.updated", data=_event(payload))
    return payload


async def delete_post(session: AsyncSession, *, ctx: PostContext, user: Principal) -> None:
    post = ctx.post
    payload = await post_payload(session, post.id, user)
    post.deleted_at = datetime.now(UTC)
    await session.flush()
    payload["deleted_at"] = post.deleted_at
    await emit(session, channel=course_channel(post.course_id), event="post.deleted", data=_event(payload))


def _event(payload: dict[str, Any]) -> dict[str, Any]:
    """Event data is the REST object as anyone sees it: ``liked_by_me`` is the viewer's own (False)."""
    data: dict[str, Any] = jsonable(payload | {"liked_by_me": False})
    return data


# --- writing replies -------------------------------------------------------------------------


@cache
def _insert_reply_statement() -> Any:
    table: Table = ForumReply.__table__  # type: ignore[assignment]
    return insert(table).values(
        post_id=bindparam("post_id"), user_id=bindparam("user_id"),
        parent_reply_id=bindparam("parent_reply_id"), content=bindparam("content"), html=bindparam("html"),
    ).returning(table.c.id, table.c.created_at, table.c.updated_at)


async def create_reply(
    session: AsyncSession,
    *,
    ctx: PostContext,
    author: Principal,
    content: str,
    html: str,
    parent_reply_id: uuid.UUID | None,
) -> dict[str, Any]:
    post = ctx.post
    if post.is_locked and not ctx.access.is_staff:
        raise Conflict("This thread is locked: no new replies.")
    parent: ForumReply | None = None
    if parent_reply_id is not None:
        parent = await session.get(ForumReply, parent_reply_id)
        if parent is None or parent.post_id != post.id:
            raise validation("parent_reply_id", "is not a reply of this post")
    # One INSERT … RETURNING, and the payload from what we know: a new reply has no likes and no
    # children, and its author is the caller (re-selecting it cost more than the rest of the write).
    row = (await session.execute(_insert_reply_statement(), {
        "post_id": post.id, "user_id": author.clerk_id, "parent_reply_id": parent_reply_id, "content": content,
        "html": html,
    })).one()
    payload = {
        "id": row.id, "post_id": post.id, "parent_reply_id": parent_reply_id, "content": content,
        "html": html, "author": author_of(author.clerk_id, author.name, author.image_url),
        "like_count": 0, "liked_by_me": False, "reply_count": 0, "deleted_at": None,
        "created_at": row.created_at, "updated_at": row.updated_at,
    }
    await emit(session, channel=thread_channel(post.id), event="reply.created", data=_event(payload))
    await record_action(session, user_id=author.clerk_id, keys={"forum_posts"})

    # Notify the author of what was replied to (never yourself; a [deleted] parent has no author).
    target_user = post.user_id if parent is None else (None if parent.deleted_at else parent.user_id)
    if target_user is not None:
        what = "post" if parent is None else "reply"
        await notify(
            session, user_id=target_user, type="reply", actor_id=author.clerk_id,
            title=f"{author.name or 'Someone'} replied to your {what}",
            body=_excerpt(content),
            metadata={"course_id": str(post.course_id), "post_id": str(post.id), "reply_id": str(row.id),
                      "parent_reply_id": str(parent_reply_id) if parent_reply_id else None,
                      "actor_name": author.name, "link": _link(post, row.id)},
        )
    return payload


@dataclass(frozen=True)
class ReplyContext:
    reply: ForumReply
    thread: PostContext


async def reply_context(session: AsyncSession, reply_id: uuid.UUID, grant: ForumAccess) -> ReplyContext:
    """The reply the route's policy granted (``grant``), and its post, in the caller's session."""
    reply = await session.get(ForumReply, reply_id, populate_existing=True)
    if reply is None or reply.deleted_at is not None:  # deleted since the policy looked
        raise NotFound("No such reply.")
    try:
        thread = await post_context(session, grant)
    except NotFound:
        raise NotFound("No such reply.") from None
    return ReplyContext(reply, thread)


async def update_reply(session: AsyncSession, *, ctx: ReplyContext, user: Principal, content: str,
                       html: str) -> dict[str, Any]:
    reply = ctx.reply
    reply.content = content
    reply.html = html
    reply.updated_at = datetime.now(UTC)
    await session.flush()
    payload = await reply_payload(session, reply.id, user)
    await emit(session, channel=thread_channel(reply.post_id), event="reply.updated", data=_event(payload))
    return payload


async def delete_reply(session: AsyncSession, *, ctx: ReplyContext, user: Principal) -> None:
    """A leaf goes; a reply with children stays as ``[deleted]`` so the tree holds.

    The ``reply.deleted`` event carries the reply as REST now shows it: ``reply_count > 0``
    means it stays in the tree as ``[deleted]``, otherwise it is gone.
    """
    reply = ctx.reply
    payload = await reply_payload(session, reply.id, user)
    now = datetime.now(UTC)
    if payload["reply_count"] > 0:
        reply.content = DELETED
        reply.html = deleted_html()
        reply.deleted_at = now
        reply.updated_at = now
        await session.flush()
        payload = await reply_payload(session, reply.id, user)
    else:
        await session.execute(delete(ForumReply).where(ForumReply.id == reply.id))
        payload |= {"content": DELETED, "html": deleted_html(), "author": None,
                    "deleted_at": now, "like_count": 0}
    await emit(session, channel=thread_channel(reply.post_id), event="reply.deleted", data=_event(payload))


# --- likes -------------------------------------------------------------------------------------


async def set_post_like(session: AsyncSession, *, ctx: PostContext, user: Principal, liked: bool) -> dict[str, Any]:
    post = ctx.post
    return await _set_like(session, user=user, liked=liked, kind="post", column=ForumPostLike.post_id,
                           target_id=post.id, author_id=post.user_id, post=post, excerpt=post.title)


async def set_reply_like(session: AsyncSession, *, ctx: ReplyContext, user: Principal, liked: bool) -> dict[str, Any]:
    reply = ctx.reply
    return await _set_like(session, user=user, liked=liked, kind="reply", column=ForumReplyLike.reply_id,
                           target_id=reply.id, author_id=reply.user_id, post=ctx.thread.post,
                           excerpt=_excerpt(reply.content))


async def _set_like(session: AsyncSession, *, user: Principal, liked: bool, kind: str, column: Any,
                    target_id: uuid.UUID, author_id: str, post: ForumPost, excerpt: str) -> dict[str, Any]:
    """Set or unset one like (idempotent); push ``<kind>.liked`` and notify the author on a new like."""
    if author_id == user.clerk_id:
        require(False, f"You cannot like your own {kind}.")
    model = ForumPostLike if kind == "post" else ForumReplyLike
    changed = await _toggle(session, model, column, target_id, user.clerk_id, liked)
    count = await _count(session, column, target_id)
    if changed:
        await emit(session, channel=thread_channel(post.id), event=f"{kind}.liked",
                   data={"id": str(target_id), "like_count": count})
        if liked:
            await _like_received(session, user=user, author_id=author_id, kind=kind, target_id=target_id,
                                 post=post, count=count, excerpt=excerpt)
    return {"like_count": count, "liked_by_me": liked}


async def _toggle(session: AsyncSession, model: Any, column: Any, target_id: uuid.UUID, user_id: str,
                  liked: bool) -> bool:
    """Set or unset one like; True when something changed (idempotent either way).

    Likes of one target are serialised (a transaction lock), so the count each write reports
    and pushes in its ``*.liked`` event follows commit order: the last event has the true count.
    """
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                          {"key": f"like:{model.__tablename__}:{target_id}"})
    if liked:
        result = await session.execute(
            insert(model).values({column.key: target_id, "user_id": user_id})
            .on_conflict_do_nothing().returning(model.id)
        )
        return result.first() is not None
    removed = await session.execute(
        delete(model).where(column == target_id, model.user_id == user_id).returning(model.id)
    )
    return removed.first() is not None


async def _count(session: AsyncSession, column: Any, target_id: uuid.UUID) -> int:
    return int((await session.execute(select(func.count()).where(column == target_id))).scalar_one())


async def _like_received(session: AsyncSession, *, user: Principal, author_id: str, kind: str,
                         target_id: uuid.UUID, post: ForumPost, count: int, excerpt: str) -> None:
    await record_action(session, user_id=author_id, keys={"likes_received"})
    name = user.name or "Someone"

    def title(likes: int) -> str:
        others = likes - 1
        if others <= 0:
            return f"{name} liked your {kind}"
        return f"{name} and {others} other{'s' if others > 1 else ''} liked your {kind}"

    await notify(
        session, user_id=author_id, type="like", actor_id=user.clerk_id, title=title(1), body=excerpt,
        group_key=f"like:{kind}:{target_id}", grouped_title=title,
        metadata={"course_id": str(post.course_id), "post_id": str(post.id), "target": kind,
                  "target_id": str(target_id), "like_count": count, "actor_name": user.name,
                  "link": _link(post, target_id if kind == "reply" else None)},
    )


def _excerpt(text: str, size: int = 140) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= size else flat[: size - 1] + "…"


def _link(post: ForumPost, reply_id: uuid.UUID | None) -> str:
    base = f"/courses/{post.course_id}/forum/{post.id}"
    return f"{base}#reply-{reply_id}" if reply_id else base
