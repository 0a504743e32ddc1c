"""Suggested edits through the real server: REST + live pycrdt clients on /collab/lessons/{id}."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
from pycrdt import Doc, Text
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from collab.suggestions import utf8_offset
from server.notifications.models import Notification
from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient, converge, lesson_row, make_lesson


async def version_of(db: AsyncEngine, lesson_id: str) -> str:
    """What `GET /api/lessons/{id}` returns as `version`: str(lessons.revision)."""
    return str((await lesson_row(db, lesson_id))["revision"])


async def notifications(db: AsyncEngine, user_id: str, type_: str) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        rows = (await conn.execute(select(Notification.metadata_, Notification.title).where(
            Notification.user_id == user_id, Notification.type == type_))).all()
    return [dict(r[0]) | {"title": r[1]} for r in rows]


def type_at(client: YClient, index: int, value: str) -> None:
    """Type `value` at code-point `index` of the client's body (pycrdt counts UTF-8 bytes)."""
    client.body.insert(utf8_offset(str(client.body), index), value)


async def test_learner_suggests_and_author_accepts_while_editor_types(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    editor = await dev_user(client, "Editor")
    learner = await dev_user(client, "Learner")
    body = "The cat 😀 sat on the mat. End."
    lesson = await make_lesson(db, author.clerk_id, title="Pets", body=body, published=True,
                               editors=(editor.clerk_id,), learners=(learner.clerk_id,))
    e = await YClient.connect(server.ws_url, lesson.id, editor.token)
    a = await YClient.connect(server.ws_url, lesson.id, author.token)

    version = await version_of(db, lesson.id)
    start = body.index("cat")
    created = await client.post(f"/api/lessons/{lesson.id}/suggested-edits", headers=learner.headers, json={
        "field": "body", "base_version": version, "comment": "dogs are better",
        "changes": [{"index": start, "delete": 3, "insert": "dog 🐕"},
                    {"index": body.index("mat"), "delete": 3, "insert": "rug"}]})
    assert created.status_code == 201, created.text
    s = created.json()
    assert s["status"] == "open" and s["user_id"] == learner.clerk_id and s["field"] == "body"
    assert s["changes"][0] == {"index": start, "delete": 3, "insert": "dog 🐕", "original": "cat"}
    assert s["base_version"] == version and s["comment"] == "dogs are better"
    # Suggesting changes nothing yet.
    assert a.text()["body"] == body
    # The author and the editor were notified; the suggester was not.
    for user in (author, editor):
        found = await notifications(db, user.clerk_id, "suggestion")
        assert [n["suggestion_id"] for n in found] == [s["id"]]
        assert found[0]["lesson_id"] == lesson.id
    assert await notifications(db, learner.clerk_id, "suggestion") == []

    # The suggester sees it; a learner cannot accept it.
    got = await client.get(f"/api/suggested-edits/{s['id']}", headers=learner.headers)
    assert got.status_code == 200 and got.json()["changes"] == s["changes"]
    refused = await client.post(f"/api/suggested-edits/{s['id']}/accept", headers=learner.headers)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")

    # The editor types elsewhere: before the span (shifting it) and after it.
    type_at(e, 0, "Intro 中: ")
    await eventually(lambda: _has(a, "Intro 中: The cat"))
    # The editor also types between the two spans on the text as it was before the accept: that
    # update crosses the accept on the wire (a truly concurrent CRDT edit).
    typing: Doc[Any] = Doc()
    typing.apply_update(e.doc.get_update())
    before = typing.get_state()
    body_then = str(typing.get("body", type=Text))
    typing.get("body", type=Text).insert(utf8_offset(body_then, body_then.index("on the")), "quietly ")
    crossing = typing.get_update(before)
    accept = asyncio.create_task(client.post(f"/api/suggested-edits/{s['id']}/accept", headers=author.headers))
    type_at(e, len(str(e.body)), " More.")  # typed live while the accept runs
    response = await accept
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted" and response.json()["decided_by"] == author.clerk_id
    await e.ws.send(p.update_frame(crossing))
    e.doc.apply_update(crossing)
    expected = "Intro 中: The dog 🐕 😀 sat quietly on the rug. End. More."
    text = await converge([a, e])
    assert text["body"] == expected
    # Someone who connects now gets the same, and the lesson row follows.
    late = await YClient.connect(server.ws_url, lesson.id, editor.token)
    assert late.text()["body"] == expected

    async def materialised() -> bool:
        return (await lesson_row(db, lesson.id))["content"]["body"] == expected

    await eventually(materialised, within=5)
    decided = await notifications(db, learner.clerk_id, "suggestion_decided")
    assert [(n["suggestion_id"], n["status"]) for n in decided] == [(s["id"], "accepted")]
    # Decided once: accepting, rejecting or withdrawing again is a conflict.
    for action, who in (("accept", author), ("reject", author), ("withdraw", learner)):
        again = await client.post(f"/api/suggested-edits/{s['id']}/{action}", headers=who.headers)
        assert again.status_code == 409, (action, again.text)
    listed = await client.get(f"/api/lessons/{lesson.id}/suggested-edits?status=accepted", headers=author.headers)
    assert [i["id"] for i in listed.json()["items"]] == [s["id"]]
    for c in (a, e, late):
        await c.close()


async def _has(client: YClient, text: str) -> bool:
    return text in client.text()["body"]


async def test_changed_anchor_text_is_a_conflict_and_stays_open(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    member = await dev_user(client, "Member")
    lesson = await make_lesson(db, author.clerk_id, title="Colours", body="Red, green and blue.",
                               published=True)
    created = await client.post(f"/api/lessons/{lesson.id}/suggested-edits", headers=member.headers, json={
        "field": "body", "base_version": await version_of(db, lesson.id),
        "changes": [{"index": 5, "delete": 5, "insert": "yellow"}]})
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    # The author rewrites the very word the suggestion replaces.
    del a.body[5:10]
    a.body.insert(5, "purple")
    a.body.insert(0, "Colours: ")

    async def conflict() -> httpx.Response | None:
        r = await client.post(f"/api/suggested-edits/{sid}/accept", headers=author.headers)
        return r if r.status_code == 409 else None

    response = await eventually(conflict, within=5)
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["current_text"] == "purple"
    assert (await client.get(f"/api/suggested-edits/{sid}", headers=member.headers)).json()["status"] == "open"
    assert a.text()["body"] == "Colours: Red, purple and blue."
    # Rejecting it is still possible; the suggester hears about it.
    rejected = await client.post(f"/api/suggested-edits/{sid}/reject", headers=author.headers)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    decided = await notifications(db, member.clerk_id, "suggestion_decided")
    assert [n["status"] for n in decided] == ["rejected"]
    await a.close()


async def test_version_mismatch_range_and_access(server: ServerProcess, client: httpx.AsyncClient,
                                                 db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    member = await dev_user(client, "Member")
    stranger = await dev_user(client, "Stranger")
    title = "Emoji 😀 title"
    lesson = await make_lesson(db, author.clerk_id, title=title, body="Body", published=True)
    draft = await make_lesson(db, author.clerk_id, body="Secret draft")
    url = f"/api/lessons/{lesson.id}/suggested-edits"
    version = await version_of(db, lesson.id)

    stale = await client.post(url, headers=member.headers, json={
        "field": "title", "base_version": "not-" + version, "changes": [{"index": 0, "delete": 5, "insert": "X"}]})
    assert stale.status_code == 409
    assert stale.json()["current_version"] == version and stale.json()["current_text"] == title

    # Code points: the title is 13 long (the emoji counts once); 14 is out of range.
    assert len(title) == 13
    past = await client.post(url, headers=member.headers, json={
        "field": "title", "base_version": version, "changes": [{"index": 14, "delete": 0, "insert": "!"}]})
    assert past.status_code == 422
    assert past.json()["errors"][0]["loc"] == "body.changes.0.index"
    too_long = await client.post(url, headers=member.headers, json={
        "field": "title", "base_version": version, "changes": [{"index": 10, "delete": 5, "insert": ""}]})
    assert too_long.status_code == 422
    ok = await client.post(url, headers=member.headers, json={
        "field": "title", "base_version": version, "changes": [{"index": 13, "delete": 0, "insert": "!"},
                                                               {"index": 6, "delete": 1, "insert": "🙂"}]})
    assert ok.status_code == 201, ok.text
    sid = ok.json()["id"]

    # Hidden draft: 404 for a stranger, whatever they try; anonymous: 401.
    hidden = await client.post(f"/api/lessons/{draft.id}/suggested-edits", headers=stranger.headers, json={
        "field": "body", "base_version": "0", "changes": [{"index": 0, "delete": 0, "insert": "x"}]})
    assert hidden.status_code == 404
    assert (await client.get(f"/api/lessons/{draft.id}/suggested-edits", headers=stranger.headers)).status_code == 404
    assert (await client.post(url, json={"base_version": version, "changes": [
        {"index": 0, "insert": "x"}]})).status_code == 401
    assert (await client.get(f"/api/suggested-edits/{uuid.uuid4()}", headers=member.headers)).status_code == 404
    assert (await client.get("/api/suggested-edits/not-a-uuid", headers=member.headers)).status_code == 404

    # Others on the lesson only see their own suggestions (someone else's is 404 to them);
    # only the suggester withdraws (the author sees it but may not: 403).
    assert (await client.get(f"/api/suggested-edits/{sid}", headers=stranger.headers)).status_code == 404
    assert (await client.post(f"/api/suggested-edits/{sid}/accept", headers=stranger.headers)).status_code == 404
    assert (await client.post(f"/api/suggested-edits/{sid}/withdraw", headers=author.headers)).status_code == 403
    mine = await client.get(url, headers=stranger.headers)
    assert mine.status_code == 200 and mine.json()["items"] == []
    withdrawn = await client.post(f"/api/suggested-edits/{sid}/withdraw", headers=member.headers)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    assert await notifications(db, member.clerk_id, "suggestion_decided") == []
    team = await client.get(url + "?status=withdrawn", headers=author.headers)
    assert [i["id"] for i in team.json()["items"]] == [sid]
    assert (await client.get(url + "?status=bogus", headers=author.headers)).status_code == 422


async def test_suggestion_against_the_row_while_the_live_document_is_ahead(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    """The client counted against `GET /lessons/{id}` while an editor's newer text was not yet
    materialised: the change is carried onto the live text (or a 409 tells the client to rebase)."""
    author = await dev_user(client, "Author")
    member = await dev_user(client, "Member")
    body = "alpha beta gamma"
    lesson = await make_lesson(db, author.clerk_id, body=body, published=True)
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    row = await lesson_row(db, lesson.id)
    a.body.insert(0, "Zero ")
    watcher = await YClient.connect(server.ws_url, lesson.id, author.token)
    await eventually(lambda: _has(watcher, "Zero alpha beta gamma"))  # the server has the edit
    change = {"index": body.index("beta"), "delete": 4, "insert": "BETA"}
    response = await client.post(f"/api/lessons/{lesson.id}/suggested-edits", headers=member.headers, json={
        "field": "body", "base_version": str(row["revision"]), "changes": [change]})
    if response.status_code == 409:  # materialised in between: rebase as a client would
        problem = response.json()
        text = problem["current_text"]
        change["index"] = text.index("beta")
        response = await client.post(f"/api/lessons/{lesson.id}/suggested-edits", headers=member.headers, json={
            "field": "body", "base_version": problem["current_version"], "changes": [change]})
    assert response.status_code == 201, response.text
    accepted = await client.post(f"/api/suggested-edits/{response.json()['id']}/accept", headers=author.headers)
    assert accepted.status_code == 200, accepted.text
    assert (await converge([a, watcher]))["body"] == "Zero alpha BETA gamma"
    await a.close()
    await watcher.close()


async def test_suggestions_are_rate_limited_per_user(database_url: str, data_dir: Path, client: httpx.AsyncClient,
                                                     db: AsyncEngine) -> None:
    limited = ServerProcess(database_url=database_url, data_dir=data_dir,
                            env={"RATE_LIMIT_PER_MINUTE": "1", "RATE_LIMIT_BURST": "2"}).start()
    try:
        async with httpx.AsyncClient(base_url=limited.base_url, timeout=30) as c:
            author = await dev_user(c, "Author")
            member = await dev_user(c, "Member")
            other = await dev_user(c, "Other")
            lesson = await make_lesson(db, author.clerk_id, body="abc", published=True)
            body = {"base_version": await version_of(db, lesson.id),
                    "changes": [{"index": 0, "delete": 1, "insert": "A"}]}
            url = f"/api/lessons/{lesson.id}/suggested-edits"
            codes = [(await c.post(url, headers=member.headers, json=body)).status_code for _ in range(3)]
            assert codes == [201, 201, 429]
            refused = await c.post(url, headers=member.headers, json=body)
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            assert (await c.post(url, headers=other.headers, json=body)).status_code == 201
    finally:
        limited.stop()


async def test_two_concurrent_accepts_apply_once(server: ServerProcess, client: httpx.AsyncClient,
                                                 db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    editor = await dev_user(client, "Editor")
    member = await dev_user(client, "Member")
    lesson = await make_lesson(db, author.clerk_id, title="T", body="one two", published=True,
                               editors=(editor.clerk_id,))
    created = await client.post(f"/api/lessons/{lesson.id}/suggested-edits", headers=member.headers, json={
        "base_version": await version_of(db, lesson.id), "changes": [{"index": 3, "delete": 0, "insert": " and"}]})
    assert created.status_code == 201
    sid = created.json()["id"]
    first, second = await asyncio.gather(
        client.post(f"/api/suggested-edits/{sid}/accept", headers=author.headers),
        client.post(f"/api/suggested-edits/{sid}/accept", headers=editor.headers))
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    watcher = await YClient.connect(server.ws_url, lesson.id, author.token)
    assert watcher.text()["body"] == "one and two"
    await watcher.close()
    decided = await notifications(db, member.clerk_id, "suggestion_decided")
    assert len(decided) == 1


async def test_a_409_gives_a_version_and_text_that_belong_together(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    """The live text changed the span the client targets before the row caught up: the 409's
    `current_version` and `current_text` match, so a rebased retry is judged against that text."""
    author = await dev_user(client, "Author")
    member = await dev_user(client, "Member")
    lesson = await make_lesson(db, author.clerk_id, body="alpha beta gamma", published=True)
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    row = await lesson_row(db, lesson.id)
    del a.body[6:10]
    a.body.insert(6, "BETA 😀")
    watcher = await YClient.connect(server.ws_url, lesson.id, author.token)
    await eventually(lambda: _has(watcher, "alpha BETA 😀 gamma"))
    url = f"/api/lessons/{lesson.id}/suggested-edits"
    refused = await client.post(url, headers=member.headers, json={
        "base_version": str(row["revision"]), "changes": [{"index": 6, "delete": 4, "insert": "delta"}]})
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["current_text"] == "alpha BETA 😀 gamma"
    assert problem["current_version"] == str((await lesson_row(db, lesson.id))["revision"]) != str(row["revision"])
    retry = await client.post(url, headers=member.headers, json={
        "base_version": problem["current_version"], "changes": [{"index": 11, "delete": 1, "insert": "🙂"}]})
    assert retry.status_code == 201, retry.text
    assert retry.json()["changes"][0]["original"] == "😀"
    accepted = await client.post(f"/api/suggested-edits/{retry.json()['id']}/accept", headers=author.headers)
    assert accepted.status_code == 200
    assert (await converge([a, watcher]))["body"] == "alpha BETA 🙂 gamma"
    await a.close()
    await watcher.close()
