"""PostgreSQL storage of live lesson documents: the ``collab.store.Store`` the rooms use."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, any_, bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from collab.store import Fence, LeaseAnswer, LessonGone, LoadedDocument, Merge, PendingUpdate, StaleLease
from server.catalog.models import Lesson
from server.db import driver_autocommit
from server.editing.models import LessonSnapshot, LessonUpdate, LessonVersion
from server.markdown import render

# One compaction reads at most this many bytes of log rows (at least one row); the rest waits for
# the next maintenance tick. Reading all 500 rows of 2 MiB each held ~1 GB at once.
COMPACT_MAX_BYTES = 32 * 1024 * 1024


async def _lock_lesson_document(session: AsyncSession, lesson_id: uuid.UUID) -> None:
    """Serialise seeding and compaction of one lesson's document across nodes."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                          {"key": f"collab:{lesson_id}"})


_APPEND_SQL = """
    INSERT INTO lesson_updates (lesson_id, update, user_id)
    SELECT u.lesson_id, u.update, u.user_id
    FROM unnest($1::text[]::uuid[], $2::bytea[], $3::text[])
         WITH ORDINALITY AS u(lesson_id, update, user_id, n)
    WHERE EXISTS (SELECT 1 FROM lessons WHERE lessons.id = u.lesson_id)
    ORDER BY u.n
"""


# Leases (collab_leases, see collab.persistence.PgLeases): the times are PostgreSQL's
# clock_timestamp(), one clock for every node. A valid lease is kept by its holder (same token);
# a lapsed or released one is taken by anyone with the token plus one.
_ACQUIRE = text("""
    WITH before AS (SELECT holder FROM collab_leases WHERE lesson_id = :lesson)
    INSERT INTO collab_leases AS l (lesson_id, holder, token, expires_at)
    SELECT :lesson, :node, 1, clock_timestamp() + make_interval(secs => :ttl)
    WHERE EXISTS (SELECT 1 FROM lessons WHERE id = :lesson)
    ON CONFLICT (lesson_id) DO UPDATE
       SET holder = EXCLUDED.holder,
           token = l.token + CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > clock_timestamp()
                                  THEN 0 ELSE 1 END,
           expires_at = EXCLUDED.expires_at
     WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp()
    RETURNING token, (SELECT holder FROM before) AS previous
""")
_HOLDER = text("""
    SELECT EXTRACT(EPOCH FROM expires_at - clock_timestamp()) FROM collab_leases WHERE lesson_id = :lesson
""")
_RENEW = text("""
    UPDATE collab_leases l SET expires_at = clock_timestamp() + make_interval(secs => :ttl)
    FROM unnest(CAST(:lessons AS uuid[]), CAST(:tokens AS bigint[])) AS h(lesson_id, token)
    WHERE l.lesson_id = h.lesson_id AND l.token = h.token AND l.holder = :node
      AND l.expires_at > clock_timestamp()
    RETURNING l.lesson_id
""")
_RELEASE = text("""
    UPDATE collab_leases SET expires_at = clock_timestamp()
    WHERE lesson_id = :lesson AND holder = :node AND token = :token AND expires_at > clock_timestamp()
""")
# In the fenced write's transaction: FOR SHARE conflicts with a takeover's UPDATE, so a lease valid
# here stays so until this transaction ends (the takeover waits, then bumps the token).
_FENCE = text("""
    SELECT 1 FROM collab_leases
    WHERE lesson_id = :lesson AND holder = :node AND token = :token AND expires_at > clock_timestamp()
    FOR SHARE
""")


async def _check_fence(session: AsyncSession, lesson_id: uuid.UUID, fence: Fence | None) -> None:
    if fence is None:
        return
    held = (await session.execute(_FENCE, {"lesson": lesson_id, "node": fence.node, "token": fence.token})).first()
    if held is None:
        raise StaleLease(str(lesson_id))


@dataclass(frozen=True)
class VersionRetention:
    """Which versions of a lesson are kept (see the ``version_*`` settings)."""

    keep_days: int = 30
    keep_older: int = 50
    max_per_lesson: int = 500


