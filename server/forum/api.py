"""REST: course forums (§4 Forum). Thin handlers: parse, call the queries (reads) or the service
(writes), render. Each route names who may call it (server/access.py); the router checks it
before the handler runs and hands over what it learned (``granted``)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from server.access import (
    CourseAccess,
    ForumAccess,
    member_of,
    member_of_post,
    member_of_reply,
    post_author_or_staff,
    read_course,
    read_post,
    reply_author_or_staff,
    require_staff,
)
from server.auth import current_user, require_user
from server.db import autocommit
from server.errors import validation
from server.forum import queries, service
from server.forum.schemas import LikeState, Post, PostPage, PostWithEvents, Reply, ReplyPage, SearchPage
from server.http import (
    decode_cursor,
    encode_cursor,
    json_response,
    json_response_in_steps,
    no_content,
    page_limit,
    path_id,
    query_text,
    read_json,
)
from server.markdown import render
from server.routing import Api, granted
from server.state import Services, services

api = Api("forum")

PAGE_QUERY = {"limit": "Page size (1–100, default 20)", "cursor": "next_cursor of the previous page"}


class PostCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=300)
    content: str = Field(min_length=1, max_length=50_000)
    lesson_id: uuid.UUID | None = None


class PostPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=300)
    content: str | None = Field(default=None, min_length=1, max_length=50_000)
    is_pinned: bool | None = None
    is_locked: bool | None = None


class ReplyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=20_000)
    parent_reply_id: uuid.UUID | None = None


class ReplyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=20_000)


async def last_event_id(svc: Services, channel: str) -> Any:
    """The newest event id of ``channel`` (0 without events, or without a broker yet).

    Read BEFORE the data it accompanies: every event up to it is then in the data, and a
    client that subscribes with ``since`` = it misses nothing.
    """
    broker = svc.broker
    if broker is None:
        return 0
    found = await broker.last_id(channel)
    return found if found is not None else 0


def _page(items: list[dict[str, Any]], next_key: list[Any] | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": encode_cursor(next_key) if next_key else None}


# --- posts -------------------------------------------------------------------------------------


@api.get("/courses/{id}/forum/posts", access=read_course("id"), response=PostPage,
         query={**PAGE_QUERY, "lesson_id": "Only posts about this lesson of the course"})
async def list_posts(request: Request) -> Response:
    """A course's forum posts: pinned first, then newest first, with ``last_event_id`` of the
    ``course:<id>`` channel (subscribe with it as ``since`` to miss no new thread)."""
    course_id = path_id(request)
    user = await current_user(request)
    svc = services(request)
    lesson_id = queries.parse_lesson_filter(request.query_params.get("lesson_id"))
    limit, cursor = page_limit(request), decode_cursor(request)
    async with svc.sessions() as session:
        last_id = await last_event_id(svc, queries.course_channel(course_id))  # before the data
        items, next_key = await queries.list_posts(session, course_id=course_id, viewer=user,
                                                   lesson_id=lesson_id, limit=limit, cursor=cursor)
    return json_response(_page(items, next_key) | {"last_event_id": last_id})


@api.get("/courses/{id}/forum/search", access=read_course("id"), response=SearchPage,
         query={**PAGE_QUERY, "q": "Words to find (websearch syntax: \"a phrase\", -not, or); 1–200 characters"})
async def search_forum(request: Request) -> Response:
    """Full-text search over a course forum's posts and replies, best match first."""
    course_id = path_id(request)
    q = query_text(request, "q", queries.SEARCH_MAX_QUERY)
    if q is None:
        raise validation("query.q", "give the words to search for")
    limit, cursor = page_limit(request), decode_cursor(request)
    async with services(request).sessions() as session:
        items, next_key = await queries.search_forum(session, course_id=course_id, q=q, limit=limit, cursor=cursor)
    return json_response(_page(items, next_key))


@api.post("/courses/{id}/forum/posts", access=member_of("id"), status=201, body=PostCreate, response=Post)
async def create_post(request: Request) -> Response:
    """Start a thread in a course forum (optionally about one of its lessons)."""
    access: CourseAccess = granted(request)
    me = await require_user(request)
    body = await read_json(request, PostCreate)
    svc = services(request)
    await svc.rate_limiter.hit(me.clerk_id, "post")
    # Rendered before the transaction: a long text waits for the worker without holding a
    # pooled connection (30 such posts at once would otherwise exhaust the pool).
    html = await render(body.content, me.clerk_id)
    async with svc.sessions.begin() as session:
        post = await service.create_post(session, access=access, author=me, title=body.title,
                                         content=body.content, html=html, lesson_id=body.lesson_id)
    return json_response(post, 201)


@api.get("/forum/posts/{id}", access=read_post("id"), response=PostWithEvents)
async def get_post(request: Request) -> Response:
    """One post, with ``last_event_id`` of its ``thread:<id>`` channel."""
    post_id = path_id(request)
    user = await current_user(request)
    svc = services(request)
    async with svc.sessions() as session:
        last_id = await last_event_id(svc, queries.thread_channel(post_id))
        post = await queries.post_payload(session, post_id, user)
    return json_response(post | {"last_event_id": last_id})


