"""PostgreSQL outage (docs/API.md §1, faults): a server on a PostgreSQL this module owns, which the
tests stop (``pg_ctl stop -m fast``) and start again on the same socket.

While it is down ``/readyz`` answers 503 and REST writes 503 problem+json with ``Retry-After``
(never 500, also when the failure is the sign-in's user lookup); when it returns, the server
recovers without a restart, the outbox delivers what was written before, in order, and a
co-editor's updates, held meanwhile, are written ("saved" is answered only then).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pycrdt import Doc, Text
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db import make_engine
from server.editing.models import LessonSnapshot, LessonUpdate
from server.migrate import upgrade
from tests.support import DevUser, ServerProcess, dev_user, eventually
from tests.support.collab import YClient, make_lesson
from tests.support.faults import OwnedPostgres
from tests.support.realtime import Live, events, nothing_more, subscribe

RETRY_AFTER = "5"


@pytest.fixture(scope="module")
def owned_pg() -> Iterator[OwnedPostgres]:
    pg = OwnedPostgres()
    yield pg
    pg.close()


@pytest.fixture(scope="module")
async def live(owned_pg: OwnedPostgres) -> AsyncIterator[Live]:
    url = await owned_pg.create_database("scr_fault")
    await upgrade(url)
    server = ServerProcess(database_url=url, data_dir=Path(tempfile.mkdtemp(prefix="scr-fault-")),
                           env={"RATE_LIMIT_PER_MINUTE": "0"})
    await asyncio.to_thread(server.start, 90)  # a loaded machine starts slowly
    engine = make_engine(url)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            yield Live("memory", server, engine, client)
    finally:
        server.stop()
        await engine.dispose()


async def stop_postgres(pg: OwnedPostgres, live: Live) -> None:
    await live.engine.dispose()  # the test's own connections die with it
    await asyncio.to_thread(pg.stop)


async def start_postgres(pg: OwnedPostgres, live: Live) -> None:
    await asyncio.to_thread(pg.start)
    await live.engine.dispose()  # connections made before the outage are dead


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    assert response.headers["retry-after"] == RETRY_AFTER, response.headers
    body = response.json()
    assert body["status"] == 503 and body["type"].endswith("/unavailable"), body


async def test_rest_answers_503_while_postgres_is_down_and_recovers(owned_pg: OwnedPostgres, live: Live) -> None:
    alice = await live.user("Alice")
    course = await live.course(alice)
    channel = f"course:{course}"
    async with live.ws(alice) as ws:
        assert (await subscribe(ws, channel))["type"] == "subscribed"
        # written (committed to the outbox) right before the outage: maybe not drained yet
        await live.emit_many(channel, 40, per_tx=5)
        await stop_postgres(owned_pg, live)
        try:
            # first on the pooled connections the shutdown terminated, then on refused connects
            for _ in range(3):
                assert_unavailable(await live.client.patch("/api/me", json={"name": "Alice B"},
                                                           headers=alice.headers))
                assert_unavailable(await live.client.post("/api/courses", json={"title": "During"},
                                                          headers=alice.headers))
                assert (await live.client.get("/readyz")).status_code == 503
        finally:
            await start_postgres(owned_pg, live)

        async def ready() -> bool:
            return (await live.client.get("/readyz")).status_code == 200


        await eventually(ready, within=20, interval=0.1)
        # the pool recovered without a server restart: the same writes succeed
        me = await live.client.patch("/api/me", json={"name": "Alice B"}, headers=alice.headers)
        assert me.status_code == 200, me.text
        assert me.json()["name"] == "Alice B"
        created = await live.client.post("/api/courses", json={"title": "After"}, headers=alice.headers)
        assert created.status_code == 201, created.text
        # the outbox delivers everything written before the outage, once, in order
        got = await events(ws, 40, within=30)
        assert [frame["data"]["n"] for frame in got] == list(range(40))
        ids = [frame["id"] for frame in got]
        assert ids == sorted(ids) and len(set(ids)) == 40
    # a user signing in for the first time after the outage works too
    await dev_user(live.client, "Carol")


async def stored_body(engine: AsyncEngine, lesson_id: str) -> str:
    """The lesson's body as its stored log (snapshot + update rows) rebuilds it: what a restart loads."""
    lid = uuid.UUID(lesson_id)
    doc: Doc = Doc()
    async with engine.connect() as conn:
        snapshot = (await conn.execute(select(LessonSnapshot.state)
                                       .where(LessonSnapshot.lesson_id == lid))).scalar()
        rows = (await conn.execute(select(LessonUpdate.update).where(LessonUpdate.lesson_id == lid)
                                   .order_by(LessonUpdate.id))).scalars().all()
    for update in ([snapshot] if snapshot else []) + list(rows):
        doc.apply_update(update)
    return str(doc.get("body", type=Text))


