"""/ws rights are re-checked while subscribed (§7): within 15 s of losing them (a course
unpublished, a collaborator removed, an admin grant revoked) the subscription ends with ``error`` ``not_found`` for that
channel, and no later event of it is delivered. On both broker backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from websockets.asyncio.client import ClientConnection

from tests.support import Postgres
from tests.support.catalog import add_collaborator, make_admin, ok
from tests.support.realtime import Live, events, live_deployment, recv, send, subscribe

WITHIN_S = 15.0  # §7


@pytest.fixture(scope="module", params=["memory", "redis"])
async def live(request: pytest.FixtureRequest, postgres: Postgres, data_dir: Path,
               redis_url: str) -> AsyncIterator[Live]:
    async with live_deployment(request.param, postgres, data_dir, redis_url) as deployment:
        yield deployment


async def _ended(ws: ClientConnection, channels: set[str]) -> list[dict[str, Any]]:
    """Frames until every channel of ``channels`` got its ``error``; no event may come first."""
    waiting = set(channels)
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(WITHIN_S):
        while waiting:
            frame = await recv(ws, WITHIN_S)
            seen.append(frame)
            assert frame["type"] == "error", f"delivered after the rights were lost: {frame}"
            assert frame["code"] in ("not_found", "forbidden"), frame
            waiting.discard(frame["channel"])
    return seen


async def _nothing_pending(ws: ClientConnection) -> None:
    """The next frame is the answer to a ping: nothing else was queued for this socket."""
    await send(ws, {"type": "ping"})
    assert await recv(ws) == {"type": "pong"}


async def test_unpublished_course_ends_subscriptions_and_no_later_event_arrives(live: Live) -> None:
    author, learner = await live.user("Author"), await live.user("Learner")
    course = await live.course(author)
    thread = await live.thread(author, course)
    channels = {f"course:{course}", f"thread:{thread}"}
    async with live.ws(author) as watcher, live.ws(learner) as ws:
        for channel in sorted(channels):
            assert (await subscribe(ws, channel))["type"] == "subscribed"
            assert (await subscribe(watcher, channel))["type"] == "subscribed"
        for channel in sorted(channels):
            await live.emit(channel, "before", {"n": 0})
        for sock in (ws, watcher):
            assert {f["channel"] for f in await events(sock, 2)} == channels

        started = time.monotonic()
        ok(await live.client.post(f"/api/courses/{course}/unpublish", headers=author.headers))
        # written after the unpublish: the author sees them, the learner never does
        for channel in sorted(channels):
            await live.emit(channel, "after", {"n": 1})
        assert {f["channel"] for f in await events(watcher, 2)} == channels
        await _ended(ws, channels)
        took = time.monotonic() - started
        await _nothing_pending(ws)

        for channel in sorted(channels):
            await live.emit(channel, "later", {"n": 2})
        assert {f["channel"] for f in await events(watcher, 2)} == channels
        await _nothing_pending(ws)
        # and a new subscription is refused
        for channel in sorted(channels):
            assert (await subscribe(ws, channel))["code"] == "not_found"
    print(f"[{live.backend}] subscriptions ended {took:.2f} s after the unpublish")


async def test_a_reader_with_several_sockets_loses_every_one_after_closing_some(live: Live) -> None:
    """The re-check asks once per (user, channel) whatever the number of sockets (the hub keeps
    each channel's distinct readers as subscriptions come and go): a reader whose other
    sockets on the channel closed or unsubscribed is still re-checked on the one left."""
    author, learner = await live.user("Author"), await live.user("Learner")
    course = await live.course(author)
    thread = await live.thread(author, course)
    channel = f"thread:{thread}"
    async with live.ws(author) as watcher, live.ws(learner) as kept, live.ws(learner) as dropped:
        for sock in (watcher, kept, dropped):
            assert (await subscribe(sock, channel))["type"] == "subscribed"
        async with live.ws(learner) as closed:
            assert (await subscribe(closed, channel))["type"] == "subscribed"
        await send(dropped, {"type": "unsubscribe", "channel": channel})
        await _nothing_pending(dropped)
        await live.emit(channel, "before", {"n": 0})
        assert [f["channel"] for f in await events(kept, 1)] == [channel]

        ok(await live.client.post(f"/api/courses/{course}/unpublish", headers=author.headers))
        await live.emit(channel, "after", {"n": 1})
        assert [f["channel"] for f in await events(watcher, 2)] == [channel, channel]
        await _ended(kept, {channel})
        await _nothing_pending(kept)


async def test_quiet_channel_ends_within_15_s_of_an_unpublish(live: Live) -> None:
    author, learner = await live.user("Author"), await live.user("Learner")
    course = await live.course(author)
    channel = f"course:{course}"
    async with live.ws(learner) as ws:
        assert (await subscribe(ws, channel))["type"] == "subscribed"
        started = time.monotonic()
        ok(await live.client.post(f"/api/courses/{course}/unpublish", headers=author.headers))
        await _ended(ws, {channel})  # no event at all: the periodic re-check ends it
        took = time.monotonic() - started
        await live.emit(channel, "later", {"n": 1})
        await _nothing_pending(ws)
    print(f"[{live.backend}] quiet subscription ended {took:.2f} s after the unpublish")
    assert took < WITHIN_S


async def test_removed_collaborator_loses_the_draft(live: Live) -> None:
    author, helper = await live.user("Author"), await live.user("Helper")
    draft = await live.course(author, published=False)
    thread = await live.thread(author, draft)
    await add_collaborator(live.client, author, str(draft), helper, "viewer")
    channels = {f"course:{draft}", f"thread:{thread}"}
    async with live.ws(author) as watcher, live.ws(helper) as ws:
        for channel in sorted(channels):
            assert (await subscribe(ws, channel))["type"] == "subscribed"
            assert (await subscribe(watcher, channel))["type"] == "subscribed"
        started = time.monotonic()
        ok(await live.client.delete(f"/api/courses/{draft}/collaborators/{helper.clerk_id}",
                                    headers=author.headers), 204)
        await _ended(ws, channels)
        took = time.monotonic() - started
        for channel in sorted(channels):
            await live.emit(channel, "later", {"n": 1})
        assert {f["channel"] for f in await events(watcher, 2)} == channels
        await _nothing_pending(ws)
    print(f"[{live.backend}] collaborator's subscriptions ended {took:.2f} s after the removal")


async def test_removed_collaborator_gets_no_event_written_after_the_removal(live: Live) -> None:
    author, helper = await live.user("Author"), await live.user("Helper")
    draft = await live.course(author, published=False)
    await add_collaborator(live.client, author, str(draft), helper, "editor")
    channel = f"course:{draft}"
    async with live.ws(author) as watcher, live.ws(helper) as ws:
        assert (await subscribe(ws, channel))["type"] == "subscribed"
        assert (await subscribe(watcher, channel))["type"] == "subscribed"
        ok(await live.client.delete(f"/api/courses/{draft}/collaborators/{helper.clerk_id}",
                                    headers=author.headers), 204)
        await live.emit(channel, "after", {"n": 1})
        [seen] = await events(watcher, 1)
        assert seen["event"] == "after"
        await _ended(ws, {channel})
        await _nothing_pending(ws)


async def test_revoked_admin_loses_a_draft_of_someone_else(live: Live) -> None:
    author, admin = await live.user("Author"), await live.user("Admin")
    draft = await live.course(author, published=False)
    channel = f"course:{draft}"
    await make_admin(live.engine, admin)
    async with live.ws(admin) as ws:
        assert (await subscribe(ws, channel))["type"] == "subscribed"
        async with live.engine.begin() as conn:
            await conn.execute(text("UPDATE users SET role = 'member' WHERE clerk_id = :c"),
                               {"c": admin.clerk_id})
        await _ended(ws, {channel})
        await live.emit(channel, "later", {"n": 1})
        await _nothing_pending(ws)
        # the socket's user was read at connect, as an admin: subscribing again is refused too
        assert (await subscribe(ws, channel))["code"] == "not_found"
