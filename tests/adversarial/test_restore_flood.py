"""Restore floods: every restore writes a whole version (up to 200,000 characters), so one user's
restores have their own, tighter rate limit (RESTORE_RATE_PER_MINUTE, default 6 with bursts of 3)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.editing.models import LessonVersion
from tests.adversarial.probe import AttackWatch
from tests.support import ServerProcess, dev_user
from tests.support.collab import make_lesson

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)


async def test_restores_are_rate_limited_per_user(database_url: str, data_dir: Path, db: AsyncEngine) -> None:
    proc = ServerProcess(database_url=database_url, data_dir=data_dir, env={}).start()  # default limits
    try:
        async with httpx.AsyncClient(base_url=proc.base_url, timeout=30) as client:
            author = await dev_user(client, "Author")
            editor = await dev_user(client, "Editor")
            body = "word " * 40_000  # a 200,000-character body, saved again by every restore
            lesson = await make_lesson(db, author.clerk_id, body=body, editors=(editor.clerk_id,))
            async with db.begin() as conn:
                vid = (await conn.execute(insert(LessonVersion).values(
                    lesson_id=lesson.lesson_id, title="Old", body="old " * 50_000)
                    .returning(LessonVersion.id))).scalar_one()
            url = f"/api/lessons/{lesson.id}/versions/{vid}/restore"
            statuses = []
            async with AttackWatch(proc) as watch:
                for _ in range(20):
                    response = await client.post(url, headers=author.headers)
                    statuses.append(response.status_code)
                    if response.status_code == 429:
                        assert response.headers["content-type"] == "application/problem+json"
                        assert 1 <= int(response.headers["retry-after"]) <= 60
            assert statuses[:3] == [200, 200, 200], statuses
            assert set(statuses[3:]) == {429}, statuses
            watch.assert_unharmed()
            # Refused restores wrote no version; another user has a budget of their own.
            async with db.connect() as conn:
                count = (await conn.execute(select(func.count()).select_from(LessonVersion)
                                            .where(LessonVersion.lesson_id == lesson.lesson_id))).scalar_one()
            assert count == 1 + 3, count
            assert (await client.post(url, headers=editor.headers)).status_code == 200
    finally:
        proc.stop()
