"""Reply chains nested to any depth (§4) never break a thread page, and a deep reply is cheap to add.

Before: a chain ~500 deep made ``json.dumps`` raise RecursionError, so ``GET
/forum/posts/{id}/replies`` was a 500 for everyone reading the thread.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.adversarial.probe import AttackWatch
from tests.support import DevUser, ServerProcess
from tests.support.forum import create_post, make_course

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)


async def reply_chain(db: AsyncEngine, post_id: str, user: DevUser, depth: int) -> list[str]:
    """``depth`` replies, each the child of the one before (straight in the database: the REST
    rate limit and a round trip each would make a 10,000-deep chain take minutes)."""
    ids = [uuid.uuid4() for _ in range(depth)]
    start = datetime.now(UTC) - timedelta(hours=1)
    rows = [{"id": rid, "post": uuid.UUID(post_id), "user": user.clerk_id,
             "parent": ids[i - 1] if i else None, "content": "deeper",
             "at": start + timedelta(milliseconds=i)} for i, rid in enumerate(ids)]
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO forum_replies (id, post_id, user_id, parent_reply_id, content, created_at, updated_at) "
            "VALUES (:id, :post, :user, :parent, :content, :at, :at)"), rows)
    async with db.connect() as conn:  # fresh statistics, as autovacuum would have after such growth
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text("ANALYZE forum_replies"))
    return [str(i) for i in ids]


def parse_deep(raw: bytes) -> Any:
    """json.loads of a deeply nested document: its C parser recurses, so give it room."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(100_000)
        try:
            result.append(json.loads(raw))
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)
        finally:
            sys.setrecursionlimit(old)

    old_size = threading.stack_size(512 * 1024 * 1024)
    try:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old_size)
    if errors:
        raise errors[0]
    return result[0]


def chain_ids(page: dict[str, Any]) -> tuple[list[str], int]:
    """The ids down the first child of each level, and how many siblings the last level has."""
    ids: list[str] = []
    nodes, width = page["items"], 0
    while nodes:
        width = len(nodes)
        ids.append(nodes[0]["id"])
        nodes = nodes[0]["replies"]
    return ids, width


async def test_a_thread_500_deep_is_served(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                           bob: DevUser) -> None:
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    chain = await reply_chain(db, post["id"], bob, 600)
    for headers in (alice.headers, {}):
        response = await client.get(f"/api/forum/posts/{post['id']}/replies", headers=headers)
        assert response.status_code == 200, response.text[:300]
        page = parse_deep(response.content)
        assert chain_ids(page) == (chain, 1)
        assert page["items"][0]["reply_count"] == 1 and page["next_cursor"] is None


async def test_the_10000th_nested_reply_is_cheap_and_the_page_holds(
        client: httpx.AsyncClient, server: ServerProcess, db: AsyncEngine, alice: DevUser, bob: DevUser) -> None:
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    chain = await reply_chain(db, post["id"], bob, 9_999)
    shallow_post = await create_post(client, course, alice)
    shallow_parent = (await reply_chain(db, shallow_post["id"], bob, 1))[0]  # same work: notify Bob

    async def timed_reply(post_id: str, parent: str | None) -> tuple[float, int, dict[str, Any]]:
        started = time.perf_counter()
        response = await client.post(f"/api/forum/posts/{post_id}/replies", headers=alice.headers,
                                     json={"content": "the 10,000th", "parent_reply_id": parent})
        elapsed = time.perf_counter() - started
        assert response.status_code == 201, response.text
        return elapsed, int(response.headers["x-sql-statements"]), response.json()

    shallow = [await timed_reply(shallow_post["id"], shallow_parent) for _ in range(5)]
    deep = [await timed_reply(post["id"], chain[-1]) for _ in range(5)]
    assert max(d[1] for d in deep) <= max(s[1] for s in shallow)  # no statement per ancestor
    shallow_ms = sorted(s[0] for s in shallow)[2] * 1000
    deep_ms = sorted(d[0] for d in deep)[2] * 1000
    assert deep_ms <= 2 * shallow_ms + 10, f"deep reply {deep_ms:.1f} ms, top-level reply {shallow_ms:.1f} ms"

    async with AttackWatch(server) as watch:
        started = time.perf_counter()
        response = await client.get(f"/api/forum/posts/{post['id']}/replies", headers=bob.headers)
        page_ms = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text[:300]
    page = parse_deep(response.content)
    ids, width = chain_ids(page)
    assert ids[:-1] == chain and ids[-1] == deep[0][2]["id"] and width == 5

    print(f"deep reply median {deep_ms:.1f} ms vs top-level {shallow_ms:.1f} ms; "
          f"10,000-deep page {len(response.content) / 1e6:.1f} MB in {page_ms:.0f} ms; "
          f"innocent median {watch.during_median * 1000:.1f} ms (idle {watch.idle_median * 1000:.1f} ms)")
    watch.assert_unharmed()
    # The recursive step runs one index lookup per reply: a plan that re-scanned the thread per
    # level took 16-20 s here once other threads had filled the table.
    assert page_ms < 5000
