"""Forum moderation and search in Chromium: staff lock, pin and unpin a thread and another open tab
hides its reply box and shows or drops the badges live; the author edits their post live for others
and deletes it (another open course page drops it live); the course page's search finds a reply by a
word in it and leads to it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support import ServerProcess, dev_user
from tests.support.web import launch, signed_in_pages

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async for b in launch():
        yield b


async def published_course(client: httpx.AsyncClient, author_headers: dict[str, str]) -> str:
    r = await client.post("/api/courses", json={"title": f"Pottery {uuid.uuid4().hex[:6]}"}, headers=author_headers)
    r.raise_for_status()
    course_id: str = r.json()["id"]
    unit = (await client.post(f"/api/courses/{course_id}/units", json={"title": "Clay"}, headers=author_headers)).json()
    (await client.post(f"/api/units/{unit['id']}/lessons", json={"title": "Wedging", "content_type": "text"},
                       headers=author_headers)).raise_for_status()
    (await client.post(f"/api/courses/{course_id}/publish", headers=author_headers)).raise_for_status()
    return course_id


async def test_lock_and_pin_live_and_own_post_edits(browser: Browser, server: ServerProcess,
                                                     client: httpx.AsyncClient) -> None:
    alice = await dev_user(client, "Alice")  # the course's author: staff
    bob = await dev_user(client, "Bob")  # a learner
    course_id = await published_course(client, alice.headers)
    r = await client.post(f"/api/courses/{course_id}/forum/posts", headers=bob.headers,
                          json={"title": "Cracks when drying", "content": "My pots crack. Why?"})
    r.raise_for_status()
    post_id = r.json()["id"]

    async with signed_in_pages(browser, server.base_url, alice, bob) as (staff, learner):
        for page in (staff, learner):
            await page.goto(f"/threads/{post_id}")
            await expect(page.get_by_role("heading", name="Cracks when drying", level=1)).to_be_visible()
            await expect(page.locator(".live-dot")).to_have_attribute("data-status", "live", timeout=10_000)
        reply_box = learner.get_by_label("Your reply", exact=True)
        await expect(reply_box).to_be_visible()
        # a learner has no moderation tools; the author of the post may edit and delete it
        await expect(learner.get_by_test_id("lock-thread")).to_have_count(0)
        await expect(learner.get_by_role("button", name="Edit post")).to_be_visible()

        await staff.get_by_role("button", name="Lock thread").click()
        await expect(learner.get_by_test_id("locked-note")).to_have_text("This thread is locked: no new replies.",
                                                                         timeout=10_000)
        await expect(reply_box).to_be_hidden()
        await expect(learner.locator("article.post .pill.locked")).to_have_text("Locked")
        await expect(staff.get_by_role("button", name="Unlock thread")).to_be_visible()
        # staff still may reply in a locked thread, and says so
        await expect(staff.get_by_test_id("locked-note")).to_have_text("This thread is locked: only course staff can reply.")
        await expect(staff.get_by_label("Your reply", exact=True)).to_be_visible()
        assert (await client.get(f"/api/forum/posts/{post_id}")).json()["is_locked"] is True

        await staff.get_by_role("button", name="Pin thread").click()
        await expect(learner.locator("article.post .pill", has_text="Pinned")).to_be_visible(timeout=10_000)
        await staff.get_by_role("button", name="Unlock thread").click()
        await expect(reply_box).to_be_visible(timeout=10_000)
        await expect(learner.get_by_test_id("locked-note")).to_be_hidden()

        # the learner edits their own post; the staff tab sees the new title live
        await learner.get_by_role("button", name="Edit post").click()
        await learner.get_by_label("Post title").fill("Cracks when drying slowly")
        await learner.get_by_role("button", name="Save").click()
        await expect(staff.get_by_role("heading", name="Cracks when drying slowly", level=1)).to_be_visible(timeout=10_000)

        # the course page lists it as pinned
        await learner.goto(f"/courses/{course_id}")
        await expect(learner.get_by_test_id("posts").locator("li").first).to_contain_text("Pinned")

        # staff unpin it: the learner's open thread drops the badge live
        await learner.goto(f"/threads/{post_id}")
        await expect(learner.locator(".live-dot")).to_have_attribute("data-status", "live", timeout=10_000)
        await expect(learner.locator("article.post .pill", has_text="Pinned")).to_be_visible()
        await staff.get_by_role("button", name="Unpin thread").click()
        await expect(learner.locator("article.post .pill", has_text="Pinned")).to_have_count(0, timeout=10_000)
        await expect(staff.get_by_role("button", name="Pin thread")).to_be_visible()
        assert (await client.get(f"/api/forum/posts/{post_id}")).json()["is_pinned"] is False
        await staff.goto(f"/courses/{course_id}")
        thread_item = staff.get_by_test_id("posts").locator("li", has_text="Cracks when drying slowly")
        await expect(thread_item).to_be_visible()
        await expect(thread_item.locator(".pill", has_text="Pinned")).to_have_count(0)

        # the learner deletes their own post (a second press confirms): they land on the course page,
        # and the staff's open course page drops the thread live
        await learner.get_by_role("button", name="Delete post").click()
        await learner.get_by_role("button", name="Really delete the thread?").click()
        await expect(learner).to_have_url(f"{server.base_url}/courses/{course_id}#forum-h")
        await expect(learner.get_by_test_id("toast").filter(has_text="Thread deleted")).to_be_visible()
        await expect(learner.get_by_test_id("posts")).not_to_contain_text("Cracks when drying")
        await expect(thread_item).to_have_count(0, timeout=10_000)
        assert (await client.get(f"/api/forum/posts/{post_id}")).status_code == 404


async def test_forum_search_finds_a_reply(browser: Browser, server: ServerProcess, client: httpx.AsyncClient) -> None:
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob")
    course_id = await published_course(client, alice.headers)
    r = await client.post(f"/api/courses/{course_id}/forum/posts", headers=alice.headers,
                          json={"title": "Glazes", "content": "Share your favourite glaze."})
    r.raise_for_status()
    post_id = r.json()["id"]
    word = "celadon" + uuid.uuid4().hex[:6]
    reply = await client.post(f"/api/forum/posts/{post_id}/replies", headers=bob.headers,
                              json={"content": f"I love a deep {word} glaze on stoneware."})
    reply.raise_for_status()
    reply_id = reply.json()["id"]

    async with signed_in_pages(browser, server.base_url, bob) as (page,):
        await page.goto(f"/courses/{course_id}")
        await page.get_by_label("Search the forum").fill(word)
        await page.get_by_label("Search the forum").press("Enter")
        hits = page.get_by_test_id("forum-hit")
        await expect(hits).to_have_count(1)
        await expect(hits).to_contain_text("Glazes")
        await expect(hits).to_contain_text("reply by Bob")
        await expect(hits.locator("mark")).to_have_text(word)
        await expect(page.get_by_role("status").filter(has_text="1 result")).to_have_text(f"1 result for “{word}”.")
        await hits.get_by_role("link", name="Glazes").click()
        await expect(page).to_have_url(f"{server.base_url}/threads/{post_id}#reply-{reply_id}")
        await expect(page.locator(f"#reply-{reply_id}")).to_have_class("reply target")
        # back on the course page, nothing found says so, and clearing brings the threads back
        await page.go_back()
        await page.get_by_label("Search the forum").fill("nonexistentword" + uuid.uuid4().hex[:4])
        await page.get_by_role("button", name="Search").click()
        await expect(page.get_by_role("status").filter(has_text="Nothing found")).to_be_visible()
        await page.get_by_role("button", name="Back to all threads").click()
        await expect(page.get_by_test_id("posts")).to_contain_text("Glazes")
