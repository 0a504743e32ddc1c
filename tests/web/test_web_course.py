"""Catalogue, course page (enroll, progress, feedback), history and the Me page, in Chromium."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support import ServerProcess, dev_user
from tests.support.web import launch, signed_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async for b in launch():
        yield b


async def test_catalogue_enroll_progress_feedback(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice = await dev_user(client, "Alice")
    learner = await dev_user(client, "Lena")
    word = f"zyx{uuid.uuid4().hex[:6]}"
    r = await client.post("/api/courses", json={"title": f"Mycology {word}", "description": "Mushrooms and moulds",
                                                "difficulty": "beginner", "tags": ["fungi"]}, headers=alice.headers)
    r.raise_for_status()
    course_id = r.json()["id"]
    unit = (await client.post(f"/api/courses/{course_id}/units", json={"title": "Spores"},
                              headers=alice.headers)).json()
    for title in ("Caps", "Gills"):
        (await client.post(f"/api/units/{unit['id']}/lessons", json={"title": title, "content_type": "text"},
                           headers=alice.headers)).raise_for_status()
    (await client.post(f"/api/courses/{course_id}/publish", headers=alice.headers)).raise_for_status()

    ctx, page, console = await signed_in(browser, server.base_url, learner)
    try:
        await page.goto("/")
        await page.get_by_label("Search courses").fill(word)
        card = page.get_by_test_id("course-card")
        await expect(card).to_have_count(1)
        await expect(card).to_contain_text("Mycology")
        await expect(card).to_contain_text("fungi")
        await expect(card).to_contain_text("2 lessons")
        await card.get_by_role("link", name=f"Mycology {word}").click()

        await expect(page.get_by_role("heading", name=f"Mycology {word}", level=1)).to_be_visible()
        await page.get_by_role("button", name="Enroll").click()
        await expect(page.get_by_role("button", name="Leave course")).to_be_visible()
        await page.get_by_label("Mark “Caps” complete").check()
        await expect(page.get_by_text("50% complete")).to_be_visible()

        await page.get_by_label("4★").check()
        await page.get_by_label("Comment").fill("Lovely spores")
        await page.get_by_role("button", name="Send feedback").click()
        await expect(page.locator("ul.feedback")).to_contain_text("Lovely spores")

        # a thread started elsewhere appears in the course forum without a reload
        await expect(page.locator(".live-dot")).to_have_attribute("data-status", "live", timeout=10_000)
        (await client.post(f"/api/courses/{course_id}/forum/posts", json={"title": "Spore prints?", "content": "How?"},
                           headers=alice.headers)).raise_for_status()
        await expect(page.get_by_test_id("posts")).to_contain_text("Spore prints?", timeout=10_000)

        progress = (await client.get(f"/api/courses/{course_id}/progress", headers=learner.headers)).json()
        assert progress["progress"] == 50
        course = (await client.get(f"/api/courses/{course_id}")).json()
        assert course["rating_count"] == 1

        # the Me page shows streak, activity, achievements and a flashcard review driven by keys
        (await client.post("/api/flashcard-sets", json={"title": "Fungi words"}, headers=learner.headers)).raise_for_status()
        sets = (await client.get("/api/flashcard-sets", headers=learner.headers)).json()["items"]
        set_id = next(s["id"] for s in sets if s["title"] == "Fungi words")
        (await client.post(f"/api/flashcard-sets/{set_id}/cards", json={"front": "Hypha", "back": "A filament"},
                           headers=learner.headers)).raise_for_status()
        await page.goto("/me")
        await expect(page.get_by_test_id("streak")).to_contain_text("day")
        await expect(page.locator(".heatmap .cell.on").first).to_be_visible()
        await expect(page.locator("ul.achievements")).to_contain_text("First lesson")
        await page.locator("li", has_text="Fungi words").get_by_role("button", name="Review due cards").click()
        await expect(page.locator(".card-front")).to_have_text("Hypha")
        await page.keyboard.press("Space")
        await expect(page.locator(".card-back")).to_have_text("A filament")
        await page.keyboard.press("3")
        await expect(page.get_by_text("All done for now")).to_be_visible()
    finally:
        await ctx.close()
    assert console.errors == []
