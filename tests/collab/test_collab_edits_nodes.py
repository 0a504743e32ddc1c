"""Suggested edits and restores decided on one node reach editors connected to another (Redis)."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from server.editing.models import LessonVersion
from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient, converge, lesson_row, make_lesson


async def test_accept_and_restore_on_another_node(database_url: str, data_dir: Path, redis_url: str,
                                                  db: AsyncEngine) -> None:
    env = {"RATE_LIMIT_PER_MINUTE": "0"}
    a = ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=redis_url,
                      env={**env, "NODE_ID": "edits-a"}).start()
    b = ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=redis_url,
                      env={**env, "NODE_ID": "edits-b"}).start()
    try:
        async with httpx.AsyncClient(base_url=b.base_url, timeout=30) as rest:
            author = await dev_user(rest, "Author")
            member = await dev_user(rest, "Member")
            lesson = await make_lesson(db, author.clerk_id, title="Nodes", body="Hello world", published=True)
            # Editors on node A, typing.
            e1 = await YClient.connect(a.ws_url, lesson.id, author.token)
            e2 = await YClient.connect(a.ws_url, lesson.id, author.token)
            e1.body.insert(len(str(e1.body)), "!")
            await converge([e1, e2])
            version = str((await lesson_row(db, lesson.id))["revision"])
            row_text = (await lesson_row(db, lesson.id))["content"]["body"]
            # The suggestion goes to node B, counted against what GET /lessons/{id} showed.
            created = await rest.post(f"/api/lessons/{lesson.id}/suggested-edits", headers=member.headers, json={
                "base_version": version, "changes": [{"index": row_text.index("world"), "delete": 5,
                                                      "insert": "there"}]})
            if created.status_code == 409:  # the row caught up in between: rebase
                problem = created.json()
                created = await rest.post(f"/api/lessons/{lesson.id}/suggested-edits", headers=member.headers,
                                          json={"base_version": problem["current_version"], "changes": [
                                              {"index": problem["current_text"].index("world"), "delete": 5,
                                               "insert": "there"}]})
            assert created.status_code == 201, created.text
            accepted = await rest.post(f"/api/suggested-edits/{created.json()['id']}/accept", headers=author.headers)
            assert accepted.status_code == 200, accepted.text

            async def arrived() -> bool:
                return e1.text()["body"] == e2.text()["body"] == "Hello there!"

            await eventually(arrived, within=10)

            # A restore decided on node B reaches node A's editors too.
            async with db.begin() as conn:
                vid = (await conn.execute(insert(LessonVersion).values(
                    lesson_id=lesson.lesson_id, title="Nodes", body="Hello old world",
                    contributors=[author.clerk_id]).returning(LessonVersion.id))).scalar_one()
            restored = await rest.post(f"/api/lessons/{lesson.id}/versions/{vid}/restore", headers=author.headers)
            assert restored.status_code == 200, restored.text

            async def restored_there() -> bool:
                return e1.text()["body"] == e2.text()["body"] == "Hello old world"

            await eventually(restored_there, within=10)
            await e1.close()
            await e2.close()
    finally:
        a.stop()
        b.stop()