async def test_collab_edits_made_while_postgres_is_down_are_saved_when_it_returns(
        owned_pg: OwnedPostgres, live: Live) -> None:
    alice = await live.user("Alice")
    lesson = await make_lesson(live.engine, alice.clerk_id, body="Hello")
    editor = await YClient.connect(live.server.ws_url, lesson.id, alice.token)
    assert live.server.log_path is not None
    logged = len(live.server.log_path.read_text())
    try:
        editor.body.insert(len(editor.body), " before")
        await editor.saved()
        await stop_postgres(owned_pg, live)
        try:
            editor.body.insert(len(editor.body), " during the outage")
            await editor.roundtrip()  # the room has it (and still accepts edits)
            with pytest.raises(TimeoutError):
                # never "saved" while nothing can be written: the flush keeps failing
                await editor.saved(within=1.5)
        finally:
            await start_postgres(owned_pg, live)
        await editor.saved(within=20)
        assert "during the outage" in await stored_body(live.engine, lesson.id)
        assert await stored_body(live.engine, lesson.id) == "Hello before during the outage"
        assert editor.close_code is None  # the socket stayed open all along
        # the flush retried twice a second, and logged the outage once (with its cause), not a
        # traceback per retry; then that it recovered
        flush_log = [line for line in live.server.log_path.read_text()[logged:].splitlines()
                     if "collab flush" in line]
        assert ["Traceback" in line for line in flush_log] == [True, False], flush_log  # one entry (its cause chained)
        assert "collab flush failed; retrying every 0.5 s (" in flush_log[0]  # then the innermost cause
        assert "collab flush recovered after" in flush_log[1], flush_log
    finally:
        await editor.close()


UNSAVED_MAX = 32 * 1024


@pytest.fixture(scope="module")
async def bounded(owned_pg: OwnedPostgres) -> AsyncIterator[Live]:
    """A second server on the owned PostgreSQL holding at most 32 KiB of a room's unsaved updates."""
    url = await owned_pg.create_database("scr_fault")
    await upgrade(url)
    server = ServerProcess(database_url=url, data_dir=Path(tempfile.mkdtemp(prefix="scr-fault-")),
                           env={"RATE_LIMIT_PER_MINUTE": "0", "COLLAB_UNSAVED_MAX_BYTES": str(UNSAVED_MAX)})
    await asyncio.to_thread(server.start, 90)  # a loaded machine starts slowly
    engine = make_engine(url)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            yield Live("memory", server, engine, client)
    finally:
        server.stop()
        await engine.dispose()


