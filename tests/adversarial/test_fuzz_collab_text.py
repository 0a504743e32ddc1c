"""Characters PostgreSQL cannot store, typed into a live document: the lesson row still follows.

A NUL is valid in a Y.Text, but not in PostgreSQL text or jsonb. A collaborator (or a crafted
client) typing one must not stop the document from being materialised into the lesson row.
"""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient, lesson_row, make_lesson


async def test_a_nul_in_the_live_body_does_not_stop_materialisation(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="Title", body="Start")
    editor = await YClient.connect(server.ws_url, lesson.id, author.token)
    editor.body += " a\x00b"
    editor.title += "\x00"
    await editor.roundtrip()
    editor.body += " then more"
    await editor.roundtrip()

    async def follows() -> bool:
        row = await lesson_row(db, lesson.id)
        return "then more" in row["content"]["body"]

    await eventually(follows, within=15)
    row = await lesson_row(db, lesson.id)
    assert "\x00" not in row["content"]["body"] and "\x00" not in row["title"]
    response = await client.get(f"/api/lessons/{lesson.id}", headers=author.headers)
    assert response.status_code == 200
    await editor.close()
