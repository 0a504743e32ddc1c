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

from sqlalchemy import (
    Boolean,
    Table,
    Text,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

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
from server.gamification.service import achievements_to_evaluate, candidate_pattern, record_action
from server.http import dumps, jsonable
from server.notifications.service import notify
from server.outbox.emit import emit, recorded
from server.outbox.models import OutboxEvent


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


def iso_utc(ts: Any) -> Any:
    """SQL: a timestamp as the API's JSON encoder writes it (server.http: UTC, ``T``, microseconds
    unless they are 0, ``Z``), for event data built in SQL."""
    utc = func.timezone(_sql("'UTC'"), ts)
    return func.concat(
        func.to_char(utc, _sql("""'YYYY-MM-DD"T"HH24:MI:SS'""")),
        case((func.extract("microseconds", utc) % _sql("1000000") == _sql("0"), _sql("''")),
             else_=func.to_char(utc, _sql("'.US'"))),
        _sql("'Z'"),
    )


def _sql(constant: str) -> Any:
    """A constant written into the statement (not one more bind parameter per execution)."""
    return literal_column(constant)


@cache
def _create_reply_statement() -> Any:
    """One statement for a reply's whole write (built once): the post, still live (the policy read
    it on its own connection) and open (or the caller is staff); the parent, a reply of this post;
    the INSERT; its ``reply.created`` event in the outbox, its data the REST object (the caller's
    part of it encoded by Python, ``id`` and timestamps from the INSERT, formatted as the API does);
    and whether the author has an achievement to evaluate. Five round trips before."""
    replies: Table = ForumReply.__table__  # type: ignore[assignment]
    outbox: Table = OutboxEvent.__table__  # type: ignore[assignment]
    post_id = bindparam("post_id", type_=PgUUID(as_uuid=True))
    parent_id = bindparam("parent_reply_id", type_=PgUUID(as_uuid=True))
    user_id = bindparam("user_id", type_=Text)
    post = (select(ForumPost.id, ForumPost.is_locked)
            .where(ForumPost.id == post_id, ForumPost.deleted_at.is_(None)).cte("post"))
    parent = (select(ForumReply.user_id, ForumReply.deleted_at)
              .where(ForumReply.id == parent_id, ForumReply.post_id == post_id).cte("parent"))
    probe = select(achievements_to_evaluate().label("evaluate")).cte("probe")
    reply = (insert(replies).from_select(
        ["post_id", "user_id", "parent_reply_id", "content", "html"],
        select(post.c.id, user_id, parent_id, bindparam("content", type_=Text), bindparam("html", type_=Text))
        .where(or_(post.c.is_locked.is_not(True), bindparam("staff", type_=Boolean)),
               or_(parent_id.is_(None), exists(select(parent.c.user_id))),
               # alone (autocommit, see create_reply): nothing written when more would follow
               or_(bindparam("alone", type_=Boolean).is_(False), ~select(probe.c.evaluate).scalar_subquery())),
    ).returning(replies.c.id, replies.c.created_at, replies.c.updated_at).cte("reply"))
    data = cast(bindparam("data", type_=Text), JSONB).op("||")(func.jsonb_build_object(
        _sql("'id'"), cast(reply.c.id, Text), _sql("'created_at'"), iso_utc(reply.c.created_at),
        _sql("'updated_at'"), iso_utc(reply.c.updated_at)))
    event = (insert(outbox).from_select(
        ["channel", "event", "data"],
        select(bindparam("channel", type_=Text), _sql("'reply.created'"), data).select_from(reply),
    ).returning(outbox.c.id).cte("event"))
    return (select(reply.c.id, reply.c.created_at, reply.c.updated_at, select(event.c.id).scalar_subquery(),
                   post.c.is_locked, exists(select(parent.c.user_id)),
                   select(parent.c.user_id).scalar_subquery(), select(parent.c.deleted_at).scalar_subquery(),
                   select(probe.c.evaluate).scalar_subquery())
            .select_from(post).outerjoin(reply, true()))


def replies_alone(grant: ForumAccess, author: Principal, parent_reply_id: uuid.UUID | None) -> bool:
    """Whether a reply can be written by :func:`create_reply_alone`: a top-level reply to one's
    own thread notifies nobody."""
    return parent_reply_id is None and grant.author_id == author.clerk_id


async def create_reply_alone(conn: AsyncConnection, *, grant: ForumAccess, author: Principal, content: str,
                             html: str) -> dict[str, Any] | None:
    """A top-level reply to one's own thread as the statement alone, on an AUTOCOMMIT connection:
    the statement is then the whole transaction (no BEGIN and COMMIT round trips), committed when
    it returns. None, with nothing written, when the author has an achievement to evaluate:
    then :func:`create_reply` in a transaction (the statement's own probe decides, so nothing
    that would have run in the transaction is skipped)."""
    written = await _write_reply(conn, grant=grant, author=author, content=content, html=html,
                                 parent_reply_id=None, alone=True)
    return None if written is None else written[0]


async def create_reply(
    session: AsyncSession,
    *,
    grant: ForumAccess,
    author: Principal,
    content: str,
    html: str,
    parent_reply_id: uuid.UUID | None,
) -> dict[str, Any]:
    """A reply to the post the route's policy granted, in one statement (see above), plus the
    author's achievements and the notification when there are any, in the caller's transaction."""
    written = await _write_reply(session, grant=grant, author=author, content=content, html=html,
                                 parent_reply_id=parent_reply_id, alone=False)
    assert written is not None
    payload, event_id, evaluate, parent_user, parent_deleted = written
    recorded(session, event_id)
    if evaluate:  # otherwise record_action would find nothing to do
        await record_action(session, user_id=author.clerk_id, keys=_REPLY_KEYS)

    # Notify the author of what was replied to (never yourself; a [deleted] parent has no author).
    target_user = grant.author_id if parent_reply_id is None else (None if parent_deleted else parent_user)
    if target_user is not None and target_user != author.clerk_id:
        post_id, course_id, reply_id = grant.post_id, grant.access.course_id, payload["id"]
        what = "post" if parent_reply_id is None else "reply"
        await notify(
            session, user_id=target_user, type="reply", actor_id=author.clerk_id,
            title=f"{author.name or 'Someone'} replied to your {what}",
            body=_excerpt(content),
            metadata={"course_id": str(course_id), "post_id": str(post_id), "reply_id": str(reply_id),
                      "parent_reply_id": str(parent_reply_id) if parent_reply_id else None,
                      "actor_name": author.name, "link": _thread_link(course_id, post_id, reply_id)},
        )
    return payload


async def _write_reply(executor: AsyncSession | AsyncConnection, *, grant: ForumAccess, author: Principal,
                       content: str, html: str, parent_reply_id: uuid.UUID | None,
                       alone: bool) -> tuple[dict[str, Any], int, bool, str | None, Any] | None:
    """The statement and its refusals, as before: 404 for a post deleted since the policy looked,
    409 for a locked thread (not for staff), 422 for a parent that is not a reply of this post.
    Returns the payload, the event's id, whether achievements are to be evaluated and the
    parent's author and deletion; None when ``alone`` and it wrote nothing for that reason."""
    post_id = grant.post_id
    # The payload from what we know: a new reply has no likes and no children, and its author
    # is the caller; ``id`` and the timestamps come from the INSERT (and go into the event's data
    # in SQL, which takes the rest as encoded here).
    payload: dict[str, Any] = {
        "id": None, "post_id": post_id, "parent_reply_id": parent_reply_id, "content": content,
        "html": html, "author": author_of(author.clerk_id, author.name, author.image_url),
        "like_count": 0, "liked_by_me": False, "reply_count": 0, "deleted_at": None,
        "created_at": None, "updated_at": None,
    }
    row = (await executor.execute(_create_reply_statement(), {
        "post_id": post_id, "parent_reply_id": parent_reply_id, "user_id": author.clerk_id,
        "content": content, "html": html, "staff": grant.access.is_staff, "channel": thread_channel(post_id),
        "data": dumps({k: v for k, v in payload.items() if k not in _FROM_INSERT}).decode(),
        "pattern": candidate_pattern(_REPLY_KEYS), "alone": alone,
    })).one_or_none()
    if row is None:  # deleted since the policy looked
        raise NotFound("No such post.")
    reply_id, created_at, updated_at, event_id, is_locked, parent_found, parent_user, parent_deleted, evaluate = row
    if reply_id is None:
        if alone and evaluate:
            return None
        if is_locked and not grant.access.is_staff:
            raise Conflict("This thread is locked: no new replies.")
        if parent_reply_id is None or parent_found:  # the INSERT's conditions and these disagree
            raise RuntimeError("reply not written for no known reason")
        raise validation("parent_reply_id", "is not a reply of this post")
    payload.update(id=reply_id, created_at=created_at, updated_at=updated_at)
    return payload, int(event_id), bool(evaluate), parent_user, parent_deleted


_FROM_INSERT = frozenset(("id", "created_at", "updated_at"))
_REPLY_KEYS = frozenset(("forum_posts",))


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
    return _thread_link(post.course_id, post.id, reply_id)


def _thread_link(course_id: uuid.UUID, post_id: uuid.UUID, reply_id: uuid.UUID | None) -> str:
    base = f"/courses/{course_id}/forum/{post_id}"
    return f"{base}#reply-{reply_id}" if reply_id else base