async def test_a_room_past_its_unsaved_bound_closes_its_writers_4503_and_loses_nothing(
        owned_pg: OwnedPostgres, bounded: Live) -> None:
    alice, bob = await bounded.user("Alice"), await bounded.user("Bob")
    lesson = await make_lesson(bounded.engine, alice.clerk_id, body="Hello", viewers=(bob.clerk_id,))
    editor = await YClient.connect(bounded.server.ws_url, lesson.id, alice.token)
    reader = await YClient.connect(bounded.server.ws_url, lesson.id, bob.token)
    await stop_postgres(owned_pg, bounded)
    try:
        chunks = [f"[{n:02d}]" + "x" * 2000 for n in range(40)]  # 80 KB typed, the bound is 32 KiB
        for chunk in chunks:
            editor.body.insert(len(editor.body), chunk)
        # the writer is told to keep its edits (not a silent drop, not an unbounded buffer) ...
        assert await editor.wait_closed(within=10) == 4503
        assert reader.close_code is None  # ... readers stay
    finally:
        await start_postgres(owned_pg, bounded)
    typed = "Hello" + "".join(chunks)
    assert str(editor.body) == typed
    # what the room accepted before the close is written now the database is back ...
    async def accepted_is_stored() -> bool:
        body = await stored_body(bounded.engine, lesson.id)
        return body == reader.text()["body"] and len(body) > len("Hello") + UNSAVED_MAX // 2

    await eventually(accepted_is_stored, within=20, interval=0.1)
    # ... and the writer, reconnecting with the edits it kept, gets all of them saved
    again = await YClient.connect(bounded.server.ws_url, lesson.id, alice.token)
    try:
        again.doc.apply_update(editor.doc.get_update())
        await again.saved(within=20)
        assert await stored_body(bounded.engine, lesson.id) == typed
    finally:
        await again.close()
        await reader.close()


# --- which errors mean "unreachable" (server.problems.unavailable_cause) ------------------------


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_connection_failures_are_unavailable_and_other_errors_are_not() -> None:
    import asyncpg
    import redis.exceptions
    import sqlalchemy.exc

    from server.problems import unavailable_cause

    unreachable: list[BaseException] = [
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached"),
        sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionError("gone"),
                                        connection_invalidated=True),
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
    ]
    for exc in unreachable:
        assert unavailable_cause(exc) is exc, exc
    # found through the chain: a wrapper raised "from" it, or while handling it
    try:
        try:
            raise asyncpg.CannotConnectNowError("the database system is starting up")
        except asyncpg.CannotConnectNowError as inner:
            raise RuntimeError("loading the page failed") from inner
    except RuntimeError as outer:
        assert isinstance(unavailable_cause(outer), asyncpg.CannotConnectNowError)
    wrapped = sqlalchemy.exc.DBAPIError("SELECT 1", {}, asyncpg.AdminShutdownError("bye"))
    assert isinstance(unavailable_cause(wrapped), asyncpg.AdminShutdownError)
    # a live database refusing a statement, a bug, a file error of our own: a 500, as before
    for exc in [
        sqlalchemy.exc.IntegrityError("INSERT", {}, asyncpg.UniqueViolationError("duplicate key")),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        KeyError("x"), raised(FileNotFoundError(2, "No such file or directory")),
        raised(ConnectionRefusedError(111, "refused")),  # not raised in a database/redis client
    ]:
        assert unavailable_cause(exc) is None, exc


# --- the load shape: 10 co-editors, 50 forum subscribers, REST traffic -------------------

OUTAGE_S = 10.0


