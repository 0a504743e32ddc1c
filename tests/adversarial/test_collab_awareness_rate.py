"""Awareness fan-out is rate-limited per socket (issue 11 review, item 2; docs/API.md §5).

Every awareness frame a socket sent was broadcast to every peer and published to Redis: a
viewer sending its own 8 KiB state with rising clocks at its 8 MiB/s receive budget made the
server send 8 MiB/s to each peer. Now a socket's frames fan out in bursts of
COLLAB_AWARENESS_BURST (20), then COLLAB_AWARENESS_PER_SECOND (10); what comes faster waits and
is coalesced into one frame of the newest state, so peers still end with the latest cursor.
"""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from tests.adversarial.rawws import RawSocket, client_frames
from tests.support import ServerProcess, dev_user
from tests.support.collab import make_lesson

FRAMES = 300
ATTACKER_ID = 4242


async def test_an_awareness_stream_is_coalesced_to_the_newest_state(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    viewer = await dev_user(client, "Viewer")
    lesson = await make_lesson(db, author.clerk_id, viewers=(viewer.clerk_id,))
    path = f"/collab/lessons/{lesson.id}?token="
    observer = await RawSocket.open("127.0.0.1", server.port, path + author.token)
    await observer.read_frame()  # joined
    attacker = await RawSocket.open("127.0.0.1", server.port, path + viewer.token)
    await attacker.read_frame()  # joined
    states = [p.awareness_frame(p.encode_awareness([p.AwarenessEntry(
        ATTACKER_ID, clock, json.dumps({"clock": clock, "pad": "x" * 8000}))]))
        for clock in range(1, FRAMES + 1)]
    await attacker.send_raw(client_frames(states))

    received = 0
    newest = 0

    async def until_newest() -> None:
        nonlocal received, newest
        while newest < FRAMES:
            _, payload = await observer.read_frame()
            if payload[:1] != bytes((p.MSG_AWARENESS,)):
                continue
            received += 1
            for entry in p.parse_awareness(p.parse_frame(payload).payload):
                if entry.client_id == ATTACKER_ID:
                    newest = max(newest, entry.clock)

    await asyncio.wait_for(until_newest(), timeout=20)
    print(f"\n{FRAMES} awareness frames of 8 KB sent; the observer got {received} "
          f"({received * 8 / 1024:.1f} MB), ending with the newest state")
    assert received <= 40  # a burst of 20, then coalesced sends at 10/s
    attacker.close()
    observer.close()
