"""A crafted Yjs update that pycrdt applies but that breaks the document (found by tests/fuzz).

yrs 0.28 accepts this 27-byte update (a struct of length zero) and from then on panics
("attempt to divide by zero") in every ``get_update`` of the document: each joining client's
sync answer, compaction and materialisation fail, and the update log replays the damage on every
load. An editor could so break a lesson for good. The room must refuse the update and go on.
"""

from __future__ import annotations

import base64

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from tests.collab_support import YClient, converge, make_lesson
from tests.support import ServerProcess, dev_user

# The fuzzer's crash file (tests.fuzz.run collab_dispatch): a sync step 2 carrying the update.
POISON_FRAME = base64.b64decode("AAEbAQHhyajcraoTAQAAAAAAAADiBAYgd29ybGQA")


async def test_a_poisoned_update_is_refused_and_the_room_goes_on(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, body="Before")
    attacker = await YClient.connect(server.ws_url, lesson.id, author.token)
    await attacker.ws.send(POISON_FRAME)
    await attacker.ws.send(p.update_frame(p.parse_frame(POISON_FRAME).payload))
    attacker.body += " and after"  # a normal edit still goes through
    await attacker.roundtrip()  # the server answered a sync step 1 after the poison: it still encodes the doc

    late = await YClient.connect(server.ws_url, lesson.id, author.token)  # joining needs a full sync answer
    texts = await converge([attacker, late])
    assert texts["body"] == "Before and after"
    assert attacker.close_code is None and late.close_code is None
    await attacker.close()
    await late.close()