async def test_postgres_outage_under_load_loses_nothing_and_never_answers_500(
        owned_pg: OwnedPostgres, live: Live) -> None:
    """PostgreSQL stopped for 10 s while 10 co-editors type, 50 subscribers follow a course channel
    and a REST client keeps writing; then started again. /readyz turns 503 and back; every REST
    write answers 2xx or 503 problem+json with Retry-After (never 500); every key a co-editor typed
    is in the stored log once its "saved" is answered after the outage (a writer closed 4503
    reconnects with the edits it kept); the 50 subscribers get the events written before the
    outage once each, in order."""
    from websockets.asyncio.client import connect

    async def signed_in() -> DevUser | None:  # the pool may still hold a connection of the last outage
        with contextlib.suppress(httpx.HTTPStatusError):
            return await live.user("Alice")
        return None

    alice = await eventually(signed_in, within=30, interval=0.2)
    editors_users = [await live.user(f"Editor {i}") for i in range(10)]
    await live.engine.dispose()  # another test of this module restarted PostgreSQL: pooled connections are dead
    lesson = await make_lesson(live.engine, alice.clerk_id, body="",
                               editors=tuple(u.clerk_id for u in editors_users))
    course = await live.course(alice)
    channel = f"course:{course}"
    editors = [await YClient.connect(live.server.ws_url, lesson.id, u.token) for u in editors_users]
    typed: list[list[str]] = [[] for _ in editors]
    stop = asyncio.Event()

    async def type_keys(i: int) -> None:
        n = 0
        while not stop.is_set():
            client = editors[i]
            if client.close_code is None:
                key = f"<{i}.{n}>"
                client.body.insert(len(str(client.body)), key)
                typed[i].append(key)
                n += 1
            await asyncio.sleep(0.1)  # a typist's pace

    statuses: list[int] = []
    readyz: list[int] = []

    async def rest_traffic() -> None:
        n = 0
        while not stop.is_set():
            for response in (await live.client.patch("/api/me", json={"name": f"Alice {n}"}, headers=alice.headers),
                             await live.client.post("/api/courses", json={"title": f"C{n}"}, headers=alice.headers)):
                statuses.append(response.status_code)
                if response.status_code == 503:
                    assert_unavailable(response)
            readyz.append((await live.client.get("/readyz")).status_code)
            n += 1

    subscribers = []
    readers = [await live.user(f"Reader {i}") for i in range(5)]  # 10 sockets each (16 allowed a user)
    for i in range(50):
        ws = await connect(f"{live.server.ws_url}/ws?token={readers[i % 5].token}", open_timeout=10)
        assert (await subscribe(ws, channel))["type"] == "subscribed"
        subscribers.append(ws)
    workers = [asyncio.create_task(type_keys(i)) for i in range(10)] + [asyncio.create_task(rest_traffic())]
    try:
        await live.emit_many(channel, 40, per_tx=5)  # written right before the outage
        await stop_postgres(owned_pg, live)
        try:
            await asyncio.sleep(OUTAGE_S)  # the outage's length: the load runs meanwhile
            assert 503 in readyz and 503 in statuses, (set(readyz), set(statuses))
        finally:
            await start_postgres(owned_pg, live)

        async def ready() -> bool:
            return readyz[-1] == 200 if readyz else False

        await eventually(ready, within=30, interval=0.1)
        await eventually(lambda: _true(statuses[-1] < 300), within=30, interval=0.1)
        stop.set()
        await asyncio.gather(*workers)
        assert set(statuses) <= {200, 201, 503}, sorted(set(statuses))  # never a 500

        # every key is saved: a writer closed 4503 (its unsaved bound) reconnects with what it kept
        for i, client in enumerate(editors):
            if client.close_code is not None:
                assert client.close_code == 4503, client.close_code
                again = await YClient.connect(live.server.ws_url, lesson.id, editors_users[i].token)
                again.doc.apply_update(client.doc.get_update())
                editors[i] = again
            await editors[i].saved(within=30)
        body = await stored_body(live.engine, lesson.id)
        missing = [key for keys in typed for key in keys if key not in body]
        assert not missing, missing[:10]
        assert sum(len(keys) for keys in typed) >= 10 * OUTAGE_S  # they typed all along
        # the outbox delivers what was written before, once, in order, to each subscriber
        for ws in subscribers:
            got = await events(ws, 40, within=60)
            assert [frame["data"]["n"] for frame in got] == list(range(40))
        await nothing_more(live, subscribers, channel)
    finally:
        stop.set()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for client in editors:
            await client.close()
        for ws in subscribers:
            await ws.close()


async def _true(value: bool) -> bool:
    return value
