"""Version history through the real server: versions recorded by the live rooms, listed, read and
restored as a CRDT change while editors are connected."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pycrdt import Doc, Text
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from server.editing.models import LessonVersion
from server.users.models import User
from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient, converge, lesson_row, make_lesson


async def versions(client: httpx.AsyncClient, lesson_id: str, headers: dict[str, str], **params: Any) -> Any:
    response = await client.get(f"/api/lessons/{lesson_id}/versions", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_restore_with_two_editors_connected(server: ServerProcess, client: httpx.AsyncClient,
                                                  db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    editor = await dev_user(client, "Editor")
    viewer = await dev_user(client, "Viewer")
    learner = await dev_user(client, "Learner")
    stranger = await dev_user(client, "Stranger")
    lesson = await make_lesson(db, author.clerk_id, title="Draft", body="Intro.\n\nOld middle 😀.\n\nOutro.",
                               editors=(editor.clerk_id,), viewers=(viewer.clerk_id,), published=True,
                               learners=(learner.clerk_id,))
    # Version 1: the author edits alone, then leaves (a version is recorded when the last one leaves).
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    a.title.insert(len(str(a.title)), " v1")
    watcher = await YClient.connect(server.ws_url, lesson.id, editor.token)
    await converge([a, watcher])
    await a.close()
    await watcher.close()

    async def first_version() -> Any:
        items = (await versions(client, lesson.id, author.headers))["items"]
        return items if items else None

    items = await eventually(first_version, within=5)
    v1 = items[0]
    assert set(v1) >= {"id", "created_at", "contributors"} and author.clerk_id in v1["contributors"]
    detail = await client.get(f"/api/lessons/{lesson.id}/versions/{v1['id']}", headers=author.headers)
    assert detail.status_code == 200
    assert detail.json()["title"] == "Draft v1"
    assert detail.json()["body"] == "Intro.\n\nOld middle 😀.\n\nOutro."

    # Two editors rewrite the middle.
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    e = await YClient.connect(server.ws_url, lesson.id, editor.token)
    body = str(a.body)
    start = len(body[:body.index("Old middle")].encode())
    del a.body[start:start + len("Old middle 😀".encode())]
    a.body.insert(start, "New middle 🎉")
    e.title.insert(0, "My ")
    assert (await converge([a, e])) == {"title": "My Draft v1", "body": "Intro.\n\nNew middle 🎉.\n\nOutro."}

    # Watch what the editor's client receives: the restore must be an edit, not a reset.
    deleted: list[int] = []

    def on_body(event: Any) -> None:
        deleted.extend(op["delete"] for op in event.delta if "delete" in op)

    sub = e.body.observe(on_body)
    url = f"/api/lessons/{lesson.id}/versions/{v1['id']}/restore"
    # Only the author, editors and admins restore; hidden lessons stay hidden.
    assert (await client.post(url, headers=viewer.headers)).status_code == 403
    assert (await client.post(url, headers=learner.headers)).status_code == 403
    # Readers of the lesson may read its history (every version's text was readable once).
    assert (await client.get(f"/api/lessons/{lesson.id}/versions", headers=learner.headers)).status_code == 200
    assert (await client.post(f"/api/lessons/{lesson.id}/versions/{uuid.uuid4()}/restore",
                              headers=author.headers)).status_code == 404

    # The author types while the restore is under way: an edit made on the text before the
    # restore (its update crosses the restore on the wire), in text both versions share.
    typing: Doc[Any] = Doc()
    typing.apply_update(a.doc.get_update())
    before = typing.get_state()
    typing.get("body", type=Text).insert(0, "# ")
    crossing = typing.get_update(before)
    response = await client.post(url, headers=editor.headers)
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Draft v1"
    await a.ws.send(p.update_frame(crossing))
    a.doc.apply_update(crossing)
    text = await converge([a, e])
    assert text == {"title": "Draft v1", "body": "# Intro.\n\nOld middle 😀.\n\nOutro."}
    e.body.unobserve(sub)
    # Only the differing span was replaced: far fewer characters deleted than the body holds.
    assert 0 < sum(deleted) <= len("New middle 🎉".encode())
    # The lesson row follows; the text before the restore was saved as a version.
    async def materialised() -> bool:
        row = await lesson_row(db, lesson.id)
        return row["title"] == "Draft v1" and row["content"]["body"] == text["body"]

    await eventually(materialised, within=5)
    listing = (await versions(client, lesson.id, viewer.headers))["items"]
    saved = await client.get(f"/api/lessons/{lesson.id}/versions/{listing[0]['id']}", headers=viewer.headers)
    assert saved.json()["reason"] == "restore"
    assert saved.json()["title"] == "My Draft v1" and "New middle 🎉" in saved.json()["body"]
    assert response.json()["saved_version_id"] == listing[0]["id"]
    for c in (a, e):
        await c.close()

    # The stranger never sees a draft's history.
    draft = await make_lesson(db, author.clerk_id, body="secret")
    assert (await client.get(f"/api/lessons/{draft.id}/versions", headers=stranger.headers)).status_code == 404
    assert (await client.get(f"/api/lessons/{lesson.id}/versions/not-a-uuid",
                             headers=author.headers)).status_code == 404


async def test_versions_are_paged_newest_first(server: ServerProcess, client: httpx.AsyncClient,
                                               db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, body="zero")
    other = await make_lesson(db, author.clerk_id, body="other")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [base, base + timedelta(seconds=1), base + timedelta(seconds=1), base + timedelta(seconds=2), base]
    async with db.begin() as conn:
        for n, at in enumerate(stamps):
            await conn.execute(insert(LessonVersion).values(lesson_id=lesson.lesson_id, title=f"t{n}", body=f"b{n}",
                                                            contributors=[author.clerk_id], created_at=at))
        await conn.execute(insert(LessonVersion).values(lesson_id=other.lesson_id, title="x", body="y"))
    everything = (await versions(client, lesson.id, author.headers, limit=100))["items"]
    assert len(everything) == 5 and everything[-1]["contributors"] == [author.clerk_id]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        got = await versions(client, lesson.id, author.headers, **params)
        assert len(got["items"]) <= 2
        seen += [i["id"] for i in got["items"]]
        cursor = got["next_cursor"]
        if not cursor:
            break
    assert seen == [i["id"] for i in everything]
    created = [i["created_at"] for i in everything]
    assert created == sorted(created, reverse=True)
    bad = await client.get(f"/api/lessons/{lesson.id}/versions?limit=0", headers=author.headers)
    assert bad.status_code == 422


async def test_an_admin_restores_a_draft_they_do_not_author(server: ServerProcess, client: httpx.AsyncClient,
                                                            db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    admin = await dev_user(client, "Admin")
    async with db.begin() as conn:
        await conn.execute(update(User).where(User.clerk_id == admin.clerk_id).values(role="admin"))
    lesson = await make_lesson(db, author.clerk_id, title="Secret", body="now")
    async with db.begin() as conn:
        vid = (await conn.execute(insert(LessonVersion).values(
            lesson_id=lesson.lesson_id, title="Secret", body="then").returning(LessonVersion.id))).scalar_one()
    assert [i["id"] for i in (await versions(client, lesson.id, admin.headers))["items"]] == [str(vid)]
    restored = await client.post(f"/api/lessons/{lesson.id}/versions/{vid}/restore", headers=admin.headers)
    assert restored.status_code == 200, restored.text

    async def materialised() -> bool:
        return (await lesson_row(db, lesson.id))["content"]["body"] == "then"

    await eventually(materialised, within=5)
    watcher = await YClient.connect(server.ws_url, lesson.id, author.token)
    assert watcher.text() == {"title": "Secret", "body": "then"}
    await watcher.close()
