"""Forum and notification events over real /ws sockets (§7): one node, and two nodes on one Redis."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection

from server.db import make_engine
from server.migrate import upgrade
from tests.realtime.test_forum_events import scenario
from tests.support import DevUser, Postgres, ServerProcess, dev_user
from tests.support.forum import (
    add_collaborator,
    create_post,
    create_reply,
    make_course,
    only_forum_notifications,  # noqa: F401 (fixture)
)
from tests.support.forum_events import Thread, apply_event

# Exact notification counts: forum achievements (which notify too) are put out of reach.
pytestmark = pytest.mark.usefixtures("only_forum_notifications")


@pytest.fixture(scope="module", params=["memory", "redis"])
async def nodes(request: pytest.FixtureRequest, postgres: Postgres, data_dir: Path,
                redis_url: str) -> AsyncIterator[list[ServerProcess]]:
    """One node with the in-process broker, or two nodes on one Redis; their own database
    (every server that uses a database drains its outbox)."""
    url = await postgres.create_database()
    await upgrade(url)
    count, redis = (1, None) if request.param == "memory" else (2, redis_url)
    servers = [ServerProcess(database_url=url, data_dir=data_dir, redis_url=redis,
                             env={"RATE_LIMIT_PER_MINUTE": "0"}) for _ in range(count)]
    try:
        for node in servers:
            await asyncio.to_thread(node.start)
        yield servers
    finally:
        for node in servers:
            node.stop()
        await postgres.drop_database(url)


@pytest.fixture(scope="module")
def server(nodes: list[ServerProcess]) -> ServerProcess:
    return nodes[0]


@pytest.fixture(scope="module")
async def db(nodes: list[ServerProcess]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(nodes[0].database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def client(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as c:
        yield c


@pytest.fixture
def listener(nodes: list[ServerProcess]) -> ServerProcess:
    """Where subscribers connect: the other node when there are two."""
    return nodes[-1]


@asynccontextmanager
async def socket(base_url: str, user: DevUser) -> AsyncIterator[ClientConnection]:
    url = base_url.replace("http://", "ws://") + f"/ws?token={user.token}"
    async with websockets.connect(url, max_size=2**22) as ws:
        yield ws


async def frame(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    return message


async def subscribe(ws: ClientConnection, channel: str, since: Any = None) -> Any:
    request: dict[str, Any] = {"type": "subscribe", "channel": channel}
    if since is not None:
        request["since"] = since
    await ws.send(json.dumps(request))
    while True:
        message = await frame(ws)
        if message["type"] == "subscribed" and message["channel"] == channel:
            return message["last_id"]
        assert message["type"] != "error", message


async def events(ws: ClientConnection, count: int, channel: str) -> list[dict[str, Any]]:
    """The next ``count`` stored events of ``channel`` (typing and other channels skipped)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        message = await frame(ws)
        assert message["type"] != "reset", message
        if message["type"] == "event" and message["channel"] == channel and message.get("id") is not None:
            found.append(message)
    return found


async def fetch_thread(client: httpx.AsyncClient, post_id: str) -> tuple[Thread, Any]:
    post = (await client.get(f"/api/forum/posts/{post_id}")).json()
    page = (await client.get(f"/api/forum/posts/{post_id}/replies", params={"limit": "100"})).json()
    last_id = page["last_event_id"]
    post.pop("last_event_id")
    return {"post": post, "replies": page["items"]}, last_id


async def test_reply_reaches_another_connection(listener: ServerProcess, client: httpx.AsyncClient,
                                                db: AsyncEngine, alice: DevUser, bob: DevUser) -> None:
    course = await make_course(db, alice)
    post = await create_post(client, course, alice)
    async with socket(listener.base_url, alice) as ws:
        await subscribe(ws, f"thread:{post['id']}")
        await subscribe(ws, f"course:{course.id}")
        reply = await create_reply(client, post["id"], bob, "live hello")
        [event] = await events(ws, 1, f"thread:{post['id']}")
        assert event["event"] == "reply.created"
        assert event["data"] == reply
        second = await create_post(client, course, bob, title="another thread")
        [created] = await events(ws, 1, f"course:{course.id}")
        assert created["event"] == "post.created" and created["data"] == second
    # A page fetched now reports the newest id of its channel.
    _, last_id = await fetch_thread(client, post["id"])
    assert last_id == event["id"]


async def test_page_plus_live_events_equals_new_page(listener: ServerProcess, client: httpx.AsyncClient,
                                                     db: AsyncEngine, alice: DevUser, bob: DevUser) -> None:
    course = await make_course(db, alice)
    carol, dave, staff = await dev_user(client, "Carol"), await dev_user(client, "Dave"), await dev_user(client, "Mod")
    await add_collaborator(db, course, staff, "editor")
    post = await create_post(client, course, alice)
    existing = [await create_reply(client, post["id"], bob, f"old {i}") for i in range(3)]
    await create_reply(client, post["id"], carol, "old nested", parent=existing[0]["id"])

    old, last_id = await fetch_thread(client, post["id"])
    await scenario(client, post["id"], [bob, carol, dave], staff, existing)
    new, _ = await fetch_thread(client, post["id"])
    # Subscribing late with the page's last_event_id replays what the page misses, then live.
    async with socket(listener.base_url, alice) as ws:
        await subscribe(ws, f"thread:{post['id']}", since=last_id)
        rebuilt = old
        applied = 0
        while rebuilt != new:
            [message] = await events(ws, 1, f"thread:{post['id']}")
            rebuilt = apply_event(rebuilt, message["event"], message["data"])
            applied += 1
    assert rebuilt == new and applied >= 15


