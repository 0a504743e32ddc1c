"""Forum events carry enough to keep a page current: old page + events == new page."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser, dev_user
from tests.support.forum import add_collaborator, create_post, create_reply, make_course
from tests.support.forum_events import Thread, apply_event


async def fetch_thread(client: httpx.AsyncClient, post_id: str) -> Thread:
    post = (await client.get(f"/api/forum/posts/{post_id}")).json()
    page = (await client.get(f"/api/forum/posts/{post_id}/replies", params={"limit": "100"})).json()
    post.pop("last_event_id")
    return {"post": post, "replies": page["items"]}


async def outbox_after(db: AsyncEngine, channel: str, after: int) -> list[tuple[int, str, dict[str, Any]]]:
    async with db.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT id, event, data FROM event_outbox WHERE channel = :c AND id > :a ORDER BY id"
        ), {"c": channel, "a": after})).all()
    return [(row.id, row.event, row.data) for row in rows]


async def outbox_head(db: AsyncEngine) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(text("SELECT coalesce(max(id), 0) FROM event_outbox"))).scalar_one())


async def scenario(client: httpx.AsyncClient, post_id: str, people: list[DevUser], staff: DevUser,
                   existing: list[dict[str, Any]]) -> None:
    """Everything that can happen in a thread: replies at every depth, edits, deletions, likes."""
    bob, carol, dave = people
    top = await create_reply(client, post_id, bob, "new top-level")
    child = await create_reply(client, post_id, carol, "child of new", parent=top["id"])
    deep = await create_reply(client, post_id, dave, "deep", parent=child["id"])
    under_old = await create_reply(client, post_id, carol, "under an old one", parent=existing[0]["id"])
    await client.patch(f"/api/forum/replies/{child['id']}", headers=carol.headers, json={"content": "edited"})
    await client.put(f"/api/forum/posts/{post_id}/like", headers=bob.headers)
    await client.put(f"/api/forum/posts/{post_id}/like", headers=carol.headers)
    await client.delete(f"/api/forum/posts/{post_id}/like", headers=bob.headers)
    await client.put(f"/api/forum/replies/{deep['id']}/like", headers=bob.headers)
    await client.put(f"/api/forum/replies/{existing[1]['id']}/like", headers=dave.headers)
    # Kept as [deleted] (has children), removed (a leaf), removed by staff, and a reply below a placeholder.
    await client.delete(f"/api/forum/replies/{child['id']}", headers=carol.headers)
    await client.delete(f"/api/forum/replies/{under_old['id']}", headers=carol.headers)
    await client.delete(f"/api/forum/replies/{existing[2]['id']}", headers=staff.headers)
    await client.delete(f"/api/forum/replies/{existing[0]['id']}", headers=staff.headers)
    await create_reply(client, post_id, bob, "after the placeholder", parent=child["id"])


async def test_old_page_plus_events_equals_new_page(client: httpx.AsyncClient, db: AsyncEngine,
                                                    alice: DevUser, bob: DevUser) -> None:
    course = await make_course(db, alice)
    carol, dave, staff = await dev_user(client, "Carol"), await dev_user(client, "Dave"), await dev_user(client, "Mod")
    await add_collaborator(db, course, staff, "editor")
    post = await create_post(client, course, alice)
    existing = [await create_reply(client, post["id"], bob, f"old {i}") for i in range(3)]
    await create_reply(client, post["id"], carol, "old nested", parent=existing[0]["id"])

    head = await outbox_head(db)
    old = await fetch_thread(client, post["id"])
    await scenario(client, post["id"], [bob, carol, dave], staff, existing)
    new = await fetch_thread(client, post["id"])

    events = await outbox_after(db, f"thread:{post['id']}", head)
    assert len(events) == 15
    rebuilt = old
    for _, name, data in events:
        rebuilt = apply_event(rebuilt, name, data)
    assert rebuilt == new
    assert rebuilt != old
