"""Exactly-once persistence across nodes: each update in the log once, and one node at a time (the
holder of the room's fenced lease) writing the shared rows, so a node paused past its lease and
resumed writes nothing stale, and a dead holder's duties are taken over."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Text
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from collab.access import Grant
from collab.manager import RoomManager
from collab.persistence import PgLeases
from collab.room import merge_log, seed_update
from collab.store import Fence, StaleLease
from server.db import make_engine, make_sessionmaker
from server.editing.models import CollabLease, LessonUpdate, LessonVersion
from server.editing.store import PgStore
from server.users.models import User
from tests.support import RedisServer, ServerProcess, dev_user, eventually
from tests.support.collab import YClient, co_editors, converge, lesson_row, make_lesson
from tests.support.yupdate import overlaps, struct_count

LEASE_S = 1.5
ENV = {"RATE_LIMIT_PER_MINUTE": "0", "COLLAB_LEASE_SECONDS": str(LEASE_S)}


async def merge_in_place(updates: list[bytes]) -> tuple[bytes, bytes]:
    """Compaction's merge, here (the node runs it in its worker process)."""
    return merge_log(updates)


# --- the fence, at the store ------------------------------------------------------------------


async def test_a_stale_token_writes_nothing(db: AsyncEngine) -> None:
    author = f"user_lease_{uuid.uuid4().hex[:8]}"
    async with db.begin() as conn:
        await conn.execute(insert(User).values(clerk_id=author, name="Author"))
    lesson = await make_lesson(db, author, title="T", body="seed")
    store = PgStore(make_sessionmaker(db))
    await store.load(lesson.id, seed_update)
    first = await store.acquire_lease(lesson.id, "node-a", 2)
    assert first.token is not None
    a = Fence("node-a", first.token)
    refused = await store.acquire_lease(lesson.id, "node-b", 30)
    assert refused.token is None and 0 < refused.remaining <= 2
    assert await store.materialise(lesson.id, "T", "a's text", fence=a)

    async def b_takes_over() -> int | None:
        return (await store.acquire_lease(lesson.id, "node-b", 30)).token

    b_token = await eventually(b_takes_over, within=5)
    assert b_token == first.token + 1
    b = Fence("node-b", b_token)
    assert await store.materialise(lesson.id, "T", "b's newer text", fence=b)
    async with db.begin() as conn:  # a row appended by another node meanwhile
        await conn.execute(text("INSERT INTO lesson_updates (lesson_id, update) VALUES (:l, :u)"),
                           {"l": lesson.lesson_id, "u": seed_update("", "x")})
    rows_before = await _log_rows(db, lesson.lesson_id)

    # Node A resumes with its old token: every fenced write is refused, nothing is written.
    with pytest.raises(StaleLease):
        await store.materialise(lesson.id, "T", "a's stale text", fence=a)
    with pytest.raises(StaleLease):
        await store.compact(lesson.id, merge_in_place, fence=a)
    with pytest.raises(StaleLease):
        await store.record_version(lesson.id, title="T", body="a's stale text", state=b"", contributors=[],
                                   reason="periodic", fence=a)
    assert await store.renew_leases("node-a", {lesson.id: a.token}, 30) == set()
    await store.release_lease(lesson.id, a)  # releases nothing of B's
    assert (await store.acquire_lease(lesson.id, "node-a", 30)).token is None
    row = await lesson_row(db, lesson.id)
    assert row["content"]["body"] == "b's newer text"
    assert await _log_rows(db, lesson.lesson_id) == rows_before
    async with db.connect() as conn:
        versions = (await conn.execute(select(func.count()).select_from(LessonVersion)
                                       .where(LessonVersion.lesson_id == lesson.lesson_id))).scalar()
    assert versions == 0
    # The holder's own writes go through; its release lets A take the lease at once, token + 1.
    assert await store.compact(lesson.id, merge_in_place, fence=b) == rows_before
    assert await store.renew_leases("node-b", {lesson.id: b.token}, 30) == {lesson.id}
    await store.release_lease(lesson.id, b)
    assert (await store.acquire_lease(lesson.id, "node-a", 30)).token == b.token + 1


