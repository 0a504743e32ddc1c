"""The seam a second protocol reuses the rooms through (architecture issue, part 2).

A connection type other than y-websocket implements :class:`collab.room.Link` (push a y-protocol
frame to one client, close it with a code) and calls the manager: ``admit`` (access + load),
``join``, ``receiver.receive`` (updates under the limits, awareness, saved), ``leave``. This drives
that API with an in-memory link and store, no socket and no server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from pycrdt import Doc, Map, Text

from collab import protocol as p
from collab.access import Grant, Scope
from collab.manager import RoomManager
from collab.store import LoadedDocument, Merge, PendingUpdate
from wire.websocket import CLOSE_TOO_LARGE

LESSON = "00000000-0000-4000-8000-0000000000c1"


class MemoryStore:
    def __init__(self) -> None:
        self.appended: list[PendingUpdate] = []
        self.materialised: list[tuple[str, str]] = []
        self.versions: list[str] = []

    async def load(self, lesson_id: str, seed: Callable[[str, str], bytes]) -> LoadedDocument:
        return LoadedDocument([seed("Title", "Body")], 1)

    async def append(self, batch: Sequence[PendingUpdate]) -> None:
        self.appended.extend(batch)

    async def compact(self, lesson_id: str, merge: Merge) -> int:
        return 0

    async def materialise(self, lesson_id: str, title: str, body: str) -> bool:
        self.materialised.append((title, body))
        return True

    async def record_version(self, lesson_id: str, *, title: str, body: str, state: bytes,
                             contributors: list[str], reason: str) -> str:
        self.versions.append(reason)
        return "v1"


class MemoryLink:
    """A Link: what a Hocuspocus connection would wrap with the document's name."""

    def __init__(self) -> None:
        self.closed = False
        self.frames: list[bytes] = []
        self.close_code: int | None = None
        self.pushed = asyncio.Event()  # set by every frame

    def push(self, frame: bytes, message: dict[str, Any] | None = None, wire: bytes | None = None) -> None:
        if not self.closed:
            self.frames.append(frame)
            self.pushed.set()

    def close(self, code: int, reason: str = "") -> None:
        self.closed = True
        self.close_code = code


async def _authorize(scope: Scope, lesson_id: str) -> Grant:
    return Grant(str(scope["user"]), can_write=scope["user"] != "viewer")


async def _recheck(lesson_id: str, grant: Grant) -> bool:
    return grant.can_write


def _edit(room_doc: Doc[Any], text: str) -> bytes:
    client: Doc[Any] = Doc()
    client.apply_update(room_doc.get_update())
    state = client.get_state()
    client.get("body", type=Text).insert(0, text)
    return client.get_update(state)


async def test_a_connection_type_needs_only_a_link_and_the_manager_api() -> None:
    store = MemoryStore()
    rooms = RoomManager(store, _authorize, _recheck, flush_interval=0.01)  # type: ignore[arg-type]
    await rooms.start()
    try:
        grant, room = await rooms.admit({"user": "writer"}, LESSON)
        writer_link, viewer_link = MemoryLink(), MemoryLink()
        room, writer = await rooms.join(room, grant, writer_link)
        viewer_grant, _ = await rooms.admit({"user": "viewer"}, LESSON)
        room, viewer = await rooms.join(room, viewer_grant, viewer_link)
        assert p.parse_frame(writer_link.frames[0]).sync == p.SYNC_STEP1  # the join's sync step 1

        update = _edit(room.doc, "Hello ")
        rooms.receiver.receive(room, writer, p.update_frame(update))
        await asyncio.sleep(0)  # the updates of one loop turn leave at its end
        assert viewer_link.frames[-1] == p.update_frame(update)  # fanned out, same bytes
        assert str(room.doc.get("body", type=Text)) == "Hello Body"

        rooms.receiver.receive(room, viewer, p.update_frame(_edit(room.doc, "nope ")))
        assert str(room.doc.get("body", type=Text)) == "Hello Body"  # read-only: dropped

        rooms.receiver.receive(room, writer, p.query_saved_frame(7))
        for _ in range(100):
            if writer_link.frames[-1] == p.saved_frame(7):
                break
            await asyncio.sleep(0.01)
        assert writer_link.frames[-1] == p.saved_frame(7)
        assert [u.actor for u in store.appended] == ["writer"]

        rooms.receiver.receive(room, writer, p.update_frame(_edit(room.doc, "x" * 200_001)))
        assert writer_link.close_code == CLOSE_TOO_LARGE  # over the body limit: refused, closed

        rooms.leave(room, viewer)
        rooms.leave(room, writer)
        for _ in range(100):
            if store.versions:
                break
            await asyncio.sleep(0.01)
        assert store.materialised[-1] == ("Title", "Hello Body")
        assert store.versions == ["close"]
    finally:
        await rooms.stop()