# Versions of one lesson beyond the retention, newest first: past ``max`` in all, or older than
# ``days`` and past ``older`` of those. Runs on the (lesson_id, created_at) index, over at most
# max + 1 rows, in the transaction that records a version: the history never grows past the cap
# whatever the rate of recording (each join/leave cycle of an editor records one).
_PRUNE = text("""
    DELETE FROM lesson_versions v
    USING (
        SELECT id,
               row_number() OVER (ORDER BY created_at DESC, id DESC) AS n,
               row_number() OVER (PARTITION BY created_at < now() - make_interval(days => :days)
                                  ORDER BY created_at DESC, id DESC) AS m,
               created_at < now() - make_interval(days => :days) AS old
        FROM lesson_versions WHERE lesson_id = :lesson
    ) ranked
    WHERE v.id = ranked.id AND (ranked.n > :max OR (ranked.old AND ranked.m > :older))
""")


class PgStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 retention: VersionRetention | None = None) -> None:
        self.sessions = sessions
        self.engine: AsyncEngine = sessions.kw["bind"]
        self.retention = retention or VersionRetention()

    async def load(self, lesson_id: str, seed: Callable[[str, str], bytes]) -> LoadedDocument:
        lid = uuid.UUID(lesson_id)
        async with self.sessions() as session, session.begin():
            snapshot = await session.get(LessonSnapshot, lid)
            rows = (await session.execute(
                select(LessonUpdate.update).where(LessonUpdate.lesson_id == lid).order_by(LessonUpdate.id)
            )).scalars().all()
            if snapshot is None and not rows:
                # No document yet: seed it once, under a lock every node takes.
                await _lock_lesson_document(session, lid)
                rows = (await session.execute(
                    select(LessonUpdate.update).where(LessonUpdate.lesson_id == lid).order_by(LessonUpdate.id)
                )).scalars().all()
                snapshot = await session.get(LessonSnapshot, lid)
                if snapshot is None and not rows:
                    lesson = await session.get(Lesson, lid)
                    if lesson is None:
                        raise LessonGone(lesson_id)
                    body = lesson.content.get("body") if isinstance(lesson.content, dict) else None
                    first = seed(lesson.title or "", body if isinstance(body, str) else "")
                    await session.execute(insert(LessonUpdate).values(lesson_id=lid, update=first))
                    rows = [first]
            updates = ([snapshot.state] if snapshot is not None else []) + list(rows)
            # The row's text as of now: a room equal to it has nothing to materialise yet.
            stored = (await session.execute(select(Lesson.title, Lesson.content).where(Lesson.id == lid))).first()
            stored_text = None
            if (stored is not None and isinstance(stored.content, dict)
                    and isinstance(body := stored.content.get("body"), str)):
                stored_text = (stored.title or "", body)
            return LoadedDocument(updates=updates, log_rows=len(rows), stored_text=stored_text)

    async def append(self, batch: Sequence[PendingUpdate]) -> None:
        if not batch:
            return
        # One statement for the whole batch, its own transaction (no BEGIN/COMMIT round trips:
        # the log is written as often as commits allow while a "saved" answer or a relay waits);
        # updates of a lesson deleted meanwhile are skipped (otherwise one foreign-key error
        # would hold back every other lesson's updates).
        # The driver's own call (server.db.driver_autocommit): as often as 50 times a second.
        async with driver_autocommit(self.engine) as conn:
            await conn.execute(_APPEND_SQL, [item.lesson_id for item in batch],
                               [item.update for item in batch], [item.actor for item in batch])

    async def compact(self, lesson_id: str, merge: Merge, *, fence: Fence | None = None) -> int:
        lid = uuid.UUID(lesson_id)
        async with self.sessions() as session, session.begin():
            await _check_fence(session, lid, fence)
            await _lock_lesson_document(session, lid)
            snapshot = await session.get(LessonSnapshot, lid)
            sizes = (await session.execute(
                select(LessonUpdate.id, func.octet_length(LessonUpdate.update)).where(LessonUpdate.lesson_id == lid)
                .order_by(LessonUpdate.id)
            )).all()
            chosen: list[int] = []
            total = 0
            for row_id, size in sizes:
                if chosen and total + size > COMPACT_MAX_BYTES:
                    break
                chosen.append(row_id)
                total += size
            if not chosen:
                return 0
            # ``= ANY(array)``: one statement text whatever the count (an IN list of n ids is a new
            # statement to compile and prepare for every n)
            rows = (await session.execute(
                select(LessonUpdate.id, LessonUpdate.update)
                .where(LessonUpdate.id == any_(bindparam("chosen", chosen, type_=ARRAY(BigInteger))))
                .order_by(LessonUpdate.id)
            )).all()
            if not rows:
                return 0
            updates = ([snapshot.state] if snapshot is not None else []) + [row.update for row in rows]
            # Off the event loop (a worker process: collab/persistence.py), where 40 copies of a
            # 2 MiB update took 2.4 s.
            state, state_vector = await merge(updates)
            last_id = max(row.id for row in rows)
            await session.execute(
                pg_insert(LessonSnapshot)
                .values(lesson_id=lid, state=state, state_vector=state_vector, last_update_id=last_id)
                .on_conflict_do_update(index_elements=[LessonSnapshot.lesson_id], set_={
                    "state": state, "state_vector": state_vector, "last_update_id": last_id,
                    "updated_at": func.now()})
            )
            # Exactly the rows merged: a row committed meanwhile (even with a smaller id) stays.
            await session.execute(delete(LessonUpdate).where(LessonUpdate.id == any_(
                bindparam("merged", [row.id for row in rows], type_=ARRAY(BigInteger)))))
            return len(rows)

    async def materialise(self, lesson_id: str, title: str, body: str, *, fence: Fence | None = None) -> bool:
        lid = uuid.UUID(lesson_id)
        # Compared before rendering: the last peer leaving materialised (and rendered a 200,000-
        # character body on the single render worker) on every connect/disconnect cycle.
        async with self.sessions() as session:
            stored = (await session.execute(select(Lesson.title, Lesson.content).where(Lesson.id == lid))).first()
        if stored is None:
            return False
        if stored.title == title and dict(stored.content or {}).get("body") == body:
            return False
        html = await render(body)  # before the transaction: a long text renders in the worker
        async with self.sessions() as session, session.begin():
            await _check_fence(session, lid, fence)
            current = (await session.execute(
                select(Lesson.title, Lesson.content).where(Lesson.id == lid).with_for_update()
            )).first()
            if current is None:
                return False
            content = dict(current.content or {})
            if current.title == title and content.get("body") == body:
                return False
            content["body"] = body
            content["html"] = html
            await session.execute(
                update(Lesson).where(Lesson.id == lid)
                .values(title=title, content=content, revision=Lesson.revision + 1, updated_at=func.now())
            )
            return True

    async def record_version(self, lesson_id: str, *, title: str, body: str, state: bytes,
                             contributors: list[str], reason: str, fence: Fence | None = None) -> str:
        async with self.sessions() as session, session.begin():
            await _check_fence(session, uuid.UUID(lesson_id), fence)
            # FOR KEY SHARE: a lesson deleted under an open room is LessonGone, not a foreign-key
            # error (a traceback from the room's maintenance every minute until the room closes).
            found = (await session.execute(
                select(Lesson.id).where(Lesson.id == uuid.UUID(lesson_id)).with_for_update(read=True, key_share=True)
            )).first()
            if found is None:
                raise LessonGone(lesson_id)
            version = LessonVersion(lesson_id=uuid.UUID(lesson_id), title=title, body=body, state=state,
                                    contributors=contributors, reason=reason)
            session.add(version)
            await session.flush()
            keep = self.retention
            await session.execute(_PRUNE, {"lesson": version.lesson_id, "days": keep.keep_days,
                                           "older": keep.keep_older, "max": max(1, keep.max_per_lesson)})
            return str(version.id)

    # --- leases (collab.store.LeaseStore) ---------------------------------------------------

    async def acquire_lease(self, lesson_id: str, node: str, ttl: float) -> LeaseAnswer:
        lid = uuid.UUID(lesson_id)
        async with self.sessions() as session, session.begin():
            granted = (await session.execute(_ACQUIRE, {"lesson": lid, "node": node, "ttl": ttl})).first()
            if granted is not None:
                return LeaseAnswer(int(granted.token), previous=granted.previous)
            remaining = (await session.execute(_HOLDER, {"lesson": lid})).first()
            if remaining is None:
                raise LessonGone(lesson_id)
            return LeaseAnswer(None, max(0.0, float(remaining[0])))

    async def renew_leases(self, node: str, held: dict[str, int], ttl: float) -> set[str]:
        if not held:
            return set()
        async with self.sessions() as session, session.begin():
            rows = (await session.execute(_RENEW, {
                "node": node, "ttl": ttl, "lessons": [uuid.UUID(lesson) for lesson in held],
                "tokens": list(held.values())})).scalars().all()
        return {str(lesson) for lesson in rows}

    async def release_lease(self, lesson_id: str, fence: Fence) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(_RELEASE, {"lesson": uuid.UUID(lesson_id), "node": fence.node,
                                             "token": fence.token})
