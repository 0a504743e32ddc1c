"""The stock JavaScript client (yjs + y-websocket under Node) keeps its cursor through a version
restore and an accepted suggestion: the text changes in place, nothing is reset."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from server.editing.models import LessonVersion
from tests.collab.test_collab_js import ensure_node_modules
from tests.support import ROOT, ServerProcess, dev_user
from tests.support.collab import lesson_row, make_lesson

JS = ROOT / "tests" / "js"

pytestmark = pytest.mark.node


async def next_event(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert line, "the Node client exited early"
    event: dict[str, Any] = json.loads(line)
    assert event["event"] != "error", event
    return event


async def test_js_cursor_survives_restore_and_accept(server: ServerProcess, client: httpx.AsyncClient,
                                                     db: AsyncEngine) -> None:
    ensure_node_modules()
    author = await dev_user(client, "Author")
    editor = await dev_user(client, "Editor")
    learner = await dev_user(client, "Learner")
    now = "Intro 😀.\n\nNew 🎉 middle part.\n\nOutro."
    old = "Intro 😀.\n\nOld middle part.\n\nOutro."
    accepted = "Preface 🙂.\n\nOld middle part.\n\nOutro."
    lesson = await make_lesson(db, author.clerk_id, body=now, published=True, editors=(editor.clerk_id,),
                               learners=(learner.clerk_id,))
    async with db.begin() as conn:
        vid = (await conn.execute(insert(LessonVersion).values(
            lesson_id=lesson.lesson_id, title="A lesson", body=old).returning(LessonVersion.id))).scalar_one()
    proc = await asyncio.create_subprocess_exec(
        "node", str(JS / "cursor.mjs"), server.ws_url, lesson.id, editor.token, "middle",
        json.dumps([old, accepted]), cwd=JS, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert (await next_event(proc))["body"] == now
        restored = await client.post(f"/api/lessons/{lesson.id}/versions/{vid}/restore", headers=author.headers)
        assert restored.status_code == 200, restored.text
        seen = await next_event(proc)
        assert seen["body"] == old
        assert seen["at_anchor"] == "middle"  # the JS cursor is still just before "middle"
        assert seen["deleted"] <= len("New 🎉 ".encode("utf-16-le")) // 2  # only the changed span went

        row = await lesson_row(db, lesson.id)
        created = await client.post(f"/api/lessons/{lesson.id}/suggested-edits", headers=learner.headers, json={
            "base_version": str(row["revision"]), "changes": [{"index": 0, "delete": 7, "insert": "Preface 🙂"}]})
        assert created.status_code == 201, created.text
        assert created.json()["changes"][0]["original"] == "Intro 😀"
        ok = await client.post(f"/api/suggested-edits/{created.json()['id']}/accept", headers=editor.headers)
        assert ok.status_code == 200, ok.text
        seen = await next_event(proc)
        assert seen["body"] == accepted and seen["at_anchor"] == "middle"
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