@api.patch("/forum/posts/{id}", access=post_author_or_staff("id"), body=PostPatch, response=Post)
async def update_post(request: Request) -> Response:
    """Edit a post (author or staff); pin or lock it (staff only)."""
    me = await require_user(request)
    body = await read_json(request, PostPatch)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    grant: ForumAccess = granted(request)
    if {"is_pinned", "is_locked"} & changes.keys():  # more than the route's "author or staff"
        require_staff(grant.access, "Only course staff can pin or lock posts.")
    if "content" in changes:
        changes["html"] = await render(changes["content"], me.clerk_id)  # before the transaction, as above
    async with services(request).sessions.begin() as session:
        ctx = await service.post_context(session, grant)
        post = await service.update_post(session, ctx=ctx, user=me, changes=changes)
    return json_response(post)


@api.delete("/forum/posts/{id}", status=204,
            access=post_author_or_staff("id", detail="Only the author or course staff can delete this post."))
async def delete_post(request: Request) -> Response:
    """Delete a post (author or staff)."""
    me = await require_user(request)
    async with services(request).sessions.begin() as session:
        ctx = await service.post_context(session, granted(request))
        await service.delete_post(session, ctx=ctx, user=me)
    return no_content()


# --- replies -----------------------------------------------------------------------------------


@api.get("/forum/posts/{id}/replies", access=read_post("id"), response=ReplyPage, query=PAGE_QUERY)
async def list_replies(request: Request) -> Response:
    """A page of top-level replies, oldest first, each with its whole subtree under ``replies``."""
    post_id = path_id(request)
    user = await current_user(request)
    limit, cursor = page_limit(request), decode_cursor(request)
    svc = services(request)
    async with svc.sessions() as session:
        last_id = await last_event_id(svc, queries.thread_channel(post_id))
        items, next_key = await queries.thread_page(session, post_id=post_id, viewer=user,
                                                    limit=limit, cursor=cursor)
    return await json_response_in_steps(_page(items, next_key) | {"last_event_id": last_id})


@api.post("/forum/posts/{id}/replies", access=member_of_post("id"), status=201, body=ReplyCreate, response=Reply)
async def create_reply(request: Request) -> Response:
    """Reply to a post, or to one of its replies with ``parent_reply_id``."""
    me = await require_user(request)
    body = await read_json(request, ReplyCreate)
    svc = services(request)
    await svc.rate_limiter.hit(me.clerk_id, "reply")
    html = await render(body.content, me.clerk_id)  # before the transaction, as for posts
    grant: ForumAccess = granted(request)
    reply = None
    if service.replies_alone(grant, me, body.parent_reply_id):  # one statement, no BEGIN/COMMIT
        async with autocommit(svc.engine) as conn:
            reply = await service.create_reply_alone(conn, grant=grant, author=me, content=body.content, html=html)
    if reply is None:
        async with svc.sessions.begin() as session:
            reply = await service.create_reply(session, grant=grant, author=me, content=body.content,
                                               html=html, parent_reply_id=body.parent_reply_id)
    return json_response(reply, 201)


@api.patch("/forum/replies/{id}", access=reply_author_or_staff("id"), body=ReplyPatch, response=Reply)
async def update_reply(request: Request) -> Response:
    """Edit a reply (author or staff)."""
    reply_id = path_id(request)
    me = await require_user(request)
    body = await read_json(request, ReplyPatch)
    html = await render(body.content, me.clerk_id)  # before the transaction, as for posts
    async with services(request).sessions.begin() as session:
        ctx = await service.reply_context(session, reply_id, granted(request))
        reply = await service.update_reply(session, ctx=ctx, user=me, content=body.content, html=html)
    return json_response(reply)


@api.delete("/forum/replies/{id}", status=204,
            access=reply_author_or_staff("id", detail="Only the author or course staff can delete this reply."))
async def delete_reply(request: Request) -> Response:
    """Delete a reply (author or staff); one with replies stays as ``[deleted]``."""
    reply_id = path_id(request)
    me = await require_user(request)
    async with services(request).sessions.begin() as session:
        ctx = await service.reply_context(session, reply_id, granted(request))
        await service.delete_reply(session, ctx=ctx, user=me)
    return no_content()


# --- likes -------------------------------------------------------------------------------------


async def _post_like(request: Request, liked: bool) -> Response:
    me = await require_user(request)
    async with services(request).sessions.begin() as session:
        ctx = await service.post_context(session, granted(request))
        state = await service.set_post_like(session, ctx=ctx, user=me, liked=liked)
    return json_response(state)


async def _reply_like(request: Request, liked: bool) -> Response:
    reply_id = path_id(request)
    me = await require_user(request)
    async with services(request).sessions.begin() as session:
        ctx = await service.reply_context(session, reply_id, granted(request))
        state = await service.set_reply_like(session, ctx=ctx, user=me, liked=liked)
    return json_response(state)


@api.put("/forum/posts/{id}/like", access=member_of_post("id"), response=LikeState)
async def like_post(request: Request) -> Response:
    """Like a post (idempotent; not your own)."""
    return await _post_like(request, True)


@api.delete("/forum/posts/{id}/like", access=member_of_post("id"), response=LikeState)
async def unlike_post(request: Request) -> Response:
    """Take back a like on a post (idempotent)."""
    return await _post_like(request, False)


@api.put("/forum/replies/{id}/like", access=member_of_reply("id"), response=LikeState)
async def like_reply(request: Request) -> Response:
    """Like a reply (idempotent; not your own)."""
    return await _reply_like(request, True)


@api.delete("/forum/replies/{id}/like", access=member_of_reply("id"), response=LikeState)
async def unlike_reply(request: Request) -> Response:
    """Take back a like on a reply (idempotent)."""
    return await _reply_like(request, False)
