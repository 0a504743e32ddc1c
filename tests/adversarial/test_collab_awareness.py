"""Awareness ownership on ``WS /collab/lessons/{id}`` (issue 11, item 2; docs/API.md §5).

One socket could announce any number of awareness client ids (≈300k per 2 MiB frame), each kept
until it closed, re-encoded for every joiner, scanned every 250 ms and relayed to other nodes: a
joiner received all 5,000 states that one socket announced. Now a socket owns at most
``COLLAB_AWARENESS_IDS`` (default 4) ids, a state is at most ``COLLAB_AWARENESS_STATE_BYTES``
(default 8 KiB), a frame of more than 1,024 entries is dropped unread, and a socket cannot
overwrite an id another user's socket owns. What breaks a rule is dropped from the frame; the
rest is relayed and the socket stays open.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from tests.adversarial.probe import AttackWatch
from tests.adversarial.rawws import RawSocket, client_frames
from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient, make_lesson

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)

MAX_IDS = 4
MAX_STATE = 8 * 1024


def _frame(entries: list[p.AwarenessEntry]) -> bytes:
    return p.awareness_frame(p.encode_awareness(entries))


async def test_a_socket_owns_a_few_small_awareness_states(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id)
    attacker = await YClient.connect(server.ws_url, lesson.id, author.token)
    many = [p.AwarenessEntry(1_000_000 + n, 1, json.dumps({"n": n})) for n in range(5000)]
    for start in range(0, len(many), 8):  # frames of 8 (2 x the ids; a frame of more is dropped whole)
        await attacker.ws.send(_frame(many[start:start + 8]))
    huge = p.AwarenessEntry(attacker.doc.client_id, 1, json.dumps({"avatar": "x" * (MAX_STATE + 1)}))
    await attacker.ws.send(_frame([huge]))
    await attacker.roundtrip()  # answered after the frames above

    joiner = await YClient.connect(server.ws_url, lesson.id, author.token)
    await joiner.set_awareness({"user": "joiner"})
    await joiner.roundtrip()
    await eventually(lambda: _async(bool(joiner.awareness)), within=5)
    announced = [cid for cid in joiner.awareness if 1_000_000 <= cid < 1_005_000]
    print(f"\njoiner got {len(announced)} of the 5,000 states one socket announced")
    assert 0 < len(announced) <= MAX_IDS
    assert attacker.doc.client_id not in joiner.awareness  # over the size limit: dropped

    # The socket stays usable: a state of its own within the limits, once it gives ids back.
    await attacker.ws.send(_frame([p.AwarenessEntry(cid, 2, "null") for cid in announced]))
    await attacker.set_awareness({"user": "attacker"}, clock=2)
    await eventually(lambda: _async(joiner.awareness.get(attacker.doc.client_id) == {"user": "attacker"}),
                     within=5)
    await attacker.close()
    await joiner.close()


async def test_a_socket_cannot_overwrite_another_users_state(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    editor = await dev_user(client, "Editor")
    lesson = await make_lesson(db, author.clerk_id, editors=(editor.clerk_id,))
    victim = await YClient.connect(server.ws_url, lesson.id, author.token)
    await victim.set_awareness({"user": "victim"})
    await victim.roundtrip()
    attacker = await YClient.connect(server.ws_url, lesson.id, editor.token)
    spoof = p.AwarenessEntry(victim.doc.client_id, 99, json.dumps({"user": "spoofed"}))
    await attacker.ws.send(_frame([spoof]))
    await attacker.ws.send(_frame([p.AwarenessEntry(victim.doc.client_id, 100, "null")]))
    await attacker.roundtrip()
    observer = await YClient.connect(server.ws_url, lesson.id, author.token)
    await observer.roundtrip()
    await eventually(lambda: _async(victim.doc.client_id in observer.awareness), within=5)
    assert observer.awareness[victim.doc.client_id] == {"user": "victim"}
    for c in (victim, attacker, observer):
        await c.close()


async def test_an_awareness_flood_does_not_hold_the_loop(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id)
    attacker = await RawSocket.open("127.0.0.1", server.port, f"/collab/lessons/{lesson.id}?token={author.token}")
    await attacker.read_frame()  # the server's step 1: joined
    # A 1 MB frame of 145,000 minimal entries (~0.4 s to parse), made before the attack.
    entries = [p.AwarenessEntry(n, 1, "{}") for n in range(145_000)]
    blob = client_frames([_frame(entries)])
    watcher = await YClient.connect(server.ws_url, lesson.id, author.token)
    async with AttackWatch(server) as watch:
        n = 0
        while len(watch.during) < 15 and n < 1000:  # until the innocent client has 15 samples
            n += 1
            await attacker.send_raw(blob)
            await attacker.send_frames([p.query_saved_frame(n)])
            while (await attacker.read_frame())[1][:1] != bytes((p.MSG_SAVED,)):
                pass  # answered after the frame
    print(f"\nawareness flood of {n} frames: lag>100ms x{watch.late_wakeups:.0f}, innocent median "
          f"{watch.during_median * 1000:.1f} ms (idle {watch.idle_median * 1000:.1f}), "
          f"watcher knows {len(watcher.awareness)} states")
    watch.assert_unharmed()
    await watcher.roundtrip()
    assert len(watcher.awareness) <= MAX_IDS
    attacker.close()
    await watcher.close()


async def _async(value: bool) -> bool:
    await asyncio.sleep(0)
    return value
