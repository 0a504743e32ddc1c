"""A document of many small structs never holds the event loop as a whole (docs/API.md §5 limits).

yrs spends about a microsecond per struct to apply, merge or encode a document, keeping the GIL
for the whole call. An editor can send many updates of many structs each (a ``meta`` Map of
25,000 keys per 489 KB update, ~30 ms to apply: each under the bound) and leave a document of
half a million structs. Every whole-document step then cost its full price in one go, on the
loop or, as compaction did, in a worker thread that kept the GIL (a thread does not free the
loop for such calls): the room's checkpoint fold, loading the room, compaction. Those now run
in a worker process, and loading applies the stored log one row at a time.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from pycrdt import Map
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from server.editing.models import LessonSnapshot, LessonUpdate
from tests.adversarial.probe import AttackWatch
from tests.support import ServerProcess, eventually
from tests.support.collab import MetaWriter, YClient

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)

UPDATES = 18
KEYS = 12_500  # per update: ~245 KB, ~15 ms of the loop to apply on arrival (4.4 MB in all)


async def log_rows(db: AsyncEngine, lesson_id: uuid.UUID) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(LessonUpdate).where(
            LessonUpdate.lesson_id == lesson_id))).scalar_one())


async def test_a_document_of_many_structs_is_folded_loaded_and_compacted_off_the_loop(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    attack = await MetaWriter.connect(server, client, db, "Dense")
    author, lesson, writer, doc, meta = attack.author, attack.lesson, attack.client, attack.doc, attack.meta
    frames = []
    for batch in range(UPDATES):  # built beforehand: the test's own CPU and GIL stay free
        state = doc.get_state()
        with doc.transaction():
            for key in range(KEYS):
                meta[f"b{batch}k{key}"] = key
        frames.append(p.update_frame(doc.get_update(state)))
    # On the default server: each update applied as it comes, and the room's checkpoint folded
    # (merged into one update) past 4 MiB of them.
    async with AttackWatch(server) as watch:
        for frame in frames:
            await writer.ws.send(frame)
            # Paced like a client that keeps writing: what is measured is the document's
            # whole-history steps, not a burst of updates (the receive budget's burst, 16 MiB,
            # lets one user's updates have the loop for a while: test_ws_backlog and others).
            await asyncio.sleep(0.1)
        await writer.saved(within=120)
    print(f"\n{UPDATES} updates of {KEYS} keys ({sum(map(len, frames)) / 1e6:.1f} MB): "
          f"rss growth {watch.rss_growth / 1e6:.1f} MB")
    watch.assert_unharmed()
    await writer.close()
    rows = await log_rows(db, lesson.lesson_id)
    assert rows >= UPDATES

    # A node that has not got the room loads it (the whole log), then compacts it: its
    # threshold is under the log's rows.
    fresh = ServerProcess(database_url=server.database_url, data_dir=server.data_dir,
                          env={"RATE_LIMIT_PER_MINUTE": "0", "COLLAB_COMPACT_ROWS": str(rows)}).start()
    try:
        async with AttackWatch(fresh) as watch:
            reader = await YClient.connect(fresh.ws_url, lesson.id, author.token)

            async def compacted() -> bool:
                async with db.connect() as conn:
                    snapshot = (await conn.execute(select(LessonSnapshot.lesson_id).where(
                        LessonSnapshot.lesson_id == lesson.lesson_id))).first()
                return snapshot is not None and await log_rows(db, lesson.lesson_id) < rows

            await eventually(compacted, within=60)
        loaded = reader.doc.get("meta", type=Map)
        assert len(loaded) == UPDATES * KEYS and loaded[f"b{UPDATES - 1}k{KEYS - 1}"] == KEYS - 1
        print(f"loaded and compacted {rows} rows: rss growth {watch.rss_growth / 1e6:.1f} MB")
        watch.assert_unharmed()
        await reader.close()
    finally:
        fresh.stop()
