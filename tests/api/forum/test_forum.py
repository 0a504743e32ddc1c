"""Course forums through a real server: posts, nested replies, likes, moderation, access."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser, dev_user
from tests.support.forum import add_collaborator, create_post, create_reply, make_course, outbox


async def test_post_lifecycle_and_payload(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                          bob: DevUser) -> None:
    course = await make_course(db, alice)
    post = await create_post(client, course, bob, title="Why plain words?", content="Is *jargon* ever ok?")
    assert post["title"] == "Why plain words?"
    assert post["course_id"] == course.id and post["lesson_id"] is None
    assert post["author"] == {"clerk_id": bob.clerk_id, "name": "Bob", "image_url": None}
    assert post["html"] == "<p>Is <em>jargon</em> ever ok?</p>\n"
    assert (post["like_count"], post["liked_by_me"], post["reply_count"]) == (0, False, 0)
    assert (post["is_pinned"], post["is_locked"]) == (False, False)

    # Anyone can read a published course's forum, signed in or not.
    listed = (await client.get(f"/api/courses/{course.id}/forum/posts")).json()
    assert [p["id"] for p in listed["items"]] == [post["id"]] and listed["next_cursor"] is None
    alone = (await client.get(f"/api/forum/posts/{post['id']}")).json()
    # A new post's thread channel has no event yet: "a channel without events reports 0".
    assert alone["last_event_id"] == 0
    assert {k: v for k, v in alone.items() if k != "last_event_id"} == post

    # The author edits; a stranger may not; course staff (the course author) may.
    edited = await client.patch(f"/api/forum/posts/{post['id']}", headers=bob.headers,
                                json={"title": "Why plain words, really?"})
    assert edited.status_code == 200 and edited.json()["title"] == "Why plain words, really?"
    assert edited.json()["content"] == "Is *jargon* ever ok?"
    carol = await dev_user(client, "Carol")
    denied = await client.patch(f"/api/forum/posts/{post['id']}", headers=carol.headers, json={"title": "x"})
    assert denied.status_code == 403
    assert (await client.delete(f"/api/forum/posts/{post['id']}", headers=carol.headers)).status_code == 403
    by_staff = await client.patch(f"/api/forum/posts/{post['id']}", headers=alice.headers,
                                  json={"content": "Edited by staff"})
    assert by_staff.status_code == 200 and by_staff.json()["content"] == "Edited by staff"

    assert (await client.delete(f"/api/forum/posts/{post['id']}", headers=bob.headers)).status_code == 204
    assert (await client.get(f"/api/forum/posts/{post['id']}")).status_code == 404
    assert (await client.get(f"/api/courses/{course.id}/forum/posts")).json()["items"] == []

    events = [name for name, _ in await outbox(db, f"course:{course.id}")]
    assert events == ["post.created", "post.updated", "post.updated", "post.deleted"]


async def test_writes_need_sign_in_and_bad_ids_are_404(client: httpx.AsyncClient, db: AsyncEngine,
                                                        alice: DevUser) -> None:
    course = await make_course(db, alice)
    anonymous = await client.post(f"/api/courses/{course.id}/forum/posts", json={"title": "t", "content": "c"})
    assert anonymous.status_code == 401
    for path in ("/api/forum/posts/not-a-uuid", "/api/courses/nope/forum/posts", "/api/forum/posts/1/replies",
                 f"/api/forum/posts/{uuid.uuid4()}", f"/api/courses/{uuid.uuid4()}/forum/posts"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
    empty = await client.post(f"/api/courses/{course.id}/forum/posts", headers=alice.headers, json={"title": ""})
    assert empty.status_code == 422
    assert {e["loc"] for e in empty.json()["errors"]} == {"title", "content"}


async def test_draft_course_forum_is_hidden(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                            bob: DevUser) -> None:
    draft = await make_course(db, alice, published=False)
    post = await create_post(client, draft, alice, title="Staff only")
    assert (await client.get(f"/api/courses/{draft.id}/forum/posts")).status_code == 404
    assert (await client.get(f"/api/courses/{draft.id}/forum/posts", headers=bob.headers)).status_code == 404
    assert (await client.get(f"/api/forum/posts/{post['id']}", headers=bob.headers)).status_code == 404
    assert (await client.get(f"/api/forum/posts/{post['id']}/replies")).status_code == 404
    blocked = await client.post(f"/api/courses/{draft.id}/forum/posts", headers=bob.headers,
                                json={"title": "t", "content": "c"})
    assert blocked.status_code == 404
    replied = await client.post(f"/api/forum/posts/{post['id']}/replies", headers=bob.headers,
                                json={"content": "c"})
    assert replied.status_code == 404
    assert (await client.put(f"/api/forum/posts/{post['id']}/like", headers=bob.headers)).status_code == 404
    # A viewer collaborator sees the draft's forum.
    await add_collaborator(db, draft, bob, "viewer")
    seen = await client.get(f"/api/courses/{draft.id}/forum/posts", headers=bob.headers)
    assert [p["id"] for p in seen.json()["items"]] == [post["id"]]


async def test_posts_about_a_lesson(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                    bob: DevUser) -> None:
    course = await make_course(db, alice)
    other = await make_course(db, alice)
    about = await create_post(client, course, bob, title="On the lesson", lesson_id=course.lesson_id)
    general = await create_post(client, course, bob, title="General")
    assert about["lesson_id"] == course.lesson_id
    listed = await client.get(f"/api/courses/{course.id}/forum/posts", params={"lesson_id": course.lesson_id})
    assert [p["id"] for p in listed.json()["items"]] == [about["id"]]
    everything = await client.get(f"/api/courses/{course.id}/forum/posts")
    assert [p["id"] for p in everything.json()["items"]] == [general["id"], about["id"]]
    wrong = await client.post(f"/api/courses/{course.id}/forum/posts", headers=bob.headers,
                              json={"title": "t", "content": "c", "lesson_id": other.lesson_id})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["loc"] == "lesson_id"
    wrong_filter = await client.get(f"/api/courses/{course.id}/forum/posts", params={"lesson_id": other.lesson_id})
    assert wrong_filter.status_code == 422
    not_uuid = await client.get(f"/api/courses/{course.id}/forum/posts", params={"lesson_id": "x"})
    assert not_uuid.status_code == 422


async def test_staff_pin_and_lock(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                  bob: DevUser) -> None:
    course = await make_course(db, alice)
    editor = await dev_user(client, "Eddie")
    await add_collaborator(db, course, editor, "editor")
    first = await create_post(client, course, bob, title="first")
    second = await create_post(client, course, bob, title="second")
    # Only staff pin or lock, even on their own post.
    for flag in ("is_pinned", "is_locked"):
        refused = await client.patch(f"/api/forum/posts/{first['id']}", headers=bob.headers, json={flag: True})
        assert refused.status_code == 403
    pinned = await client.patch(f"/api/forum/posts/{first['id']}", headers=editor.headers, json={"is_pinned": True})
    assert pinned.status_code == 200 and pinned.json()["is_pinned"] is True
    order = (await client.get(f"/api/courses/{course.id}/forum/posts")).json()["items"]
    assert [p["id"] for p in order] == [first["id"], second["id"]]
    # Unpinning puts it back in date order (newest first).
    unpinned = await client.patch(f"/api/forum/posts/{first['id']}", headers=editor.headers, json={"is_pinned": False})
    assert unpinned.status_code == 200 and unpinned.json()["is_pinned"] is False
    assert (await client.get(f"/api/forum/posts/{first['id']}")).json()["is_pinned"] is False
    order = (await client.get(f"/api/courses/{course.id}/forum/posts")).json()["items"]
    assert [p["id"] for p in order] == [second["id"], first["id"]]

    locked = await client.patch(f"/api/forum/posts/{second['id']}", headers=alice.headers, json={"is_locked": True})
    assert locked.json()["is_locked"] is True
    refused_reply = await client.post(f"/api/forum/posts/{second['id']}/replies", headers=bob.headers,
                                      json={"content": "let me in"})
    assert refused_reply.status_code == 409
    assert "locked" in refused_reply.json()["detail"]
    # Staff may still answer in a locked thread (a closing note).
    await create_reply(client, second["id"], editor, "Closing this thread.")
    unlocked = await client.patch(f"/api/forum/posts/{second['id']}", headers=alice.headers, json={"is_locked": False})
    assert unlocked.json()["is_locked"] is False
    await create_reply(client, second["id"], bob, "Thanks")


async def test_nested_replies_and_deleted_placeholders(client: httpx.AsyncClient, db: AsyncEngine,
                                                       alice: DevUser, bob: DevUser) -> None:
    course = await make_course(db, alice)
    carol = await dev_user(client, "Carol")
    post = await create_post(client, course, alice)
    other_post = await create_post(client, course, alice, title="elsewhere")
    r1 = await create_reply(client, post["id"], bob, "top one")
    r1a = await create_reply(client, post["id"], carol, "child", parent=r1["id"])
    r1a1 = await create_reply(client, post["id"], bob, "grandchild", parent=r1a["id"])
    r1a1x = await create_reply(client, post["id"], carol, "great-grandchild", parent=r1a1["id"])
    r2 = await create_reply(client, post["id"], carol, "top two")
    assert r1a["parent_reply_id"] == r1["id"] and r1a["post_id"] == post["id"]

    page = await client.get(f"/api/forum/posts/{post['id']}/replies")
    assert page.status_code == 200
    body = page.json()
    assert "last_event_id" in body and body["next_cursor"] is None
    tree = body["items"]
    assert [r["id"] for r in tree] == [r1["id"], r2["id"]]
    assert tree[0]["reply_count"] == 1 and tree[1]["reply_count"] == 0
    chain = tree[0]["replies"][0]
    assert chain["id"] == r1a["id"] and chain["content"] == "child"
    assert chain["replies"][0]["id"] == r1a1["id"]
    assert chain["replies"][0]["replies"][0]["id"] == r1a1x["id"]
    assert chain["replies"][0]["replies"][0]["replies"] == []
    assert (await client.get(f"/api/forum/posts/{post['id']}")).json()["reply_count"] == 5

    # A parent from another post, or no reply at all: 422 on parent_reply_id.
    for parent in (r1["id"], str(uuid.uuid4())):
        wrong = await client.post(f"/api/forum/posts/{other_post['id']}/replies", headers=bob.headers,
                                  json={"content": "misplaced", "parent_reply_id": parent})
        assert wrong.status_code == 422
        assert wrong.json()["errors"][0]["loc"] == "parent_reply_id"

    # Only the author or staff edit or delete a reply.
    assert (await client.patch(f"/api/forum/replies/{r1a['id']}", headers=bob.headers,
                               json={"content": "hijack"})).status_code == 403
    assert (await client.delete(f"/api/forum/replies/{r1a['id']}", headers=bob.headers)).status_code == 403
    edited = await client.patch(f"/api/forum/replies/{r1a['id']}", headers=carol.headers, json={"content": "child!"})
    assert edited.status_code == 200 and edited.json()["content"] == "child!"
    assert edited.json()["reply_count"] == 1

    # Deleting a reply with children keeps a [deleted] placeholder; a leaf goes.
    assert (await client.delete(f"/api/forum/replies/{r1a['id']}", headers=carol.headers)).status_code == 204
    assert (await client.delete(f"/api/forum/replies/{r2['id']}", headers=alice.headers)).status_code == 204
    tree = (await client.get(f"/api/forum/posts/{post['id']}/replies")).json()["items"]
    assert [r["id"] for r in tree] == [r1["id"]]
    placeholder = tree[0]["replies"][0]
    assert placeholder["id"] == r1a["id"]
    assert placeholder["content"] == "[deleted]" and placeholder["author"] is None
    assert placeholder["deleted_at"] is not None
    assert placeholder["replies"][0]["id"] == r1a1["id"]
    assert placeholder["replies"][0]["replies"][0]["content"] == "great-grandchild"
    # The placeholder is gone for writes; replies under it still work.
    assert (await client.patch(f"/api/forum/replies/{r1a['id']}", headers=carol.headers,
                               json={"content": "back"})).status_code == 404
    assert (await client.put(f"/api/forum/replies/{r1a['id']}/like", headers=bob.headers)).status_code == 404
    await create_reply(client, post["id"], alice, "still replyable below", parent=r1a1["id"])
    assert (await client.get(f"/api/forum/posts/{post['id']}")).json()["reply_count"] == 4

    events = [name for name, _ in await outbox(db, f"thread:{post['id']}")]
    assert events == ["reply.created"] * 5 + ["reply.updated", "reply.deleted", "reply.deleted", "reply.created"]


async def test_likes_are_idempotent_and_not_on_own_content(client: httpx.AsyncClient, db: AsyncEngine,
                                                          alice: DevUser, bob: DevUser) -> None:
    course = await make_course(db, alice)
    carol = await dev_user(client, "Carol")
    post = await create_post(client, course, alice)
    reply = await create_reply(client, post["id"], bob)
    like = f"/api/forum/posts/{post['id']}/like"

    assert (await client.put(like, headers=alice.headers)).status_code == 403
    for _ in range(2):
        response = await client.put(like, headers=bob.headers)
        assert response.status_code == 200 and response.json() == {"like_count": 1, "liked_by_me": True}
    assert (await client.put(like, headers=carol.headers)).json() == {"like_count": 2, "liked_by_me": True}
    seen_by_bob = (await client.get(f"/api/forum/posts/{post['id']}", headers=bob.headers)).json()
    assert (seen_by_bob["like_count"], seen_by_bob["liked_by_me"]) == (2, True)
    seen_by_alice = (await client.get(f"/api/forum/posts/{post['id']}", headers=alice.headers)).json()
    assert (seen_by_alice["like_count"], seen_by_alice["liked_by_me"]) == (2, False)
    listed = (await client.get(f"/api/courses/{course.id}/forum/posts", headers=carol.headers)).json()["items"]
    assert (listed[0]["like_count"], listed[0]["liked_by_me"]) == (2, True)
    for _ in range(2):
        response = await client.delete(like, headers=bob.headers)
        assert response.status_code == 200 and response.json() == {"like_count": 1, "liked_by_me": False}
    assert (await client.put(like)).status_code == 401

    reply_like = f"/api/forum/replies/{reply['id']}/like"
    assert (await client.put(reply_like, headers=bob.headers)).status_code == 403
    assert (await client.put(reply_like, headers=alice.headers)).json() == {"like_count": 1, "liked_by_me": True}
    assert (await client.put(reply_like, headers=alice.headers)).json() == {"like_count": 1, "liked_by_me": True}
    tree = (await client.get(f"/api/forum/posts/{post['id']}/replies", headers=alice.headers)).json()["items"]
    assert (tree[0]["like_count"], tree[0]["liked_by_me"]) == (1, True)
    assert (await client.delete(reply_like, headers=alice.headers)).json() == {"like_count": 0, "liked_by_me": False}

    events = [(name, data) for name, data in await outbox(db, f"thread:{post['id']}") if name.endswith("liked")]
    assert events == [
        ("post.liked", {"id": post["id"], "like_count": 1}),
        ("post.liked", {"id": post["id"], "like_count": 2}),
        ("post.liked", {"id": post["id"], "like_count": 1}),
        ("reply.liked", {"id": reply["id"], "like_count": 1}),
        ("reply.liked", {"id": reply["id"], "like_count": 0}),
    ]


async def test_keyset_pages(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser, bob: DevUser) -> None:
    course = await make_course(db, alice)
    posts = [await create_post(client, course, bob, title=f"post {i}") for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        body = (await client.get(f"/api/courses/{course.id}/forum/posts", params=params)).json()
        assert len(body["items"]) <= 2
        seen += [p["id"] for p in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [p["id"] for p in reversed(posts)]

    thread = posts[0]["id"]
    replies = [await create_reply(client, thread, alice, f"reply {i}") for i in range(5)]
    await create_reply(client, thread, bob, "nested", parent=replies[3]["id"])
    seen, cursor = [], None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        body = (await client.get(f"/api/forum/posts/{thread}/replies", params=params)).json()
        seen += [r["id"] for r in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["id"] for r in replies]
    bad = await client.get(f"/api/forum/posts/{thread}/replies", params={"cursor": "garbage!"})
    assert bad.status_code == 422
    assert (await client.get(f"/api/forum/posts/{thread}/replies", params={"limit": "0"})).status_code == 422


async def test_routes_are_documented(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths["/api/courses/{id}/forum/posts"]) >= {"get", "post"}
    assert set(paths["/api/forum/posts/{id}"]) >= {"get", "patch", "delete"}
    assert set(paths["/api/forum/posts/{id}/replies"]) >= {"get", "post"}
    assert set(paths["/api/forum/replies/{id}"]) >= {"patch", "delete"}
    assert set(paths["/api/forum/posts/{id}/like"]) >= {"put", "delete"}
    assert set(paths["/api/forum/replies/{id}/like"]) >= {"put", "delete"}
    assert "get" in paths["/api/notifications"] and "get" in paths["/api/notifications/unread-count"]
    assert "post" in paths["/api/notifications/{id}/read"] and "post" in paths["/api/notifications/read-all"]
