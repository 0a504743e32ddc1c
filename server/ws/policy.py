"""Who may open ``/ws`` and read which live channel (§7): the same rules as REST (:mod:`server.access`).

Subscribing checks read rights like REST (``authorize``, memoised for ACCESS_CACHE_S). While
subscribed they are re-checked (§7) by ``make_recheck``, in batches: by the hub every
WS_RECHECK_SECONDS for all of a node's subscriptions, and before each burst of a course or
thread channel's events is delivered (``held_channel``), so an event written after a course
was unpublished or a collaborator removed never reaches the reader who lost it. The cost is
one statement per burst per node for a published course (its readers' deletion, and the thread's
and course's facts by primary key), plus users and collaborators for a draft.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from functools import cache
from typing import Any

from sqlalchemy import Boolean, Text, any_, bindparam, cast, null, select, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.websockets import WebSocket

from realtime.hub import Authenticate, Authorize, ChannelDenied, ConnectionDenied, Recheck, User
from server.access import access_from, course_access
from server.auth import Principal
from server.catalog.models import Collaborator, Course
from server.db import autocommit
from server.errors import Forbidden, NotFound, Unauthorized
from server.forum.models import ForumPost
from server.state import Services
from server.users.models import User as UserRow
from server.ws.cache import TtlCache

# Short: a role change applies to the next connection (§2) within seconds, and open
# subscriptions are re-checked by ``make_recheck`` anyway.
AUTH_CACHE_S = 5.0
ACCESS_CACHE_S = 2.0


def _bad(detail: str) -> ChannelDenied:
    return ChannelDenied("bad_request", detail)


def make_authorize(svc: Services, granted: TtlCache) -> Authorize:
    """``granted`` memoises grants by (clerk_id, role, internal channel); the re-check drops
    the ones it finds lost, so a refused reader cannot subscribe again from the cache."""

    async def authorize(user: User, channel: str) -> str:
        """The internal channel for ``channel`` if ``user`` may read it (same policy as REST)."""
        assert isinstance(user, Principal)
        kind, ident = parse_channel(channel)
        if kind == "user":
            if ident == "me":
                return f"user:{user.clerk_id}"
            raise ChannelDenied("not_found", "No such channel (use user:me).")
        internal = f"{kind}:{ident}"
        key = (user.clerk_id, user.role, internal)
        assert isinstance(ident, uuid.UUID)
        if user.is_admin:  # an admin's role is read again each time (below): no memo
            await check(user, kind, ident)
            return internal
        await granted.load(key, lambda: check(user, kind, ident))
        return internal

    async def check(user: Principal, kind: str, ident: uuid.UUID) -> bool:
        """True if ``user`` may read the channel, else ChannelDenied."""
        async with svc.sessions() as session:
            if user.is_admin:
                # The socket's user was read at connect: an admin grant revoked since must not
                # open drafts to it (admins are few; the others' roles come from the course).
                role = (await session.execute(
                    select(UserRow.role).where(UserRow.clerk_id == user.clerk_id))).scalar_one_or_none()
                user = replace(user, role=role or "member")
            try:
                if kind == "course":
                    await course_access(session, ident, user)
                else:
                    post = await session.get(ForumPost, ident)
                    if post is None or post.deleted_at is not None:
                        raise NotFound("No such thread.")
                    await course_access(session, post.course_id, user)
            except NotFound:
                raise ChannelDenied("not_found", "No such channel.") from None
        return True

    return authorize


def parse_channel(channel: str) -> tuple[str, uuid.UUID | str]:
    """(kind, id) of a channel as a client wrote it: ``("user", "me")``, ``("course", UUID)``…"""
    kind, sep, rest = channel.partition(":")
    if not sep or not rest:
        raise _bad(f"Malformed channel {channel!r}: expected course:<id>, thread:<id> or user:me.")
    if kind == "user":
        return kind, rest
    if kind not in ("course", "thread"):
        raise _bad(f"Malformed channel {channel!r}: expected course:<id>, thread:<id> or user:me.")
    try:
        return kind, uuid.UUID(rest)
    except ValueError:
        raise _bad(f"Malformed channel {channel!r}: the id is not a UUID.") from None


def held_channel(internal: str) -> bool:
    """Course and thread events wait for a rights re-check of their readers before delivery
    (``user:`` channels are the user's own)."""
    return internal.startswith(("course:", "thread:"))


def make_recheck(svc: Services, granted: TtlCache) -> Recheck:
    async def recheck(pairs: list[tuple[User, str]]) -> dict[tuple[str, str], ChannelDenied]:
        """Which (user, internal channel) pairs lost read access: a bounded number of queries
        for the whole batch (threads, courses, then users and collaborators of drafts only),
        decided by the one policy (``access_from``)."""
        wanted: list[tuple[Principal, str, str, uuid.UUID]] = []
        denied: dict[tuple[str, str], ChannelDenied] = {}
        # A deleted user (§2) loses every subscription, user:me included, each ended with
        # not_found; the socket itself stays open with nothing to receive (it can subscribe
        # again only to be refused), which ends their live data without a hub-level close.
        # One autocommit connection (no BEGIN/ROLLBACK round trips: every statement is a read)
        # and statements built once, with arrays for the sets: it runs before each burst of a
        # held channel, i.e. about once per event at tens of events a second.
        async with autocommit(svc.engine) as conn:
            deleted, facts_rows = await _deleted_and_facts(conn, pairs)
        for user, channel in pairs:
            if user.clerk_id in deleted:
                denied[(user.clerk_id, channel)] = ChannelDenied("not_found", "The user was deleted.")
                continue
            kind, _, rest = channel.partition(":")
            if kind not in ("course", "thread"):
                continue
            assert isinstance(user, Principal)
            wanted.append((user, channel, kind, uuid.UUID(rest)))
        if not wanted:
            return denied
        gone = ChannelDenied("not_found", "No such channel (access was lost).")
        # The live threads' courses and the facts of those and of the course channels, as read
        # above (one statement: rows with a thread id, and rows of the courses asked directly).
        thread_course: dict[uuid.UUID, uuid.UUID] = {}
        facts: dict[uuid.UUID, tuple[str, bool]] = {}
        for thread_id, course_id, author_id, published in facts_rows:
            if thread_id is not None:
                thread_course[thread_id] = course_id
            facts[course_id] = (author_id, published)
        drafts = {cid for cid, (_, published) in facts.items() if not published}
        roles: dict[str, str] = {}
        collaborators: dict[tuple[uuid.UUID, str], str] = {}
        if drafts:  # a published course is readable by everyone signed in
            readers = {user.clerk_id for user, _, kind, ident in wanted
                       if (ident if kind == "course" else thread_course.get(ident)) in drafts}
            async with svc.sessions() as session:
                user_rows = await session.execute(
                    select(UserRow.clerk_id, UserRow.role).where(UserRow.clerk_id.in_(readers)))
                roles = {row[0]: row[1] for row in user_rows}
                collaborator_rows = await session.execute(
                    select(Collaborator.course_id, Collaborator.user_id, Collaborator.role)
                    .where(Collaborator.course_id.in_(drafts), Collaborator.user_id.in_(readers)))
                collaborators = {(row[0], row[1]): row[2] for row in collaborator_rows}
        for user, channel, kind, ident in wanted:
            course_id = ident if kind == "course" else thread_course.get(ident)
            found = facts.get(course_id) if course_id is not None else None
            if course_id is None or found is None:
                denied[(user.clerk_id, channel)] = gone
                continue
            author_id, published = found
            if published:
                continue
            # the user's current role (an admin grant revoked applies to open sockets too)
            fresh = replace(user, role=roles.get(user.clerk_id, "member"))
            try:
                access_from(course_id, author_id, published, collaborators.get((course_id, user.clerk_id)),
                            False, fresh)
            except NotFound:
                denied[(user.clerk_id, channel)] = gone
        for user, channel, _, _ in wanted:
            if (user.clerk_id, channel) in denied:
                granted.discard((user.clerk_id, user.role, channel))
        return denied

    return recheck


@cache
def _recheck_statement() -> Any:
    """One statement (one round trip before each burst): the live threads of ``:threads`` with
    their course's facts, the facts of the courses ``:courses`` (thread id NULL), and the users
    of ``:ids`` who were deleted (a row with only ``deleted_id``)."""
    ids = bindparam("ids", type_=ARRAY(Text))
    threads = bindparam("threads", type_=ARRAY(PgUUID(as_uuid=True)))
    courses = bindparam("courses", type_=ARRAY(PgUUID(as_uuid=True)))
    no_text = cast(null(), Text)
    of_threads = (select(no_text.label("deleted_id"), ForumPost.id.label("thread_id"), Course.id.label("course_id"),
                         Course.author_id, Course.is_published)
                  .join(Course, Course.id == ForumPost.course_id)
                  .where(ForumPost.id == any_(threads), ForumPost.deleted_at.is_(None)))
    of_courses = (select(no_text, cast(null(), PgUUID(as_uuid=True)), Course.id, Course.author_id, Course.is_published)
                  .where(Course.id == any_(courses)))
    deleted = (select(UserRow.clerk_id, cast(null(), PgUUID(as_uuid=True)), cast(null(), PgUUID(as_uuid=True)),
                      no_text, cast(null(), Boolean))
               .where(UserRow.clerk_id == any_(ids), UserRow.deleted_at.is_not(None)))
    return union_all(of_threads, of_courses, deleted)


async def _deleted_and_facts(conn: AsyncConnection, pairs: list[tuple[User, str]]) -> tuple[set[str], list[Any]]:
    """The deleted users among the pairs', and (thread id or None, course id, author, published)
    for their course and thread channels."""
    threads: set[uuid.UUID] = set()
    courses: set[uuid.UUID] = set()
    for _, channel in pairs:
        kind, _, rest = channel.partition(":")
        if kind in ("course", "thread"):
            (courses if kind == "course" else threads).add(uuid.UUID(rest))
    rows = await conn.execute(_recheck_statement(), {
        "ids": list({user.clerk_id for user, _ in pairs}), "threads": list(threads), "courses": list(courses)})
    deleted: set[str] = set()
    facts: list[Any] = []
    for deleted_id, thread_id, course_id, author_id, published in rows:
        if deleted_id is not None:
            deleted.add(deleted_id)
        else:
            facts.append((thread_id, course_id, author_id, published))
    return deleted, facts


def make_authenticate(svc: Services) -> Authenticate:
    known = TtlCache(AUTH_CACHE_S)

    async def authenticate(ws: WebSocket) -> User:
        try:
            found = svc.auth.token_from(ws, websocket=True)
            if found is not None and found[1] != "cookie":
                # The token is verified every time (signature, expiry); only the user lookup
                # (SQL, and the per-login hooks) is memoised per subject for a minute.
                # Concurrent sockets of one subject share one lookup (TtlCache.load).
                claims = await svc.auth.verify(found[0])
                user: Principal | None = await known.load(
                    claims["sub"], lambda: svc.auth.authenticate(ws, websocket=True))
            else:
                user = await svc.auth.authenticate(ws, websocket=True)
        except Unauthorized as exc:
            raise ConnectionDenied(4401, str(exc.detail or "Unauthorized")) from None
        except Forbidden as exc:
            raise ConnectionDenied(4403, str(exc.detail or "Forbidden")) from None
        if user is None:
            raise ConnectionDenied(4401, "Sign in: pass ?token=<jwt>.")
        return user

    return authenticate
