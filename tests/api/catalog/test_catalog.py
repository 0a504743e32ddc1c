"""Catalogue and course building through a real server: courses, units, lessons, outline, collaborators."""

from __future__ import annotations

import asyncio
import uuid
from html.parser import HTMLParser
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser, dev_user
from tests.support.catalog import (
    add_collaborator,
    build_course,
    enroll,
    ok,
    progress_of,
    set_status,
    statements,
)


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every element of an HTML fragment with its attributes, as a browser would parse them."""
    found: list[tuple[str, dict[str, str | None]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, dict(attrs)))

    Collector().feed(html)
    return found


def tag() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def test_routes_are_documented(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path, method in [("/api/courses", "get"), ("/api/courses", "post"), ("/api/courses/{id}/outline", "get"),
                         ("/api/units/{id}/lessons", "post"), ("/api/lessons/{id}", "patch"),
                         ("/api/courses/{id}/collaborators/{clerk_id}", "delete"), ("/api/units/{id}/reorder", "post")]:
        assert method in paths[path], (path, method)


async def test_languages_and_tags_are_public(client: httpx.AsyncClient, alice: DevUser) -> None:
    languages = ok(await client.get("/api/languages"))["items"]
    assert {"code": "en", "name": "English"} in languages
    name = tag()
    await build_course(client, alice, tags=[name, name, f" {name}-b "])
    tags = ok(await client.get("/api/tags", params={"limit": 100}))
    names = [t["name"] for t in tags["items"]]
    assert name in names and f"{name}-b" in names
    assert names == sorted(names)
    first = ok(await client.get("/api/tags", params={"limit": 1}))
    second = ok(await client.get("/api/tags", params={"limit": 1, "cursor": first["next_cursor"]}))
    assert second["items"][0]["name"] > first["items"][0]["name"]


async def test_create_get_patch_delete_course(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    created = ok(await client.post("/api/courses", json={
        "title": "  Rust for grown-ups ", "description": "Ownership, borrowing.", "difficulty": "advanced",
        "language": "de", "tags": ["rust", "systems"]}, headers=alice.headers), 201)
    assert created["title"] == "Rust for grown-ups"
    assert created["author"] == {"clerk_id": alice.clerk_id, "name": "Alice"}
    assert created["language"] == {"code": "de", "name": "German"}
    assert created["tags"] == ["rust", "systems"]
    assert created["is_published"] is False and created["published_at"] is None
    assert created["rating_avg"] is None
    assert (created["rating_count"], created["enrolled_count"], created["lesson_count"]) == (0, 0, 0)
    cid = created["id"]
    assert ok(await client.get(f"/api/courses/{cid}", headers=alice.headers)) == created

    patched = ok(await client.patch(f"/api/courses/{cid}", json={"title": "Rust", "tags": ["rust"],
                                                                  "language": None, "difficulty": "beginner"},
                                    headers=alice.headers))
    assert (patched["title"], patched["tags"], patched["language"], patched["difficulty"]) == (
        "Rust", ["rust"], None, "beginner")
    assert patched["description"] == "Ownership, borrowing."
    assert ok(await client.get(f"/api/courses/{cid}", headers=alice.headers)) == patched

    # A draft is invisible to others; deleting is the author's.
    assert (await client.get(f"/api/courses/{cid}", headers=bob.headers)).status_code == 404
    assert (await client.get(f"/api/courses/{cid}")).status_code == 404
    assert (await client.delete(f"/api/courses/{cid}", headers=bob.headers)).status_code == 404
    assert (await client.delete(f"/api/courses/{cid}", headers=alice.headers)).status_code == 204
    assert (await client.get(f"/api/courses/{cid}", headers=alice.headers)).status_code == 404


async def test_course_bad_input(client: httpx.AsyncClient, alice: DevUser) -> None:
    for body, loc in [({}, "title"), ({"title": ""}, "title"), ({"title": "   "}, "title"),
                      ({"title": 5}, "title"), ({"title": "x", "language": "xx"}, "language"),
                      ({"title": "x", "difficulty": "expert"}, "difficulty"),
                      ({"title": "x", "tags": "rust"}, "tags"), ({"title": "x", "colour": "red"}, "colour")]:
        response = await client.post("/api/courses", json=body, headers=alice.headers)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["loc"].startswith(loc), (body, response.json())
    assert (await client.post("/api/courses", json={"title": "x"})).status_code == 401
    course = await build_course(client, alice)
    assert (await client.patch(f"/api/courses/{course.id}", json={"title": None},
                               headers=alice.headers)).status_code == 422
    for path in ("/api/courses/not-a-uuid", f"/api/courses/{uuid.uuid4()}", "/api/lessons/123",
                 f"/api/lessons/{uuid.uuid4()}", "/api/courses/xyz/outline"):
        response = await client.get(path, headers=alice.headers)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
    assert (await client.patch(f"/api/units/{uuid.uuid4()}", json={"title": "x"},
                               headers=alice.headers)).status_code == 404
    for method, path in [("PATCH", "/api/courses/nope"), ("DELETE", "/api/lessons/nope"),
                         ("POST", "/api/courses/nope/units"), ("DELETE", "/api/units/nope")]:
        assert (await client.request(method, path, json={"title": "x"})).status_code == 401
        assert (await client.request(method, path, json={"title": "x"}, headers=alice.headers)).status_code == 404
    assert (await client.post("/api/units/nope/lessons", json={"title": "x", "content_type": "text"},
                              headers=alice.headers)).status_code == 404
    bad_query = await client.get("/api/courses", params={"difficulty": "expert"})
    assert bad_query.status_code == 422
    assert (await client.get("/api/courses", params={"limit": 0})).status_code == 422
    assert (await client.get("/api/courses", params={"cursor": "!!"})).status_code == 422


async def test_publish_needs_a_lesson(client: httpx.AsyncClient, alice: DevUser) -> None:
    course = await build_course(client, alice, units=1, lessons=0, publish=False)
    refused = await client.post(f"/api/courses/{course.id}/publish", headers=alice.headers)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    ok(await client.post(f"/api/units/{course.units[0]}/lessons", json={"title": "L", "content_type": "text"},
                         headers=alice.headers), 201)
    published = ok(await client.post(f"/api/courses/{course.id}/publish", headers=alice.headers))
    assert published["is_published"] is True and published["published_at"] is not None
    assert ok(await client.get(f"/api/courses/{course.id}"))["lesson_count"] == 1
    back = ok(await client.post(f"/api/courses/{course.id}/unpublish", headers=alice.headers))
    assert back["is_published"] is False
    assert (await client.get(f"/api/courses/{course.id}")).status_code == 404


async def test_units_and_lessons_positions(client: httpx.AsyncClient, alice: DevUser) -> None:
    course = await build_course(client, alice, units=3, lessons=0, publish=False)
    first = ok(await client.post(f"/api/courses/{course.id}/units", json={"title": "Intro", "position": 0},
                                 headers=alice.headers), 201)
    assert first["position"] == 0
    outline = ok(await client.get(f"/api/courses/{course.id}/outline", headers=alice.headers))
    assert [u["title"] for u in outline["units"]] == ["Intro", "Unit 0", "Unit 1", "Unit 2"]
    assert [u["position"] for u in outline["units"]] == [0, 1, 2, 3]

    new_order = [course.units[2], first["id"], course.units[0], course.units[1]]
    reordered = ok(await client.post(f"/api/courses/{course.id}/reorder", json={"unit_ids": new_order},
                                     headers=alice.headers))
    assert [u["id"] for u in reordered["items"]] == new_order
    for wrong in ([*new_order[:3]], [*new_order, new_order[0]], [*new_order[:3], str(uuid.uuid4())], ["x"]):
        assert (await client.post(f"/api/courses/{course.id}/reorder", json={"unit_ids": wrong},
                                  headers=alice.headers)).status_code == 422

    unit = course.units[0]
    lessons = []
    for title in ("b", "c"):
        lessons.append(ok(await client.post(f"/api/units/{unit}/lessons", json={"title": title, "content_type": "text"},
                                            headers=alice.headers), 201))
    a = ok(await client.post(f"/api/units/{unit}/lessons", json={"title": "a", "content_type": "text", "position": 0},
                             headers=alice.headers), 201)
    far = ok(await client.post(f"/api/units/{unit}/lessons", json={"title": "d", "content_type": "text",
                                                                   "position": 99}, headers=alice.headers), 201)
    assert (a["position"], lessons[0]["position"], far["position"]) == (0, 0, 3)
    outline = ok(await client.get(f"/api/courses/{course.id}/outline", headers=alice.headers))
    unit_view = next(u for u in outline["units"] if u["id"] == unit)
    assert [(lesson["title"], lesson["position"]) for lesson in unit_view["lessons"]] == [
        ("a", 0), ("b", 1), ("c", 2), ("d", 3)]
    ids = [lesson["id"] for lesson in unit_view["lessons"]]
    ok(await client.post(f"/api/units/{unit}/reorder", json={"lesson_ids": ids[::-1]}, headers=alice.headers))
    assert (await client.post(f"/api/units/{unit}/reorder", json={"lesson_ids": ids[:2]},
                              headers=alice.headers)).status_code == 422
    # Deleting closes the gap; moving by PATCH keeps positions dense.
    assert (await client.delete(f"/api/lessons/{ids[1]}", headers=alice.headers)).status_code == 204
    # Order is now d, c, a (reversed, b deleted); move a to the front.
    moved = ok(await client.patch(f"/api/lessons/{ids[0]}", json={"position": 0}, headers=alice.headers))
    assert moved["position"] == 0
    outline = ok(await client.get(f"/api/courses/{course.id}/outline", headers=alice.headers))
    unit_view = next(u for u in outline["units"] if u["id"] == unit)
    assert [lesson["title"] for lesson in unit_view["lessons"]] == ["a", "d", "c"]
    assert [lesson["position"] for lesson in unit_view["lessons"]] == [0, 1, 2]

    # A lesson moves to another unit of the same course; both units stay dense.
    other = course.units[1]
    moved = ok(await client.patch(f"/api/lessons/{ids[0]}", json={"unit_id": other}, headers=alice.headers))
    assert (moved["unit_id"], moved["position"]) == (other, 0)
    outline = ok(await client.get(f"/api/courses/{course.id}/outline", headers=alice.headers))
    by_id = {u["id"]: u for u in outline["units"]}
    assert [lesson["position"] for lesson in by_id[unit]["lessons"]] == [0, 1]
    assert [lesson["title"] for lesson in by_id[other]["lessons"]] == ["a"]
    foreign = await build_course(client, alice, publish=False)
    assert (await client.patch(f"/api/lessons/{ids[0]}", json={"unit_id": foreign.units[0]},
                               headers=alice.headers)).status_code == 422

    renamed = ok(await client.patch(f"/api/units/{unit}", json={"title": "Renamed", "position": 3},
                                    headers=alice.headers))
    assert (renamed["title"], renamed["position"]) == ("Renamed", 3)
    assert (await client.delete(f"/api/units/{other}", headers=alice.headers)).status_code == 204
    outline = ok(await client.get(f"/api/courses/{course.id}/outline", headers=alice.headers))
    assert [u["position"] for u in outline["units"]] == [0, 1, 2]
    assert outline["units"][-1]["title"] == "Renamed"


async def test_positions_stay_dense_under_concurrency(client: httpx.AsyncClient, alice: DevUser) -> None:
    course = await build_course(client, alice, units=2, lessons=0, publish=False)
    unit = course.units[0]

    async def create(i: int) -> httpx.Response:
        return await client.post(f"/api/units/{unit}/lessons", json={"title": f"L{i}", "content_type": "text"},
                                 headers=alice.headers)

    created = await asyncio.gather(*(create(i) for i in range(20)))
    assert all(r.status_code == 201 for r in created)
    assert sorted(r.json()["position"] for r in created) == list(range(20))
    ids = [r.json()["id"] for r in created]

    async def reorder(seed: int) -> httpx.Response:
        order = ids[seed:] + ids[:seed]
        return await client.post(f"/api/units/{unit}/reorder", json={"lesson_ids": order}, headers=alice.headers)

    async def create_unit(i: int) -> httpx.Response:
        return await client.post(f"/api/courses/{course.id}/units", json={"title": f"U{i}", "position": 0},
                                 headers=alice.headers)

    results = await asyncio.gather(*(reorder(s) for s in range(10)), *(create_unit(i) for i in range(10)))
    assert all(r.status_code in (200, 201) for r in results), [r.text for r in results if r.status_code >= 300]
    outline = ok(await client.get(f"/api/courses/{course.id}/outline", headers=alice.headers))
    assert [u["position"] for u in outline["units"]] == list(range(12))
    lessons = next(u for u in outline["units"] if u["id"] == unit)["lessons"]
    assert [lesson["position"] for lesson in lessons] == list(range(20))
    assert sorted(lesson["id"] for lesson in lessons) == sorted(ids)

    # Reorders racing with creates on the same unit: a reorder that no longer lists every lesson is 422,
    # never a gap or a duplicate.
    more = await asyncio.gather(*(reorder(s) for s in range(5)), *(create(100 + i) for i in range(5)))
    assert all(r.status_code in (200, 201, 422) for r in more)
    lessons = next(u for u in ok(await client.get(f"/api/courses/{course.id}/outline", headers=alice.headers))["units"]
                   if u["id"] == unit)["lessons"]
    assert [lesson["position"] for lesson in lessons] == list(range(25))


async def test_lesson_content_per_type(client: httpx.AsyncClient, alice: DevUser) -> None:
    course = await build_course(client, alice, lessons=0, publish=False)
    unit = course.units[0]

    async def create(content_type: str, content: object) -> httpx.Response:
        return await client.post(f"/api/units/{unit}/lessons",
                                 json={"title": "L", "content_type": content_type, "content": content},
                                 headers=alice.headers)

    video = ok(await create("video", {"body": "Transcript *here*", "video_url": "https://v.example/a.mp4",
                                      "duration_s": 90.5, "html": "<b>mine</b>"}), 201)
    assert video["content"]["video_url"] == "https://v.example/a.mp4"
    assert video["content"]["duration_s"] == 90.5
    assert video["content"]["html"] == "<p>Transcript <em>here</em></p>\n"
    audio = ok(await create("audio", {"audio_url": "https://a.example/a.mp3", "duration_s": 3}), 201)
    assert audio["content"] == {"body": "", "html": "", "audio_url": "https://a.example/a.mp3", "duration_s": 3}
    exercise = ok(await create("exercise", {"body": "Do it", "instructions": "Write a loop"}), 201)
    assert exercise["content"]["instructions"] == "Write a loop"
    text_only = ok(await create("text", None), 201)
    assert text_only["content"] == {"body": "", "html": ""}
    assert text_only["version"] == "0"

    for content_type, content, loc in [
        ("video", {"duration_s": -1}, "content.duration_s"),
        ("video", {"duration_s": "90"}, "content.duration_s"),
        ("video", {"video_url": "javascript:alert(1)"}, "content.video_url"),
        ("video", {"media_id": "nope"}, "content.media_id"),
        ("text", {"body": 5}, "content.body"),
        ("text", {"body": "x", "video_url": "https://v.example"}, "content.video_url"),
        ("audio", {"video_url": "https://v.example"}, "content.video_url"),
        ("exercise", {"instructions": ["x"]}, "content.instructions"),
        ("text", "just a string", "content"),
        ("podcast", {}, "content_type"),
    ]:
        response = await create(content_type, content)
        assert response.status_code == 422, (content_type, content, response.text)
        assert response.json()["errors"][0]["loc"] == loc, response.json()

    # PATCH merges content; changing the type keeps only the body; wrong types are 422 and change nothing.
    patched = ok(await client.patch(f"/api/lessons/{video['id']}", json={"content": {"duration_s": 60}},
                                    headers=alice.headers))
    assert patched["content"]["video_url"] == "https://v.example/a.mp4" and patched["content"]["duration_s"] == 60
    assert patched["version"] == video["version"]  # the text did not change
    bad = await client.patch(f"/api/lessons/{video['id']}", json={"title": "New", "content": {"duration_s": "x"}},
                             headers=alice.headers)
    assert bad.status_code == 422
    assert ok(await client.get(f"/api/lessons/{video['id']}", headers=alice.headers))["title"] == "L"
    retyped = ok(await client.patch(f"/api/lessons/{video['id']}", json={"content_type": "text"},
                                    headers=alice.headers))
    assert retyped["content"] == {"body": "Transcript *here*", "html": "<p>Transcript <em>here</em></p>\n"}
    assert (await client.patch(f"/api/lessons/{video['id']}", json={"content_type": None},
                               headers=alice.headers)).status_code == 422


async def test_lesson_version_changes_with_text(client: httpx.AsyncClient, alice: DevUser) -> None:
    course = await build_course(client, alice)
    lesson_id = course.first_lesson
    lesson = ok(await client.get(f"/api/lessons/{lesson_id}"))
    assert set(lesson) >= {"id", "unit_id", "course_id", "title", "content_type", "content", "position", "version"}
    assert (lesson["unit_id"], lesson["course_id"]) == (course.units[0], course.id)
    v0 = lesson["version"]
    v1 = ok(await client.patch(f"/api/lessons/{lesson_id}", json={"title": "Renamed"}, headers=alice.headers))["version"]
    v2 = ok(await client.patch(f"/api/lessons/{lesson_id}", json={"content": {"body": "New text"}},
                               headers=alice.headers))["version"]
    same = ok(await client.patch(f"/api/lessons/{lesson_id}", json={"title": "Renamed"}, headers=alice.headers))
    assert len({v0, v1, v2}) == 3 and same["version"] == v2
    fetched = ok(await client.get(f"/api/lessons/{lesson_id}"))
    assert fetched == same
    assert fetched["content"]["body"] == "New text" and fetched["content"]["html"] == "<p>New text</p>\n"


async def test_unsafe_markdown_is_rendered_harmless(client: httpx.AsyncClient, alice: DevUser) -> None:
    course = await build_course(client, alice, lessons=0, publish=False)
    body = ("# Title\n\n<script>alert('x')</script>\n\n[click](javascript:alert(1)) "
            "<a href=\"javascript:alert(2)\">raw</a> <img src=x onerror=\"alert(3)\">\n\n"
            "[ok](https://example.org) ![pic](https://example.org/p.png)")
    lesson = ok(await client.post(f"/api/units/{course.units[0]}/lessons",
                                  json={"title": "XSS", "content_type": "text", "content": {"body": body}},
                                  headers=alice.headers), 201)
    html = ok(await client.get(f"/api/lessons/{lesson['id']}", headers=alice.headers))["content"]["html"]
    assert lesson["content"]["body"] == body
    tags = elements(html)
    assert "script" not in {name for name, _ in tags}
    for _, attrs in tags:
        assert not any(name.startswith("on") for name in attrs), attrs
        assert not any((value or "").strip().lower().startswith("javascript:") for value in attrs.values()), attrs
    assert "&lt;script&gt;" in html  # shown as text, not run
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">ok</a>' in html
    assert "<h1>Title</h1>" in html


async def test_catalogue_search_filters_and_pages(client: httpx.AsyncClient, alice: DevUser, bob: DevUser) -> None:
    word = f"zyx{uuid.uuid4().hex[:6]}"
    label = tag()
    in_title = await build_course(client, alice, title=f"Learning {word} quickly", description="general",
                                  tags=[label], language="fr", difficulty="beginner")
    in_description = await build_course(client, bob, title="Another course", description=f"mentions {word} once",
                                        tags=[label], language="en", difficulty="advanced")
    draft = await build_course(client, alice, title=f"Draft about {word}", tags=[label], publish=False)

    found = ok(await client.get("/api/courses", params={"q": word}))
    assert [c["id"] for c in found["items"]] == [in_title.id, in_description.id]  # title (A) outranks description (B)
    mine = ok(await client.get("/api/courses", params={"q": word}, headers=alice.headers))
    assert {c["id"] for c in mine["items"]} == {in_title.id, in_description.id, draft.id}
    assert ok(await client.get("/api/courses", params={"q": f"{word} -quickly"}))["items"][0]["id"] == in_description.id

    # Keyset pages under ranking: every match exactly once, in rank order.
    seen: list[str] = []
    cursor = None
    while True:
        params = {"q": word, "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = ok(await client.get("/api/courses", params=params, headers=alice.headers))
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [c["id"] for c in mine["items"]]

    by_tag = ok(await client.get("/api/courses", params={"tag": label}))
    assert {c["id"] for c in by_tag["items"]} == {in_title.id, in_description.id}
    assert [c["id"] for c in ok(await client.get("/api/courses", params={"tag": label, "language": "fr"}))["items"]] \
        == [in_title.id]
    assert [c["id"] for c in ok(await client.get("/api/courses", params={"tag": label, "difficulty": "advanced"})
                                )["items"]] == [in_description.id]
    assert [c["id"] for c in ok(await client.get("/api/courses", params={"tag": label, "author": bob.clerk_id})
                                )["items"]] == [in_description.id]
    assert ok(await client.get("/api/courses", params={"tag": label, "language": "ja"}))["items"] == []
    assert ok(await client.get("/api/courses", params={"q": "nothing-matches-this-" + word}))["items"] == []

    # Without q: newest first, keyset over (created_at, id), no duplicates across pages.
    newest = ok(await client.get("/api/courses", params={"tag": label, "limit": 1}, headers=alice.headers))
    assert newest["items"][0]["id"] == draft.id
    rest = ok(await client.get("/api/courses", params={"tag": label, "limit": 5, "cursor": newest["next_cursor"]},
                               headers=alice.headers))
    assert [c["id"] for c in rest["items"]] == [in_description.id, in_title.id] and rest["next_cursor"] is None


async def test_drafts_visible_to_collaborators_and_admins_only(client: httpx.AsyncClient, db: AsyncEngine,
                                                               alice: DevUser, bob: DevUser) -> None:
    label = tag()
    draft = await build_course(client, alice, tags=[label], publish=False)
    carol = await dev_user(client, "Carol")
    admin = await dev_user(client, "Admin")
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET role = 'admin' WHERE clerk_id = :c"), {"c": admin.clerk_id})

    async def listed(user: DevUser | None) -> bool:
        headers = user.headers if user else {}
        items = ok(await client.get("/api/courses", params={"tag": label}, headers=headers))["items"]
        return any(c["id"] == draft.id for c in items)

    assert await listed(alice) and await listed(admin)
    assert not await listed(None) and not await listed(bob) and not await listed(carol)
    await add_collaborator(client, alice, draft.id, carol, "viewer")
    assert await listed(carol)
    assert ok(await client.get(f"/api/courses/{draft.id}", headers=carol.headers))["id"] == draft.id


async def test_counts_and_rating_average(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser) -> None:
    course = await build_course(client, alice, units=2, lessons=3)
    learners = [await dev_user(client, f"Learner {i}") for i in range(3)]
    async with db.begin() as conn:
        for learner, rating in zip(learners, (4, 5, 5), strict=True):
            await conn.execute(text("INSERT INTO user_courses (user_id, course_id) VALUES (:u, :c)"),
                               {"u": learner.clerk_id, "c": uuid.UUID(course.id)})
            await conn.execute(text("INSERT INTO course_feedback (course_id, user_id, rating) VALUES (:c, :u, :r)"),
                               {"u": learner.clerk_id, "c": uuid.UUID(course.id), "r": rating})
    payload = ok(await client.get(f"/api/courses/{course.id}"))
    assert payload["rating_count"] == 3 and payload["enrolled_count"] == 3 and payload["lesson_count"] == 6
    assert abs(payload["rating_avg"] - 14 / 3) < 1e-9
    listed = ok(await client.get("/api/courses", params={"author": alice.clerk_id, "limit": 100}))["items"]
    assert next(c for c in listed if c["id"] == course.id) == payload


async def test_outline_with_status_for_enrolled(client: httpx.AsyncClient, db: AsyncEngine,
                                                alice: DevUser, bob: DevUser) -> None:
    course = await build_course(client, alice, units=2, lessons=2)
    anonymous = ok(await client.get(f"/api/courses/{course.id}/outline"))
    assert anonymous["course"]["id"] == course.id
    assert [[lesson["id"] for lesson in u["lessons"]] for u in anonymous["units"]] == course.lessons
    assert all("status" not in lesson for u in anonymous["units"] for lesson in u["lessons"])
    assert set(anonymous["units"][0]["lessons"][0]) == {"id", "title", "content_type", "position"}
    await enroll(db, bob, course.id)
    await set_status(db, bob, course.lessons[0][1], "completed")
    await set_status(db, bob, course.lessons[1][0], "in_progress")
    mine = ok(await client.get(f"/api/courses/{course.id}/outline", headers=bob.headers))
    assert [[lesson["status"] for lesson in u["lessons"]] for u in mine["units"]] == [
        ["not_started", "completed"], ["in_progress", "not_started"]]
    assert mine["course"]["enrolled_count"] == 1


async def test_adding_and_removing_lessons_recomputes_progress(
    client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser, bob: DevUser, data_dir: Path
) -> None:
    course = await build_course(client, alice, units=1, lessons=3)
    await enroll(db, bob, course.id)
    for lesson_id in course.lessons[0][:2]:
        await set_status(db, bob, lesson_id, "completed")
    # Bob completed 2 of 3; removing the third makes it 2 of 2 = 100, never 99 or 101.
    media_file = data_dir / "media" / f"{uuid.uuid4().hex}.png"
    media_file.parent.mkdir(parents=True, exist_ok=True)
    media_file.write_bytes(b"\x89PNG\r\n\x1a\n")
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO media (lesson_id, media_type, url, mime_type, size_bytes, storage_path) "
            "VALUES (:l, 'image', :url, 'image/png', 8, :p)"),
            {"l": uuid.UUID(course.lessons[0][2]), "url": f"/media/{media_file.name}", "p": media_file.name})
    assert (await client.delete(f"/api/lessons/{course.lessons[0][2]}", headers=alice.headers)).status_code == 204
    assert await progress_of(db, bob, course.id) == 100
    assert not media_file.exists()
    ok(await client.post(f"/api/units/{course.units[0]}/lessons", json={"title": "New", "content_type": "text"},
                         headers=alice.headers), 201)
    assert abs(await progress_of(db, bob, course.id) - 200 / 3) < 1e-9
    extra = ok(await client.post(f"/api/courses/{course.id}/units", json={"title": "More"}, headers=alice.headers), 201)
    ok(await client.post(f"/api/units/{extra['id']}/lessons", json={"title": "More", "content_type": "text"},
                         headers=alice.headers), 201)
    assert await progress_of(db, bob, course.id) == 50
    assert (await client.delete(f"/api/units/{extra['id']}", headers=alice.headers)).status_code == 204
    assert abs(await progress_of(db, bob, course.id) - 200 / 3) < 1e-9


async def test_collaborators(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser, bob: DevUser) -> None:
    course = await build_course(client, alice, publish=False)
    base = f"/api/courses/{course.id}/collaborators"
    assert ok(await client.get(base, headers=alice.headers))["items"] == []
    assert (await client.post(base, json={"clerk_id": "user_nobody", "role": "editor"},
                              headers=alice.headers)).status_code == 404
    assert (await client.post(base, json={"clerk_id": bob.clerk_id, "role": "owner"},
                              headers=alice.headers)).status_code == 422
    # Before being added, Bob cannot see the draft at all.
    assert (await client.get(f"/api/courses/{course.id}/outline", headers=bob.headers)).status_code == 404
    added = ok(await client.post(base, json={"clerk_id": bob.clerk_id, "role": "viewer"}, headers=alice.headers), 201)
    assert added == {"clerk_id": bob.clerk_id, "name": "Bob", "role": "viewer", "created_at": added["created_at"]}
    assert (await client.post(base, json={"clerk_id": bob.clerk_id, "role": "editor"},
                              headers=alice.headers)).status_code == 409
    assert (await client.post(base, json={"clerk_id": alice.clerk_id, "role": "editor"},
                              headers=alice.headers)).status_code == 409
    async with db.connect() as conn:
        note = (await conn.execute(text(
            "SELECT type, metadata FROM notifications WHERE user_id = :u ORDER BY created_at DESC LIMIT 1"),
            {"u": bob.clerk_id})).one()
    assert note.type == "collaborator_added" and note.metadata["course_id"] == course.id

    # A viewer reads the draft but cannot change it or manage collaborators.
    assert ok(await client.get(f"/api/lessons/{course.first_lesson}", headers=bob.headers))["id"] == course.first_lesson
    assert (await client.patch(f"/api/lessons/{course.first_lesson}", json={"title": "x"},
                               headers=bob.headers)).status_code == 403
    assert (await client.get(base, headers=bob.headers)).status_code == 403
    # Role changes take effect on the next request.
    changed = ok(await client.patch(f"{base}/{bob.clerk_id}", json={"role": "editor"}, headers=alice.headers))
    assert changed["role"] == "editor"
    assert ok(await client.patch(f"/api/lessons/{course.first_lesson}", json={"title": "By Bob"},
                                 headers=bob.headers))["title"] == "By Bob"
    assert (await client.post(f"/api/courses/{course.id}/publish", headers=bob.headers)).status_code == 403
    assert (await client.patch(f"{base}/user_nobody", json={"role": "viewer"}, headers=alice.headers)).status_code == 404
    assert [c["clerk_id"] for c in ok(await client.get(base, headers=alice.headers))["items"]] == [bob.clerk_id]
    assert (await client.delete(f"{base}/{bob.clerk_id}", headers=alice.headers)).status_code == 204
    assert (await client.delete(f"{base}/{bob.clerk_id}", headers=alice.headers)).status_code == 404
    assert (await client.get(f"/api/lessons/{course.first_lesson}", headers=bob.headers)).status_code == 404


async def test_no_n_plus_one(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser) -> None:
    label = tag()
    async with db.begin() as conn:
        # 50 published courses with tags, ratings and lessons, written directly (the API is tested above).
        tag_id = (await conn.execute(text("INSERT INTO tags (name) VALUES (:n) RETURNING id"), {"n": label})).scalar()
        for i in range(50):
            cid = (await conn.execute(text(
                "INSERT INTO courses (author_id, title, is_published, published_at) "
                "VALUES (:a, :t, true, now()) RETURNING id"), {"a": alice.clerk_id, "t": f"Bulk {i}"})).scalar()
            await conn.execute(text("INSERT INTO course_tags (course_id, tag_id) VALUES (:c, :t)"),
                               {"c": cid, "t": tag_id})
            await conn.execute(text("INSERT INTO course_feedback (course_id, user_id, rating) VALUES (:c, :u, 4)"),
                               {"c": cid, "u": alice.clerk_id})
    for headers in ({}, alice.headers):
        one = await client.get("/api/courses", params={"tag": label, "limit": 1}, headers=headers)
        fifty = await client.get("/api/courses", params={"tag": label, "limit": 50}, headers=headers)
        assert len(one.json()["items"]) == 1 and len(fifty.json()["items"]) == 50
        assert statements(one) == statements(fifty), (statements(one), statements(fifty))
        searched_one = await client.get("/api/courses", params={"q": "bulk", "limit": 1}, headers=headers)
        searched_many = await client.get("/api/courses", params={"q": "bulk", "limit": 50}, headers=headers)
        assert statements(searched_one) == statements(searched_many) == statements(one)
        if not headers:
            assert statements(one) == 1

    small = await build_course(client, alice, units=1, lessons=1)
    big = await build_course(client, alice, units=5, lessons=10)
    learner = await dev_user(client, "Counted")
    await enroll(db, learner, small.id)
    await enroll(db, learner, big.id)
    for headers in ({}, alice.headers, learner.headers):
        a = await client.get(f"/api/courses/{small.id}/outline", headers=headers)
        b = await client.get(f"/api/courses/{big.id}/outline", headers=headers)
        assert sum(len(u["lessons"]) for u in b.json()["units"]) == 50
        assert statements(a) == statements(b), (statements(a), statements(b))
        if not headers:
            # Cold: the version/access check, then the whole outline in one statement; warm: the
            # check alone serves the cached outline.
            assert statements(b) == 2
            warm = await client.get(f"/api/courses/{big.id}/outline", headers=headers)
            assert warm.content == b.content and statements(warm) == 1


async def test_concurrent_changes_with_enrollments_never_fail(client: httpx.AsyncClient, db: AsyncEngine,
                                                              alice: DevUser) -> None:
    # Every structure change recomputes every enrollment's progress; they must serialise, not deadlock.
    course = await build_course(client, alice, units=3, lessons=2)
    learners = [await dev_user(client, f"Busy {i}") for i in range(4)]
    for learner in learners:
        await enroll(db, learner, course.id)
        await set_status(db, learner, course.first_lesson, "completed")

    async def add(unit: str, i: int) -> httpx.Response:
        return await client.post(f"/api/units/{unit}/lessons", json={"title": f"C{i}", "content_type": "text"},
                                 headers=alice.headers)

    results = await asyncio.gather(
        *(add(course.units[i % 3], i) for i in range(12)),
        *(client.delete(f"/api/lessons/{lesson}", headers=alice.headers) for lesson in course.lessons[1]),
        client.patch(f"/api/lessons/{course.lessons[2][0]}", json={"unit_id": course.units[0]}, headers=alice.headers),
    )
    assert all(r.status_code in (200, 201, 204) for r in results), [r.text for r in results if r.status_code >= 300]
    outline = ok(await client.get(f"/api/courses/{course.id}/outline", headers=alice.headers))
    for unit in outline["units"]:
        assert [lesson["position"] for lesson in unit["lessons"]] == list(range(len(unit["lessons"])))
    total = sum(len(u["lessons"]) for u in outline["units"])
    assert total == 6 - 2 + 12 == outline["course"]["lesson_count"]
    for learner in learners:
        assert abs(await progress_of(db, learner, course.id) - 100 / total) < 1e-9
