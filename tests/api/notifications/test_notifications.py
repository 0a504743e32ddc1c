"""Notifications through a real server: replies and grouped likes, unread counts, read and read-all."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser, dev_user
from tests.support.forum import (
    create_post,
    create_reply,
    make_course,
    only_forum_notifications,  # noqa: F401 (fixture)
    outbox,
)

# Exact notification counts: forum achievements (which notify too) are put out of reach.
pytestmark = pytest.mark.usefixtures("only_forum_notifications")


async def notifications(client: httpx.AsyncClient, user: DevUser, **params: str) -> list[dict[str, Any]]:
    response = await client.get("/api/notifications", headers=user.headers, params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def unread(client: httpx.AsyncClient, user: DevUser) -> int:
    response = await client.get("/api/notifications/unread-count", headers=user.headers)
    assert response.status_code == 200
    count: int = response.json()["unread_count"]
    return count


async def test_replies_notify_the_author_of_what_was_replied_to(client: httpx.AsyncClient, db: AsyncEngine,
                                                                alice: DevUser, bob: DevUser) -> None:
    course = await make_course(db, alice)
    carol = await dev_user(client, "Carol")
    post = await create_post(client, course, alice, title="Plain words")
    await create_reply(client, post["id"], alice, "my own reply")  # never notified of your own action
    assert await unread(client, alice) == 0

    reply = await create_reply(client, post["id"], bob, "Bob answers")
    [note] = await notifications(client, alice)
    assert note["type"] == "reply" and note["read_at"] is None
    assert note["title"] == "Bob replied to your post"
    assert note["body"] == "Bob answers"
    assert note["metadata"]["post_id"] == post["id"] and note["metadata"]["reply_id"] == reply["id"]
    assert note["metadata"]["actor_id"] == bob.clerk_id
    assert note["metadata"]["link"].endswith(f"#reply-{reply['id']}")
    assert await unread(client, alice) == 1

    # A nested reply notifies the parent reply's author.
    await create_reply(client, post["id"], carol, "Carol to Bob", parent=reply["id"])
    [to_bob] = await notifications(client, bob)
    assert to_bob["title"] == "Carol replied to your reply"
    assert await unread(client, alice) == 1

    # Pushed live on user:<clerk_id> with the unread count, in the same transaction as the reply.
    events = [e for e in await outbox(db, f"user:{alice.clerk_id}") if e[0].startswith("notification.")]
    assert [name for name, _ in events] == ["notification.created"]
    assert events[0][1]["id"] == note["id"] and events[0][1]["unread_count"] == 1
    assert events[0][1]["type"] == "reply"


async def test_likes_are_grouped_per_target(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                            bob: DevUser) -> None:
    course = await make_course(db, alice)
    carol, dave = await dev_user(client, "Carol"), await dev_user(client, "Dave")
    post = await create_post(client, course, alice)
    reply = await create_reply(client, post["id"], alice, "a reply of mine")
    for fan in (bob, carol, dave):
        assert (await client.put(f"/api/forum/posts/{post['id']}/like", headers=fan.headers)).status_code == 200
    # Bob takes it back and likes again: still one person.
    await client.delete(f"/api/forum/posts/{post['id']}/like", headers=bob.headers)
    await client.put(f"/api/forum/posts/{post['id']}/like", headers=bob.headers)
    await client.put(f"/api/forum/replies/{reply['id']}/like", headers=bob.headers)

    items = await notifications(client, alice)
    assert [n["type"] for n in items] == ["like", "like"]
    on_reply, on_post = items
    assert on_post["metadata"]["target_id"] == post["id"]
    assert on_post["metadata"]["count"] == 3
    assert set(on_post["metadata"]["actor_ids"]) == {bob.clerk_id, carol.clerk_id, dave.clerk_id}
    assert on_post["title"] == "Bob and 2 others liked your post"
    assert on_reply["metadata"]["count"] == 1 and on_reply["title"] == "Bob liked your reply"
    assert await unread(client, alice) == 2

    # Each fold re-pushes the same notification (upsert by id) with the current unread count.
    pushed = [data for name, data in await outbox(db, f"user:{alice.clerk_id}") if name == "notification.created"]
    assert [d["id"] for d in pushed] == [on_post["id"]] * 4 + [on_reply["id"]]
    assert [d["metadata"]["count"] for d in pushed] == [1, 2, 3, 3, 1]
    assert [d["unread_count"] for d in pushed] == [1, 1, 1, 1, 2]

    # Once read, the next like starts a new unread notification.
    read = await client.post(f"/api/notifications/{on_post['id']}/read", headers=alice.headers)
    assert read.status_code == 200 and read.json()["unread_count"] == 1
    erin = await dev_user(client, "Erin")
    await client.put(f"/api/forum/posts/{post['id']}/like", headers=erin.headers)
    fresh = await notifications(client, alice, unread="true")
    assert len(fresh) == 2
    assert fresh[0]["metadata"]["count"] == 1 and fresh[0]["title"] == "Erin liked your post"
    assert fresh[0]["id"] != on_post["id"]


async def test_read_one_and_read_all(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                     bob: DevUser) -> None:
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    for i in range(3):
        await create_reply(client, post["id"], bob, f"reply {i}")
    items = await notifications(client, alice)
    assert len(items) == 3 and await unread(client, alice) == 3

    first = await client.post(f"/api/notifications/{items[0]['id']}/read", headers=alice.headers)
    assert first.status_code == 200
    assert first.json()["id"] == items[0]["id"] and first.json()["read_at"] is not None
    assert first.json()["unread_count"] == 2
    again = await client.post(f"/api/notifications/{items[0]['id']}/read", headers=alice.headers)
    assert again.status_code == 200 and again.json()["unread_count"] == 2
    # Someone else's notification, an unknown id and a non-UUID are all 404.
    assert (await client.post(f"/api/notifications/{items[1]['id']}/read", headers=bob.headers)).status_code == 404
    assert (await client.post(f"/api/notifications/{uuid.uuid4()}/read", headers=alice.headers)).status_code == 404
    assert (await client.post("/api/notifications/nope/read", headers=alice.headers)).status_code == 404
    assert (await client.get("/api/notifications")).status_code == 401

    unread_items = await notifications(client, alice, unread="true")
    assert [n["id"] for n in unread_items] == [items[1]["id"], items[2]["id"]]

    everything = await client.post("/api/notifications/read-all", headers=alice.headers)
    assert everything.status_code == 200 and everything.json() == {"marked": 2, "unread_count": 0}
    assert await unread(client, alice) == 0
    assert await notifications(client, alice, unread="true") == []
    # What arrives after read-all stays unread.
    await create_reply(client, post["id"], bob, "late reply")
    assert await unread(client, alice) == 1

    reads = [data for name, data in await outbox(db, f"user:{alice.clerk_id}") if name == "notification.read"]
    assert reads == [{"ids": [items[0]["id"]], "unread_count": 2}, {"ids": "all", "unread_count": 0}]


async def test_notification_pages(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser, bob: DevUser) -> None:
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    for i in range(5):
        await create_reply(client, post["id"], bob, f"reply {i}")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/api/notifications", headers=alice.headers, params=params)).json()
        assert len(body["items"]) <= 2
        seen += [n["body"] for n in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"reply {i}" for i in reversed(range(5))]
    bad = await client.get("/api/notifications", headers=alice.headers, params={"cursor": "xx"})
    assert bad.status_code == 422
    assert (await client.get("/api/notifications", headers=alice.headers,
                             params={"unread": "maybe"})).status_code == 422


async def test_simultaneous_likes_fold_into_one_notification(client: httpx.AsyncClient, db: AsyncEngine,
                                                             alice: DevUser) -> None:
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    fans = [await dev_user(client, f"Fan {i}") for i in range(10)]
    responses = await asyncio.gather(*(client.put(f"/api/forum/posts/{post['id']}/like", headers=fan.headers)
                                       for fan in fans))
    assert sorted(r.json()["like_count"] for r in responses) == list(range(1, 11))
    [note] = await notifications(client, alice)
    assert note["metadata"]["count"] == 10 and note["title"].endswith(" and 9 others liked your post")
    # The pushed counts follow commit order, so the last one is the true count.
    liked = [data["like_count"] for name, data in await outbox(db, f"thread:{post['id']}") if name == "post.liked"]
    assert liked == list(range(1, 11))
    assert await unread(client, alice) == 1


async def test_simultaneous_replies_push_exact_unread_counts(client: httpx.AsyncClient, db: AsyncEngine,
                                                             alice: DevUser) -> None:
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    people = [await dev_user(client, f"Replier {i}") for i in range(8)]
    await asyncio.gather(*(create_reply(client, post["id"], person, "at once") for person in people))
    pushed = [data["unread_count"] for name, data in await outbox(db, f"user:{alice.clerk_id}")
              if name.startswith("notification.")]
    assert pushed == list(range(1, 9))
    assert await unread(client, alice) == 8
