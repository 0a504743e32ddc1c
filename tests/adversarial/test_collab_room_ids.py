"""One lesson, one room, whatever the spelling of its id (issue 11, item 4; docs/API.md §5).

The room key used to be the raw path: the same lesson id in upper case opened a second
document, and the two overwrote each other's materialised text. Every spelling Python's
``uuid.UUID`` accepts (upper case, no hyphens, ``{…}``, ``urn:uuid:``) now maps to the
lowercase hyphenated id and so to the same room; anything else is 4404.
"""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient, closed_with, converge, lesson_row, make_lesson


async def test_every_spelling_of_a_lesson_id_is_the_same_room(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="Ids", body="one")
    canonical = lesson.id
    spellings = [canonical.upper(), canonical.replace("-", ""), f"%7B{canonical}%7D",
                 f"urn:uuid:{canonical}", f"urn:uuid:{canonical.upper()}"]
    first = await YClient.connect(server.ws_url, canonical, author.token)
    others = [await YClient.connect(server.ws_url, spelling, author.token) for spelling in spellings]
    clients = [first, *others]
    for n, other in enumerate(others):
        other.body.insert(len(str(other.body)), f" {n}")
    text = await converge(clients)
    assert sorted(text["body"].split()) == ["0", "1", "2", "3", "4", "one"]

    async def materialised() -> bool:
        row = await lesson_row(db, canonical)
        return bool(row["content"]["body"] == text["body"])

    await eventually(materialised, within=5)
    for c in clients:
        await c.close()


async def test_a_malformed_id_is_4404(server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id)
    for bad in (lesson.id[:-1], lesson.id + "0", "not-a-uuid", f"{lesson.id}%20"):
        assert await closed_with(server.ws_url, f"/collab/lessons/{bad}?token={author.token}") == 4404, bad
