"""An update a peer on another node has seen is durable, even when its origin node dies the
moment after relaying it (docs/API.md §1; the "origin node dies after relaying" issue).

Client A on node 0 types; client B on node 1 sees the edit (relayed over Redis); node 0 is killed
(kill -9) at once, then node 1 too: nobody asked "saved". After a restart, the edit B saw is in
the lesson: the update log replayed directly, and a fresh client. Real server processes, the
run's PostgreSQL and a Redis this module starts and stops itself (never the machine's shared one).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from pycrdt import Doc, Text
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from collab.access import Grant, Scope
from collab.manager import RoomManager
from collab.relay import KIND_QUERY, KIND_UPDATE, Handler
from collab.store import LoadedDocument, PendingUpdate
from server.editing.models import LessonSnapshot, LessonUpdate
from tests.support import RedisServer, ServerProcess, dev_user
from tests.support.collab import YClient, make_lesson
from tests.support.faults import START_S

CYCLES = 3
ENV = {"RATE_LIMIT_PER_MINUTE": "0"}


async def stored_body(db: AsyncEngine, lesson_id: str) -> str:
    """The lesson's body as PostgreSQL holds it: the snapshot, then the log in id order."""
    lid = uuid.UUID(lesson_id)
    async with db.connect() as conn:
        snapshot = (await conn.execute(select(LessonSnapshot.state).where(LessonSnapshot.lesson_id == lid))).scalar()
        rows = (await conn.execute(select(LessonUpdate.update).where(LessonUpdate.lesson_id == lid)
                                   .order_by(LessonUpdate.id))).scalars().all()
    doc: Doc[Any] = Doc()
    for update in ([snapshot] if snapshot is not None else []) + list(rows):
        doc.apply_update(update)
    return str(doc.get("body", type=Text))


async def sees(client: YClient, marker: str, within: float = 10) -> None:
    """Wait (on the document's change events) until ``client``'s body holds ``marker``."""
    seen = asyncio.Event()

    def check(_event: Any = None) -> None:
        if marker in str(client.body):
            seen.set()

    subscription = client.body.observe(check)
    try:
        check()
        await asyncio.wait_for(seen.wait(), within)
    finally:
        client.body.unobserve(subscription)


async def test_an_edit_seen_on_another_node_survives_both_nodes_kill_9(
        database_url: str, data_dir: Path, own_redis: RedisServer, db: AsyncEngine) -> None:
    nodes = [ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=own_redis.url,
                           env={**ENV, "NODE_ID": f"relay-{i}"}) for i in (0, 1)]
    try:
        for node in nodes:
            node.start(START_S)
        async with httpx.AsyncClient(base_url=nodes[0].base_url) as http:
            author = await dev_user(http, "Author")
        lesson = await make_lesson(db, author.clerk_id, body="")
        expected = ""
        for cycle in range(CYCLES):
            for node in nodes:
                if node.proc is None:
                    node.start(START_S)
            reader = await YClient.connect(nodes[1].ws_url, lesson.id, author.token)
            writer = await YClient.connect(nodes[0].ws_url, lesson.id, author.token)
            assert writer.text()["body"] == expected == reader.text()["body"], f"cycle {cycle}"
            marker = f"<edit {cycle}>"
            writer.body.insert(len(str(writer.body)), marker)
            expected += marker
            await sees(reader, marker)  # B has seen it: from now on it must be durable
            nodes[0].kill()  # the origin, the moment B saw the edit
            nodes[1].kill()  # then the node B is on: no one asked "saved"
            assert await stored_body(db, lesson.id) == expected, f"cycle {cycle}: not in the log"
            await writer.wait_closed()
            await reader.wait_closed()
            nodes[0].start(START_S)
            fresh = await YClient.connect(nodes[0].ws_url, lesson.id, author.token)
            assert fresh.text()["body"] == expected, f"cycle {cycle}"
            await fresh.close()
    finally:
        for node in nodes:
            node.stop()


# --- in process: what is relayed, and when -------------------------------------------------

LESSON = "00000000-0000-4000-8000-0000000000d7"


