"""Quadratic diffs: a restore or a suggestion between texts that difflib finds hard.

``"ab"*n + "x"`` against ``"ba"*n`` made ``difflib.SequenceMatcher(autojunk=False)`` take 10.9 s
for 8,001 characters (end to end, with ``/healthz`` waiting as long); the diff is now bounded
(collab/versions.py) and computed off the event loop.
"""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import versions
from server.editing.models import LessonVersion
from tests.adversarial.probe import AttackWatch
from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient, lesson_row, make_lesson

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)

N = 4000  # "ab"*N + "x" is 8,001 characters


def test_the_diff_is_bounded_and_still_minimal_where_it_can_be() -> None:
    for n in (4000, 100_000):
        current, target = "ab" * n + "x", "ba" * n
        started = time.perf_counter()
        edits = versions.diff(current, target)
        assert time.perf_counter() - started < 1.0
        out = current
        for edit in reversed(edits):
            out = out[:edit.start] + edit.insert + out[edit.end:]
        assert out == target
    # A small change in a long text stays a small edit (cursors elsewhere survive).
    body = "".join(f"paragraph {i} says something\n" for i in range(5000))
    edited = body.replace("paragraph 2500 says", "paragraph 2500 said")
    at = body.index("2500 says") + len("2500 sa")
    assert versions.diff(body, edited) == [versions.Edit(at, at + 2, "id")]


async def test_restoring_a_version_that_difflib_finds_hard(server: ServerProcess, client: httpx.AsyncClient,
                                                           db: AsyncEngine) -> None:
    hard = ("ab" * N + "x", "ba" * N)
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="Hard", body=hard[1])
    async with db.begin() as conn:
        vids = [(await conn.execute(insert(LessonVersion).values(
            lesson_id=lesson.lesson_id, title="Hard", body=body).returning(LessonVersion.id))).scalar_one()
            for body in hard]
    slowest = 0.0
    async with AttackWatch(server) as watch:
        for round_ in range(6):  # back and forth: every restore diffs the two hard texts
            started = time.perf_counter()
            restored = await client.post(f"/api/lessons/{lesson.id}/versions/{vids[round_ % 2]}/restore",
                                         headers=author.headers)
            slowest = max(slowest, time.perf_counter() - started)
            assert restored.status_code == 200, restored.text
            assert slowest < 2.0, f"the restore took {slowest:.1f} s"
    print(f"slowest restore {slowest * 1000:.0f} ms")
    watch.assert_unharmed()

    async def materialised() -> bool:
        return (await lesson_row(db, lesson.id))["content"]["body"] == hard[1]

    await eventually(materialised, within=5)


async def test_restoring_at_the_body_limit(server: ServerProcess, client: httpx.AsyncClient,
                                           db: AsyncEngine) -> None:
    hard = ("ab" * 100_000, "ba" * 99_999 + "b")  # 200,000 characters each, the body limit
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="Hard", body=hard[1])
    async with db.begin() as conn:
        vids = [(await conn.execute(insert(LessonVersion).values(
            lesson_id=lesson.lesson_id, title="Hard", body=body).returning(LessonVersion.id))).scalar_one()
            for body in hard]
    slowest = 0.0
    async with AttackWatch(server) as watch:
        for round_ in range(4):
            started = time.perf_counter()
            ok = await client.post(f"/api/lessons/{lesson.id}/versions/{vids[round_ % 2]}/restore",
                                   headers=author.headers)
            slowest = max(slowest, time.perf_counter() - started)
            assert ok.status_code == 200, ok.text
    print(f"slowest restore {slowest * 1000:.0f} ms, RSS growth {watch.rss_growth / 2**20:.1f} MiB")
    assert slowest < 2.0, f"a restore took {slowest:.1f} s"
    assert watch.rss_growth < 64 * 2**20, f"RSS grew {watch.rss_growth / 2**20:.0f} MiB"
    watch.assert_unharmed()

    async def materialised() -> bool:
        return (await lesson_row(db, lesson.id))["content"]["body"] == hard[1]

    await eventually(materialised, within=5)


async def test_suggesting_while_the_live_text_differs_from_the_row(server: ServerProcess,
                                                                   client: httpx.AsyncClient,
                                                                   db: AsyncEngine) -> None:
    hard = ("ab" * N + "x", "ba" * N)
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="Hard", body=hard[0], published=True)
    attacker = await dev_user(client, "Attacker")
    editor = await YClient.connect(server.ws_url, lesson.id, author.token)
    rebased, slowest = 0, 0.0
    async with AttackWatch(server) as watch:
        for round_ in range(1, 13):
            # The live text moves on; the row catches up only after materialise_delay (1 s), so
            # a suggestion against the row's text is rebased onto the live one: a diff of the two.
            with editor.doc.transaction():
                del editor.body[0:len(str(editor.body))]
                editor.body.insert(0, hard[round_ % 2])
            await editor.roundtrip()
            row = await lesson_row(db, lesson.id)
            if row["content"]["body"] == hard[round_ % 2]:
                continue  # materialised meanwhile: nothing to rebase this round
            started = time.perf_counter()
            response = await client.post(f"/api/lessons/{lesson.id}/suggested-edits", headers=attacker.headers,
                                         json={"field": "body", "base_version": str(row["revision"]),
                                               "changes": [{"index": 1, "delete": 1, "insert": "c"}]})
            slowest = max(slowest, time.perf_counter() - started)
            if response.status_code == 201 or "meanwhile" in response.json().get("detail", ""):
                rebased += 1
            else:  # the row was materialised between reading it and posting
                assert response.status_code == 409, response.text
    await editor.close()
    print(f"slowest suggestion {slowest * 1000:.0f} ms ({rebased} rebased)")
    assert rebased >= 3, f"only {rebased} suggestion(s) were rebased"
    assert slowest < 2.0, f"a suggestion took {slowest:.1f} s"
    watch.assert_unharmed()
