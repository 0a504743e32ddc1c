"""GET /me/team-courses: the courses I author or collaborate on, drafts included, with my role."""

from __future__ import annotations

import httpx

from tests.support import DevUser, dev_user
from tests.support.learning import build_course, enroll


async def test_authored_and_collaborated_courses_with_roles(client: httpx.AsyncClient, alice: DevUser,
                                                          bob: DevUser) -> None:
    carol = await dev_user(client, "Carol")
    draft = await build_course(client, alice, publish=False, lessons_per_unit=2, title="Alice's draft")
    published = await build_course(client, alice, lessons_per_unit=1, title="Alice's published")
    bobs = await build_course(client, bob, publish=False, lessons_per_unit=1, title="Bob's draft")
    others = await build_course(client, carol, lessons_per_unit=1, title="Carol's course")
    for course, role in ((bobs, "editor"), (others, "viewer")):
        owner = bob if course is bobs else carol
        added = await client.post(f"/api/courses/{course.id}/collaborators",
                                  json={"clerk_id": alice.clerk_id, "role": role}, headers=owner.headers)
        assert added.status_code == 201, added.text
    mine = await build_course(client, carol, lessons_per_unit=1, title="Carol's other")
    await enroll(client, alice, mine.id)  # enrolled is not team: not listed

    response = await client.get("/api/me/team-courses", headers=alice.headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(i["title"], i["role"], i["is_published"], i["lesson_count"]) for i in items] == [
        ("Carol's course", "viewer", True, 1),
        ("Bob's draft", "editor", False, 1),
        ("Alice's published", "author", True, 1),
        ("Alice's draft", "author", False, 2),
    ]
    assert items[3]["id"] == draft.id and items[2]["id"] == published.id

    # bob sees only his own draft; keyset pages walk the same list
    bob_items = (await client.get("/api/me/team-courses", headers=bob.headers)).json()["items"]
    assert [i["title"] for i in bob_items] == ["Bob's draft"]
    seen: list[str] = []
    url = "/api/me/team-courses?limit=3"
    while url:
        page = (await client.get(url, headers=alice.headers)).json()
        seen += [i["title"] for i in page["items"]]
        url = f"/api/me/team-courses?limit=3&cursor={page['next_cursor']}" if page["next_cursor"] else ""
    assert seen == [i["title"] for i in items]
    assert (await client.get("/api/me/team-courses?cursor=bad", headers=alice.headers)).status_code == 422
    assert (await client.get("/api/me/team-courses")).status_code == 401

    # removed as a collaborator: the course leaves the list
    removed = await client.delete(f"/api/courses/{bobs.id}/collaborators/{alice.clerk_id}", headers=bob.headers)
    assert removed.status_code == 204, removed.text
    titles = [i["title"] for i in (await client.get("/api/me/team-courses", headers=alice.headers)).json()["items"]]
    assert "Bob's draft" not in titles and len(titles) == 3
