"""A sequence of client updates that poisons a live document (issue 11; docs/API.md §3, §5).

Found by tests/fuzz (bench/fuzz/crashes/collab_dispatch-poison-in-sequence): updates that each
pass ``check_update`` (applied to an empty document) left the room's document, applied in turn,
so that every ``get_update`` panicked in yrs 0.28: no joiner got its sync answer, the lesson no
longer materialised, and since the updates were logged it stayed broken on every load. Now an
update that poisons the document is dropped and undone, and a log poisoned before this fix loads
without the updates that poison it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from server.editing.models import LessonUpdate
from tests.support import ROOT, ServerProcess, dev_user, eventually
from tests.support.collab import YClient, converge, lesson_row, make_lesson

CRASH = ROOT / "bench" / "fuzz" / "crashes" / "collab_dispatch-poison-in-sequence"


def poison_updates() -> list[bytes]:
    """The crash file's update payloads that apply alone (check_update passes each)."""
    from collab.room import check_update

    updates = []
    for chunk in CRASH.read_bytes().split(b"\xff\xfe\xfd"):
        try:
            frame = p.parse_frame(chunk)
            check_update(frame.payload)
        except (p.ProtocolError, ValueError, IndexError):
            continue
        if frame.type == p.MSG_SYNC and frame.sync in (p.SYNC_STEP2, p.SYNC_UPDATE):
            updates.append(frame.payload)
    assert len(updates) >= 2, updates
    return updates


async def _materialised(db: AsyncEngine, lesson_id: str, body: str) -> None:
    async def done() -> bool:
        return bool((await lesson_row(db, lesson_id))["content"]["body"] == body)

    await eventually(done, within=6)


async def test_a_poisoning_sequence_leaves_the_room_usable(database_url: str, data_dir: Path,
                                                           db: AsyncEngine) -> None:
    node = ServerProcess(database_url=database_url, data_dir=data_dir,
                         env={"RATE_LIMIT_PER_MINUTE": "0"}).start()
    try:
        async with httpx.AsyncClient(base_url=node.base_url) as client:
            author = await dev_user(client, "Author")
            editor = await dev_user(client, "Editor")
        lesson = await make_lesson(db, author.clerk_id, title="Poison", body="Body.",
                                   editors=(editor.clerk_id,))
        honest = await YClient.connect(node.ws_url, lesson.id, author.token)
        attacker = await YClient.connect(node.ws_url, lesson.id, editor.token)
        for update in poison_updates():
            await attacker.ws.send(p.update_frame(update))
        await attacker.roundtrip()  # answered: the room still encodes its document

        late = await YClient.connect(node.ws_url, lesson.id, author.token)  # syncs within 10 s
        honest.body.insert(len(str(honest.body)), " More.")
        await honest.roundtrip()
        assert await converge([honest, late]) == {"title": "Poison", "body": "Body. More."}
        await _materialised(db, lesson.id, "Body. More.")
        await honest.saved()
        for ws_client in (honest, attacker, late):
            await ws_client.close()
    finally:
        node.stop()
    # A restart loads the lesson from its log: nothing poisoned was persisted.
    node = ServerProcess(database_url=database_url, data_dir=data_dir, env={"RATE_LIMIT_PER_MINUTE": "0"}).start()
    try:
        again = await YClient.connect(node.ws_url, lesson.id, author.token)
        assert again.text() == {"title": "Poison", "body": "Body. More."}
        await again.close()
    finally:
        node.stop()


async def test_a_log_poisoned_before_the_fix_opens_again(database_url: str, data_dir: Path,
                                                         db: AsyncEngine) -> None:
    node = ServerProcess(database_url=database_url, data_dir=data_dir,
                         env={"RATE_LIMIT_PER_MINUTE": "0"}).start()
    try:
        async with httpx.AsyncClient(base_url=node.base_url) as client:
            author = await dev_user(client, "Author")
        lesson = await make_lesson(db, author.clerk_id, title="Old", body="Stored body.")
        seeded = await YClient.connect(node.ws_url, lesson.id, author.token)  # seeds the log
        seeded.body.insert(0, "An edit. ")
        await seeded.saved()
        await seeded.close()
    finally:
        node.stop()
    async with db.begin() as conn:  # what the room logged before updates were checked in turn
        for update in poison_updates():
            await conn.execute(insert(LessonUpdate).values(lesson_id=uuid.UUID(lesson.id), update=update,
                                                           user_id="user_attacker"))
    node = ServerProcess(database_url=database_url, data_dir=data_dir, env={"RATE_LIMIT_PER_MINUTE": "0"}).start()
    try:
        reader = await YClient.connect(node.ws_url, lesson.id, author.token)  # syncs within 10 s
        assert reader.text() == {"title": "Old", "body": "An edit. Stored body."}
        reader.body.insert(len(str(reader.body)), " Fixed.")
        await reader.roundtrip()
        await _materialised(db, lesson.id, "An edit. Stored body. Fixed.")
        await reader.close()
        assert "skipped stored update" in node.log_text()
    finally:
        node.stop()


def test_compaction_merges_a_poisoned_log_without_the_poison() -> None:
    """Else the snapshot itself would be poisoned, and a load could only skip it whole."""
    from pycrdt import Doc, Text

    from collab.room import merge_log, seed_update

    seed = seed_update("T", "Body.")
    merged, _ = merge_log([seed, *poison_updates()])
    doc: Doc = Doc()
    doc.apply_update(merged)
    doc.get_update()  # panicked on the previous merge
    assert str(doc.get("body", type=Text)) == "Body."
