"""Wiring of live co-editing: the ``/collab/lessons/{lesson_id}`` (y-websocket) and ``/collab``
(Hocuspocus) sockets, their access policy (built on :mod:`server.access`) and the room manager on
``services.rooms``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import select, text
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from collab.access import AccessWatch, Denied, Grant
from collab.connection import serve as serve_collab
from collab.hocuspocus import serve as serve_hocuspocus
from collab.manager import RoomManager
from collab.persistence import PgLeases
from collab.relay import RedisRelay
from realtime.caps import Caps
from server.access import access_from, lesson_access
from server.auth import Principal
from server.catalog.models import Collaborator, Course, Lesson, Unit
from server.db import autocommit, libpq_dsn
from server.editing.store import PgStore, VersionRetention
from server.errors import Forbidden, NotFound, Unauthorized
from server.learning.models import UserCourse
from server.limits import make_caps
from server.state import Services, services
from server.users.models import User
from wire.websocket import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_UNAUTHORIZED

log = logging.getLogger("scriptorium.collab")


def _lesson_uuid(lesson_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(lesson_id)
    except ValueError:
        raise Denied(CLOSE_NOT_FOUND, "No such lesson.") from None


async def _decide(svc: Services, lesson_id: str, principal: Principal) -> bool:
    """Whether ``principal`` may write the lesson; Denied when they may not be in the room."""
    lid = _lesson_uuid(lesson_id)
    async with svc.sessions() as session:
        try:
            access = await lesson_access(session, lid, principal)
        except NotFound:
            raise Denied(CLOSE_NOT_FOUND, "No such lesson.") from None
    if access.can_edit:
        return True
    if access.can_see_drafts:  # a viewer collaborator: read-only
        return False
    raise Denied(CLOSE_FORBIDDEN, "Only the author, collaborators and admins may join.")


CLOSE_TOO_MANY = 4429  # "too many connections", as on /ws (§5 uses 4008 and 44xx for rights)
SOCKET_USER = "scriptorium.collab_user"  # scope key: the user this socket counts against


class SocketCounts:
    """Open collab sockets per user (on this node, or across nodes with Redis: realtime.caps):
    every collab budget is per socket, so one account opening N sockets would multiply them
    (``COLLAB_SOCKETS_PER_USER``; 0: off)."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps

    async def take(self, scope: Scope, user_id: str) -> None:
        if SOCKET_USER in scope:  # already counted (authorize is asked once per socket)
            return
        handle = await self.caps.take(user_id)
        if handle is None:
            raise Denied(CLOSE_TOO_MANY, "Too many connections.")
        scope[SOCKET_USER] = (user_id, handle)

    async def release(self, scope: Scope) -> None:
        held = scope.pop(SOCKET_USER, None)
        if held is not None:
            await self.caps.release(*held)


PRINCIPAL_MEMO = "scriptorium.collab_principal"  # scope key: the socket's _PrincipalMemo
# How long a socket's documents reuse the user its token resolved to (the token itself is verified
# for every document): the rooms' access re-check runs as often, so no wider window opens.
PRINCIPAL_MEMO_S = 2.0
DECIDE_BATCH_MAX = 500  # pairs in one statement of Decisions


class _PrincipalMemo:
    """The user a socket's token last resolved to, shared by the scopes of its documents (a
    Hocuspocus socket authenticates each document with the same token: 50 documents were 50
    users-row reads and 50 runs of the sign-in hooks)."""

    def __init__(self) -> None:
        self.sub: str | None = None
        self.principal: Principal | None = None
        self.at = 0.0

    def get(self, sub: str) -> Principal | None:
        if self.sub == sub and time.monotonic() - self.at < PRINCIPAL_MEMO_S:
            return self.principal
        return None

    def put(self, principal: Principal) -> None:
        self.sub, self.principal, self.at = principal.clerk_id, principal, time.monotonic()


