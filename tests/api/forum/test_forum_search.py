"""Searching a course forum: GET /courses/{id}/forum/search?q= — full text over posts and replies,
ranked, paged, read rights of the forum, and 422 for a bad query."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser
from tests.support.forum import create_post, create_reply, make_course


async def search(client: httpx.AsyncClient, course_id: str, q: str, user: DevUser | None = None,
                 **params: str | int) -> httpx.Response:
    return await client.get(f"/api/courses/{course_id}/forum/search",
                            params={"q": q, **params}, headers=user.headers if user else None)


def marked(hit: dict[str, object]) -> list[str]:
    return [p["text"] for p in hit["snippet"] if p["match"]]  # type: ignore[attr-defined, index]


async def test_finds_posts_and_replies_best_match_first(client: httpx.AsyncClient, db: AsyncEngine,
                                                        alice: DevUser, bob: DevUser) -> None:
    course = await make_course(db, alice)
    titled = await create_post(client, course, bob, title="Photosynthesis in shade plants",
                               content="How do ferns cope with little light?")
    other = await create_post(client, course, alice, title="Reading list", content="Start with chapter two.")
    reply = await create_reply(client, other["id"], bob,
                               "Chapter two explains photosynthesis with a diagram of the chloroplast.")
    gone = await create_reply(client, other["id"], bob, "Photosynthesis again, but deleted.")
    assert (await client.delete(f"/api/forum/replies/{gone['id']}", headers=bob.headers)).status_code == 204
    elsewhere = await make_course(db, alice)
    await create_post(client, elsewhere, bob, title="Photosynthesis elsewhere", content="Another course.")

    found = await search(client, course.id, "photosynthesis")
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["next_cursor"] is None
    hits = body["items"]
    # the title match (weight A) outranks the match in a reply's text (weight B); the deleted reply
    # and the other course's post are not found
    assert [(h["kind"], h["id"]) for h in hits] == [("post", titled["id"]), ("reply", reply["id"])]
    assert hits[0]["rank"] > hits[1]["rank"]
    assert hits[1]["post_id"] == other["id"] and hits[1]["reply_id"] == reply["id"]
    assert hits[1]["post_title"] == "Reading list"
    assert hits[1]["author"]["clerk_id"] == bob.clerk_id
    assert marked(hits[1]) == ["photosynthesis"]
    assert "chloroplast" in "".join(p["text"] for p in hits[1]["snippet"])

    # websearch syntax and stemming: a phrase, an exclusion, another form of the word
    assert [h["id"] for h in (await search(client, course.id, '"little light"')).json()["items"]] == [titled["id"]]
    assert [h["id"] for h in (await search(client, course.id, "photosynthesis -ferns")).json()["items"]] \
        == [reply["id"]]
    assert [h["id"] for h in (await search(client, course.id, "diagrams", bob)).json()["items"]] == [reply["id"]]
    assert (await search(client, course.id, "nothing-like-this-anywhere")).json()["items"] == []

    # an edit is searchable at once (the search column is generated from the text)
    edited = await client.patch(f"/api/forum/replies/{reply['id']}", headers=bob.headers,
                                json={"content": "Now about mitochondria instead."})
    assert edited.status_code == 200
    assert [h["id"] for h in (await search(client, course.id, "photosynthesis")).json()["items"]] == [titled["id"]]
    assert [h["id"] for h in (await search(client, course.id, "mitochondria")).json()["items"]] == [reply["id"]]


async def test_pages_are_stable_and_complete(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                            bob: DevUser) -> None:
    course = await make_course(db, alice)
    post = await create_post(client, course, alice, title="Glossary", content="Terms of the course.")
    replies = [await create_reply(client, post["id"], bob, "The word quill " + "quill " * n + "appears here.")
               for n in range(5)]
    seen: list[str] = []
    ranks: list[float] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await search(client, course.id, "quill", bob, **params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [h["id"] for h in page["items"]]
        ranks += [h["rank"] for h in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(r["id"] for r in replies) and len(set(seen)) == 5
    assert ranks == sorted(ranks, reverse=True)
    assert seen[0] == replies[-1]["id"]  # the reply that says it most often ranks first

    tampered = await search(client, course.id, "quill", cursor="bm90IGEgY3Vyc29y")
    assert tampered.status_code == 422
    assert tampered.headers["content-type"] == "application/problem+json"


async def test_search_needs_the_right_to_read_the_forum(client: httpx.AsyncClient, db: AsyncEngine,
                                                        alice: DevUser, bob: DevUser) -> None:
    draft = await make_course(db, alice, published=False)
    await create_post(client, draft, alice, title="Secret syllabus", content="Staff only.")
    for user in (None, bob):
        hidden = await search(client, draft.id, "syllabus", user)
        assert hidden.status_code == 404
        assert hidden.headers["content-type"] == "application/problem+json"
    mine = await search(client, draft.id, "syllabus", alice)
    assert mine.status_code == 200 and [h["post_title"] for h in mine.json()["items"]] == ["Secret syllabus"]
    for path in (f"/api/courses/{uuid.uuid4()}/forum/search?q=x", "/api/courses/not-a-uuid/forum/search?q=x"):
        assert (await client.get(path)).status_code == 404, path


async def test_a_bad_query_is_a_422_problem(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser) -> None:
    course = await make_course(db, alice)
    for params in ({}, {"q": "   "}, {"q": "x" * 201}, {"q": "ok", "limit": "0"}, {"q": "ok", "limit": "many"}):
        response = await client.get(f"/api/courses/{course.id}/forum/search", params=params)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["loc"] in {"query.q", "query.limit"}
    # operators alone or stop words only parse to an empty query: nothing found, not an error
    for q in ("the", '"" - or', "!!!"):
        response = await search(client, course.id, q)
        assert response.status_code == 200 and response.json()["items"] == [], q
