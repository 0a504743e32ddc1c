"""A crafted Yjs update that pycrdt applies but that breaks the document (found by tests/fuzz).

yrs 0.28 accepts this 27-byte update (a struct of length zero) and from then on panics
("attempt to divide by zero") in every ``get_update`` of the document: each joining client's
sync answer, compaction and materialisation fail, and the update log replays the damage on every
load. An editor could so break a lesson for good. The room must refuse the update and go on.
"""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from tests.support import ServerProcess, dev_user
from tests.support.collab import YClient, converge, make_lesson

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)

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


def _huge_header(clients: int) -> bytes:
    """A 15-byte update that declares ``clients`` client groups: yrs reserves room for all of
    them before it finds the update truncated (measured: 3e8 -> +384 MB, 0.44 s)."""
    return p.write_var_uint(clients) + b"\x01\x05\x00\x04\x01\x04body\x01a\x00"


async def test_updates_declaring_millions_of_clients_are_refused_cheaply(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    from tests.adversarial.probe import AttackWatch

    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, body="Steady")
    attacker = await YClient.connect(server.ws_url, lesson.id, author.token)
    async with AttackWatch(server) as watch:
        for _ in range(30):  # 0.6 s of attack, so the innocent client measures during it
            await attacker.ws.send(p.update_frame(_huge_header(300_000_000)))
            await asyncio.sleep(0.02)
        await attacker.roundtrip()  # answered after all of them
    watch.assert_unharmed()
    # Bound: refusing one costs nothing like the 384 MB yrs would reserve.
    assert watch.rss_growth < 64 * 1024 * 1024, watch.rss_growth
    assert attacker.close_code is None and attacker.text()["body"] == "Steady"
    await attacker.close()


async def test_a_state_vector_declaring_trillions_of_clients_is_refused_cheaply(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    """A viewer may send sync step 1; 9 bytes of it used to hold the loop 1.3 s and reserve 1 GB."""
    from tests.adversarial.probe import AttackWatch

    author, viewer = await dev_user(client, "Author"), await dev_user(client, "Viewer")
    lesson = await make_lesson(db, author.clerk_id, body="Steady", viewers=(viewer.clerk_id,))
    attacker = await YClient.connect(server.ws_url, lesson.id, viewer.token)
    async with AttackWatch(server) as watch:
        for _ in range(30):
            await attacker.ws.send(p.step1_frame(p.write_var_uint(2_530_264_186_677) + b"\x00"))
            await asyncio.sleep(0.02)
        await attacker.roundtrip()
    watch.assert_unharmed()
    assert watch.rss_growth < 64 * 1024 * 1024, watch.rss_growth
    assert attacker.close_code is None and attacker.text()["body"] == "Steady"
    await attacker.close()


async def test_updates_that_panic_together_are_dropped(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    """Each update passes check_update alone; applied in turn the second made yrs panic, and the
    panic (a BaseException) ended the socket's handler. It is dropped; the socket and room go on."""
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="A lesson", body="Some body text, ünïcödé and 🙂.")
    attacker = await YClient.connect(server.ws_url, lesson.id, author.token)
    for update in ("0101a3c98a7aceb98dcef9f9000000007720ff06ff", "0101a3c98a7a00010000000000004c002f6e0f0500"):
        await attacker.ws.send(p.step2_frame(bytes.fromhex(update)))
    attacker.body += "!"
    await attacker.roundtrip()
    late = await YClient.connect(server.ws_url, lesson.id, author.token)
    texts = await converge([attacker, late])
    assert texts["body"].endswith("🙂.!")
    assert attacker.close_code is None
    await attacker.close()
    await late.close()
