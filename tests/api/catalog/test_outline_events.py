"""Every change the outline shows records one ``outline.updated`` on ``course:<id>`` (docs/API.md §7,
README "Live events"), in the writing transaction; changes it does not show record none."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import DevUser
from tests.support.catalog import ok
from tests.support.forum import outbox


async def test_structure_writes_record_outline_updated(client: httpx.AsyncClient, db: AsyncEngine,
                                                       alice: DevUser) -> None:
    course = ok(await client.post("/api/courses", json={"title": "Knots"}, headers=alice.headers), 201)["id"]
    channel = f"course:{course}"
    seen = 0

    async def step(response: httpx.Response, status: int = 200, *, renamed: tuple[str, str] | None = None,
                   events: int = 1) -> Any:
        nonlocal seen
        body = ok(response, status)
        recorded = [(name, data) for name, data in await outbox(db, channel) if name == "outline.updated"]
        assert len(recorded) == seen + events, response.request.url
        for _, data in recorded[seen:]:
            assert data["course_id"] == course
            assert (data["lesson_id"], data["title"]) == (renamed or (None, None))
        seen += events
        return body

    post, patch, delete = client.post, client.patch, client.delete
    h = {"headers": alice.headers}
    a = await step(await post(f"/api/courses/{course}/units", json={"title": "Bends"}, **h), 201)
    b = await step(await post(f"/api/courses/{course}/units", json={"title": "Hitches"}, **h), 201)
    await step(await patch(f"/api/units/{a['id']}", json={"title": "Bends and loops"}, **h))
    await step(await post(f"/api/courses/{course}/reorder", json={"unit_ids": [b["id"], a["id"]]}, **h))
    one = await step(await post(f"/api/units/{a['id']}/lessons", json={"title": "Bowline", "content_type": "text"},
                                **h), 201)
    two = await step(await post(f"/api/units/{a['id']}/lessons", json={"title": "Sheet bend", "content_type": "text"},
                                **h), 201)
    await step(await post(f"/api/units/{a['id']}/reorder", json={"lesson_ids": [two["id"], one["id"]]}, **h))
    await step(await patch(f"/api/lessons/{one['id']}", json={"title": "Bowline on a bight"}, **h),
               renamed=(one["id"], "Bowline on a bight"))
    await step(await patch(f"/api/lessons/{two['id']}", json={"unit_id": b["id"], "position": 0}, **h))
    # the lesson's text is not in the outline: no event
    await step(await patch(f"/api/lessons/{two['id']}", json={"content": {"body": "Two loops."}}, **h), events=0)
    # a refused change records nothing
    refused = await post(f"/api/units/{a['id']}/reorder", json={"lesson_ids": []}, **h)
    assert refused.status_code == 422
    await step(await delete(f"/api/lessons/{one['id']}", **h), 204)
    await step(await delete(f"/api/units/{b['id']}", **h), 204)
