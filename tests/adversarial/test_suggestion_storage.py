"""A suggestion's stored anchor (the whole document state) is compressed.

Every suggested edit stores the lesson's encoded CRDT state so it can be anchored on accept.
Before: base64 of the raw state, ~1.4 bytes per character of the lesson, for every suggestion
(60 a minute per user); now zlib before base64, and an accept still lands where it should.
"""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.collab.test_suggestions import version_of
from tests.support import dev_user
from tests.support.collab import make_lesson

PROSE = ("Scriptorium is a learning platform where co-authors write lessons together in real time, "
         "learners discuss them in live forum threads, and everyone gets notifications. ")


async def test_a_suggestion_stores_a_compressed_state(client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    learner = await dev_user(client, "Learner")
    body = (PROSE * 1200)[:150_000]
    lesson = await make_lesson(db, author.clerk_id, title="Long", body=body, published=True,
                               learners=(learner.clerk_id,))
    created = await client.post(f"/api/lessons/{lesson.id}/suggested-edits", headers=learner.headers, json={
        "field": "body", "base_version": await version_of(db, lesson.id), "comment": "typo",
        "changes": [{"index": 0, "delete": 11, "insert": "Our server"}]})
    assert created.status_code == 201, created.text
    async with db.connect() as conn:
        stored = (await conn.execute(text("SELECT octet_length(payload::text) FROM suggested_edits WHERE id = :i"),
                                     {"i": uuid.UUID(created.json()["id"])})).scalar_one()
    assert stored < len(body) / 4, f"{stored} bytes stored for a {len(body)}-character lesson"
    accepted = await client.post(f"/api/suggested-edits/{created.json()['id']}/accept", headers=author.headers)
    assert accepted.status_code == 200, accepted.text
    lesson_now = (await client.get(f"/api/lessons/{lesson.id}", headers=author.headers)).json()
    assert lesson_now["content"]["body"].startswith("Our server is a learning platform")
