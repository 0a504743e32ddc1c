"""The rooms' access re-check runs when a fact of the access decision changes, not every 2 s
whatever happens: PostgreSQL NOTIFYs ``access_changed`` at each commit that changes one
(migrations/versions/0011), a node LISTENs (server.editing.live.make_access_watch), and while it
does not listen it re-checks every round as before (collab.manager.RoomManager._recheck_loop)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import SimpleNamespace

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from collab.access import Denied, Grant
from collab.manager import RECHECK_SLICES, RoomManager
from server.editing import live
from server.editing.live import ACCESS_CHANNEL, make_access_watch
from tests.collab.test_collab_seam import LESSON, MemoryLink, MemoryStore, _authorize, _recheck
from tests.support import eventually
from tests.support.collab import make_lesson
from tests.support.motivation import make_user


def _dsn(db: AsyncEngine) -> str:
    return db.url.render_as_string(hide_password=False).replace("postgresql+asyncpg://", "postgresql://", 1)


async def test_each_fact_of_access_notifies_at_commit_and_other_writes_do_not(db: AsyncEngine) -> None:
    author, editor = await make_user(db), await make_user(db)
    lesson = await make_lesson(db, author, editors=(editor,))
    got: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(_dsn(db))
    try:
        await listener.add_listener(ACCESS_CHANNEL, lambda _c, _pid, _channel, payload: got.put_nowait(payload))

        async def notifies(sql: str) -> bool:
            """Whether committing ``sql`` notifies: a marker NOTIFY'd after it comes second if so
            (notifications arrive in commit order)."""
            async with db.begin() as conn:
                await conn.execute(text(sql), {"lesson": lesson.id, "editor": editor, "author": author})
            async with db.begin() as conn:
                await conn.execute(text(f"NOTIFY {ACCESS_CHANNEL}, 'mark'"))
            first = await asyncio.wait_for(got.get(), 10)
            if first == "mark":
                return False
            assert await asyncio.wait_for(got.get(), 10) == "mark"
            return True

        course = "(SELECT course_id FROM units WHERE id = (SELECT unit_id FROM lessons WHERE id = :lesson))"
        unit = "(SELECT unit_id FROM lessons WHERE id = :lesson)"
        # every fact the decision reads (server.editing.live._RECHECK_MANY), and writes beside them
        assert not await notifies("UPDATE lessons SET title = 'new' WHERE id = :lesson")
        assert await notifies("UPDATE lessons SET unit_id = unit_id WHERE id = :lesson")
        assert not await notifies(f"UPDATE units SET title = 'new' WHERE id = {unit}")
        assert await notifies(f"UPDATE units SET course_id = course_id WHERE id = {unit}")
        assert not await notifies(f"UPDATE courses SET title = 'new' WHERE id = {course}")
        assert await notifies(f"UPDATE courses SET is_published = is_published WHERE id = {course}")
        assert await notifies(f"UPDATE courses SET author_id = author_id WHERE id = {course}")
        assert not await notifies("UPDATE users SET name = 'new' WHERE clerk_id = :editor")
        assert await notifies("UPDATE users SET role = role WHERE clerk_id = :editor")
        assert await notifies("UPDATE users SET deleted_at = deleted_at WHERE clerk_id = :editor")
        assert await notifies("UPDATE users SET clerk_id = clerk_id WHERE clerk_id = :editor")
        assert await notifies(f"UPDATE collaborators SET role = 'viewer' WHERE user_id = :editor AND course_id = {course}")
        assert await notifies(f"DELETE FROM collaborators WHERE user_id = :editor AND course_id = {course}")
        assert await notifies(f"INSERT INTO collaborators (course_id, user_id, role) VALUES ({course}, :editor, 'viewer')")
        assert not await notifies(f"INSERT INTO user_courses (user_id, course_id) VALUES (:editor, {course})")
        for table, key in (("lessons", "id"), ("units", "id"), ("courses", "id"), ("users", "clerk_id")):
            assert await notifies(f"DELETE FROM {table} WHERE {key} IS NULL"), table  # (no row: a statement)
        # and a TRUNCATE of any of them (their triggers; truncating shared tables here would
        # take every other test's rows along)
        truncated = await listener.fetch(
            "SELECT tgrelid::regclass::text AS t FROM pg_trigger WHERE tgname = 'access_changed_notify_truncate'")
        assert sorted(row["t"] for row in truncated) == ["collaborators", "courses", "lessons", "units", "users"]

        # at commit, not before: a marker sent while the change is uncommitted comes first
        async with db.connect() as conn:
            tx = await conn.begin()
            await conn.execute(text(f"UPDATE collaborators SET role = 'editor' WHERE user_id = :editor AND course_id = {course}"),
                               {"lesson": lesson.id, "editor": editor})
            async with db.begin() as other:
                await other.execute(text(f"NOTIFY {ACCESS_CHANNEL}, 'mark'"))
            assert await asyncio.wait_for(got.get(), 10) == "mark"
            await tx.rollback()  # and a rolled back change notifies nothing
        async with db.begin() as other:
            await other.execute(text(f"NOTIFY {ACCESS_CHANNEL}, 'mark'"))
        assert await asyncio.wait_for(got.get(), 10) == "mark"
    finally:
        await listener.close()


async def test_a_watched_node_rechecks_its_rooms_once_per_change_and_every_round_unwatched() -> None:
    asked: list[int] = []  # the re-check batches' sizes
    asked_event = asyncio.Event()

    async def recheck_many(pairs: list[tuple[str, Grant]]) -> list[bool | Denied]:
        asked.append(len(pairs))
        asked_event.set()
        return [grant.can_write for _, grant in pairs]

    watching: list[Callable[[bool], None]] = []
    forever = asyncio.Event()

    async def access_watch(changed: Callable[[bool], None]) -> None:
        watching.append(changed)
        await forever.wait()

    rooms = RoomManager(MemoryStore(), _authorize, _recheck, recheck_interval=0.08,  # type: ignore[arg-type]
                        recheck_many=recheck_many, access_watch=access_watch)
    await rooms.start()
    try:
        for name in ("ann", "viewer"):
            grant, room = await rooms.admit({"user": name}, LESSON)
            await rooms.join(room, grant, MemoryLink())
        await eventually(lambda: _true(bool(watching)), within=10)
        # until the watch says it listens, every round re-checks (as without a watch)
        await eventually(lambda: _true(len(asked) >= 2), within=10)
        watching[0](True)  # listening: one more round, then none without a change
        base = len(asked)

        async def rounds_done(count: int) -> None:
            await eventually(lambda: _true(len(asked) >= base + count), within=10, interval=0.01)

        await rounds_done(1)  # the round the watch started
        ticks = rooms.recheck_ticks
        await eventually(lambda: _true(rooms.recheck_ticks >= ticks + 3 * RECHECK_SLICES), within=10, interval=0.01)
        assert asked[base:] == [2], "no change, no re-check"

        watching[0](True)  # a change: one more round, each room once
        await rounds_done(2)
        ticks = rooms.recheck_ticks
        await eventually(lambda: _true(rooms.recheck_ticks >= ticks + 2 * RECHECK_SLICES), within=10, interval=0.01)
        assert asked[base:] == [2, 2]

        # a peer whose decision was asked for before a change, joining after the round it
        # started: another round, with the peer in it
        grant, room = await rooms.admit({"user": "bob"}, LESSON)
        watching[0](True)
        await rounds_done(3)
        await rooms.join(room, grant, MemoryLink())
        await rounds_done(4)
        assert asked[-1] == 3

        watching[0](False)  # not listening: every round, as without a watch
        await rounds_done(7)
        assert rooms.access_watched is False
    finally:
        forever.set()
        await rooms.stop()


async def _true(value: bool) -> bool:
    return value


async def test_the_watch_listens_again_after_losing_its_connection(
        db: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    svc = SimpleNamespace(settings=SimpleNamespace(database_url=_dsn(db), node_id="watch-test"))
    watch = make_access_watch(svc)  # type: ignore[arg-type]
    assert watch is not None
    task = asyncio.create_task(watch(calls.append))
    try:
        await eventually(lambda: _true(calls == [True]), within=10)
        async with db.begin() as conn:
            await conn.execute(text("UPDATE users SET role = role WHERE false"))  # a statement: a notification
        await eventually(lambda: _true(len(calls) >= 2 and all(calls)), within=10)
        seen = len(calls)
        async with db.begin() as conn:  # the connection dies: not watched, then listening again
            await conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE application_name LIKE 'scriptorium-access-watch node=watch-test %'"))
        await eventually(lambda: _true(False in calls[seen:] and calls[-1] is True), within=15)

        # its probes: heard (the connection stays), and none of them counts as a change
        monkeypatch.setattr(live, "ACCESS_PROBE_S", 0.02)
        seen = len(calls)

        async def probed() -> bool:
            async with db.connect() as conn:
                found = await conn.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_notify($1, $2)' "
                    "AND application_name LIKE 'scriptorium-access-watch node=watch-test %'"))
            return bool(found)

        await eventually(probed, within=15)
        await eventually(probed, within=15)
        async with db.begin() as conn:
            await conn.execute(text("UPDATE users SET role = role WHERE false"))
        await eventually(lambda: _true(len(calls) > seen), within=10)
        assert calls[seen:] == [True]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


