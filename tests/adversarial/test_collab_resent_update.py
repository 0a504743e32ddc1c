"""Re-sending one large update costs its full price once (issue 11; docs/API.md §3 bounded work).

A writer built one ~2 MiB update (a ``meta`` Map with 25,000 keys) and re-sent it: each copy was
checked on a scratch document, applied, persisted as a 2 MiB row, broadcast and relayed, and the
rows piled up for compaction. An update that changes nothing (its structs are all known, the
state vector does not move) is now dropped: not persisted, relayed or broadcast, and a copy the
room has seen recently is recognised by its digest before the scratch check.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from server.editing.models import LessonUpdate
from tests.adversarial.probe import AttackWatch
from tests.support import ServerProcess
from tests.support.collab import MetaWriter

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)

COPIES = 20


async def test_a_resent_large_update_is_persisted_once(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    attack = await MetaWriter.connect(server, client, db, "Resent")
    lesson, attacker, doc, meta = attack.lesson, attack.client, attack.doc, attack.meta
    state = doc.get_state()
    with doc.transaction():
        for key in range(25_000):
            meta[f"k{key}"] = key
    frame = p.update_frame(doc.get_update(state))
    assert len(frame) < 2 * 1024 * 1024
    async with AttackWatch(server) as watch:
        for _ in range(COPIES):
            await attacker.ws.send(frame)
        await attacker.saved(within=60)
    async with db.connect() as conn:
        rows = (await conn.execute(select(func.count()).select_from(LessonUpdate).where(
            LessonUpdate.lesson_id == lesson.lesson_id))).scalar_one()
    print(f"\n{COPIES} copies of a {len(frame)} byte update: {rows} log rows, "
          f"rss growth {watch.rss_growth / 1e6:.1f} MB")
    assert rows <= 2  # the seed row and the update, once
    watch.assert_unharmed()
    await attacker.close()