async def _log_rows(db: AsyncEngine, lesson_id: uuid.UUID) -> int:
    async with db.connect() as conn:
        count: int = (await conn.execute(select(func.count()).select_from(LessonUpdate)
                                         .where(LessonUpdate.lesson_id == lesson_id))).scalar_one()
    return count


# --- two real nodes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_nodes(database_url: str, data_dir: Path,
              redis_server: RedisServer) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    a = ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=redis_server.url,
                      env={**ENV, "NODE_ID": "node-a"})
    b = ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=redis_server.url,
                      env={**ENV, "NODE_ID": "node-b"})
    a.start(timeout=90)  # the machine may be busy: two cores for several suites
    try:
        b.start(timeout=90)
        yield a, b
    finally:
        if a.proc is not None:
            os.killpg(a.proc.pid, signal.SIGCONT)
        a.stop()
        b.stop()


@pytest.fixture
async def body_audit(db: AsyncEngine) -> AsyncIterator[None]:
    """Every lesson body written to the lessons table, in order (a trigger of this test's)."""
    async with db.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS test_body_audit "
                                "(n bigserial PRIMARY KEY, lesson_id uuid, body text)"))
        await conn.execute(text("""
            CREATE OR REPLACE FUNCTION test_audit_body() RETURNS trigger AS $$
            BEGIN
                INSERT INTO test_body_audit (lesson_id, body) VALUES (NEW.id, NEW.content->>'body');
                RETURN NEW;
            END $$ LANGUAGE plpgsql"""))
        await conn.execute(text("CREATE TRIGGER test_audit_body AFTER UPDATE ON lessons "
                                "FOR EACH ROW EXECUTE FUNCTION test_audit_body()"))
    try:
        yield
    finally:
        async with db.begin() as conn:
            await conn.execute(text("DROP TRIGGER test_audit_body ON lessons"))
            await conn.execute(text("DROP TABLE test_body_audit"))


async def _written(db: AsyncEngine, lesson_id: uuid.UUID) -> list[str]:
    async with db.connect() as conn:
        return [row or "" for row in (await conn.execute(text(
            "SELECT body FROM test_body_audit WHERE lesson_id = :l ORDER BY n"), {"l": lesson_id})).scalars()]


async def _holder(db: AsyncEngine, lesson_id: uuid.UUID) -> tuple[str, int] | None:
    async with db.connect() as conn:
        row = (await conn.execute(select(CollabLease.holder, CollabLease.token)
                                  .where(CollabLease.lesson_id == lesson_id))).first()
    return None if row is None else (row.holder, row.token)


async def _row_body(db: AsyncEngine, lesson_id: str) -> str:
    body: str = (await lesson_row(db, lesson_id))["content"]["body"]
    return body


async def test_two_nodes_write_each_update_once(two_nodes: tuple[ServerProcess, ServerProcess],
                                                db: AsyncEngine, body_audit: None) -> None:
    a_node, b_node = two_nodes
    async with httpx.AsyncClient(base_url=a_node.base_url) as http:
        author = await dev_user(http, "Author")
        editor = await dev_user(http, "Editor")
    lesson = await make_lesson(db, author.clerk_id, title="T", body="", editors=(editor.clerk_id,))
    clients = [await YClient.connect(node.ws_url, lesson.id, user.token)
               for node in (a_node, b_node) for user in (author, editor)]
    for round_ in range(15):
        for i, c in enumerate(clients):
            c.body.insert(len(str(c.body)), f"<{i}.{round_}>")
    text_ = await converge(clients, within=20)
    for c in clients:
        await c.saved()
    # Every change is in the log once: no client id and clock in two rows (a node may merge a
    # writer's updates into one row), and together the rows hold the whole document.
    async with db.connect() as conn:
        rows = list((await conn.execute(select(LessonUpdate.update).where(
            LessonUpdate.lesson_id == lesson.lesson_id))).scalars())
    assert not overlaps(rows)
    assert struct_count(rows) == struct_count([clients[0].doc.get_update()])
    # One node holds the lease and writes the row; the other wrote nothing.

    async def materialised() -> bool:
        return await _row_body(db, lesson.id) == text_["body"]

    await eventually(materialised, within=10)
    held = await _holder(db, lesson.lesson_id)
    assert held is not None and held[0].split(":")[0] in ("node-a", "node-b")
    written = await _written(db, lesson.lesson_id)
    assert written[-1] == text_["body"] and len(written) == len(set(written))
    for c in clients:
        await c.close()