class GatedStore:
    """An in-memory store whose commits wait until ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.appended: list[PendingUpdate] = []

    async def load(self, lesson_id: str, seed: Callable[[str, str], bytes]) -> LoadedDocument:
        return LoadedDocument([seed("Title", "Body")], 1)

    async def append(self, batch: Sequence[PendingUpdate]) -> None:
        await self.gate.wait()
        self.appended.extend(batch)

    async def compact(self, lesson_id: str, merge: Any) -> int:
        return 0

    async def materialise(self, lesson_id: str, title: str, body: str) -> bool:
        return True

    async def record_version(self, lesson_id: str, **kw: Any) -> str:
        return "v1"


class RecordingRelay:
    node_id = "here"

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, bytes]] = []
        self.handler: Handler | None = None

    def bind(self, handler: Handler, on_reconnect: Callable[[], None]) -> None:
        self.handler = handler

    def last_seen(self, node_id: str) -> float:
        return 0.0

    def subscribe(self, lesson_id: str) -> None: ...

    def unsubscribe(self, lesson_id: str) -> None: ...

    def publish(self, lesson_id: str, kind: bytes, payload: bytes) -> None:
        self.published.append((lesson_id, kind, payload))

    def others_listen(self, lesson_id: str) -> bool:
        return True  # another node is always there

    async def subscribed(self, lesson_id: str, within: float) -> bool:
        return True

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def updates(self) -> list[bytes]:
        return [payload for _, kind, payload in self.published if kind == KIND_UPDATE]


class Link:
    def __init__(self) -> None:
        self.closed = False
        self.frames: list[bytes] = []

    def push(self, frame: bytes, message: dict[str, Any] | None = None, wire: bytes | None = None) -> None:
        self.frames.append(frame)

    def close(self, code: int, reason: str = "") -> None:
        self.closed = True


async def _authorize(scope: Scope, lesson_id: str) -> Grant:
    return Grant(str(scope["user"]), can_write=True)


async def _recheck(lesson_id: str, grant: Grant) -> bool:
    return True


def _edit(doc: Doc[Any], text: str) -> bytes:
    client: Doc[Any] = Doc()
    client.apply_update(doc.get_update())
    state = client.get_state()
    client.get("body", type=Text).insert(0, text)
    return client.get_update(state)


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


async def test_other_nodes_get_an_update_and_a_catch_up_only_once_it_is_committed() -> None:
    store, relay = GatedStore(), RecordingRelay()
    # a long batch window: the relayed update's flush must not wait for it
    rooms = RoomManager(store, _authorize, _recheck, relay, flush_interval=30)  # type: ignore[arg-type]
    await rooms.start()
    try:
        grant, room = await rooms.admit({"user": "writer"}, LESSON)
        writer_link, local_link = Link(), Link()
        room, writer = await rooms.join(room, grant, writer_link)
        room, _ = await rooms.join(room, grant, local_link)
        update = _edit(room.doc, "Hello ")
        rooms.receiver.receive(room, writer, p.update_frame(update))
        await asyncio.sleep(0)  # the end of this loop turn
        assert local_link.frames[-1] == p.update_frame(update)  # a peer of this node: at once
        # Another node asks for what it lacks (a room opening there) while the update is uncommitted.
        assert relay.handler is not None
        relay.handler(room.lesson_id, KIND_QUERY, Doc().get_state(), "there")
        for _ in range(5):
            await asyncio.sleep(0)
        assert relay.updates() == [], "relayed before it was committed"
        store.gate.set()
        await _until(lambda: len(relay.updates()) == 2)  # well before the 30 s batch window
        assert [u.update for u in store.appended] == [update]
        assert relay.updates()[0] == p.update_frame(update)
        caught_up: Doc[Any] = Doc()
        caught_up.apply_update(p.parse_frame(relay.updates()[1]).payload)
        assert str(caught_up.get("body", type=Text)) == "Hello Body"
    finally:
        store.gate.set()
        await rooms.stop()


async def test_updates_committed_together_are_relayed_as_one_merged_message() -> None:
    store, relay = GatedStore(), RecordingRelay()
    rooms = RoomManager(store, _authorize, _recheck, relay, flush_interval=30)  # type: ignore[arg-type]
    await rooms.start()
    try:
        grant, room = await rooms.admit({"user": "writer"}, LESSON)
        room, writer = await rooms.join(room, grant, Link())
        base = room.doc.get_update()
        first = _edit(room.doc, "One ")
        rooms.receiver.receive(room, writer, p.update_frame(first))
        second = _edit(room.doc, "Two ")
        rooms.receiver.receive(room, writer, p.update_frame(second))
        for _ in range(5):
            await asyncio.sleep(0)
        assert relay.updates() == []  # nothing before the commit
        store.gate.set()
        await _until(lambda: len(relay.updates()) >= 1)
        # the log keeps each update (a lesson other nodes write: replayable update by update)
        assert [u.update for u in store.appended] == [first, second]
        [merged] = relay.updates()  # one Redis message for both
        other: Doc[Any] = Doc()
        other.apply_update(base)
        other.apply_update(p.parse_frame(merged).payload)
        assert str(other.get("body", type=Text)) == "Two One Body"
    finally:
        store.gate.set()
        await rooms.stop()
