"""A failed final save at shutdown is logged, never swallowed (architecture issue, part 2).

``RoomManager.stop`` used to wrap the last flush and each room's materialisation and version in
``contextlib.suppress(Exception)``: updates the database refused at shutdown were lost without a
line in the log. Now each failure is logged with its traceback and the lessons it concerned, and
the other rooms are still saved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest
from pycrdt import Doc

from collab.manager import RoomManager
from collab.room import Room, seed_update
from collab.store import PendingUpdate

LESSON_A = "00000000-0000-4000-8000-00000000000a"
LESSON_B = "00000000-0000-4000-8000-00000000000b"


class BrokenStore:
    """Appends and the first lesson's materialisation fail; the second lesson's go through."""

    def __init__(self) -> None:
        self.materialised: list[str] = []

    async def append(self, batch: Sequence[PendingUpdate]) -> None:
        raise ConnectionError("database is down")

    async def materialise(self, lesson_id: str, title: str, body: str) -> bool:
        if lesson_id == LESSON_A:
            raise ConnectionError("database is down")
        self.materialised.append(lesson_id)
        return True


async def _never(*_: Any) -> Any:
    raise AssertionError("not used")


def _room(lesson_id: str) -> Room:
    doc: Doc[Any] = Doc()
    doc.apply_update(seed_update("Title", "Body"))
    return Room(lesson_id, doc)


async def test_a_failed_final_save_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    store = BrokenStore()
    rooms = RoomManager(store=store, authorize=_never, recheck=_never)  # type: ignore[arg-type]
    for lesson_id in (LESSON_A, LESSON_B):
        rooms.rooms[lesson_id] = _room(lesson_id)
    rooms.persistence.queue(PendingUpdate(LESSON_A, b"\x00\x00", "user"))
    with caplog.at_level(logging.ERROR, logger="scriptorium.collab"):
        await rooms.stop()
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    print(f"\n{[r.getMessage() for r in failures]}")
    flush = [r for r in failures if "final flush" in r.getMessage()]
    assert len(flush) == 1 and flush[0].exc_info is not None
    assert getattr(flush[0], "lesson_ids", None) == [LESSON_A]
    room = [r for r in failures if getattr(r, "lesson_id", None) == LESSON_A]
    assert len(room) == 1 and room[0].exc_info is not None
    assert store.materialised == [LESSON_B]  # one room's failure does not stop the others
    assert len(rooms.persistence.pending) == 1  # kept, not dropped