async def test_a_lone_update_never_goes_back_to_its_sender_and_several_leave_as_one_frame() -> None:
    store = MemoryStore()
    # writes go out at most every 500 ms: updates received in different loop turns within that
    # interval leave together
    rooms = RoomManager(store, _authorize, _recheck, flush_interval=0.01,  # type: ignore[arg-type]
                        write_interval=0.5)
    await rooms.start()
    try:
        links = {name: MemoryLink() for name in ("ann", "bob", "viewer")}
        peers = {}
        for name, link in links.items():
            grant, room = await rooms.admit({"user": name}, LESSON)
            room, peers[name] = await rooms.join(room, grant, link)
        base = room.doc.get_update()

        def body(frames: list[bytes]) -> str:
            doc: Doc[Any] = Doc()
            doc.apply_update(base)
            for frame in frames:
                doc.apply_update(p.parse_frame(frame).payload)
            return str(doc.get("body", type=Text))

        async def arrived(name: str, count: int) -> list[bytes]:
            while len(links[name].frames) - seen[name] < count:
                links[name].pushed.clear()
                await asyncio.wait_for(links[name].pushed.wait(), 5)
            return links[name].frames[seen[name]:]

        # one update: every peer but its sender
        seen = {name: len(link.frames) for name, link in links.items()}
        lone = _edit(room.doc, "Lone ")
        rooms.receiver.receive(room, peers["ann"], p.update_frame(lone))
        assert await arrived("viewer", 1) == [p.update_frame(lone)]
        assert await arrived("bob", 1) == [p.update_frame(lone)]
        base = room.doc.get_update()
        assert links["ann"].frames[seen["ann"]:] == []

        # two updates, in two loop turns of one write interval: one merged frame for everyone
        seen = {name: len(link.frames) for name, link in links.items()}
        ann, bob = _edit(room.doc, "Ann "), _edit(room.doc, "Bob ")
        rooms.receiver.receive(room, peers["ann"], p.update_frame(ann))
        await asyncio.sleep(0)
        rooms.receiver.receive(room, peers["bob"], p.update_frame(bob))
        for name in links:
            [merged] = await arrived(name, 1)
            assert p.parse_frame(merged).sync == p.SYNC_UPDATE
            assert set(body([merged]).split()) == {"Lone", "Ann", "Bob", "Body"}
            # the writers get theirs back inside it: applying it again changes nothing
            assert links[name].frames[seen[name]:] == [merged]
        for peer in peers.values():
            rooms.leave(room, peer)
    finally:
        await rooms.stop()


async def test_an_unloaded_or_rebuilt_room_lets_its_document_go() -> None:
    """A room's text observers (collab.textsize.CharBounds) form a cycle through Rust that Python's
    collector cannot see: every unloaded room kept its whole document (the soak's RSS growth), and
    every rebuild (a poisoning or over-limit update) kept the old one, which a writer could repeat."""
    import gc
    import weakref

    store = MemoryStore()
    rooms = RoomManager(store, _authorize, _recheck, flush_interval=0.01,  # type: ignore[arg-type]
                        unload_after=0.05)
    await rooms.start()
    try:
        grant, room = await rooms.admit({"user": "writer"}, LESSON)
        link = MemoryLink()
        room, writer = await rooms.join(room, grant, link)
        rooms.receiver.receive(room, writer, p.update_frame(_edit(room.doc, "Hello ")))
        assert room.char_bounds is not None  # the observers exist
        first = weakref.ref(room.doc)

        rooms.receiver.receive(room, writer, p.update_frame(_edit(room.doc, "x" * 200_001)))
        assert link.close_code == CLOSE_TOO_LARGE  # refused: the room's document was rebuilt
        assert room.doc is not first()
        gc.collect()
        assert first() is None, "the document before the rebuild is still alive"

        rooms.receiver.receive(room, writer, p.update_frame(_edit(room.doc, "Again ")))
        rebuilt = weakref.ref(room.doc)
        rooms.leave(room, writer)
        del room, writer
        for _ in range(200):  # the maintenance loop unloads it (every 0.25 s)
            if LESSON not in rooms.rooms:
                break
            await asyncio.sleep(0.05)
        assert LESSON not in rooms.rooms
        for _ in range(100):  # the maintenance loop's last local lets go of the room at its next tick
            gc.collect()
            if rebuilt() is None:
                break
            await asyncio.sleep(0.05)
        assert rebuilt() is None, "the unloaded room's document is still alive"
    finally:
        await rooms.stop()


