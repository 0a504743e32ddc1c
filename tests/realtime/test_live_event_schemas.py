"""Every live event of /ws matches its model in server/live_events.py (docs/API.md §7).

Two users drive each event type through REST (a post, a reply, edits, likes, a review, their
notifications read, deletions) and over /ws (typing) while their sockets are subscribed with
``since: 0`` to every channel involved, so the replay also brings what happened before the
subscription (the first request's ``streak.updated``). Every event received is validated
against ``LIVE_EVENTS[event]`` (``extra="forbid"``), and every registered event must be seen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection

from server.live_events import LIVE_EVENT_CHANNELS, LIVE_EVENTS
from tests.support import DevUser, ServerProcess, dev_user, eventually
from tests.support.catalog import ok
from tests.support.forum import create_post, create_reply, make_course


class Socket:
    """A /ws connection whose frames a background task collects."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            self.frames.append(json.loads(raw))

    async def subscribe(self, channel: str) -> None:
        await self.ws.send(json.dumps({"type": "subscribe", "channel": channel, "since": 0}))

        async def confirmed() -> bool:
            for frame in self.frames:
                assert not (frame["type"] == "error" and frame.get("channel") == channel), frame
            return any(f["type"] == "subscribed" and f["channel"] == channel for f in self.frames)

        await eventually(confirmed)

    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "event"]


@asynccontextmanager
async def socket(server: ServerProcess, user: DevUser) -> AsyncIterator[Socket]:
    async with websockets.connect(f"{server.ws_url}/ws?token={user.token}", max_size=2**22) as ws:
        sock = Socket(ws)
        try:
            yield sock
        finally:
            sock.task.cancel()


def test_every_event_has_a_model_and_a_channel() -> None:
    assert LIVE_EVENTS.keys() == LIVE_EVENT_CHANNELS.keys()
    for event, model in LIVE_EVENTS.items():
        assert issubclass(model, BaseModel), event
        assert model.model_config.get("extra") == "forbid", event


async def test_every_live_event_matches_its_model(server: ServerProcess, client: httpx.AsyncClient,
                                                  db: AsyncEngine) -> None:
    alice = await dev_user(client, "Alice")  # the course's author
    bob = await dev_user(client, "Bob")  # a learner
    course = await make_course(db, alice)
    ok(await client.put(f"/api/courses/{course.id}/enrollment", headers=bob.headers))
    async with socket(server, alice) as alice_ws, socket(server, bob) as bob_ws:
        await bob_ws.subscribe(f"course:{course.id}")
        await bob_ws.subscribe("user:me")
        await alice_ws.subscribe("user:me")

        post = await create_post(client, course, bob, title="A question")  # post.created, achievement.earned
        thread = f"thread:{post['id']}"
        await bob_ws.subscribe(thread)
        await alice_ws.subscribe(thread)
        await bob_ws.ws.send(json.dumps({"type": "typing", "channel": thread}))  # typing, to alice
        reply = await create_reply(client, post["id"], alice, "An answer")  # reply.created, notification
        second = await create_reply(client, post["id"], alice, "Another answer")
        ok(await client.patch(f"/api/forum/replies/{reply['id']}", headers=alice.headers,
                              json={"content": "An edited answer"}))  # reply.updated
        ok(await client.put(f"/api/forum/replies/{reply['id']}/like", headers=bob.headers))  # reply.liked
        ok(await client.put(f"/api/forum/posts/{post['id']}/like", headers=alice.headers))  # post.liked
        ok(await client.patch(f"/api/forum/posts/{post['id']}", headers=bob.headers,
                              json={"title": "An edited question"}))  # post.updated, thread.updated
        unit = ok(await client.post(f"/api/courses/{course.id}/units", headers=alice.headers,
                                    json={"title": "A new unit"}), 201)  # outline.updated
        lesson = ok(await client.post(f"/api/units/{unit['id']}/lessons", headers=alice.headers,
                                      json={"title": "A new lesson", "content_type": "text"}), 201)
        ok(await client.put(f"/api/lessons/{lesson['id']}/progress", headers=bob.headers,
                            json={"status": "completed"}))  # progress.updated
        review = await client.post(f"/api/courses/{course.id}/feedback", headers=bob.headers, json={"rating": 4})
        ok(review, 201)  # feedback.created
        ok(await client.post(f"/api/courses/{course.id}/feedback", headers=bob.headers,
                             json={"rating": 5, "comment": "Better"}))  # feedback.updated
        unread = ok(await client.get("/api/notifications", headers=bob.headers))["items"]
        ok(await client.post(f"/api/notifications/{unread[0]['id']}/read", headers=bob.headers))  # notification.read
        ok(await client.post("/api/notifications/read-all", headers=bob.headers))  # notification.read ("all")
        ok(await client.delete(f"/api/forum/replies/{second['id']}", headers=alice.headers), 204)  # reply.deleted
        # Delivered before the thread goes: the hub re-checks a thread's readers before each burst
        # of its events, and a reply.deleted still on its way when the post's deletion commits is
        # (rightly) not delivered to a thread nobody can read any more: a race, lost under load.
        async def reply_deleted_seen() -> bool:
            return any(e["event"] == "reply.deleted" for e in bob_ws.events() + alice_ws.events())

        await eventually(reply_deleted_seen, within=20)
        ok(await client.delete(f"/api/forum/posts/{post['id']}", headers=bob.headers), 204)  # post.deleted

        async def all_seen() -> set[str]:
            seen = {e["event"] for e in bob_ws.events() + alice_ws.events()}
            return seen if seen >= LIVE_EVENTS.keys() else set()

        try:
            await eventually(all_seen, within=20)
        except AssertionError:
            seen = {e["event"] for e in bob_ws.events() + alice_ws.events()}
            pytest.fail(f"events never seen: {sorted(LIVE_EVENTS.keys() - seen)}")
        received = bob_ws.events() + alice_ws.events()

    mismatches = []
    for frame in received:
        name = frame["event"]
        assert name in LIVE_EVENTS, f"an event with no model in server/live_events.py: {name}"
        assert frame["channel"].split(":")[0] == LIVE_EVENT_CHANNELS[name], frame
        try:
            LIVE_EVENTS[name].model_validate(frame["data"])  # type: ignore[attr-defined]
        except ValidationError as exc:
            mismatches.append(f"{name}: {exc.errors(include_url=False)} in {frame['data']}")
    assert not mismatches, "\n".join(mismatches)
