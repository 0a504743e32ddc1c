"""Course forums: posts, replies nested to any depth, likes; events and notifications on writes.

Every write runs in the caller's transaction and records its live event there (outbox), so a
2xx means the event is recorded. Reads run a fixed number of statements whatever the page size:
like counts, ``liked_by_me`` and reply counts are correlated subqueries, and a page of top-level
replies brings its whole subtrees with one recursive CTE.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    bindparam,
    delete,
    exists,
    false,
    func,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.access import CourseAccess, course_access, lesson_course_id, require
from server.auth import Principal
from server.errors import Conflict, NotFound, validation
from server.forum.models import ForumPost, ForumPostLike, ForumReply, ForumReplyLike
from server.gamification.service import record_action
from server.http import jsonable, parse_datetime, parse_uuid
from server.markdown import render_markdown, stored_html
from server.notifications.service import notify
from server.outbox.emit import emit
from server.users.models import User

DELETED = "[deleted]"
THREAD_PARTITION = 100  # replies loaded per step of a thread page (each step ~2 ms of the loop)


@dataclass(frozen=True)
class PostContext:
    """A live post and the caller's access to its course."""

    post: ForumPost
    access: CourseAccess


@cache
def _deleted_html() -> str:
    return render_markdown(DELETED)


def course_channel(course_id: uuid.UUID) -> str:
    return f"course:{course_id}"


def thread_channel(post_id: uuid.UUID) -> str:
    return f"thread:{post_id}"


def _author(clerk_id: str | None, name: str | None, image_url: str | None) -> dict[str, Any] | None:
    if clerk_id is None:
        return None
    return {"clerk_id": clerk_id, "name": name, "image_url": image_url}


def _viewer_id(viewer: Principal | None) -> str | None:
    return viewer.clerk_id if viewer is not None else None


# --- reading posts ---------------------------------------------------------------------------


def _post_select(viewer: Principal | None) -> Select[Any]:
    like_count = (select(func.count()).where(ForumPostLike.post_id == ForumPost.id)
                  .correlate(ForumPost).scalar_subquery())
    reply_count = (select(func.count())
                   .where(ForumReply.post_id == ForumPost.id, ForumReply.deleted_at.is_(None))
                   .correlate(ForumPost).scalar_subquery())
    viewer_id = _viewer_id(viewer)
    liked: ColumnElement[bool] = (
        exists().where(ForumPostLike.post_id == ForumPost.id, ForumPostLike.user_id == viewer_id)
        .correlate(ForumPost) if viewer_id is not None else false()
    )
    return (
        select(ForumPost, User.name, User.image_url, like_count.label("like_count"),
               liked.label("liked_by_me"), reply_count.label("reply_count"))
        .join(User, User.clerk_id == ForumPost.user_id)
        .where(ForumPost.deleted_at.is_(None))
        .execution_options(populate_existing=True)
    )


def _post_payload(row: Any) -> dict[str, Any]:
    post: ForumPost = row[0]
    return {
        "id": post.id, "course_id": post.course_id, "lesson_id": post.lesson_id,
        "title": post.title, "content": post.content, "html": stored_html(post.html, post.content),
        "author": _author(post.user_id, row.name, row.image_url),
        "is_pinned": post.is_pinned, "is_locked": post.is_locked,
        "like_count": int(row.like_count), "liked_by_me": bool(row.liked_by_me),
        "reply_count": int(row.reply_count),
        "created_at": post.created_at, "updated_at": post.updated_at,
    }


async def post_payload(session: AsyncSession, post_id: uuid.UUID, viewer: Principal | None) -> dict[str, Any]:
    row = (await session.execute(_post_select(viewer).where(ForumPost.id == post_id))).one_or_none()
    if row is None:
        raise NotFound("No such post.")
    return _post_payload(row)


async def post_context(session: AsyncSession, post_id: uuid.UUID, user: Principal | None) -> PostContext:
    """A post that is not deleted, in a course the caller can read (else 404)."""
    post = await session.get(ForumPost, post_id, populate_existing=True)
    if post is None or post.deleted_at is not None:
        raise NotFound("No such post.")
    try:
        access = await course_access(session, post.course_id, user)
    except NotFound:
        raise NotFound("No such post.") from None
    return PostContext(post, access)


async def _check_lesson(session: AsyncSession, course_id: uuid.UUID, lesson_id: uuid.UUID, loc: str) -> None:
    try:
        owner = await lesson_course_id(session, lesson_id)
    except NotFound:
        owner = None
    if owner != course_id:
        raise validation(loc, "is not a lesson of this course")


def _cursor_values(cursor: list[Any] | None, size: int) -> list[Any] | None:
    if cursor is None:
        return None
    if len(cursor) != size:
        raise validation("query.cursor", "malformed cursor")
    return cursor