async def test_a_course_forum_list_resumes_from_its_last_event_id(
        listener: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser, bob: DevUser) -> None:
    """The course forum list carries ``last_event_id``; subscribing late with it replays every
    thread started after the list was read, in order (and at most events of threads the list
    already shows: ids are assigned when the outbox drains, so the id can lag the list)."""
    course = await make_course(db, alice)
    shown = [await create_post(client, course, alice, title=f"before {i}") for i in range(2)]
    page = (await client.get(f"/api/courses/{course.id}/forum/posts")).json()
    assert [p["id"] for p in page["items"]] == [p["id"] for p in reversed(shown)]
    later = [await create_post(client, course, bob, title=f"after {i}") for i in range(3)]
    async with socket(listener.base_url, alice) as ws:
        await subscribe(ws, f"course:{course.id}", since=page["last_event_id"])
        replayed: list[dict[str, Any]] = []
        later_ids = {p["id"] for p in later}
        while not later_ids <= {e["data"]["id"] for e in replayed}:
            replayed += await events(ws, 1, f"course:{course.id}")
    assert all(e["event"] == "post.created" for e in replayed)
    assert [e["data"]["id"] for e in replayed if e["data"]["id"] in later_ids] == [p["id"] for p in later]
    assert {e["data"]["id"] for e in replayed} - later_ids <= {p["id"] for p in shown}
    # Counted as delivered, not deduplicated: no post and no event id arrives twice.
    posts = [e["data"]["id"] for e in replayed]
    assert len(posts) == len(set(posts)), posts
    ids = [e["id"] for e in replayed]
    assert all(a < b for a, b in itertools.pairwise(ids)), ids
    again = (await client.get(f"/api/courses/{course.id}/forum/posts")).json()
    assert again["last_event_id"] == replayed[-1]["id"]


async def test_unread_count_equals_live_notifications(listener: ServerProcess, client: httpx.AsyncClient,
                                                      db: AsyncEngine, alice: DevUser, bob: DevUser) -> None:
    course = await make_course(db, alice)
    carol = await dev_user(client, "Carol")
    post = await create_post(client, course, alice)
    unread: set[str] = set()
    created: list[str] = []  # every notification.created as delivered (a duplicate would show here)
    last_count = None
    async with socket(listener.base_url, alice) as ws, socket(listener.base_url, alice) as other_tab:
        await subscribe(ws, "user:me")
        await subscribe(other_tab, "user:me")

        async def take(count: int) -> None:
            nonlocal last_count
            for message in await events(ws, count, "user:me"):
                data = message["data"]
                if message["event"] == "notification.created":
                    created.append(data["id"])
                    unread.add(data["id"])
                elif message["event"] == "notification.read":
                    unread.difference_update(unread if data["ids"] == "all" else data["ids"])
                last_count = data["unread_count"]

        first = await create_reply(client, post["id"], bob, "one")
        await create_reply(client, post["id"], carol, "two")
        await client.put(f"/api/forum/posts/{post['id']}/like", headers=bob.headers)
        await client.put(f"/api/forum/posts/{post['id']}/like", headers=carol.headers)  # folds into one
        await create_reply(client, post["id"], alice, "own reply: no notification", parent=first["id"])
        await take(4)
        assert len(unread) == last_count == 3
        # Four events for three notifications: the second like folds into the first's notification
        # (notification.created again, same id); nothing else repeats.
        assert len(created) == 4 and len(set(created[:3])) == 3 and created[3] == created[2], created
        rest = (await client.get("/api/notifications/unread-count", headers=alice.headers)).json()
        assert rest == {"unread_count": 3}

        one = sorted(unread)[0]
        await client.post(f"/api/notifications/{one}/read", headers=alice.headers)
        await take(1)
        assert len(unread) == last_count == 2
        await client.post("/api/notifications/read-all", headers=alice.headers)
        await take(1)
        assert len(unread) == last_count == 0
        # The other tab hears about both reads too.
        seen = [m["data"] for m in await events(other_tab, 6, "user:me") if m["event"] == "notification.read"]
        assert seen[-1] == {"ids": "all", "unread_count": 0}
    assert (await client.get("/api/notifications/unread-count", headers=alice.headers)).json()["unread_count"] == 0


async def test_draft_threads_are_not_found_to_strangers(listener: ServerProcess, client: httpx.AsyncClient,
                                                        db: AsyncEngine, alice: DevUser, bob: DevUser) -> None:
    draft = await make_course(db, alice, published=False)
    post = await create_post(client, draft, alice, title="staff only")
    for channel in (f"thread:{post['id']}", f"course:{draft.id}"):
        async with socket(listener.base_url, bob) as ws:
            await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
            refused = await frame(ws)
            assert refused["type"] == "error" and refused["code"] == "not_found"
            assert refused["channel"] == channel
        async with socket(listener.base_url, alice) as ws:
            await subscribe(ws, channel)
    # A deleted thread is gone (for someone without a recent grant: the hub memoises grants briefly).
    await add_collaborator(db, draft, bob, "viewer")
    await client.delete(f"/api/forum/posts/{post['id']}", headers=alice.headers)
    async with socket(listener.base_url, bob) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": f"thread:{post['id']}"}))
        assert (await frame(ws))["code"] == "not_found"
