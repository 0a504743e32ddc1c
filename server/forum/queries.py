"""Reading course forums: pages of posts, one post, thread pages of replies (the writes are in
:mod:`server.forum.service`).

Reads run a fixed number of statements whatever the page size: like counts, ``liked_by_me`` and
reply counts are correlated subqueries, and a page of top-level replies brings its whole
subtrees with one recursive CTE. Who may read is the route's policy (server/access.py); these
functions trust their caller.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    Text,
    bindparam,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    null,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.access import lesson_course_id
from server.auth import Principal
from server.errors import NotFound, validation
from server.forum.models import ForumPost, ForumPostLike, ForumReply, ForumReplyLike
from server.http import parse_datetime, parse_uuid
from server.markdown import render_markdown, stored_html
from server.users.models import User

DELETED = "[deleted]"
# Replies loaded per step of a thread page: a step holds the event loop about a millisecond, so
# other requests barely wait while a 10,000-reply page loads (at 100 a step took 5-10 ms and an
# innocent request's median latency meanwhile was 7 ms against 2 idle: tests/adversarial/test_deep_threads).
THREAD_PARTITION = 25

@cache
def deleted_html() -> str:
    return render_markdown(DELETED)


def course_channel(course_id: uuid.UUID) -> str:
    return f"course:{course_id}"


def thread_channel(post_id: uuid.UUID) -> str:
    return f"thread:{post_id}"


def author_of(clerk_id: str | None, name: str | None, image_url: str | None) -> dict[str, Any] | None:
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
        "author": author_of(post.user_id, row.name, row.image_url),
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


async def check_lesson(session: AsyncSession, course_id: uuid.UUID, lesson_id: uuid.UUID, loc: str) -> None:
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
        await check_lesson(session, course_id, lesson_id, "query.lesson_id")
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
        "html": deleted_html() if deleted else stored_html(reply.html, reply.content),
        "author": None if deleted else author_of(reply.user_id, row.name, row.image_url),
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


def parse_lesson_filter(raw: str | None) -> uuid.UUID | None:
    if raw is None or raw == "":
        return None
    value = parse_uuid(raw)
    if value is None:
        raise validation("query.lesson_id", "must be a UUID")
    return value


# --- searching a course's forum ------------------------------------------------------------------
# Full-text over live posts (title A, content B) and live replies (content B) through the generated
# ``search`` columns (migration 0009), ranked with ``ts_rank`` as the catalogue search ranks
# courses (server/catalog/queries.py); keyset cursor (rank, hit id). The snippet marks the matched
# words with ts_headline's StartSel/StopSel (two control characters no text of ours carries) and is
# returned as parts, so clients highlight without parsing HTML.

SEARCH_MAX_QUERY = 200
_START, _STOP = "\x02", "\x03"
_HEADLINE_OPTIONS = f"StartSel={_START}, StopSel={_STOP}, MaxWords=30, MinWords=12, MaxFragments=2, FragmentDelimiter=\" … \""


@cache
def _search_statement(after: bool) -> Any:
    query = func.websearch_to_tsquery(literal_column("'english'::regconfig"), bindparam("q", type_=Text))
    course = bindparam("course_id", type_=PgUUID(as_uuid=True))
    post_rank = cast(func.ts_rank(ForumPost.search, query), Float(precision=53))
    reply_rank = cast(func.ts_rank(ForumReply.search, query), Float(precision=53))
    posts = (
        select(literal("post").label("kind"), ForumPost.id.label("hit_id"), ForumPost.id.label("post_id"),
               cast(null(), PgUUID(as_uuid=True)).label("reply_id"), ForumPost.title.label("post_title"),
               ForumPost.content.label("body"), ForumPost.user_id.label("user_id"),
               ForumPost.created_at.label("created_at"), post_rank.label("rank"))
        .where(ForumPost.course_id == course, ForumPost.deleted_at.is_(None), ForumPost.search.op("@@")(query))
    )
    replies = (
        select(literal("reply").label("kind"), ForumReply.id.label("hit_id"), ForumReply.post_id.label("post_id"),
               ForumReply.id.label("reply_id"), ForumPost.title.label("post_title"),
               ForumReply.content.label("body"), ForumReply.user_id.label("user_id"),
               ForumReply.created_at.label("created_at"), reply_rank.label("rank"))
        .join(ForumPost, ForumPost.id == ForumReply.post_id)
        .where(ForumPost.course_id == course, ForumPost.deleted_at.is_(None), ForumReply.deleted_at.is_(None),
               ForumReply.search.op("@@")(query))
    )
    hits = union_all(posts, replies).subquery("hits")
    page = select(hits)
    if after:
        page = page.where(tuple_(hits.c.rank, hits.c.hit_id) < tuple_(
            bindparam("after_rank", type_=Float(precision=53)), bindparam("after_id", type_=PgUUID(as_uuid=True))))
    paged = (page.order_by(hits.c.rank.desc(), hits.c.hit_id.desc())
             .limit(bindparam("limit", type_=Integer)).subquery("paged"))
    # the headline only for the page's rows (it re-parses the text: the costly part)
    headline = func.ts_headline(literal_column("'english'::regconfig"), paged.c.body, query,
                                literal(_HEADLINE_OPTIONS, Text))
    return (
        select(paged.c.kind, paged.c.hit_id, paged.c.post_id, paged.c.reply_id, paged.c.post_title,
               paged.c.user_id, paged.c.created_at, paged.c.rank, headline.label("headline"),
               User.name, User.image_url)
        .join(User, User.clerk_id == paged.c.user_id)
        .order_by(paged.c.rank.desc(), paged.c.hit_id.desc())
    )


def snippet_parts(headline: str) -> list[dict[str, Any]]:
    """ts_headline's text with its markers, as ``[{text, match}]`` (adjacent parts merged)."""
    parts: list[dict[str, Any]] = []
    for i, chunk in enumerate(headline.split(_START)):
        inside, _, rest = chunk.partition(_STOP) if i else ("", "", chunk)
        for text, match in ((inside, True), (rest, False)):
            if not text:
                continue
            if parts and parts[-1]["match"] == match:
                parts[-1]["text"] += text
            else:
                parts.append({"text": text, "match": match})
    return parts


async def search_forum(
    session: AsyncSession, *, course_id: uuid.UUID, q: str, limit: int, cursor: list[Any] | None,
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """A page of the posts and replies of a course's forum that match ``q`` (websearch syntax:
    words, "quoted phrases", -excluded, or), best first; returns (items, next key)."""
    params: dict[str, Any] = {"q": q, "course_id": course_id, "limit": limit + 1}
    after = _cursor_values(cursor, 2)
    if after is not None:
        try:
            if isinstance(after[0], bool) or not isinstance(after[0], int | float):
                raise ValueError("rank")
            params["after_rank"] = float(after[0])
            params["after_id"] = uuid.UUID(str(after[1]))
        except (ValueError, TypeError):
            raise validation("query.cursor", "malformed cursor") from None
    rows = (await session.execute(_search_statement(after is not None), params)).all()
    items = [{
        "kind": row.kind, "id": row.hit_id, "post_id": row.post_id, "reply_id": row.reply_id,
        "post_title": row.post_title, "snippet": snippet_parts(row.headline or ""),
        "author": author_of(row.user_id, row.name, row.image_url),
        "created_at": row.created_at, "rank": float(row.rank),
    } for row in rows[:limit]]
    more = len(rows) > limit
    return items, ([items[-1]["rank"], items[-1]["id"]] if more and items else None)
