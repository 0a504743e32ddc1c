"""Live events wiring (§7): the broker, the outbox drain, the ``/ws`` hub and its access policy.

The outbox drain turns committed ``event_outbox`` rows into broker events, exactly once and in
order per channel:

1. One node drains: the one whose drain connection holds a PostgreSQL advisory lock (it keeps it
   for the life of that session; another node takes over when the session ends). Pending rows get
   their channel event id (``seq``) from ``event_channels`` in one statement that commits before
   anything is published, so the id of an event never changes, whatever fails later.
2. Each row is published with its id; the broker's append is idempotent per id (a Lua script on
   Redis), so a retry after a crash or a Redis outage never duplicates.
3. Rows are marked published. Until then they stay pending: writes keep returning 2xx while
   Redis is down, and their events go out, in order, once it is back.

The drain wakes on ``NOTIFY event_outbox`` (a trigger fires it at each commit that inserted
rows, on any node), on Redis reconnects, and every ``SWEEP_S`` as a safety net. When the broker
has lost its history (a fresh in-process broker, Redis restarted without persistence), the
drain first puts back the retained history from the outbox rows (the last ``event_history`` per
channel). Published rows older than ``event_history_seconds`` are pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import asyncpg
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from realtime.broker import Broker, HistoryPolicy
from realtime.hub import ChannelDenied, ConnectionDenied, Hub, HubLimits, User
from realtime.memory_broker import MemoryBroker
from realtime.redis_broker import RedisBroker
from server.access import access_from, course_access
from server.auth import Principal
from server.catalog.models import Collaborator, Course
from server.errors import Forbidden, NotFound, Unauthorized
from server.forum.models import ForumPost
from server.settings import Settings
from server.state import Services, services
from server.users.models import User as UserRow

log = logging.getLogger("scriptorium.live")

DRAIN_LOCK = 0x5C21_0E0B  # pg advisory lock key of the outbox drain
SWEEP_S = 1.0
BATCH = 500
# One statement (its own transaction): a batch of pending rows, oldest first, where the fresh
# ones get the next ids of their channels from event_channels. Rows that already have an id (a
# drain that stopped before marking them) keep it and go out again (the broker ignores ids it has).
_TAKE_BATCH = """
WITH batch AS (
    SELECT id, channel, event, data, seq FROM event_outbox
    WHERE published_at IS NULL ORDER BY seq NULLS LAST, id LIMIT $1
), fresh AS (
    SELECT id, channel, row_number() OVER (PARTITION BY channel ORDER BY id) AS k
    FROM batch WHERE seq IS NULL
), counts AS (
    SELECT channel, count(*) AS n FROM fresh GROUP BY channel
), reserved AS (
    INSERT INTO event_channels AS ec (channel, last_id)
    SELECT channel, n FROM counts ORDER BY channel
    ON CONFLICT (channel) DO UPDATE SET last_id = ec.last_id + EXCLUDED.last_id
    RETURNING channel, last_id
), numbered AS (
    SELECT f.id, r.last_id - c.n + f.k AS seq
    FROM fresh f JOIN counts c USING (channel) JOIN reserved r USING (channel)
), assigned AS (
    UPDATE event_outbox o SET seq = n.seq FROM numbered n WHERE o.id = n.id RETURNING o.id, o.seq
)
SELECT b.id, b.channel, b.event, b.data::text AS data, coalesce(a.seq, b.seq) AS seq
FROM batch b LEFT JOIN assigned a USING (id)
ORDER BY b.channel, 5
"""
PRUNE_EVERY_S = 600.0


def make_broker(settings: Settings) -> Broker:
    policy = HistoryPolicy(keep=settings.event_history, max_age_s=settings.event_history_seconds)
    if settings.redis_url:
        return RedisBroker(settings.redis_url, settings.redis_prefix, policy)
    return MemoryBroker(policy)


# --- the outbox drain ------------------------------------------------------------------------


class OutboxDrain:
    """Publishes committed outbox rows to the broker (see the module docstring).

    One dedicated asyncpg connection LISTENs and, on the node that holds the advisory lock (the
    leader, for as long as that connection lives), drains: one statement takes a batch of
    pending rows and gives the fresh ones their channel ids (autocommit: the ids are durable when
    it returns), the events are published, one statement marks them. Other nodes try to take the
    lock on each wake-up, so a dead leader's session (and lock) is replaced within a sweep.
    """

    def __init__(self, engine: AsyncEngine, broker: Broker, settings: Settings) -> None:
        self.engine = engine
        self.broker = broker
        self.settings = settings
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._leader = False
        self._pruned_at = 0.0

    def kick(self) -> None:
        """Drain soon (safe to call from any callback on the loop)."""
        self._wake.set()

    async def start(self) -> None:
        with contextlib.suppress(Exception):
            await self.drain_once()  # history back before the first socket (when leader)
        self._task = asyncio.create_task(self._run(), name="outbox-drain")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._leader = False  # a new session holds no lock
        assert self.settings.database_url
        dsn = self.settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        # named, so pg_stat_activity shows which node (and process) drains
        conn = await asyncpg.connect(dsn, server_settings={
            "application_name": f"scriptorium-drain node={self.settings.node_id} pid={os.getpid()}"})
        await conn.add_listener("event_outbox", lambda *_: self.kick())
        self._conn = conn
        return conn

    async def _disconnect(self) -> None:
        conn, self._conn, self._leader = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SWEEP_S)
            self._wake.clear()
            try:
                await self.drain_once()
                backoff = 0.1
                if self._leader:
                    await self._maybe_prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox drain failed; retrying", extra={"error": f"{type(exc).__name__}: {exc}"})
                if isinstance(exc, (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)):
                    await self._disconnect()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                self._wake.set()

    async def drain_once(self) -> bool:
        """Publish everything pending; False when another node is the drainer."""
        conn = await self._connection()
        if not self._leader:
            self._leader = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", DRAIN_LOCK))
            if not self._leader:
                return False
        if await self.broker.needs_restore():
            await self._restore()
            await self.broker.mark_restored()
        while True:
            rows = await conn.fetch(_TAKE_BATCH, BATCH)
            for row in rows:  # ids are durable now; per channel in id order
                await self.broker.publish(row["channel"], row["event"], row["data"], id=row["seq"])
            if rows:
                await conn.execute("UPDATE event_outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                                   [row["id"] for row in rows])
            if len(rows) < BATCH:
                return True

    async def _restore(self) -> None:
        """Put the retained history back into a broker that lost it."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT channel, seq, event, data, ms FROM ("
                " SELECT channel, seq, event, data::text AS data,"
                " (extract(epoch FROM created_at) * 1000)::bigint AS ms,"
                " row_number() OVER (PARTITION BY channel ORDER BY seq DESC) AS rn"
                " FROM event_outbox WHERE seq IS NOT NULL AND published_at IS NOT NULL) AS t "
                "WHERE rn <= :keep ORDER BY channel, seq"
            ), {"keep": self.settings.event_history})).all()
            # The newest id each channel had published: pending ids must still go out after it.
            lasts = (await conn.execute(text(
                "SELECT c.channel, COALESCE((SELECT min(o.seq) - 1 FROM event_outbox o WHERE o.channel = c.channel"
                " AND o.published_at IS NULL AND o.seq IS NOT NULL), c.last_id) AS last_id FROM event_channels c"
            ))).all()
            await conn.commit()
        by_channel: dict[str, list[tuple[int, str, str, int]]] = {}
        for row in rows:
            by_channel.setdefault(row.channel, []).append((row.seq, row.event, row.data, row.ms))
        for row in lasts:
            await self.broker.restore(row.channel, by_channel.get(row.channel, []), int(row.last_id))
        log.info("restored live history", extra={"channels": len(lasts), "events": len(rows)})

    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        async with self.engine.begin() as conn:
            await conn.execute(text(
                "DELETE FROM event_outbox WHERE published_at IS NOT NULL "
                "AND published_at < now() - make_interval(secs => :s)"
            ), {"s": self.settings.event_history_seconds})


