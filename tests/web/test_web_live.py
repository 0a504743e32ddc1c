"""The web app end to end in Chromium: co-editing, suggestions, read-only viewers, live forum, toasts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support import DevUser, ServerProcess, dev_user, eventually
from tests.support.web import launch, screenshot, signed_in, signed_in_pages

pytestmark = pytest.mark.browser

BODY = "# Photosynthesis\n\nPlants turn light into sugar.\n"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async for b in launch():
        yield b


@dataclass
class Course:
    course_id: str
    lesson_id: str
    author: DevUser


async def make_course(client: httpx.AsyncClient, author: DevUser, *, publish: bool = False) -> Course:
    r = await client.post("/api/courses", json={"title": f"Botany {uuid.uuid4().hex[:6]}",
                                                "description": "Plants"}, headers=author.headers)
    r.raise_for_status()
    course_id = r.json()["id"]
    r = await client.post(f"/api/courses/{course_id}/units", json={"title": "Basics"}, headers=author.headers)
    r.raise_for_status()
    r = await client.post(f"/api/units/{r.json()['id']}/lessons",
                          json={"title": "Light", "content_type": "text", "content": {"body": BODY}},
                          headers=author.headers)
    r.raise_for_status()
    lesson_id = r.json()["id"]
    if publish:
        (await client.post(f"/api/courses/{course_id}/publish", headers=author.headers)).raise_for_status()
    return Course(course_id, lesson_id, author)


async def add_collaborator(client: httpx.AsyncClient, course: Course, user: DevUser, role: str) -> None:
    r = await client.post(f"/api/courses/{course.course_id}/collaborators",
                          json={"clerk_id": user.clerk_id, "role": role}, headers=course.author.headers)
    r.raise_for_status()

async def co_authors(client: httpx.AsyncClient) -> tuple[DevUser, DevUser, Course]:
    """Alice authors a course with one lesson; Bob is its editor."""
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob")
    course = await make_course(client, alice)
    await add_collaborator(client, course, bob, "editor")
    return alice, bob, course



async def body_text(page: Page) -> str:
    text: str = await page.evaluate(
        "() => document.querySelector('.body-editor').editorView.state.doc.toString()"
    )
    return text


async def open_lesson(page: Page, lesson_id: str, *, live: bool = True) -> None:
    await page.goto(f"/lessons/{lesson_id}")
    if live:
        await expect(page.get_by_test_id("conn-status")).to_have_text("Live", timeout=15_000)
    await expect(page.locator(".body-editor .cm-content")).to_contain_text("Plants turn light", timeout=15_000)


async def type_at_end(page: Page, text: str) -> None:
    await page.locator(".body-editor .cm-content").click()
    await page.keyboard.press("Control+End")
    await page.keyboard.type(text, delay=15)


async def type_at_start(page: Page, text: str) -> None:
    await page.locator(".body-editor .cm-content").click()
    await page.keyboard.press("Control+Home")
    await page.keyboard.type(text, delay=15)


async def test_two_authors_co_edit_and_see_each_others_cursor(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice, bob, course = await co_authors(client)

    async with signed_in_pages(browser, server.base_url, alice, bob) as (page_a, page_b):
        await asyncio.gather(open_lesson(page_a, course.lesson_id), open_lesson(page_b, course.lesson_id))
        await expect(page_a.get_by_test_id("presence")).to_contain_text("Bob")
        await expect(page_b.get_by_test_id("presence")).to_contain_text("Alice")

        # both type at the same time, at different places (two people typing at the very same spot
        # legitimately interleave their keystrokes, which is CRDT behaviour, not a failure)
        await asyncio.gather(type_at_start(page_a, "Alice was here.\n"), type_at_end(page_b, "\nBob too."))

        both = "(s) => s.includes('Alice was here.\\n# Photosynthesis') && s.includes('\\nBob too.')"
        for page in (page_a, page_b):
            await page.wait_for_function(
                f"() => ({both})(document.querySelector('.body-editor').editorView.state.doc.toString())",
                timeout=10_000,
            )
        text_a = await body_text(page_a)
        await page_b.wait_for_function(
            "(t) => document.querySelector('.body-editor').editorView.state.doc.toString() === t",
            arg=text_a, timeout=10_000,
        )

        # each sees the other's cursor label, in the other's name
        await expect(page_a.locator(".cm-ySelectionInfo", has_text="Bob")).to_be_visible(timeout=10_000)
        await expect(page_b.locator(".cm-ySelectionInfo", has_text="Alice")).to_be_visible(timeout=10_000)
        # the preview renders the Markdown
        await expect(page_a.get_by_test_id("preview").locator("h1")).to_have_text("Photosynthesis")
        await screenshot(page_a, "editor-two-cursors.png")

        # "Saved" once the server acknowledges the edits are in PostgreSQL; REST readers get the
        # text when the room materialises it (within 2 s of the last edit)
        await expect(page_a.get_by_test_id("saved")).to_have_text("Saved", timeout=10_000)
        await expect(page_b.get_by_test_id("saved")).to_have_text("Saved", timeout=10_000)

        async def stored() -> bool:
            body = (await client.get(f"/api/lessons/{course.lesson_id}", headers=alice.headers)).json()
            return body["content"]["body"] == text_a

        await eventually(stored, within=5)


async def test_viewer_cannot_type(browser: Browser, server: ServerProcess, client: httpx.AsyncClient) -> None:
    alice = await dev_user(client, "Alice")
    vera = await dev_user(client, "Vera")
    course = await make_course(client, alice)
    await add_collaborator(client, course, vera, "viewer")
    ctx, page, console = await signed_in(browser, server.base_url, vera)
    try:
        await open_lesson(page, course.lesson_id)
        await expect(page.get_by_test_id("role")).to_contain_text("read-only")
        before = await body_text(page)
        editor = page.locator(".body-editor .cm-content")
        await expect(editor).to_have_attribute("aria-readonly", "true")
        await editor.click()
        await page.keyboard.type("vandalism")
        await page.keyboard.press("Backspace")
        await page.keyboard.press("Control+a")
        await page.keyboard.press("Delete")
        await page.keyboard.press("Enter")
        assert await body_text(page) == before
        stored = (await client.get(f"/api/lessons/{course.lesson_id}", headers=alice.headers)).json()
        assert "vandalism" not in stored["content"]["body"]
    finally:
        await ctx.close()
    assert console.errors == []


async def select_text(page: Page, needle: str) -> None:
    await page.evaluate(
        """(needle) => {
            const view = document.querySelector('.body-editor').editorView
            const at = view.state.doc.toString().indexOf(needle)
            view.focus()
            view.dispatch({ selection: { anchor: at, head: at + needle.length } })
        }""",
        needle,
    )


async def test_learner_suggestion_accepted_lands_live(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob")
    carol = await dev_user(client, "Carol")
    course = await make_course(client, alice, publish=True)
    await add_collaborator(client, course, bob, "editor")
    (await client.put(f"/api/courses/{course.course_id}/enrollment", headers=carol.headers)).raise_for_status()

    async with signed_in_pages(browser, server.base_url, carol, alice, bob) as (page_c, page_a, page_b):
        # the learner proposes a replacement with a comment
        await open_lesson(page_c, course.lesson_id, live=False)
        await expect(page_c.get_by_test_id("role")).to_contain_text("suggest")
        # select "sugar" with the keyboard only
        await page_c.locator(".body-editor .cm-content").click()
        await page_c.keyboard.press("Control+Home")
        for _ in range(2):
            await page_c.keyboard.press("ArrowDown")
        await page_c.keyboard.press("End")
        await page_c.keyboard.press("ArrowLeft")  # before the final "."
        for _ in range(len("sugar")):
            await page_c.keyboard.press("Shift+ArrowLeft")
        await page_c.keyboard.press("Tab")
        await page_c.keyboard.press("Tab")
        await expect(page_c.get_by_test_id("suggest-start")).to_be_focused()
        await page_c.keyboard.press("Enter")
        await expect(page_c.get_by_test_id("suggest-selection")).to_have_text("sugar")
        await page_c.get_by_test_id("suggest-replacement").fill("glucose")
        await page_c.get_by_test_id("suggest-comment").fill("More precise")
        await page_c.get_by_test_id("suggest-send").click()
        await expect(page_c.get_by_text("Suggestion sent. The authors have been notified.")).to_be_visible()
        # an enrolled learner can also mark the lesson complete from here
        await page_c.get_by_test_id("complete-lesson").click()
        await expect(page_c.get_by_text("Done. Course progress: 100%")).to_be_visible()

        # the author sees it in the side panel and accepts it; Bob (a third context) sees it land live
        await asyncio.gather(open_lesson(page_a, course.lesson_id), open_lesson(page_b, course.lesson_id))
        suggestion = page_a.get_by_test_id("suggestion")
        await expect(suggestion).to_contain_text("glucose")
        await expect(suggestion).to_contain_text("More precise")
        await expect(page_a.locator(".cm-suggestion")).to_have_text("sugar")
        await suggestion.get_by_test_id("accept").click()
        await expect(page_a.get_by_test_id("suggestions")).to_contain_text("None open.")
        await expect(page_b.locator(".body-editor .cm-content")).to_contain_text("light into glucose", timeout=10_000)
        assert "sugar" not in await body_text(page_b)


async def test_live_reply_toast_and_bell(browser: Browser, server: ServerProcess, client: httpx.AsyncClient) -> None:
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob")
    course = await make_course(client, alice, publish=True)
    r = await client.post(f"/api/courses/{course.course_id}/forum/posts",
                          json={"title": "Why is chlorophyll green?", "content": "Asking for a friend."},
                          headers=alice.headers)
    r.raise_for_status()
    post: dict[str, Any] = r.json()

    async def unread() -> int:
        res = await client.get("/api/notifications/unread-count", headers=alice.headers)
        count: int = res.json()["unread_count"]
        return count

    # Her first post may earn Alice an achievement (the catalogue may lack or have retired it); its
    # notification is written in the post's own transaction, so it is there once the POST answered.
    mine = (await client.get("/api/notifications", headers=alice.headers)).json()["items"]
    assert [n["type"] for n in mine] in ([], ["achievement"])
    base = await unread()
    assert base == len(mine)

    async with signed_in_pages(browser, server.base_url, alice, bob) as (page_a, page_b):
        await page_a.goto(f"/threads/{post['id']}")
        await page_b.goto(f"/threads/{post['id']}")
        for page in (page_a, page_b):
            await expect(page.get_by_role("heading", name="Why is chlorophyll green?")).to_be_visible()
            await expect(page.locator(".live-dot")).to_have_attribute("data-status", "live", timeout=10_000)
        if base:
            await expect(page_a.get_by_test_id("unread-count")).to_have_text(str(base))
        else:
            await expect(page_a.get_by_test_id("unread-count")).to_be_hidden()

        # Bob types: Alice sees "Bob is typing…"
        reply_box = page_b.get_by_test_id("reply-input").last
        await reply_box.fill("It reflects green light.")
        await reply_box.press("Space")
        await expect(page_a.get_by_test_id("typing")).to_contain_text("Bob is typing", timeout=10_000)
        await page_b.get_by_role("button", name="Reply", exact=True).last.click()

        # the reply appears for Alice without a reload; she gets a toast and the bell counts it
        await expect(page_a.get_by_test_id("reply")).to_contain_text("It reflects green light.", timeout=10_000)
        await expect(page_a.get_by_test_id("toast")).to_be_visible(timeout=10_000)
        await expect(page_a.get_by_test_id("unread-count")).to_have_text(str(base + 1))
        await screenshot(page_a, "live-thread-toast.png")
        # the toast does not steal focus and can be dismissed
        assert await page_a.evaluate("document.activeElement === document.body || !document.activeElement.closest('#toasts')")
        await page_a.get_by_role("button", name="Dismiss notification").first.click()
        await expect(page_a.get_by_test_id("toast")).to_have_count(0)

        # Alice replies inline to Bob's reply; Bob sees the nested reply live, and can like it
        await page_a.get_by_test_id("reply").first.get_by_role("button", name="Reply", exact=True).click()
        await page_a.get_by_label("Your reply to this reply").fill("Thanks Bob!")
        await page_a.get_by_label("Your reply to this reply").press("Enter")
        await page_a.get_by_test_id("reply").first.locator("form").get_by_role("button", name="Reply").click()
        nested = page_b.locator("[data-testid=reply] [data-testid=reply]")
        await expect(nested).to_contain_text("Thanks Bob!", timeout=10_000)
        await nested.get_by_test_id("like-reply").click()
        await expect(page_a.locator("[data-testid=reply] [data-testid=reply]").get_by_test_id("like-reply")).to_have_accessible_name("Like 1", timeout=10_000)
        await screenshot(page_b, "live-thread.png")

        # nested replies collapse and expand
        toggle = page_b.get_by_role("button", name="Hide 1 reply")
        await toggle.click()
        await expect(nested).to_be_hidden()
        await page_b.get_by_role("button", name="Show 1 reply").click()
        await expect(nested).to_be_visible()

        # the bell panel lists the notification; "mark all read" clears the count here and in her other tab
        other_tab = await page_a.context.new_page()
        await other_tab.goto("/")
        await expect(other_tab.get_by_test_id("unread-count")).to_have_text(str(await unread()))  # + Bob's like
        await expect(other_tab.locator(".live-dot")).to_have_attribute("data-status", "live", timeout=10_000)
        await page_a.get_by_test_id("bell").click()
        panel = page_a.get_by_test_id("notif-panel")
        await expect(panel).to_contain_text("Bob")
        await panel.get_by_role("button", name="Mark all read").click()
        await expect(page_a.get_by_test_id("unread-count")).to_be_hidden(timeout=10_000)
        await expect(other_tab.get_by_test_id("unread-count")).to_be_hidden(timeout=10_000)
        await page_a.keyboard.press("Escape")
        await expect(panel).to_have_count(0)


async def test_edit_and_delete_your_reply_live(browser: Browser, server: ServerProcess,
                                               client: httpx.AsyncClient) -> None:
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob")
    course = await make_course(client, alice, publish=True)
    r = await client.post(f"/api/courses/{course.course_id}/forum/posts",
                          json={"title": "Xylem", "content": "Up or down?"}, headers=alice.headers)
    r.raise_for_status()
    post: dict[str, Any] = r.json()
    for text in ("Up, mostly.", "A second thought."):
        (await client.post(f"/api/forum/posts/{post['id']}/replies", json={"content": text},
                           headers=bob.headers)).raise_for_status()

    async with signed_in_pages(browser, server.base_url, alice, bob) as (page_a, page_b):
        for page in (page_a, page_b):
            await page.goto(f"/threads/{post['id']}")
            await expect(page.locator(".live-dot")).to_have_attribute("data-status", "live", timeout=10_000)
        first_a = page_a.get_by_test_id("reply").filter(has_text="Up, mostly.")
        first_b = page_b.get_by_test_id("reply").filter(has_text="Up, mostly.")
        await expect(first_a.get_by_test_id("edit-reply")).to_have_count(0)  # not Alice's to edit

        # Bob edits his reply in place; Alice sees the new text without a reload
        await first_b.get_by_test_id("edit-reply").click()
        editor = page_b.get_by_label("Edit your reply")
        await expect(editor).to_be_focused()
        await editor.fill("Up, through the xylem.")
        await page_b.get_by_role("button", name="Save").click()
        await expect(page_b.get_by_test_id("reply").first).to_contain_text("Up, through the xylem.")
        await expect(page_a.get_by_test_id("reply").first).to_contain_text("Up, through the xylem.", timeout=10_000)

        # deleting asks once more inline, then the reply is gone for both
        second_b = page_b.get_by_test_id("reply").filter(has_text="A second thought.")
        await second_b.get_by_test_id("delete-reply").click()
        await expect(second_b.get_by_test_id("delete-reply")).to_have_text("Really delete?")
        await second_b.get_by_test_id("delete-reply").click()
        for page in (page_b, page_a):
            await expect(page.get_by_test_id("reply").filter(has_text="A second thought.")).to_have_count(
                0, timeout=10_000)
        await expect(page_a.get_by_test_id("reply")).to_have_count(1)
        stored = (await client.get(f"/api/forum/posts/{post['id']}/replies")).json()["items"]
        assert [item["content"] for item in stored] == ["Up, through the xylem."]


async def test_history_preview_and_restore_live(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice, bob, course = await co_authors(client)
    ctx, page, console = await signed_in(browser, server.base_url, alice)
    try:
        await open_lesson(page, course.lesson_id)
        await type_at_end(page, "\nDraft two.")
        await expect(page.get_by_test_id("saved")).to_have_text("Saved", timeout=20_000)
    finally:
        await ctx.close()  # the last client leaving records a version

    async def version_with_draft() -> str | None:
        items = (await client.get(f"/api/lessons/{course.lesson_id}/versions", headers=alice.headers)).json()["items"]
        for item in items:
            full = (await client.get(f"/api/lessons/{course.lesson_id}/versions/{item['id']}",
                                     headers=alice.headers)).json()
            if "Draft two." in full["body"]:
                return str(item["id"])
        return None

    vid = await eventually(version_with_draft, within=15)

    async with signed_in_pages(browser, server.base_url, alice, bob) as (page_a, page_b):
        await asyncio.gather(open_lesson(page_a, course.lesson_id), open_lesson(page_b, course.lesson_id))
        await select_text(page_a, "\nDraft two.")
        await page_a.keyboard.press("Backspace")
        await expect(page_b.locator(".body-editor .cm-content")).not_to_contain_text("Draft two.")
        await expect(page_a.get_by_test_id("saved")).to_have_text("Saved", timeout=20_000)

        versions = page_a.get_by_test_id("versions")
        await page_a.get_by_role("button", name="Refresh").click()
        await versions.locator(f"li[data-vid='{vid}'] button").click()
        await expect(page_a.locator(".version-view")).to_contain_text("Draft two.")
        await page_a.get_by_role("button", name="Restore this version").click()
        # everyone connected sees the text change in place
        await expect(page_b.locator(".body-editor .cm-content")).to_contain_text("Draft two.", timeout=10_000)
        await expect(page_a.locator(".body-editor .cm-content")).to_contain_text("Draft two.")
    assert console.errors == []


async def test_offline_edits_merge_on_reconnect(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice, bob, course = await co_authors(client)
    async with signed_in_pages(browser, server.base_url, alice, bob) as (page_a, page_b):
        await asyncio.gather(open_lesson(page_a, course.lesson_id), open_lesson(page_b, course.lesson_id))
        # Alice's connection drops: she sees it, keeps typing; Bob types meanwhile
        await page_a.evaluate("document.querySelector('.body-editor').provider.disconnect()")
        await expect(page_a.get_by_test_id("conn-status")).to_contain_text("Reconnecting")
        await type_at_end(page_a, "\nWritten offline.")
        await expect(page_a.get_by_test_id("saved")).to_contain_text("Offline")
        await type_at_end(page_b, "\nWritten online.")
        await page_a.wait_for_timeout(300)  # Bob's edit must not reach Alice while she is offline
        assert "Written online." not in await body_text(page_a)
        await page_a.evaluate("document.querySelector('.body-editor').provider.connect()")
        await expect(page_a.get_by_test_id("conn-status")).to_have_text("Live")
        for page in (page_a, page_b):
            await expect(page.locator(".body-editor .cm-content")).to_contain_text("Written offline.", timeout=10_000)
            await expect(page.locator(".body-editor .cm-content")).to_contain_text("Written online.", timeout=10_000)
        assert await body_text(page_a) == await body_text(page_b)
        await expect(page_a.get_by_test_id("saved")).to_have_text("Saved", timeout=20_000)


async def test_token_refresh_reconnects_sockets(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice, bob, course = await co_authors(client)
    # Alice's stored token is about to expire: the page refreshes it and reconnects both sockets
    ctx_a, page_a, console_a = await signed_in(browser, server.base_url, alice, expires_in=100)
    ctx_b, page_b, console_b = await signed_in(browser, server.base_url, bob)
    try:
        await asyncio.gather(open_lesson(page_a, course.lesson_id), open_lesson(page_b, course.lesson_id))
        await page_a.wait_for_function(
            f"JSON.parse(localStorage.getItem('scriptorium.session')).token !== {alice.token!r}", timeout=15_000
        )
        new_token = await page_a.evaluate("JSON.parse(localStorage.getItem('scriptorium.session')).token")
        await page_a.wait_for_function(
            "document.querySelector('.body-editor').provider.ws?.url.includes(" + repr(new_token[-20:]) + ")",
            timeout=10_000,
        )
        await expect(page_a.get_by_test_id("conn-status")).to_have_text("Live", timeout=10_000)
        await expect(page_a.locator(".live-dot")).to_have_attribute("data-status", "live", timeout=10_000)
        await type_at_end(page_a, "\nAfter refresh.")
        await expect(page_b.locator(".body-editor .cm-content")).to_contain_text("After refresh.", timeout=10_000)
    finally:
        await ctx_a.close()
        await ctx_b.close()
    assert console_a.errors == [] and console_b.errors == []


async def test_thread_resumes_after_dropped_connection_without_gaps(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob")
    course = await make_course(client, alice, publish=True)
    post = (await client.post(f"/api/courses/{course.course_id}/forum/posts",
                              json={"title": "Spores", "content": "How do they travel?"},
                              headers=alice.headers)).json()
    ctx, page, console = await signed_in(browser, server.base_url, alice)
    try:
        await page.goto(f"/threads/{post['id']}")
        await expect(page.locator(".live-dot")).to_have_attribute("data-status", "live", timeout=10_000)
        first = await client.post(f"/api/forum/posts/{post['id']}/replies", json={"content": "By wind."},
                                  headers=bob.headers)
        first.raise_for_status()
        await expect(page.get_by_test_id("reply")).to_have_count(1, timeout=10_000)
        # the socket drops and stays down while two more replies are posted
        await page.evaluate("() => { const l = window.scriptorium.live; l.stopped = true; l.ws.close() }")
        await expect(page.locator(".live-dot")).not_to_have_attribute("data-status", "live")
        for text in ("By water.", "By animals."):
            (await client.post(f"/api/forum/posts/{post['id']}/replies", json={"content": text},
                               headers=bob.headers)).raise_for_status()
        await page.evaluate("() => { const l = window.scriptorium.live; l.stopped = false; l.open() }")
        await expect(page.locator(".live-dot")).to_have_attribute("data-status", "live", timeout=10_000)
        replies = page.get_by_test_id("reply")
        await expect(replies).to_have_count(3, timeout=10_000)
        await expect(replies.nth(1)).to_contain_text("By water.")
        await expect(replies.nth(2)).to_contain_text("By animals.")
    finally:
        await ctx.close()
    assert console.errors == []


async def test_accepting_a_stale_suggestion_explains_the_conflict(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice = await dev_user(client, "Alice")
    carol = await dev_user(client, "Carol")
    course = await make_course(client, alice, publish=True)
    lesson = (await client.get(f"/api/lessons/{course.lesson_id}", headers=carol.headers)).json()
    at = BODY.index("sugar")
    r = await client.post(f"/api/lessons/{course.lesson_id}/suggested-edits", headers=carol.headers,
                          json={"field": "body", "changes": [{"index": at, "delete": 5, "insert": "glucose"}],
                                "base_version": lesson["version"], "comment": "precise"})
    r.raise_for_status()
    ctx, page, console = await signed_in(browser, server.base_url, alice)
    try:
        await open_lesson(page, course.lesson_id)
        await expect(page.get_by_test_id("suggestion")).to_contain_text("glucose")
        # the author rewrites the very words the suggestion targets, then tries to accept it
        await select_text(page, "sugar")
        await page.keyboard.type("starch")
        await page.get_by_test_id("accept").click()
        await expect(page.get_by_test_id("suggestion")).to_contain_text("was changed after it was proposed")
        assert "glucose" not in await body_text(page)
    finally:
        await ctx.close()
    # Chromium logs every 4xx response; the expected 409 is the only entry
    assert [e for e in console.errors if "status of 409" not in e] == []
