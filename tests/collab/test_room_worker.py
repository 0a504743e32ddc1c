"""Rooms and the collab worker process (collab/manager.py, collab/room.py; wire/worker.py): a
background fold leaves the document as it was and backs off after a failure; one caller giving up
while a room loads fails no other caller; without a worker process a room still loads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest
from pycrdt import Doc, Text

from collab import manager as manager_module
from collab import protocol as p
from collab import room as room_module
from collab.manager import RoomManager
from collab.store import LoadedDocument
from server.settings import Settings, SettingsError
from tests.collab.test_collab_seam import LESSON, MemoryLink, MemoryStore, _authorize, _edit, _recheck
from tests.support import eventually


def _text(updates: list[bytes]) -> str:
    doc: Doc[Any] = Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("body", type=Text))


async def test_a_background_fold_keeps_the_document_and_backs_off_after_a_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(room_module, "INLINE_MERGE_BYTES", 0)  # every fold in the worker
    monkeypatch.setattr(room_module, "CHECKPOINT_FOLD_BYTES", 2_000)
    rooms = RoomManager(MemoryStore(), _authorize, _recheck, flush_interval=0.01)  # type: ignore[arg-type]
    await rooms.start()
    try:
        grant, room = await rooms.admit({"user": "writer"}, LESSON)
        room, writer = await rooms.join(room, grant, MemoryLink())
        for i in range(5):
            rooms.receiver.receive(room, writer, p.update_frame(_edit(room.doc, f"{i}" * 1_000)))

        async def folded() -> bool:
            return not room.folding and room.tail_bytes < 2_000

        await eventually(folded, within=30)
        live = str(room.doc.get("body", type=Text))
        assert _text([room.base, *room.tail]) == live and live.endswith("Body")
        assert rooms.worker.started == 1

        async def broken(fn: Callable[..., Any], *args: Any) -> Any:
            raise RuntimeError("the worker failed")

        monkeypatch.setattr(rooms.worker, "run", broken)
        for i in range(3):
            rooms.receiver.receive(room, writer, p.update_frame(_edit(room.doc, f"{i}" * 1_000)))
        await eventually(lambda: asyncio.sleep(0, room.fold_retry_bytes > 0), within=10)
        retry_at = room.fold_retry_bytes
        assert retry_at >= 2 * 3_000  # the next fold waits for the tail to double
        rooms.receiver.receive(room, writer, p.update_frame(_edit(room.doc, "z")))
        assert not room.folding and room.fold_retry_bytes == retry_at  # no fold per update meanwhile
        assert _text([room.base, *room.tail]) == str(room.doc.get("body", type=Text))
    finally:
        await rooms.stop()


class SlowStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.loads = 0

    async def load(self, lesson_id: str, seed: Callable[[str, str], bytes]) -> LoadedDocument:
        self.loads += 1
        await self.gate.wait()
        return await super().load(lesson_id, seed)


async def test_a_caller_giving_up_while_a_room_loads_fails_no_other() -> None:
    store = SlowStore()
    rooms = RoomManager(store, _authorize, _recheck, flush_interval=0.01)  # type: ignore[arg-type]
    await rooms.start()
    try:
        first = asyncio.create_task(rooms.open(LESSON))
        second = asyncio.create_task(rooms.open(LESSON))
        await eventually(lambda: asyncio.sleep(0, store.loads == 1), within=10)
        first.cancel()  # e.g. its socket closed mid-open
        with pytest.raises(asyncio.CancelledError):
            await first
        store.gate.set()
        room = await asyncio.wait_for(second, 10)
        assert rooms.rooms[LESSON] is room and store.loads == 1
        assert await rooms.open(LESSON) is room
    finally:
        store.gate.set()
        await rooms.stop()


def test_a_large_checkpoint_is_folded_in_the_background_once_its_tail_is_long_enough() -> None:
    started: list[int] = []
    room = room_module.Room(LESSON, Doc(), base=b"b" * (2 * 1024 * 1024), folds=lambda r: started.append(len(r.tail)))
    due = 2 * 1024 * 1024 // room_module.FOLD_BASE_PER_UPDATE  # 512 updates for a 2 MiB checkpoint
    for _ in range(due - 1):
        room.remember(b"u" * 30)
    room.fold_soon()  # the maintenance's call past CHECKPOINT_FOLD_UPDATES (256)
    assert started == []  # a 2 MiB merge is not started for fewer updates than that
    room.remember(b"u" * 30)
    room.fold_soon()
    assert started == [due]


async def test_a_room_still_loads_when_no_worker_process_can_be_had(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "INLINE_MERGE_BYTES", 0)  # every load through the worker
    rooms = RoomManager(MemoryStore(), _authorize, _recheck, flush_interval=0.01)  # type: ignore[arg-type]

    async def broken(fn: Callable[..., Any], *args: Any) -> Any:
        raise BrokenProcessPool("no process")

    monkeypatch.setattr(rooms.worker, "run", broken)
    await rooms.start()
    try:
        room = await rooms.open(LESSON)
        assert str(room.doc.get("body", type=Text)) == "Body" and _text([room.base]) == "Body"
    finally:
        await rooms.stop()


def test_the_compaction_threshold_is_a_setting_of_at_least_one_row() -> None:
    assert Settings.from_env({}).collab_compact_rows == 500
    assert Settings.from_env({"COLLAB_COMPACT_ROWS": "20"}).collab_compact_rows == 20
    with pytest.raises(SettingsError, match="COLLAB_COMPACT_ROWS must be at least 1"):
        Settings.from_env({"COLLAB_COMPACT_ROWS": "0"})