async def list_posts(
    session: AsyncSession,
    *,
    course_id: uuid.UUID,
    viewer: Principal | None,
    lesson_id: uuid.UUID | None,
    limit: int,
    cursor: list[Any] | None,
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """A page of a course's posts, pinned first, then newest first; returns (items, next key)."""
    if lesson_id is not None:
        await _check_lesson(session, course_id, lesson_id, "query.lesson_id")
    stmt = _post_select(viewer).where(ForumPost.course_id == course_id)
    if lesson_id is not None:
        stmt = stmt.where(ForumPost.lesson_id == lesson_id)
    after = _cursor_values(cursor, 3)
    if after is not None:
        try:
            key = (bool(after[0]), parse_datetime(after[1]), uuid.UUID(str(after[2])))
        except (ValueError, TypeError):
            raise validation("query.cursor", "malformed cursor") from None
        stmt = stmt.where(tuple_(ForumPost.is_pinned, ForumPost.created_at, ForumPost.id) < tuple_(*key))
    stmt = stmt.order_by(ForumPost.is_pinned.desc(), ForumPost.created_at.desc(), ForumPost.id.desc())
    rows = (await session.execute(stmt.limit(limit + 1))).all()
    items = [_post_payload(row) for row in rows]
    more = len(items) > limit
    items = items[:limit]
    next_key = [items[-1]["is_pinned"], items[-1]["created_at"], items[-1]["id"]] if more and items else None
    return items, next_key


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
        await _check_lesson(session, access.course_id, lesson_id, "lesson_id")
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
    post, access = ctx.post, ctx.access
    moderation = {"is_pinned", "is_locked"} & changes.keys()
    if moderation:
        require(access.is_staff, "Only course staff can pin or lock posts.")
    if {"title", "content"} & changes.keys():
        require(post.user_id == user.clerk_id or access.is_staff, "Only the author or course staff can edit this post.")
    for name, value in changes.items():
        setattr(post, name, value)
    if changes:
        post.updated_at = datetime.now(UTC)
    await session.flush()
    payload = await post_payload(session, post.id, user)
    if changes:
        await emit(session, channel=course_channel(post.course_id), event="post.updated", data=_event(payload))
    return payload


async def delete_post(session: AsyncSession, *, ctx: PostContext, user: Principal) -> None:
    post = ctx.post
    require(post.user_id == user.clerk_id or ctx.access.is_staff, "Only the author or course staff can delete this post.")
    payload = await post_payload(session, post.id, user)
    post.deleted_at = datetime.now(UTC)
    await session.flush()
    payload["deleted_at"] = post.deleted_at
    await emit(session, channel=course_channel(post.course_id), event="post.deleted", data=_event(payload))


def _event(payload: dict[str, Any]) -> dict[str, Any]:
    """Event data is the REST object as anyone sees it: ``liked_by_me`` is the viewer's own (False)."""
    data: dict[str, Any] = jsonable(payload | {"liked_by_me": False})
    return data


# --- reading replies -------------------------------------------------------------------------


def _reply_select(viewer: Principal | None) -> Select[Any]:
    child = aliased(ForumReply)
    like_count = (select(func.count()).where(ForumReplyLike.reply_id == ForumReply.id)
                  .correlate(ForumReply).scalar_subquery())
    reply_count = (select(func.count()).select_from(child).where(child.parent_reply_id == ForumReply.id)
                   .correlate(ForumReply).scalar_subquery())
    viewer_id = _viewer_id(viewer)
    liked: ColumnElement[bool] = (
        exists().where(ForumReplyLike.reply_id == ForumReply.id, ForumReplyLike.user_id == viewer_id)
        .correlate(ForumReply) if viewer_id is not None else false()
    )
    return (
        select(ForumReply, User.name, User.image_url, like_count.label("like_count"),
               liked.label("liked_by_me"), reply_count.label("reply_count"))
        .join(User, User.clerk_id == ForumReply.user_id)
        .execution_options(populate_existing=True)
    )


def _reply_payload(row: Any) -> dict[str, Any]:
    reply: ForumReply = row[0]
    deleted = reply.deleted_at is not None
    return {
        "id": reply.id, "post_id": reply.post_id, "parent_reply_id": reply.parent_reply_id,
        "content": DELETED if deleted else reply.content,
        "html": _deleted_html() if deleted else stored_html(reply.html, reply.content),
        "author": None if deleted else _author(reply.user_id, row.name, row.image_url),
        "like_count": int(row.like_count), "liked_by_me": bool(row.liked_by_me),
        "reply_count": int(row.reply_count), "deleted_at": reply.deleted_at,
        "created_at": reply.created_at, "updated_at": reply.updated_at,
    }


async def reply_payload(session: AsyncSession, reply_id: uuid.UUID, viewer: Principal | None) -> dict[str, Any]:
    row = (await session.execute(_reply_select(viewer).where(ForumReply.id == reply_id))).one_or_none()
    if row is None:
        raise NotFound("No such reply.")
    return _reply_payload(row)


async def thread_page(
    session: AsyncSession,
    *,
    post_id: uuid.UUID,
    viewer: Principal | None,
    limit: int,
    cursor: list[Any] | None,
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """A page of top-level replies (oldest first), each with its whole subtree under ``replies``.

    One statement whatever the size of the page or the depth of the trees: the page's roots
    (``limit + 1`` of them, to know whether there is more), a recursive CTE down from the first
    ``limit``, and the counts as correlated subqueries.
    """
    roots = select(ForumReply.id, ForumReply.created_at).where(
        ForumReply.post_id == post_id, ForumReply.parent_reply_id.is_(None)
    )
    after = _cursor_values(cursor, 2)
    if after is not None:
        try:
            key = (parse_datetime(after[0]), uuid.UUID(str(after[1])))
        except (ValueError, TypeError):
            raise validation("query.cursor", "malformed cursor") from None
        roots = roots.where(tuple_(ForumReply.created_at, ForumReply.id) > tuple_(*key))
    candidates = roots.order_by(ForumReply.created_at, ForumReply.id).limit(limit + 1).cte("page_candidates")
    page_roots = (select(candidates.c.id)
                  .order_by(candidates.c.created_at, candidates.c.id).limit(limit).cte("page_roots"))
    tree = select(page_roots.c.id).cte("reply_tree", recursive=True)
    child = aliased(ForumReply)
    # The children of each reply by index (ix_forum_replies_parent_reply_id), one lookup per
    # reply: OFFSET 0 keeps the LATERAL subquery from being flattened into a join, which the
    # planner may run as a hash join scanning every reply once per level (a 10,000-deep chain
    # then took 16-20 s of the database).
    children = (select(child.id).where(child.parent_reply_id == tree.c.id).offset(0).lateral("children"))
    tree = tree.union_all(select(children.c.id).select_from(tree).join(children, true()))
    candidate_count = select(func.count()).select_from(candidates).scalar_subquery()
    # Streamed in partitions: a page's trees have no size bound (a 10,000-reply chain is one
    # tree), and loading them in one go held the event loop for hundreds of milliseconds.
    result = await session.stream(
        _reply_select(viewer).add_columns(candidate_count.label("candidates"))
        .where(ForumReply.id.in_(select(tree.c.id)))
        .order_by(ForumReply.created_at, ForumReply.id)
    )
    nodes: dict[uuid.UUID, dict[str, Any]] = {}
    candidate_total = 0
    async for partition in result.partitions(THREAD_PARTITION):
        for row in partition:
            candidate_total = int(row.candidates)
            nodes[row[0].id] = _reply_payload(row) | {"replies": []}
    if not nodes:
        return [], None

    items: list[dict[str, Any]] = []
    for node in nodes.values():  # rows are oldest first, so siblings stay in order
        parent = node["parent_reply_id"]
        if parent is None:
            items.append(node)
        elif parent in nodes:
            nodes[parent]["replies"].append(node)
    more = candidate_total > limit
    last = items[-1]
    return items, ([last["created_at"], last["id"]] if more else None)


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
        "html": html, "author": _author(author.clerk_id, author.name, author.image_url),
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


async def reply_context(session: AsyncSession, reply_id: uuid.UUID, user: Principal | None) -> ReplyContext:
    """A reply that is not deleted, of a live post the caller can read (else 404)."""
    reply = await session.get(ForumReply, reply_id, populate_existing=True)
    if reply is None or reply.deleted_at is not None:
        raise NotFound("No such reply.")
    try:
        thread = await post_context(session, reply.post_id, user)
    except NotFound:
        raise NotFound("No such reply.") from None
    return ReplyContext(reply, thread)


async def update_reply(session: AsyncSession, *, ctx: ReplyContext, user: Principal, content: str,
                       html: str) -> dict[str, Any]:
    reply = ctx.reply
    require(reply.user_id == user.clerk_id or ctx.thread.access.is_staff,
            "Only the author or course staff can edit this reply.")
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
    require(reply.user_id == user.clerk_id or ctx.thread.access.is_staff,
            "Only the author or course staff can delete this reply.")
    payload = await reply_payload(session, reply.id, user)
    now = datetime.now(UTC)
    if payload["reply_count"] > 0:
        reply.content = DELETED
        reply.html = _deleted_html()
        reply.deleted_at = now
        reply.updated_at = now
        await session.flush()
        payload = await reply_payload(session, reply.id, user)
    else:
        await session.execute(delete(ForumReply).where(ForumReply.id == reply.id))
        payload |= {"content": DELETED, "html": _deleted_html(), "author": None,
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


def parse_lesson_filter(raw: str | None) -> uuid.UUID | None:
    if raw is None or raw == "":
        return None
    value = parse_uuid(raw)
    if value is None:
        raise validation("query.lesson_id", "must be a UUID")
    return value


__all__: Sequence[str] = (
    "PostContext", "ReplyContext", "create_post", "create_reply", "delete_post", "delete_reply",
    "list_posts", "parse_lesson_filter", "post_context", "post_payload", "reply_context",
    "set_post_like", "set_reply_like", "thread_page", "update_post", "update_reply",
)
