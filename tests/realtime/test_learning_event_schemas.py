"""The ``data`` of the learning domains' live events (feedback, notifications, streaks,
achievements) validates against the models their schemas modules list in ``EVENTS`` (README, "Live
event payloads"): the test makes each event happen, then checks every stored one of those names."""

from __future__ import annotations

import httpx
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.feedback.schemas import EVENTS as FEEDBACK_EVENTS
from server.gamification.schemas import EVENTS as GAMIFICATION_EVENTS
from server.notifications.schemas import EVENTS as NOTIFICATION_EVENTS
from tests.support import dev_user
from tests.support.catalog import ok
from tests.support.learning import build_course, enroll

EVENTS = FEEDBACK_EVENTS | NOTIFICATION_EVENTS | GAMIFICATION_EVENTS


async def test_every_learning_event_matches_its_model(client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author, learner = await dev_user(client, "Author"), await dev_user(client, "Learner")  # streak.updated
    course = await build_course(client, author, lessons_per_unit=1)
    await enroll(client, learner, course.id)
    ok(await client.post(f"/api/courses/{course.id}/feedback", json={"rating": 4}, headers=learner.headers), 201)
    ok(await client.post(f"/api/courses/{course.id}/feedback", json={"rating": 5, "comment": "Good"},
                         headers=learner.headers))  # feedback.updated
    ok(await client.put(f"/api/lessons/{course.lesson_ids[0]}/progress", json={"status": "completed"},
                        headers=learner.headers))  # achievement.earned, with its notification
    notifications = ok(await client.get("/api/notifications", headers=author.headers))["items"]
    ok(await client.post(f"/api/notifications/{notifications[0]['id']}/read", headers=author.headers))
    ok(await client.post("/api/notifications/read-all", headers=learner.headers))

    async with db.connect() as conn:
        rows = (await conn.execute(text("SELECT event, data FROM event_outbox WHERE event = ANY(:names)"),
                                   {"names": list(EVENTS)})).all()
    seen = {event for event, _ in rows}
    assert seen == set(EVENTS), f"events not produced: {set(EVENTS) - seen}"
    for event, data in rows:
        TypeAdapter(EVENTS[event]).validate_python(data, strict=False)
