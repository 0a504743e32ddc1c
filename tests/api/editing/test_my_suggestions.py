"""GET /me/suggested-edits: my own suggestions across lessons, with where they are, filtered by status."""

from __future__ import annotations

import httpx

from tests.support import DevUser
from tests.support.learning import build_course, enroll


async def suggest(client: httpx.AsyncClient, user: DevUser, lesson_id: str, comment: str) -> str:
    lesson = (await client.get(f"/api/lessons/{lesson_id}", headers=user.headers)).json()
    created = await client.post(f"/api/lessons/{lesson_id}/suggested-edits", headers=user.headers, json={
        "field": "title", "base_version": lesson["version"], "comment": comment,
        "changes": [{"index": 0, "insert": "New "}]})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_my_suggestions_across_lessons(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    course = await build_course(client, alice, lessons_per_unit=2, title="Suggested course")
    await enroll(client, bob, course.id)
    first = await suggest(client, bob, course.lesson_ids[0], "one")
    second = await suggest(client, bob, course.lesson_ids[1], "two")
    await suggest(client, alice, course.lesson_ids[0], "the author's own")  # not bob's

    response = await client.get("/api/me/suggested-edits", headers=bob.headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(i["id"], i["comment"], i["status"]) for i in items] == [(second, "two", "open"), (first, "one", "open")]
    assert items[0]["lesson_id"] == course.lesson_ids[1] and items[0]["course_id"] == course.id
    assert items[0]["course_title"] == "Suggested course" and items[0]["lesson_title"]
    assert items[0]["user_id"] == bob.clerk_id

    # the team's list of a lesson's suggestions names who suggested each
    team = (await client.get(f"/api/lessons/{course.lesson_ids[0]}/suggested-edits", headers=alice.headers)).json()
    assert {(i["comment"], i["user_name"]) for i in team["items"]} == {("one", bob.name),
                                                                       ("the author's own", alice.name)}

    withdrawn = await client.post(f"/api/suggested-edits/{first}/withdraw", headers=bob.headers)
    assert withdrawn.status_code == 200, withdrawn.text
    open_ = (await client.get("/api/me/suggested-edits?status=open", headers=bob.headers)).json()["items"]
    assert [i["id"] for i in open_] == [second]
    gone = (await client.get("/api/me/suggested-edits?status=withdrawn", headers=bob.headers)).json()["items"]
    assert [i["id"] for i in gone] == [first]
    page1 = (await client.get("/api/me/suggested-edits?limit=1", headers=bob.headers)).json()
    assert [i["id"] for i in page1["items"]] == [second] and page1["next_cursor"]
    page2 = (await client.get(f"/api/me/suggested-edits?limit=1&cursor={page1['next_cursor']}",
                              headers=bob.headers)).json()
    assert [i["id"] for i in page2["items"]] == [first] and page2["next_cursor"] is None

    assert (await client.get("/api/me/suggested-edits?status=maybe", headers=bob.headers)).status_code == 422
    assert (await client.get("/api/me/suggested-edits?cursor=bad", headers=bob.headers)).status_code == 422
    assert (await client.get("/api/me/suggested-edits")).status_code == 401

    # a course taken back to draft hides its suggestions from a suggester who can no longer see it
    assert (await client.post(f"/api/courses/{course.id}/unpublish", headers=alice.headers)).status_code == 200
    assert (await client.get("/api/me/suggested-edits", headers=bob.headers)).json()["items"] == []
