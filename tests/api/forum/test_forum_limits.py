"""Forum limits: no N+1 (statements counted per request by the session server) and rate limits (a dedicated server)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import ServerProcess, dev_user
from tests.support.forum import create_post, create_reply, make_course


async def insert_replies(db: AsyncEngine, post_id: str, author: str, likers: list[str], count: int) -> None:
    """``count`` replies in varied shapes: roots, deep chains and siblings, some liked."""
    rows: list[dict[str, Any]] = []
    ids: list[uuid.UUID] = []
    for i in range(count):
        reply_id = uuid.uuid4()
        if i % 20 == 0:
            parent = None  # a new top-level reply every 20
        elif i % 3 == 0:
            parent = ids[i - 1]  # deepen the chain
        else:
            parent = ids[(i // 20) * 20]  # a sibling under the root
        ids.append(reply_id)
        rows.append({"id": reply_id, "post": uuid.UUID(post_id), "user": author, "parent": parent,
                     "content": f"reply {i}", "n": i})
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO forum_replies (id, post_id, user_id, parent_reply_id, content, created_at) "
            "VALUES (:id, :post, :user, :parent, :content, now() + make_interval(secs => :n))"
        ), rows)
        likes = [{"reply": ids[i], "user": liker} for i in range(0, count, 7) for liker in likers]
        if likes:
            await conn.execute(text("INSERT INTO forum_reply_likes (reply_id, user_id) VALUES (:reply, :user)"),
                               likes)


def count_nodes(items: list[dict[str, Any]]) -> int:
    return sum(1 + count_nodes(item["replies"]) for item in items)


async def test_thread_and_list_statement_counts_do_not_grow(client: httpx.AsyncClient,
                                                            db: AsyncEngine) -> None:
    # the session server counts statements (SQL_STATEMENT_HEADER=1)
    alice, bob, carol = [await dev_user(client, n) for n in ("Alice", "Bob", "Carol")]
    course = await make_course(db, alice)
    small = await create_post(client, course, alice, title="small thread")
    big = await create_post(client, course, alice, title="big thread")
    await insert_replies(db, small["id"], bob.clerk_id, [carol.clerk_id], 1)
    await insert_replies(db, big["id"], bob.clerk_id, [carol.clerk_id, alice.clerk_id], 500)

    async def thread(post_id: str) -> tuple[int, dict[str, Any]]:
        response = await client.get(f"/api/forum/posts/{post_id}/replies", headers=carol.headers,
                                    params={"limit": "100"})
        assert response.status_code == 200
        return int(response.headers["x-sql-statements"]), response.json()

    small_count, small_page = await thread(small["id"])
    big_count, big_page = await thread(big["id"])
    assert count_nodes(small_page["items"]) == 1
    assert count_nodes(big_page["items"]) == 500 and len(big_page["items"]) == 25
    assert big_page["items"][0]["liked_by_me"] is True and big_page["items"][0]["like_count"] == 2
    assert small_count == big_count, (small_count, big_count)
    assert big_count <= 7

    # Post lists too: 1 post or 40 posts, the same statements.
    other = await make_course(db, alice)
    await create_post(client, other, bob)

    async def listing(course_id: str) -> int:
        response = await client.get(f"/api/courses/{course_id}/forum/posts", headers=carol.headers,
                                    params={"limit": "50"})
        assert response.status_code == 200
        return int(response.headers["x-sql-statements"])

    one = await listing(other.id)
    for i in range(38):
        await create_post(client, course, bob, title=f"post {i}")
    assert await listing(course.id) == one

    # The thread header and a single post read stay small as well.
    single = await client.get(f"/api/forum/posts/{big['id']}", headers=carol.headers)
    assert single.json()["reply_count"] == 500
    assert int(single.headers["x-sql-statements"]) <= 7


async def test_posts_and_replies_are_rate_limited(database_url: str, data_dir: Path, db: AsyncEngine) -> None:
    proc = ServerProcess(database_url=database_url, data_dir=data_dir,
                         env={"RATE_LIMIT_PER_MINUTE": "1", "RATE_LIMIT_BURST": "2"}).start()
    try:
        async with httpx.AsyncClient(base_url=proc.base_url, timeout=30) as client:
            alice, bob = await dev_user(client, "Alice"), await dev_user(client, "Bob")
            course = await make_course(db, alice)
            post = await create_post(client, course, alice)
            await create_post(client, course, alice)
            limited = await client.post(f"/api/courses/{course.id}/forum/posts", headers=alice.headers,
                                        json={"title": "third", "content": "too fast"})
            assert limited.status_code == 429
            assert limited.headers["content-type"] == "application/problem+json"
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            # The statement-count header is opt-in (the default test server turns it on).
            assert "x-sql-statements" not in limited.headers
            # Replies are their own kind of write, and other users have their own budget.
            await create_reply(client, post["id"], alice)
            await create_reply(client, post["id"], alice)
            assert (await client.post(f"/api/forum/posts/{post['id']}/replies", headers=alice.headers,
                                      json={"content": "third"})).status_code == 429
            await create_post(client, course, bob)
            # A refused write left nothing behind.
            titles = [p["title"] for p in (await client.get(f"/api/courses/{course.id}/forum/posts")).json()["items"]]
            assert "third" not in titles and len(titles) == 3
    finally:
        proc.stop()
