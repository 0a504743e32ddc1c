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
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from collab.access import Denied, Grant
from collab.manager import RECHECK_SLICES, RoomManager
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
        assert not await notifies("UPDATE lessons SET title = 'new' WHERE id = :lesson")
        assert await notifies("UPDATE lessons SET unit_id = unit_id WHERE id = :lesson")
        assert not await notifies(f"UPDATE courses SET title = 'new' WHERE id = {course}")
        assert await notifies(f"UPDATE courses SET is_published = is_published WHERE id = {course}")
        assert await notifies("UPDATE units SET course_id = course_id WHERE id = (SELECT unit_id FROM lessons WHERE id = :lesson)")
        assert not await notifies("UPDATE users SET name = 'new' WHERE clerk_id = :editor")
        assert await notifies("UPDATE users SET role = role WHERE clerk_id = :editor")
        assert await notifies(f"DELETE FROM collaborators WHERE user_id = :editor AND course_id = {course}")
        assert await notifies(f"INSERT INTO collaborators (course_id, user_id, role) VALUES ({course}, :editor, 'viewer')")

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
        changed(True)  # listening: a first round
        await forever.wait()

    rooms = RoomManager(MemoryStore(), _authorize, _recheck, recheck_interval=0.08,  # type: ignore[arg-type]
                        recheck_many=recheck_many, access_watch=access_watch)
    await rooms.start()
    try:
        for name in ("ann", "viewer"):
            grant, room = await rooms.admit({"user": name}, LESSON)
            await rooms.join(room, grant, MemoryLink())

        async def rounds_done(count: int) -> None:
            await eventually(lambda: _true(len(asked) >= count), within=10, interval=0.01)

        await rounds_done(1)  # the round the watch started
        assert asked == [2]
        ticks = rooms.recheck_ticks
        await eventually(lambda: _true(rooms.recheck_ticks >= ticks + 3 * RECHECK_SLICES), within=10, interval=0.01)
        assert asked == [2], "no change, no re-check"

        watching[0](True)  # a change: one more round, each room once
        await rounds_done(2)
        ticks = rooms.recheck_ticks
        await eventually(lambda: _true(rooms.recheck_ticks >= ticks + 2 * RECHECK_SLICES), within=10, interval=0.01)
        assert asked == [2, 2]

        watching[0](False)  # not listening: every round, as without a watch
        await rounds_done(5)
        assert rooms.access_watched is False
    finally:
        forever.set()
        await rooms.stop()


async def _true(value: bool) -> bool:
    return value


async def test_the_watch_listens_again_after_losing_its_connection(db: AsyncEngine) -> None:
    calls: list[bool] = []
    svc = SimpleNamespace(settings=SimpleNamespace(database_url=_dsn(db), node_id="watch-test"))
    watch = make_access_watch(svc)  # type: ignore[arg-type]
    assert watch is not None
    task = asyncio.create_task(watch(calls.append))
    try:
        await eventually(lambda: _true(calls == [True]), within=10)
        async with db.begin() as conn:
            await conn.execute(text("UPDATE users SET role = role WHERE false"))  # a statement: one notification
        await eventually(lambda: _true(calls == [True, True]), within=10)
        async with db.begin() as conn:  # the connection dies: not watched, then listening again
            await conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE application_name LIKE 'scriptorium-access-watch node=watch-test %'"))
        await eventually(lambda: _true(calls[2:] == [False, True]), within=15)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


