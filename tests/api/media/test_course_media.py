"""GET /courses/{id}/media: a course's media library with where each item is used (editors only)."""

from __future__ import annotations

import httpx

from tests.support import DevUser, dev_user
from tests.support.learning import build_course, enroll

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64


async def test_library_lists_size_type_and_usage(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    course = await build_course(client, alice, units=2, lessons_per_unit=1, title="Media course")
    first, second = course.lesson_ids
    other = await build_course(client, alice, lessons_per_unit=1, title="Other")
    uploaded = await client.post(f"/api/lessons/{first}/media", files={"file": ("dot.png", PNG, "image/png")},
                                 headers=alice.headers)
    assert uploaded.status_code == 201, uploaded.text
    image = uploaded.json()
    linked = await client.post(f"/api/lessons/{second}/media", json={"url": "https://example.org/talk.mp4"},
                               headers=alice.headers)
    assert linked.status_code == 201, linked.text
    video = linked.json()
    elsewhere = await client.post(f"/api/lessons/{other.lesson_ids[0]}/media",
                                  json={"url": "https://example.org/x.png"}, headers=alice.headers)
    assert elsewhere.status_code == 201
    # the image is referenced from both lessons' bodies, the video from none
    for lesson, body in ((first, f"![dot]({image['url']})"), (second, f"See [the dot]({image['url']}).")):
        patched = await client.patch(f"/api/lessons/{lesson}", json={"content": {"body": body}},
                                     headers=alice.headers)
        assert patched.status_code == 200, patched.text

    response = await client.get(f"/api/courses/{course.id}/media", headers=alice.headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["id"] for i in items] == [video["id"], image["id"]]  # newest first; not the other course's
    got_image = items[1]
    assert got_image["media_type"] == "image" and got_image["mime_type"] == "image/png"
    assert got_image["size_bytes"] == len(PNG) and got_image["lesson_id"] == first
    assert [u["id"] for u in got_image["used_in"]] == [first, second]
    assert items[0]["used_in"] == [] and items[0]["size_bytes"] is None and items[0]["media_type"] == "video"

    page = (await client.get(f"/api/courses/{course.id}/media?limit=1", headers=alice.headers)).json()
    assert [i["id"] for i in page["items"]] == [video["id"]]
    rest = (await client.get(f"/api/courses/{course.id}/media?limit=1&cursor={page['next_cursor']}",
                             headers=alice.headers)).json()
    assert [i["id"] for i in rest["items"]] == [image["id"]] and rest["next_cursor"] is None

    # editors see it; learners and strangers do not
    editor = await dev_user(client, "Library Editor")
    added = await client.post(f"/api/courses/{course.id}/collaborators",
                              json={"clerk_id": editor.clerk_id, "role": "editor"}, headers=alice.headers)
    assert added.status_code == 201
    assert (await client.get(f"/api/courses/{course.id}/media", headers=editor.headers)).status_code == 200
    await enroll(client, bob, course.id)
    assert (await client.get(f"/api/courses/{course.id}/media", headers=bob.headers)).status_code == 403
    assert (await client.get(f"/api/courses/{course.id}/media")).status_code == 401

    # deleting removes it from the library
    assert (await client.delete(f"/api/media/{image['id']}", headers=alice.headers)).status_code == 204
    after = (await client.get(f"/api/courses/{course.id}/media", headers=alice.headers)).json()["items"]
    assert [i["id"] for i in after] == [video["id"]]
