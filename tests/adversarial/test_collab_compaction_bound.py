"""Compaction reads a bounded number of bytes and merges off the event loop (issue 11; docs/API.md §3).

At 500 log rows compaction loaded every row at once (500 copies of a 2 MiB update: ~1 GB) and
merged them on the event loop (2.4 s for 40 copies). Now one compaction reads at most
``COMPACT_MAX_BYTES`` of rows (the rest waits for the next one) and merges in a worker process
(a worker thread did not free the loop: yrs keeps the GIL; tests/adversarial/test_collab_big_document).
"""

from __future__ import annotations

import os
import uuid

import httpx
import pytest
from pycrdt import Doc, Text
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from collab.room import merge_log
from server.db import make_sessionmaker
from server.editing import store as editing_store
from server.editing.store import PgStore
from tests.support import DevUser
from tests.support.forum import make_course
from wire.worker import WorkerProcess

ROWS = 6


async def test_compaction_is_bounded_by_bytes_and_off_the_loop(
        client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser, monkeypatch: pytest.MonkeyPatch) -> None:
    lesson = (await make_course(db, alice)).lesson_id
    doc: Doc = Doc()
    body = doc.get("body", type=Text)
    updates = []
    for i in range(ROWS):
        state = doc.get_state()
        body.insert(len(body), f"{i}" * 100_000)
        updates.append(doc.get_update(state))
    async with db.begin() as conn:
        for update in updates:
            await conn.execute(text("INSERT INTO lesson_updates (lesson_id, update) VALUES (:l, :u)"),
                               {"l": uuid.UUID(lesson), "u": update})
    monkeypatch.setattr(editing_store, "COMPACT_MAX_BYTES", 3 * 100_000 + 1_000, raising=False)
    worker = WorkerProcess("test-compaction")
    pids: set[int] = set()

    async def merge(batch: list[bytes]) -> tuple[bytes, bytes]:
        pids.add(await worker.run(os.getpid))
        return await worker.run(merge_log, batch)

    store = PgStore(make_sessionmaker(db))
    try:
        first = await store.compact(lesson, merge)
        second = await store.compact(lesson, merge)
    finally:
        worker.stop()
    print(f"\ncompactions merged {first} then {second} of {ROWS} rows")
    assert (first, second) == (3, 3)
    assert pids and os.getpid() not in pids and worker.started == 1
    loaded = await store.load(lesson, lambda title, body: b"")
    result: Doc = Doc()
    for update in loaded.updates:
        result.apply_update(update)
    assert str(result.get("body", type=Text)) == str(body)
