"""The reply write's hot path: one statement for the caller's row and the route's policy (no
cache: a profile change, a deletion or a role change is seen by the very next request), one for
the write itself (post still live and open, parent, INSERT, outbox event, achievements probe)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.forum.service import iso_utc
from server.http import dumps
from tests.support import DevUser, dev_user
from tests.support.forum import create_post, create_reply, make_course, outbox


def replies_url(post_id: str) -> str:
    return f"/api/forum/posts/{post_id}/replies"


async def earn_everything(db: AsyncEngine, user: DevUser) -> None:
    """No achievement left for ``user`` to evaluate (so a reply needs no achievement statements)."""
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO user_achievements (user_id, achievement_id, progress, earned_at) "
            "SELECT :u, id, 100, now() FROM achievements "
            "ON CONFLICT (user_id, achievement_id) DO UPDATE SET earned_at = coalesce(user_achievements.earned_at, now())"
        ), {"u": user.clerk_id})


async def test_reply_statements_per_post(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                         bob: DevUser) -> None:
    # The session server counts statements (SQL_STATEMENT_HEADER=1). Before: 6 for a reply to
    # one's own thread (user, policy, post, INSERT, outbox, achievement candidates).
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    await create_reply(client, post["id"], alice, "first")  # may earn "First post"
    count = 0
    for _ in range(3):  # an achievement created meanwhile by another test file would add some
        await earn_everything(db, alice)
        response = await client.post(replies_url(post["id"]), headers=alice.headers, json={"content": "more"})
        assert response.status_code == 201
        count = int(response.headers["x-sql-statements"])
        if count == 2:
            break
    assert count == 2, count
    # A reply to someone else's thread notifies its author: + the notification's lock, its row
    # with the unread count, its event (9 before).
    for _ in range(3):
        await earn_everything(db, bob)
        response = await client.post(replies_url(post["id"]), headers=bob.headers, json={"content": "hi"})
        assert response.status_code == 201
        count = int(response.headers["x-sql-statements"])
        if count == 5:
            break
    assert count == 5, count


async def test_reply_event_is_the_rest_object(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                              bob: DevUser) -> None:
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    top = await create_reply(client, post["id"], bob, "a *top* reply")
    child = await create_reply(client, post["id"], alice, "a child", parent=top["id"])
    events = [data for name, data in await outbox(db, f"thread:{post['id']}") if name == "reply.created"]
    assert events == [top, child]
    assert child["parent_reply_id"] == top["id"] and child["author"]["name"] == "Alice"


async def test_event_timestamps_are_formatted_as_the_api_does(db: AsyncEngine) -> None:
    base = datetime(2026, 12, 3, 7, 39, 0, tzinfo=UTC)
    moments = [base, base + timedelta(microseconds=1), base + timedelta(microseconds=500_000),
               base + timedelta(seconds=59, microseconds=999_999), datetime(2024, 2, 29, 23, 0, 0, 10, tzinfo=UTC),
               datetime(2026, 3, 29, 1, 30, tzinfo=UTC)]
    async with db.connect() as conn:
        await conn.execute(text("SET TIME ZONE 'Europe/Amsterdam'"))  # the session's zone must not matter
        for moment in moments:
            formatted = (await conn.execute(select(iso_utc(text(":t").bindparams(t=moment))))).scalar_one()
            assert formatted == dumps(moment).decode().strip('"'), moment


async def test_refusals_keep_their_order(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                         bob: DevUser) -> None:
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    other = await create_post(client, course, alice, title="other")
    reply = await create_reply(client, other["id"], bob)
    assert (await client.patch(f"/api/forum/posts/{post['id']}", headers=alice.headers,
                               json={"is_locked": True})).status_code == 200
    # Locked beats a bad parent (409 before 422), as before; staff may still reply.
    locked = await client.post(replies_url(post["id"]), headers=bob.headers,
                               json={"content": "x", "parent_reply_id": reply["id"]})
    assert locked.status_code == 409
    assert (await client.post(replies_url(post["id"]), headers=alice.headers,
                              json={"content": "x", "parent_reply_id": reply["id"]})).status_code == 422
    assert (await client.post(replies_url(post["id"]), headers=alice.headers,
                              json={"content": "closing"})).status_code == 201
    # Deleted post: 404; nothing was written for any refusal.
    assert (await client.delete(f"/api/forum/posts/{other['id']}", headers=alice.headers)).status_code == 204
    assert (await client.post(replies_url(other["id"]), headers=bob.headers,
                              json={"content": "late"})).status_code == 404
    contents = [data["content"] for name, data in await outbox(db, f"thread:{post['id']}") if name == "reply.created"]
    assert contents == ["closing"]


async def test_the_next_request_sees_profile_changes_deletion_and_roles(client: httpx.AsyncClient,
                                                                        db: AsyncEngine, alice: DevUser) -> None:
    carol = await dev_user(client, "Carol")
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    assert (await create_reply(client, post["id"], carol))["author"]["name"] == "Carol"
    # PATCH /api/me: the very next reply carries the new name.
    assert (await client.patch("/api/me", headers=carol.headers, json={"name": "Caroline"})).status_code == 200
    assert (await create_reply(client, post["id"], carol))["author"]["name"] == "Caroline"
    # An admin grant (written by the CLI straight into the database) applies at once: a draft's
    # thread becomes writable, and is 404 again as soon as the role is taken back.
    draft = await make_course(db, alice, published=False)
    draft_post = await create_post(client, draft, alice)
    assert (await client.post(replies_url(draft_post["id"]), headers=carol.headers,
                              json={"content": "x"})).status_code == 404
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET role = 'admin' WHERE clerk_id = :c"), {"c": carol.clerk_id})
    assert (await client.post(replies_url(draft_post["id"]), headers=carol.headers,
                              json={"content": "as admin"})).status_code == 201
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET role = 'member' WHERE clerk_id = :c"), {"c": carol.clerk_id})
    assert (await client.post(replies_url(draft_post["id"]), headers=carol.headers,
                              json={"content": "x"})).status_code == 404
    # Deleted (as the user.deleted webhook leaves the row): 401 at once with the still-valid
    # token, before any 404 (a missing post, a malformed id).
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET deleted_at = now(), email = NULL, name = NULL, image_url = NULL "
                                "WHERE clerk_id = :c"), {"c": carol.clerk_id})
    for target in (post["id"], str(uuid.uuid4()), "not-a-uuid"):
        refused = await client.post(replies_url(target), headers=carol.headers, json={"content": "x"})
        assert refused.status_code == 401, (target, refused.text)
        assert "deleted" in refused.json()["detail"]
    # ... and the token's name claim does not refill the anonymised row.
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT name FROM users WHERE clerk_id = :c"),
                                   {"c": carol.clerk_id})).scalar_one() is None


async def test_new_users_and_claims_to_fill_take_the_usual_path(client: httpx.AsyncClient, db: AsyncEngine,
                                                                alice: DevUser) -> None:
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    # A first request that is a reply: the user is created just in time from the token.
    sub = f"user_new_{uuid.uuid4().hex[:8]}"
    token = (await client.post("/api/dev/token", json={"sub": sub, "name": "Newcomer"})).json()["token"]
    first = await client.post(replies_url(post["id"]), headers={"Authorization": f"Bearer {token}"},
                              json={"content": "hello"})
    assert first.status_code == 201 and first.json()["author"] == {"clerk_id": sub, "name": "Newcomer",
                                                                   "image_url": None}
    # A stored row missing a field the token has: the claim fills it, on this very request.
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET name = NULL WHERE clerk_id = :c"), {"c": sub})
    again = await client.post(replies_url(post["id"]), headers={"Authorization": f"Bearer {token}"},
                              json={"content": "again"})
    assert again.status_code == 201 and again.json()["author"]["name"] == "Newcomer"
    # No token: 401 as ever.
    assert (await client.post(replies_url(post["id"]), json={"content": "x"})).status_code == 401


async def test_a_reply_with_achievements_to_evaluate_falls_back_to_the_transaction(
        client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser) -> None:
    # A top-level reply to one's own thread is written alone (autocommit) only when the statement's
    # probe finds no achievement to evaluate; otherwise it writes nothing and the transaction runs
    # record_action with it, as every reply did before.
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    async with db.begin() as conn:
        await conn.execute(text("DELETE FROM user_achievements WHERE user_id = :u"), {"u": alice.clerk_id})
    response = await client.post(replies_url(post["id"]), headers=alice.headers, json={"content": "again"})
    assert response.status_code == 201
    assert int(response.headers["x-sql-statements"]) > 2
    async with db.connect() as conn:
        evaluated = (await conn.execute(text(
            "SELECT count(*) FROM user_achievements ua JOIN achievements a ON a.id = ua.achievement_id "
            "WHERE ua.user_id = :u AND CAST(a.requirement AS text) ~ '\"forum_posts\"'"), {"u": alice.clerk_id})).scalar_one()
        replies = (await conn.execute(text("SELECT count(*) FROM forum_replies WHERE post_id = :p"),
                                      {"p": uuid.UUID(post["id"])})).scalar_one()
    assert evaluated >= 1 and replies == 1  # evaluated, and the reply written once