class _StoredTextStore(MemoryStore):
    """The lesson row held ``stored`` when the document was read."""

    def __init__(self, stored: tuple[str, str]) -> None:
        super().__init__()
        self.stored = stored

    async def load(self, lesson_id: str, seed: Callable[[str, str], bytes]) -> LoadedDocument:
        return LoadedDocument([seed("Title", "Body")], 1, stored_text=self.stored)


def _set_meta(room_doc: Doc[Any]) -> bytes:
    client: Doc[Any] = Doc()
    client.apply_update(room_doc.get_update())
    state = client.get_state()
    client.get("meta", type=Map)["cursor"] = 1
    return client.get_update(state)


async def test_a_room_whose_text_the_row_already_holds_writes_no_text_until_it_changes() -> None:
    """Opening a room and changing only non-text parts (or nothing) costs no materialisation
    (each was a lease check and a query a second after every room load); the row is written
    once the text differs from it, and when the row did not hold the room's text to begin with."""
    for stored, expected in ((("Title", "Body"), []), (("Old title", "Body"), [("Title", "Body")])):
        store = _StoredTextStore(stored)
        rooms = RoomManager(store, _authorize, _recheck, flush_interval=0.01,  # type: ignore[arg-type]
                            materialise_delay=0.0)
        await rooms.start()
        try:
            grant, room = await rooms.admit({"user": "writer"}, LESSON)
            room, writer = await rooms.join(room, grant, MemoryLink())
            rooms.receiver.receive(room, writer, p.update_frame(_set_meta(room.doc)))
            assert room.dirty
            await rooms.persistence.materialise(room)
            assert store.materialised == expected, stored
            rooms.receiver.receive(room, writer, p.update_frame(_edit(room.doc, "New ")))
            await rooms.persistence.materialise(room)
            assert store.materialised[-1] == ("Title", "New Body")
            rooms.leave(room, writer)
        finally:
            await rooms.stop()


async def test_a_writers_burst_is_one_row_of_the_log_and_the_room_counts_it_so() -> None:
    store = MemoryStore()
    rooms = RoomManager(store, _authorize, _recheck, flush_interval=0.01)  # type: ignore[arg-type]
    await rooms.start()
    try:
        grant, room = await rooms.admit({"user": "ann"}, LESSON)
        room, ann = await rooms.join(room, grant, MemoryLink())
        rows_before, loaded = room.log_rows, room.base
        client: Doc[Any] = Doc()
        client.apply_update(room.doc.get_update())
        body = client.get("body", type=Text)
        for i in range(30):  # a paste arriving as 30 updates in one read
            state = client.get_state()
            body.insert(len(str(body)), f" {i}")
            rooms.receiver.receive(room, ann, p.update_frame(client.get_update(state)))
        await rooms.flush()
        assert len([item for item in store.appended if item.actor == "ann"]) == 1  # 30 updates, one row
        assert room.log_rows == rows_before + 1
        stored: Doc[Any] = Doc()
        stored.apply_update(loaded)  # what the store gave, then the log
        for item in store.appended:
            stored.apply_update(item.update)
        assert str(stored.get("body", type=Text)) == str(body) == "Body" + "".join(f" {i}" for i in range(30))
        rooms.leave(room, ann)
    finally:
        await rooms.stop()