# --- the /ws access policy ------------------------------------------------------------------
#
# Subscribing checks read rights like REST (``authorize``, memoised for ACCESS_CACHE_S). While
# subscribed they are re-checked (§7) by ``make_recheck``, in batches: by the hub every
# WS_RECHECK_SECONDS for all of a node's subscriptions, and before each burst of a course or
# thread channel's events is delivered (``held_channel``), so an event written after a course
# was unpublished or a collaborator removed never reaches the reader who lost it. The cost is
# one database round trip per burst per node: two primary-key lookups (thread, course) for a
# published course, plus users and collaborators for a draft.

# Short: a role change applies to the next connection (§2) within seconds, and open
# subscriptions are re-checked by ``make_recheck`` anyway.
AUTH_CACHE_S = 5.0
ACCESS_CACHE_S = 2.0


class TtlCache:
    """A small time-bounded memo: a reconnect storm of 1,000 sockets by a few dozen users costs a
    few dozen SQL queries, not thousands (rights changes show within ``ttl`` seconds)."""

    def __init__(self, ttl: float, max_size: int = 20_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._items: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        found = self._items.get(key)
        if found is None:
            return None
        if found[0] < time.monotonic():
            del self._items[key]
            return None
        return found[1]

    def discard(self, key: Any) -> None:
        self._items.pop(key, None)

    def put(self, key: Any, value: Any) -> None:
        if len(self._items) >= self.max_size:
            self._items.clear()
        self._items[key] = (time.monotonic() + self.ttl, value)


def _bad(detail: str) -> ChannelDenied:
    return ChannelDenied("bad_request", detail)


def make_authorize(svc: Services, granted: TtlCache) -> Any:
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
        if not user.is_admin and granted.get(key) is not None:
            return internal
        assert isinstance(ident, uuid.UUID)
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
        granted.put(key, True)
        return internal

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


def make_recheck(svc: Services, granted: TtlCache) -> Any:
    async def recheck(pairs: list[tuple[User, str]]) -> dict[tuple[str, str], ChannelDenied]:
        """Which (user, internal channel) pairs lost read access: a bounded number of queries
        for the whole batch (threads, courses, then users and collaborators of drafts only),
        decided by the one policy (``access_from``)."""
        threads: set[uuid.UUID] = set()
        courses: set[uuid.UUID] = set()
        wanted: list[tuple[Principal, str, str, uuid.UUID]] = []
        denied: dict[tuple[str, str], ChannelDenied] = {}
        # A deleted user (§2) loses every subscription, user:me included, each ended with
        # not_found; the socket itself stays open with nothing to receive (it can subscribe
        # again only to be refused), which ends their live data without a hub-level close.
        async with svc.sessions() as session:
            deleted = set((await session.scalars(
                select(UserRow.clerk_id).where(UserRow.clerk_id.in_({u.clerk_id for u, _ in pairs}),
                                               UserRow.deleted_at.is_not(None)))).all())
        for user, channel in pairs:
            if user.clerk_id in deleted:
                denied[(user.clerk_id, channel)] = ChannelDenied("not_found", "The user was deleted.")
                continue
            kind, _, rest = channel.partition(":")
            if kind not in ("course", "thread"):
                continue
            assert isinstance(user, Principal)
            ident = uuid.UUID(rest)
            (courses if kind == "course" else threads).add(ident)
            wanted.append((user, channel, kind, ident))
        if not wanted:
            return denied
        gone = ChannelDenied("not_found", "No such channel (access was lost).")
        async with svc.sessions() as session:
            thread_course: dict[uuid.UUID, uuid.UUID] = {}
            if threads:
                rows = await session.execute(
                    select(ForumPost.id, ForumPost.course_id)
                    .where(ForumPost.id.in_(threads), ForumPost.deleted_at.is_(None)))
                thread_course = {row[0]: row[1] for row in rows}
            courses.update(thread_course.values())
            facts: dict[uuid.UUID, tuple[str, bool]] = {}
            if courses:
                course_rows = await session.execute(
                    select(Course.id, Course.author_id, Course.is_published).where(Course.id.in_(courses)))
                facts = {row[0]: (row[1], row[2]) for row in course_rows}
            drafts = {cid for cid, (_, published) in facts.items() if not published}
            roles: dict[str, str] = {}
            collaborators: dict[tuple[uuid.UUID, str], str] = {}
            if drafts:  # a published course is readable by everyone signed in
                readers = {user.clerk_id for user, _, kind, ident in wanted
                           if (ident if kind == "course" else thread_course.get(ident)) in drafts}
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


def make_authenticate(svc: Services) -> Any:
    known = TtlCache(AUTH_CACHE_S)

    async def authenticate(ws: WebSocket) -> User:
        try:
            found = svc.auth.token_from(ws, websocket=True)
            if found is not None and found[1] != "cookie":
                # The token is verified every time (signature, expiry); only the user lookup
                # (SQL, and the per-login hooks) is memoised per subject for a minute.
                claims = await svc.auth.verify(found[0])
                cached: Principal | None = known.get(claims["sub"])
                if cached is not None:
                    return cached
            user = await svc.auth.authenticate(ws, websocket=True)
            if user is not None:
                known.put(user.clerk_id, user)
        except Unauthorized as exc:
            raise ConnectionDenied(4401, str(exc.detail or "Unauthorized")) from None
        except Forbidden as exc:
            raise ConnectionDenied(4403, str(exc.detail or "Forbidden")) from None
        if user is None:
            raise ConnectionDenied(4401, "Sign in: pass ?token=<jwt>.")
        return user

    return authenticate


# --- wiring ----------------------------------------------------------------------------------


@asynccontextmanager
async def component(svc: Services) -> AsyncIterator[None]:
    """Broker, outbox drain and hub for the app's lifetime."""
    broker = make_broker(svc.settings)
    await broker.start()
    drain = OutboxDrain(svc.engine, broker, svc.settings)
    if isinstance(broker, RedisBroker):
        broker.on_reconnect = drain.kick
    settings = svc.settings
    limits = HubLimits(frames_per_second=settings.ws_frames_per_second, frame_burst=settings.ws_frame_burst,
                       recheck_seconds=settings.ws_recheck_seconds,
                       sockets_per_user=settings.ws_sockets_per_user)
    granted = TtlCache(ACCESS_CACHE_S)
    hub = Hub(broker, make_authenticate(svc), make_authorize(svc, granted), limits,
              recheck=make_recheck(svc, granted), held=held_channel)
    svc.broker, svc.outbox, svc.hub = broker, drain, hub
    hub.start()
    await drain.start()
    try:
        yield
    finally:
        await hub.close_all()
        await drain.stop()
        await broker.close()


async def ws_endpoint(ws: WebSocket) -> None:
    await services(ws).hub.serve(ws)


def routes() -> list[BaseRoute]:
    return [WebSocketRoute("/ws", ws_endpoint)]