async def test_a_paused_holder_resumes_without_writing_stale_text(
        two_nodes: tuple[ServerProcess, ServerProcess], db: AsyncEngine, body_audit: None) -> None:
    a_node, b_node = two_nodes
    pair = await co_editors(db, a_node, b_node, title="T", body="")
    lesson, a, b = pair.lesson, pair.a, pair.b
    a.body.insert(0, "[a1]")
    await a.saved()

    async def row_has(mark: str) -> bool:
        return mark in await _row_body(db, lesson.id)

    await eventually(lambda: row_has("[a1]"), within=10)
    held = await _holder(db, lesson.lesson_id)
    assert held is not None
    if held[0].startswith("node-b:"):  # B had the change too (relayed) and asked first: B is "A" here
        a_node, b_node, a, b = b_node, a_node, b, a
    a_name, b_name = _name(a_node, two_nodes), _name(b_node, two_nodes)
    assert held[0].startswith(a_name + ":")
    # A's room changes again (committed, relayed: B has it), and A stops before it writes it
    # into the row: its room is dirty with text that B's edits are about to make old.
    a.body.insert(len(str(a.body)), "[a2]")
    await a.saved()

    async def b_has(mark: str) -> bool:
        return mark in str(b.body)

    await eventually(lambda: b_has("[a2]"), within=10)
    assert a_node.proc is not None
    os.killpg(a_node.proc.pid, signal.SIGSTOP)
    try:
        b.body.insert(len(str(b.body)), "[b1]")
        await b.saved()
        # B takes the lease over once A's lapses, and writes the newer text.
        await eventually(lambda: row_has("[b1]"), within=LEASE_S * 4 + 5)
        held_b = await _holder(db, lesson.lesson_id)
        assert held_b is not None and held_b[0].startswith(b_name + ":") and held_b[1] == held[1] + 1
    finally:
        os.killpg(a_node.proc.pid, signal.SIGCONT)
    # A resumes with its room dirty and B's edit not yet applied; then a keystroke on A, which
    # only reaches the row through B (the holder).
    a.body.insert(0, "[a3]")
    await a.saved()
    final = await converge([a, b], within=15)
    assert "[b1]" in final["body"] and final["body"].startswith("[a3]")

    async def materialised() -> bool:
        return await _row_body(db, lesson.id) == final["body"]

    await eventually(materialised, within=10)
    written = await _written(db, lesson.lesson_id)
    since_b = written[next(i for i, body in enumerate(written) if "[b1]" in body):]
    assert all("[b1]" in body for body in since_b), written  # nothing older written after it
    held_after = await _holder(db, lesson.lesson_id)
    assert held_after is not None and held_after[0] == held_b[0]
    await a.close()
    await b.close()


async def test_a_dead_holders_duties_are_taken_over(  # last: it kills node A
        two_nodes: tuple[ServerProcess, ServerProcess], db: AsyncEngine) -> None:
    a_node, b_node = two_nodes
    pair = await co_editors(db, a_node, b_node, title="T", body="")
    lesson, a, b = pair.lesson, pair.a, pair.b
    a.body.insert(0, "[a1]")
    await a.saved()

    async def row_is(body: str) -> bool:
        return await _row_body(db, lesson.id) == body

    await eventually(lambda: row_is("[a1]"), within=10)
    held = await _holder(db, lesson.lesson_id)
    assert held is not None
    if held[0].startswith("node-b:"):  # B had the change too (relayed) and asked first: kill B
        a_node, b_node, a, b = b_node, a_node, b, a
    b_name = _name(b_node, two_nodes)
    a_node.kill()
    await a.wait_closed()
    await eventually(lambda: _has(b, "[a1]"), within=10)
    b.body.insert(len(str(b.body)), "[b1]")
    await b.saved()
    await eventually(lambda: row_is("[a1][b1]"), within=LEASE_S * 4 + 5)
    held_b = await _holder(db, lesson.lesson_id)
    assert held_b is not None and held_b[0].startswith(b_name + ":") and held_b[1] == held[1] + 1
    # The last client leaves: the holder records the closing version, with both edits.
    await b.close()

    async def closed_version() -> list[str]:
        async with db.connect() as conn:
            return list((await conn.execute(select(LessonVersion.body).where(
                LessonVersion.lesson_id == lesson.lesson_id, LessonVersion.reason == "close"))).scalars())

    assert await eventually(closed_version, within=10) == ["[a1][b1]"]


