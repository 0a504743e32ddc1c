"""The text-limit check on a long multibyte body is O(update) (issue 11 review, item 3; §5).

pycrdt measures text in UTF-8 bytes; the body limit is 200,000 characters. A body of 199,990
emoji (~800 KB; the review's CJK body is ~600 KB) is over the limit in bytes, so every update counted the body's
characters twice (``len(str(text))``: 1.8 ms per 27-byte update, 64 a turn held the loop
~120 ms). Now the character count follows the Text events (collab/textsize.py) and is counted
only when its bounds straddle the limit.
"""

from __future__ import annotations

import httpx
import pytest
from pycrdt import Doc, Text
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from tests.adversarial.probe import AttackWatch
from tests.adversarial.rawws import RawSocket, client_frames
from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient, make_lesson

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)

BODY = "😀" * 199_990  # 800 KB: 4 bytes each


async def test_keystrokes_in_a_long_cjk_body_do_not_hold_the_loop(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, body=BODY)
    reader = await YClient.connect(server.ws_url, lesson.id, author.token)
    await reader.roundtrip()

    async def synced() -> bool:
        return len(str(reader.body)) == len(BODY)

    await eventually(synced, within=10)
    local: Doc = Doc()
    local.apply_update(reader.doc.get_update())
    body = local.get("body", type=Text)
    updates = []
    for n in range(64):  # a keystroke and its backspace, in turn: the body stays within its limit
        state = local.get_state()
        if n % 2 == 0:
            body.insert(1000, "a")
        else:
            del body[1000:1001]
        updates.append(p.update_frame(local.get_update(state)))
    blob = client_frames(updates)
    attacker = await RawSocket.open("127.0.0.1", server.port,
                                    f"/collab/lessons/{lesson.id}?token={author.token}")
    await attacker.read_frame()  # joined
    async with AttackWatch(server) as watch:
        n = 0
        while len(watch.during) < 15 and n < 500:
            n += 1
            await attacker.send_raw(blob)
            await attacker.send_frames([p.query_saved_frame(n)])
            while (await attacker.read_frame())[1][:1] != bytes((p.MSG_SAVED,)):
                pass  # answered after the updates
    print(f"\n{n * 64} one-character updates to an 800 KB body: lag>100ms x{watch.late_wakeups:.0f}, "
          f"innocent median {watch.during_median * 1000:.1f} ms (idle {watch.idle_median * 1000:.1f})")
    watch.assert_unharmed()
    await attacker.send_frames([p.update_frame(b"\x00\x00")])  # closed 4009 if any was refused
    await eventually(synced, within=10)  # every update reached the reader, none was refused
    assert not attacker.writer.is_closing()
    attacker.close()
    await reader.close()
