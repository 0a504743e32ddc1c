"""REST changes of the live document obey its text limits (issue 11, collab follow-up 1;
docs/API.md §5: a title over 200 or a body over 200,000 characters is never materialised).

Accepting a suggestion and restoring a version changed the live document without the check a
client's update gets: an editor could push the title or body over its limit, where it was then
silently never materialised. Now both answer 422 problem+json and change nothing: the room
undoes the change before anyone sees it, the suggestion stays open, a refused restore records
no version."""

from __future__ import annotations

import httpx
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.editing.models import LessonVersion
from tests.support import ServerProcess, dev_user
from tests.support.collab import YClient, lesson_row, make_lesson

PROBLEM = "application/problem+json"


async def _suggest(client: httpx.AsyncClient, db: AsyncEngine, lesson_id: str, headers: dict[str, str],
                   field: str, insert_text: str) -> str:
    version = str((await lesson_row(db, lesson_id))["revision"])
    created = await client.post(f"/api/lessons/{lesson_id}/suggested-edits", headers=headers, json={
        "field": field, "base_version": version, "changes": [{"index": 0, "insert": insert_text}]})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_accepting_a_suggestion_over_a_limit_is_refused(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    learner = await dev_user(client, "Learner")
    lesson = await make_lesson(db, author.clerk_id, title="Limits", body="Body.", published=True,
                               learners=(learner.clerk_id,))
    editor = await YClient.connect(server.ws_url, lesson.id, author.token)
    long_title = await _suggest(client, db, lesson.id, learner.headers, "title", "x" * 195)  # 201
    long_body = await _suggest(client, db, lesson.id, learner.headers, "body", "y" * 199_996)  # 200,001
    fits = await _suggest(client, db, lesson.id, learner.headers, "title", "x" * 194)  # 200

    for suggestion, field in ((long_title, "title"), (long_body, "body")):
        refused = await client.post(f"/api/suggested-edits/{suggestion}/accept", headers=author.headers)
        print(f"\naccepting the {field} suggestion: {refused.status_code} {refused.json().get('detail')}")
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == PROBLEM
        assert field in refused.json()["detail"]
        assert refused.json()["errors"][0]["loc"] == field
        still = await client.get(f"/api/suggested-edits/{suggestion}", headers=author.headers)
        assert still.json()["status"] == "open"

    # Nothing reached the editor or the row; a suggestion that fits is still accepted.
    accepted = await client.post(f"/api/suggested-edits/{fits}/accept", headers=author.headers)
    assert accepted.status_code == 200, accepted.text
    await editor.roundtrip()
    assert editor.text() == {"title": "x" * 194 + "Limits", "body": "Body."}
    row = await lesson_row(db, lesson.id)
    assert (row["title"], row["content"]["body"]) == ("x" * 194 + "Limits", "Body.")
    await editor.close()


async def test_restoring_a_version_over_a_limit_is_refused(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, title="Limits", body="Body.")
    editor = await YClient.connect(server.ws_url, lesson.id, author.token)
    async with db.begin() as conn:  # versions recorded before the limits existed
        too_long = {"title": ("t" * 201, "Body."), "body": ("Limits", "b" * 200_001)}
        ids = {field: (await conn.execute(insert(LessonVersion).values(
            lesson_id=lesson.lesson_id, title=title, body=body).returning(LessonVersion.id))).scalar_one()
            for field, (title, body) in too_long.items()}

    for field, vid in ids.items():
        refused = await client.post(f"/api/lessons/{lesson.id}/versions/{vid}/restore", headers=author.headers)
        print(f"\nrestoring a version with a long {field}: {refused.status_code} {refused.json().get('detail')}")
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == PROBLEM
        assert refused.json()["errors"][0]["loc"] == field

    async with db.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(LessonVersion)
                                    .where(LessonVersion.lesson_id == lesson.lesson_id))).scalar_one()
    assert count == 2, "a refused restore recorded a version"
    await editor.roundtrip()
    assert editor.text() == {"title": "Limits", "body": "Body."}
    row = await lesson_row(db, lesson.id)
    assert (row["title"], row["content"]["body"]) == ("Limits", "Body.")
    await editor.close()