def _name(node: ServerProcess, nodes: tuple[ServerProcess, ServerProcess]) -> str:
    return "node-a" if node is nodes[0] else "node-b"


async def _has(client: YClient, mark: str) -> bool:
    return mark in str(client.body)


# --- a takeover catches up from the stored log ---------------------------------------------------


async def _grant(scope: Any, lesson_id: str) -> Grant:
    return Grant(str(scope["user"]), can_write=True)


async def _recheck(lesson_id: str, grant: Grant) -> bool:
    return True


class _Link:
    def __init__(self) -> None:
        self.closed = False
        self.frames: list[bytes] = []

    def push(self, frame: bytes, message: dict[str, Any] | None = None, wire: bytes | None = None) -> None:
        self.frames.append(frame)

    def close(self, code: int, reason: str = "") -> None:
        self.closed = True


def _append(text_: str) -> Callable[[Doc[Any]], None]:
    def change(doc: Doc[Any]) -> None:
        body = doc.get("body", type=Text)
        body.insert(len(str(body)), text_)
    return change


async def test_a_takeover_catches_up_from_the_log(database_url: str, db: AsyncEngine) -> None:
    """Node A commits an update it never relays (killed right after the commit) and dies holding
    the lease; node B, which never saw the update, takes over: it applies the stored log first, so
    the text it writes (and its peers) have A's update."""
    author = f"user_takeover_{uuid.uuid4().hex[:8]}"
    async with db.begin() as conn:
        await conn.execute(insert(User).values(clerk_id=author, name="Author"))
    lesson = await make_lesson(db, author, title="T", body="")
    engines = [make_engine(database_url) for _ in range(2)]
    a, b = (RoomManager(PgStore(make_sessionmaker(e)), _grant, _recheck,
                        leases=PgLeases(PgStore(make_sessionmaker(e)), name, 0.5))
            for e, name in zip(engines, ("node-a", "node-b"), strict=True))
    try:
        room_b = await b.open(lesson.id)  # loaded before A's edit; no relay between the two
        grant, _ = await b.admit({"user": author}, lesson.id)
        room_b, _ = await b.join(room_b, grant, peer_b := _Link())
        await a.apply(lesson.id, _append("[a]"), actor=author)  # committed to the log
        await a.persistence.materialise(a.rooms[lesson.id])
        assert await _row_body(db, lesson.id) == "[a]"
        await b.apply(lesson.id, _append("[b]"), actor=author)
        assert b.rooms[lesson.id].texts()[1] == "[b]"  # B never saw [a]

        async def b_materialised() -> str | None:  # A's lease lapses (0.5 s): B takes over
            await b.persistence.materialise(b.rooms[lesson.id])
            body = await _row_body(db, lesson.id)
            return body if "[b]" in body else None

        body = await eventually(b_materialised, within=10)
        assert "[a]" in body and "[b]" in body
        caught_up: Doc[Any] = Doc()
        for frame in peer_b.frames:
            parsed = p.parse_frame(frame)
            if parsed.type == p.MSG_SYNC and parsed.sync in (p.SYNC_UPDATE, p.SYNC_STEP2):
                caught_up.apply_update(parsed.payload)
        assert "[a]" in str(caught_up.get("body", type=Text))  # B's peer got A's update too
    finally:
        for engine in engines:
            await engine.dispose()
