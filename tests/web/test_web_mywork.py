"""My work in Chromium: the courses I author (a draft among them) and collaborate on, my open
suggestions with their status, withdrawing one; the lesson page's own-suggestions box; the
editor's panel names who suggested what and when."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support import DevUser, ServerProcess, dev_user
from tests.support.web import launch, screenshot, signed_in_pages

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    expect.set_options(timeout=20_000)  # a loaded machine: pages here make several requests each
    async for b in launch():
        yield b
    expect.set_options(timeout=5_000)


async def course_with_lesson(client: httpx.AsyncClient, author: DevUser, title: str, *, publish: bool) -> tuple[str, str]:
    r = await client.post("/api/courses", json={"title": title}, headers=author.headers)
    r.raise_for_status()
    course_id = r.json()["id"]
    unit = (await client.post(f"/api/courses/{course_id}/units", json={"title": "U"}, headers=author.headers)).json()
    lesson = await client.post(f"/api/units/{unit['id']}/lessons", json={
        "title": f"{title}: first lesson", "content_type": "text", "content": {"body": "Tides follow the moon.\n"}},
        headers=author.headers)
    lesson.raise_for_status()
    if publish:
        (await client.post(f"/api/courses/{course_id}/publish", headers=author.headers)).raise_for_status()
    return course_id, lesson.json()["id"]


async def suggest(client: httpx.AsyncClient, user: DevUser, lesson_id: str, insert: str, comment: str) -> str:
    version = (await client.get(f"/api/lessons/{lesson_id}", headers=user.headers)).json()["version"]
    r = await client.post(f"/api/lessons/{lesson_id}/suggested-edits", headers=user.headers, json={
        "field": "body", "base_version": version, "comment": comment,
        "changes": [{"index": 0, "insert": insert}]})
    r.raise_for_status()
    return str(r.json()["id"])


async def test_my_work_lists_drafts_and_suggestions_and_withdraws(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob Sugg")
    await course_with_lesson(client, bob, "Bob's oceans draft", publish=False)
    alice_course, alice_lesson = await course_with_lesson(client, alice, "Alice's tides", publish=True)
    shared_course, _ = await course_with_lesson(client, alice, "Alice's shared draft", publish=False)
    added = await client.post(f"/api/courses/{shared_course}/collaborators",
                              json={"clerk_id": bob.clerk_id, "role": "editor"}, headers=alice.headers)
    added.raise_for_status()
    (await client.put(f"/api/courses/{alice_course}/enrollment", headers=bob.headers)).raise_for_status()
    first = await suggest(client, bob, alice_lesson, "High ", "mention high tide")
    second = await suggest(client, bob, alice_lesson, "Low ", "and low tide")

    async with signed_in_pages(browser, server.base_url, bob, alice) as (page, author):
        await page.goto("/")
        await page.get_by_role("link", name="My work").click()
        await expect(page.get_by_role("heading", name="My work", level=1)).to_be_visible()
        authored = page.locator("section", has=page.get_by_role("heading", name="Courses I author"))
        mine = authored.get_by_test_id("team-course")
        await expect(mine).to_have_count(1)
        await expect(mine).to_contain_text("Bob's oceans draft")
        await expect(mine).to_contain_text("Draft")
        shared = page.locator("section", has=page.get_by_role("heading", name="Courses I collaborate on"))
        await expect(shared.get_by_test_id("team-course")).to_contain_text("Alice's shared draft")
        await expect(shared.get_by_test_id("team-course")).to_contain_text("Editor")

        items = page.get_by_test_id("my-work-suggestions").get_by_test_id("my-suggestion")
        await expect(items).to_have_count(2)
        await expect(items.nth(0)).to_contain_text("and low tide")
        await expect(items.nth(0)).to_contain_text("Alice's tides: first lesson")
        await expect(items.nth(0).get_by_test_id("suggestion-status")).to_have_text("Open")
        await screenshot(page, "my-work.png")
        older = items.filter(has_text="mention high tide")
        await older.get_by_role("button", name="Withdraw").click()
        await expect(older.get_by_test_id("suggestion-status")).to_have_text("Withdrawn")
        await expect(older).to_contain_text("Suggestion withdrawn.")
        got = (await client.get(f"/api/suggested-edits/{first}", headers=bob.headers)).json()
        assert got["status"] == "withdrawn"
        # the filter: withdrawn ones, then open ones only
        show = page.get_by_label("Show")
        await show.select_option("withdrawn")
        await expect(items).to_have_count(1)
        await expect(items).to_contain_text("mention high tide")
        await show.select_option("open")
        await expect(items).to_have_count(1)
        await expect(items).to_contain_text("and low tide")
        await show.select_option("")
        await expect(items).to_have_count(2)

        # on the lesson, the suggester sees the open one
        await page.goto(f"/lessons/{alice_lesson}")
        own = page.get_by_test_id("my-suggestions").get_by_test_id("my-suggestion")
        await expect(own).to_have_count(1)
        await expect(own).to_contain_text("and low tide")

        # the author's panel says who suggested what, and when
        await author.goto(f"/lessons/{alice_lesson}")
        panel = author.get_by_test_id("suggestions").get_by_test_id("suggestion")
        await expect(panel).to_have_count(1)
        await expect(panel).to_contain_text("Bob Sugg")
        await expect(panel).to_contain_text("suggested on the body · just now")
        await expect(panel).to_contain_text("and low tide")
        await expect(panel.locator("ins")).to_have_text("Low ")

        # withdrawing from the lesson page takes it off the author's panel at the next refresh
        await own.get_by_role("button", name="Withdraw").click()
        await expect(own.get_by_test_id("suggestion-status")).to_have_text("Withdrawn")
        assert (await client.get(f"/api/suggested-edits/{second}", headers=bob.headers)).json()["status"] == "withdrawn"
        await author.reload()
        await expect(author.get_by_test_id("suggestions")).to_have_text("None open.")
