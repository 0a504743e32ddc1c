"""Wiring of live co-editing: the ``/collab/lessons/{lesson_id}`` (y-websocket) and ``/collab``
(Hocuspocus) sockets, their access policy (built on :mod:`server.access`) and the room manager on
``services.rooms``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from collab.access import Denied, Grant
from collab.connection import serve as serve_collab
from collab.hocuspocus import serve as serve_hocuspocus
from collab.manager import RoomManager
from collab.relay import RedisRelay
from server.access import lesson_access
from server.auth import Principal
from server.editing.store import PgStore, VersionRetention
from server.errors import Forbidden, NotFound, Unauthorized
from server.state import Services, services
from server.users.models import User
from wire.websocket import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_UNAUTHORIZED


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
    """Open collab sockets per user on this node: every collab budget is per socket, so one
    account opening N sockets would multiply them (``COLLAB_SOCKETS_PER_USER``; 0: off)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: dict[str, int] = {}

    def take(self, scope: Scope, user_id: str) -> None:
        if SOCKET_USER in scope:  # already counted (authorize is asked once per socket)
            return
        if self.cap and self.open.get(user_id, 0) >= self.cap:
            raise Denied(CLOSE_TOO_MANY, "Too many connections.")
        self.open[user_id] = self.open.get(user_id, 0) + 1
        scope[SOCKET_USER] = user_id

    def release(self, scope: Scope) -> None:
        user_id = scope.pop(SOCKET_USER, None)
        if user_id is not None:
            left = self.open.pop(user_id, 1) - 1
            if left:
                self.open[user_id] = left


def make_authorize(svc: Services, counts: SocketCounts | None = None) -> Any:
    async def authorize(scope: Scope, lesson_id: str) -> Grant:
        _lesson_uuid(lesson_id)
        conn = HTTPConnection(scope)
        try:
            principal = await svc.auth.authenticate(conn, websocket=True)
        except Unauthorized as exc:
            raise Denied(CLOSE_UNAUTHORIZED, str(exc.detail or "")) from None
        except Forbidden as exc:
            raise Denied(CLOSE_FORBIDDEN, str(exc.detail or "")) from None
        if principal is None:
            raise Denied(CLOSE_UNAUTHORIZED, "Sign in to edit lessons.")
        can_write = await _decide(svc, lesson_id, principal)
        if counts is not None:
            counts.take(scope, principal.clerk_id)
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


def build_rooms(svc: Services, counts: SocketCounts | None = None) -> RoomManager:
    relay = None
    if svc.settings.redis_url:
        relay = RedisRelay(svc.settings.redis_url, svc.settings.redis_prefix, svc.settings.node_id)
    metrics = svc.metrics
    settings = svc.settings
    retention = VersionRetention(settings.version_keep_days, settings.version_keep_older,
                                 settings.version_max_per_lesson)
    rooms = RoomManager(PgStore(svc.sessions, retention), make_authorize(svc, counts), make_recheck(svc), relay,
                        sync_burst=settings.collab_sync_burst, sync_per_second=settings.collab_sync_per_second,
                        awareness_ids=settings.collab_awareness_ids,
                        awareness_state_bytes=settings.collab_awareness_state_bytes,
                        awareness_burst=settings.collab_awareness_burst,
                        awareness_per_second=settings.collab_awareness_per_second,
                        receive_per_second=settings.collab_receive_bytes_per_second,
                        max_unsaved=settings.collab_unsaved_max_bytes,
                        on_update=metrics.collab_updates.inc if metrics is not None else None)
    if metrics is not None:
        metrics.collab_rooms.set_function(lambda: len(rooms.rooms))
        metrics.websockets.labels("collab").set_function(rooms.peer_count)
    return rooms


@asynccontextmanager
async def component(svc: Services) -> AsyncIterator[None]:
    """Starts the room manager with the app (``services.rooms``); flushes everything at stop."""
    counts = SocketCounts(svc.settings.collab_sockets_per_user)
    rooms = build_rooms(svc, counts)
    svc.rooms = rooms
    _counts[id(svc)] = counts
    await rooms.start()
    try:
        yield
    finally:
        _counts.pop(id(svc), None)
        await rooms.stop()


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
            counts.release(scope)


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
