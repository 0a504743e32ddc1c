"""The live document is bounded as a whole, not only its title and body (issue 11; docs/API.md §5).

TEXT_LIMITS covered title and body only: a writer could add ``meta`` keys or new root types
forever, growing room memory, the log, every version row and each joiner's step 2. Now an update
that takes the document's stored history past ``DOCUMENT_MAX_BYTES`` (32 MiB, above the 16 MiB a
socket may queue), whatever root it grows, is refused like an over-long text: rebuilt without, 4413.
"""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from collab.room import DOCUMENT_MAX_BYTES
from tests.support import ServerProcess
from tests.support.collab import MetaWriter

TOO_LARGE = 4413


async def test_meta_cannot_grow_the_document_without_bound(server: ServerProcess, client: httpx.AsyncClient,
                                                           db: AsyncEngine) -> None:
    attack = await MetaWriter.connect(server, client, db, "Meta")
    attacker, doc, meta = attack.client, attack.doc, attack.meta
    sent = 0
    frames = 0
    while sent <= DOCUMENT_MAX_BYTES + 2 * 1024 * 1024:
        state = doc.get_state()
        meta[f"k{frames}"] = "v" * 1_500_000
        frame = p.update_frame(doc.get_update(state))
        try:
            await attacker.ws.send(frame)
        except Exception:
            break
        sent += len(frame)
        frames += 1
    code = await attacker.wait_closed(within=60)
    print(f"\nsent {frames} frames, {sent / 1e6:.1f} MB of meta: closed with {code}")
    assert code == TOO_LARGE
