"""Awareness frames cost per entry, not per byte (issue 11 review, item 1; docs/API.md §5).

A frame of 1,024 minimal entries is 6 KB but took ~2.4 ms to parse in Python before it was
dropped; the byte budget let ~1,300 of them a second through (~3 s of CPU per second, 64 per
turn held the loop ~150 ms). Now a socket's frame may claim at most 2 x COLLAB_AWARENESS_IDS
entries (16 at most) or is dropped unread, and every frame is charged a frame's cost per entry.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from tests.adversarial.probe import AttackWatch
from tests.adversarial.rawws import RawSocket, client_frames
from tests.support import ServerProcess, dev_user
from tests.support.collab import YClient, make_lesson

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)


async def test_frames_of_many_minimal_entries_do_not_hold_the_loop(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    viewer = await dev_user(client, "Viewer")
    lesson = await make_lesson(db, author.clerk_id, viewers=(viewer.clerk_id,))
    attacker = await RawSocket.open("127.0.0.1", server.port,
                                    f"/collab/lessons/{lesson.id}?token={viewer.token}")
    await attacker.read_frame()  # the server's step 1: joined
    frame = p.awareness_frame(p.encode_awareness([p.AwarenessEntry(n, 1, "{}") for n in range(1024)]))
    blob = client_frames([frame] * 64)  # one turn's worth, made before the attack
    watcher = await YClient.connect(server.ws_url, lesson.id, author.token)
    async with AttackWatch(server) as watch:
        n = 0
        while len(watch.during) < 15 and n < 2000:  # until the innocent client has 15 samples
            n += 1
            await attacker.send_raw(blob)
            await attacker.send_frames([p.query_saved_frame(n)])
            while (await attacker.read_frame())[1][:1] != bytes((p.MSG_SAVED,)):
                pass  # answered after the frames
    print(f"\n{n * 64} frames of 1,024 entries: lag>100ms x{watch.late_wakeups:.0f}, innocent median "
          f"{watch.during_median * 1000:.1f} ms (idle {watch.idle_median * 1000:.1f})")
    watch.assert_unharmed()
    await watcher.roundtrip()
    assert not [cid for cid in watcher.awareness if cid < 1024]  # none of them was kept
    attacker.close()
    await watcher.close()