class Decisions:
    """Whether users may write lessons, decided together: the documents authorised in one loop
    turn (a Hocuspocus socket opening its 50 documents, many sockets connecting at once) are
    decided in one statement (the rooms' re-check's, :func:`make_recheck_many`) instead of one
    session and query each. Same decisions and close codes as :func:`_decide`."""

    def __init__(self, decide_many: Callable[[list[tuple[str, Grant]]], Awaitable[list[bool | Denied]]]) -> None:
        self._decide_many = decide_many
        self._waiting: list[tuple[str, Grant, asyncio.Future[bool | Denied]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def decide(self, lesson_id: str, principal: Principal) -> bool:
        """True: may write; False: may read; raises Denied (no such lesson, may not join)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool | Denied] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._run)
        self._waiting.append((lesson_id, Grant(user_id=principal.clerk_id, can_write=False), answer))
        decided = await answer
        if isinstance(decided, Denied):
            raise Denied(decided.code, decided.reason)  # (a fresh one per waiter)
        return decided

    def _run(self) -> None:
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), DECIDE_BATCH_MAX):
            task = asyncio.ensure_future(self._decide(waiting[start:start + DECIDE_BATCH_MAX]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _decide(self, batch: list[tuple[str, Grant, asyncio.Future[bool | Denied]]]) -> None:
        failure: Exception | None = None
        try:
            answers = await self._decide_many([(lesson_id, grant) for lesson_id, grant, _ in batch])
            for (_, _, answer), decided in zip(batch, answers, strict=False):
                if not answer.done():
                    answer.set_result(decided)
        except Exception as exc:  # (the waiters get it; a cancellation goes on up)
            failure = exc
        finally:
            # every waiter is answered: one left without a decision (an error, a cancellation, a
            # short answer) is refused as the server failing, never left waiting
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(failure or RuntimeError("no decision"))


def make_authorize(svc: Services, counts: SocketCounts | None = None) -> Any:
    decisions = Decisions(make_recheck_many(svc))

    async def authorize(scope: Scope, lesson_id: str) -> Grant:
        _lesson_uuid(lesson_id)
        conn = HTTPConnection(scope)
        memo = scope.get(PRINCIPAL_MEMO)
        if not isinstance(memo, _PrincipalMemo):
            # (a Hocuspocus socket copies what its first document's authorize noted to its own
            # scope, so the documents after it share this one)
            memo = scope[PRINCIPAL_MEMO] = _PrincipalMemo()
        try:
            claims = await svc.auth.claims_of(conn, websocket=True)
            if claims is None:
                raise Denied(CLOSE_UNAUTHORIZED, "Sign in to edit lessons.")
            principal = memo.get(str(claims["sub"]))
            if principal is None:
                principal = await svc.auth.resolve_user(claims)
                await svc.auth.signed_in(principal)
                memo.put(principal)
        except Unauthorized as exc:
            raise Denied(CLOSE_UNAUTHORIZED, str(exc.detail or "")) from None
        except Forbidden as exc:
            raise Denied(CLOSE_FORBIDDEN, str(exc.detail or "")) from None
        can_write = await decisions.decide(lesson_id, principal)
        if counts is not None:
            await counts.take(scope, principal.clerk_id)
        return Grant(user_id=principal.clerk_id, can_write=can_write, subject=principal)

    return authorize


def make_recheck(svc: Services) -> Any:
    async def recheck(lesson_id: str, grant: Grant) -> bool:
        # Re-read the user: a role change (admin revoked, user gone) applies to open sockets too.
        async with svc.sessions() as session:
            user = (await session.execute(select(User).where(User.clerk_id == grant.user_id))).scalar_one_or_none()
        if user is None:
            raise Denied(CLOSE_FORBIDDEN, "The user is gone.")
        if user.deleted_at is not None:  # §2: a deleted user's token is 401, so is their socket
            raise Denied(CLOSE_UNAUTHORIZED, "The user was deleted.")
        return await _decide(svc, lesson_id, Principal.from_user(user))

    return recheck


# The facts of make_recheck's decision depend on the lesson only through its course, so a batch of
# (lesson, user) pairs is decided per distinct (course, user): a user in 50 lessons of one course is
# one row, not 50 (a Hocuspocus socket editing a course's lessons; the rooms' re-check round of
# 2,500 pairs was 2,500 rows decoded and decided every 2 s). One statement: the pairs grouped by
# the lesson's course (NULL: no such lesson) and user, each group's lessons (as text, the canonical
# spelling), then the user (found, deleted, role), the course, the user's collaborator role on it
# and their enrollment.
_RECHECK_MANY = text(f"""
    WITH p AS (
        SELECT CAST(p.lesson_id AS text) AS lesson_id, p.clerk_id, un.course_id
        FROM unnest(CAST(:lessons AS uuid[]), CAST(:users AS text[])) AS p(lesson_id, clerk_id)
        LEFT JOIN {Lesson.__tablename__} l ON l.id = p.lesson_id
        LEFT JOIN {Unit.__tablename__} un ON un.id = l.unit_id
    ), k AS (
        SELECT course_id, clerk_id, array_agg(lesson_id) AS lessons FROM p GROUP BY course_id, clerk_id
    )
    SELECT k.lessons, k.clerk_id, u.clerk_id IS NOT NULL, u.deleted_at IS NOT NULL, u.role,
           c.id, c.author_id, c.is_published,
           (SELECT cc.role FROM {Collaborator.__tablename__} cc
             WHERE cc.course_id = c.id AND cc.user_id = k.clerk_id),
           EXISTS (SELECT 1 FROM {UserCourse.__tablename__} e
                    WHERE e.course_id = c.id AND e.user_id = k.clerk_id)
    FROM k
    LEFT JOIN {User.__tablename__} u ON u.clerk_id = k.clerk_id
    LEFT JOIN {Course.__tablename__} c ON c.id = k.course_id
""")


def make_recheck_many(svc: Services) -> Any:
    """``recheck`` for a batch of (lesson, grant) pairs in one statement (the rooms' re-check
    round, the documents authorised together): the same decisions, the same close codes, each
    decided once per distinct (course, user)."""

    async def recheck_many(pairs: list[tuple[str, Grant]]) -> list[bool | Denied]:
        lessons: dict[str, uuid.UUID | Denied] = {}  # each id as given: parsed, or its refusal
        for lesson_id, _ in pairs:
            if lesson_id not in lessons:
                try:
                    lessons[lesson_id] = _lesson_uuid(lesson_id)
                except Denied as denied:
                    lessons[lesson_id] = denied
        spelled = {lesson_id: str(lid) if isinstance(lid, uuid.UUID) else lid for lesson_id, lid in lessons.items()}
        asked = [(lid, grant.user_id) for lesson_id, grant in pairs
                 if isinstance(lid := lessons[lesson_id], uuid.UUID)]
        decided: dict[tuple[str, str], bool | Denied] = {}
        if asked:
            async with autocommit(svc.engine) as conn:
                rows = (await conn.execute(_RECHECK_MANY, {
                    "lessons": [lid for lid, _ in asked], "users": [user for _, user in asked],
                })).all()
            for grouped, user, *facts in rows:
                answer = _recheck_answer(user, *facts)
                for lesson in grouped:
                    decided[(lesson, user)] = answer
        missing = Denied(CLOSE_NOT_FOUND, "No such lesson.")  # (every pair asked is in a group)
        return [key if isinstance(key := spelled[lesson_id], Denied) else decided.get((key, grant.user_id), missing)
                for lesson_id, grant in pairs]

    return recheck_many


def _recheck_answer(clerk_id: str, found: bool, deleted: bool, role: str | None, course_id: uuid.UUID | None,
                    author_id: str | None, is_published: bool | None, collaborator: str | None,
                    enrolled: bool) -> bool | Denied:
    if not found:
        return Denied(CLOSE_FORBIDDEN, "The user is gone.")
    if deleted:  # §2: a deleted user's token is 401, so is their socket
        return Denied(CLOSE_UNAUTHORIZED, "The user was deleted.")
    if course_id is None or author_id is None:
        return Denied(CLOSE_NOT_FOUND, "No such lesson.")
    principal = Principal(clerk_id=clerk_id, id="", email=None, name=None, image_url=None,
                          role=role or "member", timezone="UTC")
    try:
        access = access_from(course_id, author_id, bool(is_published), collaborator, bool(enrolled), principal)
    except NotFound:
        return Denied(CLOSE_NOT_FOUND, "No such lesson.")
    if access.can_edit:
        return True
    if access.can_see_drafts:  # a viewer collaborator: read-only
        return False
    return Denied(CLOSE_FORBIDDEN, "Only the author, collaborators and admins may join.")


ACCESS_CHANNEL = "access_changed"  # NOTIFY'd by migrations/versions/0011 at each commit that changes access
ACCESS_PROBE_S = 5.0  # how often the listening connection proves it still hears notifications
ACCESS_PROBE = "probe:"  # the payload prefix of those proofs (every node ignores other nodes' ones)


def make_access_watch(svc: Services) -> AccessWatch | None:
    """The rooms' :data:`collab.access.AccessWatch`: one dedicated asyncpg connection LISTENs
    to ``access_changed`` (a trigger NOTIFYs it at each commit that changes who may edit a
    lesson, by the app or by hand in SQL). A notification arrives after the commit, so the
    re-check round it starts reads the change. Connecting (again) counts as a change: what
    committed while nobody listened is re-checked. While not listening, the rooms re-check every
    round as without a watch. Every :data:`ACCESS_PROBE_S` the connection NOTIFYs a probe of its
    own and must hear it back within 10 s: a connection that died silently, or one whose LISTEN
    does not come back (a transaction-pooling proxy between), is dropped and the node re-checks
    every round until it listens again."""
    url = svc.settings.database_url
    if not url:
        return None
    dsn = libpq_dsn(url)
    node = svc.settings.node_id

    async def watch(changed: Callable[[bool], None]) -> None:
        backoff = 0.5
        probes = 0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn, timeout=10, server_settings={
                    "application_name": f"scriptorium-access-watch node={node} pid={os.getpid()}"})
                lost = asyncio.Event()
                heard: dict[str, asyncio.Event] = {}

                def notified(_conn: Any, _pid: int, _channel: str, payload: str,
                             heard: dict[str, asyncio.Event] = heard) -> None:
                    if payload.startswith(ACCESS_PROBE):
                        if (probe := heard.get(payload)) is not None:
                            probe.set()
                        return
                    changed(True)

                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(ACCESS_CHANNEL, notified)
                changed(True)
                backoff = 0.5
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), ACCESS_PROBE_S)
                    if lost.is_set():
                        break
                    probes += 1
                    token = f"{ACCESS_PROBE}{node}:{os.getpid()}:{probes}"
                    heard[token] = probe = asyncio.Event()
                    try:
                        await asyncio.wait_for(conn.execute("SELECT pg_notify($1, $2)", ACCESS_CHANNEL, token), 10)
                        await asyncio.wait_for(probe.wait(), 10)
                    finally:
                        heard.pop(token, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("collab access watch lost its connection; re-checking every round meanwhile",
                            extra={"error": f"{type(exc).__name__}: {exc}"})
            finally:
                changed(False)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    return watch


def build_rooms(svc: Services, counts: SocketCounts | None = None) -> RoomManager:
    relay = None
    if svc.settings.redis_url:
        relay = RedisRelay(svc.settings.redis_url, svc.settings.redis_prefix, svc.settings.node_id)
    metrics = svc.metrics
    settings = svc.settings
    retention = VersionRetention(settings.version_keep_days, settings.version_keep_older,
                                 settings.version_max_per_lesson)
    store = PgStore(svc.sessions, retention)
    # Several nodes share the rooms' rows: one node per room writes them (fenced leases).
    # The holder is this process (NODE_ID may be shared by the workers of one node).
    holder = f"{relay.node_id}:{uuid.uuid4().hex[:8]}" if relay is not None else ""
    leases = PgLeases(store, holder, settings.collab_lease_seconds) if relay is not None else None
    rooms = RoomManager(store, make_authorize(svc, counts), make_recheck(svc), relay, leases=leases,
                        sync_burst=settings.collab_sync_burst, sync_per_second=settings.collab_sync_per_second,
                        awareness_ids=settings.collab_awareness_ids,
                        awareness_state_bytes=settings.collab_awareness_state_bytes,
                        awareness_burst=settings.collab_awareness_burst,
                        awareness_per_second=settings.collab_awareness_per_second,
                        awareness_relay_tick=settings.collab_awareness_relay_tick,
                        receive_per_second=settings.collab_receive_bytes_per_second,
                        max_unsaved=settings.collab_unsaved_max_bytes,
                        recheck_many=make_recheck_many(svc),
                        write_interval=settings.collab_write_interval_ms / 1000,
                        write_pace_above=settings.collab_write_pace_above,
                        access_watch=make_access_watch(svc),
                        commit_gap=settings.collab_commit_gap_ms / 1000,
                        compact_threshold=settings.collab_compact_rows)
    if metrics is not None:
        metrics.collab_rooms.set_function(lambda: len(rooms.rooms))
        metrics.collab_updates.set_function(lambda: rooms.updates_applied)
        metrics.collab_writes_paced.set_function(lambda: float(rooms.coalescer.paced))
        metrics.collab_writes_paced_seconds.set_function(lambda: rooms.coalescer.paced_seconds)
        if relay is not None:
            metrics.collab_relay_updates.set_function(lambda: relay.updates_published)
            metrics.collab_rooms_alone.set_function(relay.alone_count)
        metrics.websockets.labels("collab").set_function(rooms.peer_count)
    return rooms


@asynccontextmanager
async def component(svc: Services) -> AsyncIterator[None]:
    """Starts the room manager with the app (``services.rooms``); flushes everything at stop."""
    counts = SocketCounts(make_caps(svc.settings, "collab", svc.settings.collab_sockets_per_user))
    rooms = build_rooms(svc, counts)
    svc.rooms = rooms
    _counts[id(svc)] = counts
    await rooms.start()
    try:
        yield
    finally:
        _counts.pop(id(svc), None)
        await rooms.stop()
        await counts.caps.close()


_counts: dict[int, SocketCounts] = {}  # per Services (one per app)


async def _handle(scope: Scope, receive: Receive, send: Send, serve: Any = serve_collab) -> None:
    svc = services(HTTPConnection(scope))
    rooms = svc.rooms
    assert rooms is not None, "the collab component starts with the app"
    try:
        await serve(rooms, scope, receive, send)
    finally:
        counts = _counts.get(id(svc))
        if counts is not None:
            await counts.release(scope)


COLLAB_PREFIX = "/collab/lessons/"
HOCUSPOCUS_PATH = "/collab"  # the Hocuspocus protocol: documents lesson:<id>, many per socket


class CollabFastPath:
    """Hands ``/collab/lessons/{id}`` and ``/collab`` sockets to the rooms ahead of the router, with the server's
    own ``send`` (not wrapped per message by the exception middleware), so broadcasts can write
    one encoded frame to every peer. Everything else goes on to the app unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "websocket" and path.startswith(COLLAB_PREFIX) and "/" not in path[len(COLLAB_PREFIX):]:
            scope["path_params"] = {"lesson_id": path[len(COLLAB_PREFIX):]}
            await _handle(scope, receive, send)
            return
        if scope["type"] == "websocket" and path.rstrip("/") == HOCUSPOCUS_PATH:
            await _handle(scope, receive, send, serve_hocuspocus)
            return
        await self.app(scope, receive, send)
