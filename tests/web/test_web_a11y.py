"""Accessibility by audit: axe-core (tests/support/axe.py) on every page and state of the web app —
catalogue, course (with its media library and collaborators loaded, the outline's Undo toast, forum
search results), lesson editor, suggestion dialog, thread (with a toast and an open reply form; locked),
notifications panel, notifications page, me, My work, quiz (and its preview), sign-in — finds no
serious or critical violation; every control on a page is reachable with Tab and shows where the
focus is; toasts are announced politely without taking the focus.

The quiz states open a lesson that has a quiz: with the quiz UI (web/src/pages/quiz.js) the learner's
form, its graded result and the author's quiz builder are audited; without it, the lesson page as the
learner sees it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support import ROOT, DevUser, ServerProcess, dev_user
from tests.support.axe import SERIOUS, audit, describe
from tests.support.web import launch, screenshot, signed_in_pages
from tests.web.test_web_live import Course, add_collaborator, make_course, open_lesson, select_text

pytestmark = pytest.mark.browser

QUIZ_UI = (ROOT / "web" / "src" / "pages" / "quiz.js").exists()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    expect.set_options(timeout=20_000)  # a loaded machine: these pages make several requests each
    try:
        async for b in launch():
            yield b
    finally:
        expect.set_options(timeout=5_000)


@dataclass
class World:
    alice: DevUser  # the author
    bob: DevUser  # an editor
    carol: DevUser  # an enrolled learner
    course: Course
    quiz_lesson_id: str
    post_id: str
    title: str


async def ok(r: httpx.Response) -> Any:
    assert r.status_code < 300, (r.status_code, r.text)
    return r.json() if r.content else None


async def build_world(client: httpx.AsyncClient) -> World:
    """A published course with a rated, discussed, suggested-on lesson and a quiz lesson."""
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob")
    carol = await dev_user(client, "Carol")
    course = await make_course(client, alice, publish=True)
    await add_collaborator(client, course, bob, "editor")
    await ok(await client.put(f"/api/courses/{course.course_id}/enrollment", headers=carol.headers))
    await ok(await client.post(f"/api/courses/{course.course_id}/feedback",
                               json={"rating": 4, "comment": "Clear and short."}, headers=carol.headers))
    lesson = await ok(await client.get(f"/api/lessons/{course.lesson_id}", headers=carol.headers))
    body = lesson["content"]["body"]
    await ok(await client.post(f"/api/lessons/{course.lesson_id}/suggested-edits", json={
        "field": "body", "base_version": lesson["version"], "comment": "More precise",
        "changes": [{"index": body.index("sugar"), "delete": len("sugar"), "insert": "glucose"}]},
        headers=carol.headers))
    outline = await ok(await client.get(f"/api/courses/{course.course_id}/outline", headers=alice.headers))
    unit_id = outline["units"][0]["id"]
    quiz_lesson = await ok(await client.post(f"/api/units/{unit_id}/lessons", json={
        "title": "Check yourself", "content_type": "exercise", "content": {"body": "A short quiz."}},
        headers=alice.headers))
    await ok(await client.post(f"/api/lessons/{quiz_lesson['id']}/quizzes", json={
        "title": "Light and sugar", "pass_score": 0.5, "questions": [
            {"id": "q1", "kind": "single", "prompt": "What do plants make from light?",
             "options": ["Sugar", "Salt"], "answer": 0},
            {"id": "q2", "kind": "multiple", "prompt": "Which are pigments?",
             "options": ["Chlorophyll", "Carotene", "Starch"], "answer": [0, 1]},
            {"id": "q3", "kind": "short", "prompt": "Name the green pigment.", "accepted": ["chlorophyll"]}]},
        headers=alice.headers))
    post = await ok(await client.post(f"/api/courses/{course.course_id}/forum/posts",
                                      json={"title": "Why green?", "content": "Asking for a friend."},
                                      headers=alice.headers))
    await ok(await client.post(f"/api/forum/posts/{post['id']}/replies",
                               json={"content": "It reflects green light."}, headers=bob.headers))
    # a file in the course's media library (not linked from any lesson body)
    await ok(await client.post(f"/api/lessons/{course.lesson_id}/media", headers=alice.headers,
                               files={"file": ("leaf.png", PNG, "image/png")}))
    cards = await ok(await client.post("/api/flashcard-sets", json={"title": "Pigments"}, headers=carol.headers))
    await ok(await client.post(f"/api/flashcard-sets/{cards['id']}/cards", json={"front": "Chlorophyll", "back": "Green"},
                               headers=carol.headers))
    title = (await ok(await client.get(f"/api/courses/{course.course_id}")))["title"]
    return World(alice, bob, carol, course, quiz_lesson["id"], post["id"], title)


class Audits:
    """Runs axe on each state; collects the serious and critical findings of all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.states: list[str] = []

    async def check(self, page: Page, state: str) -> None:
        violations = await audit(page)
        self.states.append(state)
        serious = [v for v in violations if v["impact"] in SERIOUS]
        if serious:
            self.failures.append(f"--- {state} ({page.url})\n{describe(serious)}")

    def assert_clean(self) -> None:
        assert not self.failures, "axe found serious/critical violations:\n" + "\n".join(self.failures)


async def author_course_page(page: Page, w: World) -> None:
    """The course as its author sees it, once the Manage panel's parts that load on their own have."""
    await page.goto(f"/courses/{w.course.course_id}")
    await expect(page.get_by_role("heading", name="Manage")).to_be_visible()
    await expect(page.get_by_test_id("posts")).to_contain_text("Why green?")
    await expect(page.get_by_test_id("collaborator")).to_contain_text("Bob")
    await expect(page.get_by_test_id("media-library").get_by_test_id("media-row")).to_have_count(1)


async def my_work_page(page: Page) -> None:
    await page.goto("/my-work")
    await expect(page.get_by_role("heading", name="My work", level=1)).to_be_visible()
    await expect(page.get_by_test_id("my-suggestion")).to_contain_text("More precise")


async def test_axe_finds_nothing_serious_on_any_page_or_state(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    w = await build_world(client)
    audits = Audits()
    async with signed_in_pages(browser, server.base_url, w.alice, w.carol) as (page_a, page_c):
        anon = await browser.new_context(base_url=server.base_url)
        try:
            page = await anon.new_page()
            await page.goto("/")
            await expect(page.get_by_test_id("course-card").first).to_be_visible()
            await audits.check(page, "catalogue, signed out")
            await page.goto("/signin")
            await expect(page.get_by_role("heading", name="Sign in", exact=False)).to_be_visible()
            await audits.check(page, "sign-in")
        finally:
            await anon.close()

        # catalogue with a rated course card (the star rating's colour)
        await page_a.goto("/?q=" + w.title.split()[-1])
        await expect(page_a.get_by_test_id("course-card")).to_contain_text("4.0")
        await audits.check(page_a, "catalogue")
        await screenshot(page_a, "catalogue.png")

        # the course as its author (Manage: its media library and collaborators loaded) and as an
        # enrolled learner (progress, feedback, upvotes)
        await author_course_page(page_a, w)
        await audits.check(page_a, "course, author")
        # the outline's Undo toast after a delete; Undo, so nothing is deleted
        await page_a.get_by_role("button", name="Delete “Check yourself”").click()
        undo_toast = page_a.get_by_test_id("toast").filter(has_text="Deleted “Check yourself”")
        await expect(undo_toast.get_by_role("button", name="Undo")).to_be_visible()
        await audits.check(page_a, "course, outline Undo toast")
        await undo_toast.get_by_role("button", name="Undo").click()
        await expect(page_a.get_by_test_id("outline").get_by_role("link", name="Check yourself")).to_be_visible()
        await page_c.goto(f"/courses/{w.course.course_id}")
        await expect(page_c.get_by_role("button", name="Send feedback")).to_be_visible()
        await expect(page_c.get_by_text("Clear and short.")).to_be_visible()
        await audits.check(page_c, "course, learner")
        await screenshot(page_c, "course.png")
        # forum search results, a match highlighted
        await page_c.get_by_label("Search the forum").fill("green")
        await page_c.get_by_label("Search the forum").press("Enter")
        await expect(page_c.get_by_test_id("forum-hit").locator("mark").first).to_be_visible()
        await audits.check(page_c, "forum search results")

        # the lesson editor: live, the open suggestion highlighted, history; then with the preview open
        await open_lesson(page_a, w.course.lesson_id)
        await expect(page_a.locator(".cm-suggestion")).to_have_text("sugar")
        await expect(page_a.get_by_test_id("saved")).to_have_text("Saved")
        await audits.check(page_a, "lesson editor")
        toggle = page_a.get_by_test_id("preview-toggle")
        if await toggle.get_attribute("aria-expanded") == "false":
            await toggle.click()
        await expect(page_a.get_by_test_id("preview")).to_be_visible()
        await audits.check(page_a, "lesson editor, preview open")
        await screenshot(page_a, "lesson-editor.png")

        # the learner's suggestion dialog, opened on a selection
        await open_lesson(page_c, w.course.lesson_id, live=False)
        await select_text(page_c, "light")
        await page_c.get_by_test_id("suggest-start").click()
        await expect(page_c.get_by_test_id("suggest-selection")).to_have_text("light")
        await audits.check(page_c, "suggestion dialog")

        # the quiz lesson, as the learner who takes it
        await page_c.goto(f"/lessons/{w.quiz_lesson_id}")
        await expect(page_c.locator(".body-editor .cm-content")).to_contain_text("A short quiz.")
        if QUIZ_UI:
            form = page_c.get_by_role("form", name="Quiz: Light and sugar")
            await expect(form.get_by_role("group")).to_have_count(3)
            await audits.check(page_c, "quiz")
            await form.get_by_role("radio", name="Sugar").check()
            await form.get_by_role("button", name="Submit answers").click()
            await expect(form.get_by_test_id("quiz-grade")).to_be_visible()
            await audits.check(page_c, "quiz, graded")
            await page_a.goto(f"/lessons/{w.quiz_lesson_id}")
            item = page_a.get_by_test_id("quiz-item")
            await expect(item).to_contain_text("Light and sugar")
            await item.get_by_role("button", name="Edit").click()
            await expect(page_a.get_by_label("Question 1 prompt")).to_have_value("What do plants make from light?")
            await audits.check(page_a, "quiz builder")
            await item.get_by_role("button", name="Preview as a learner").click()
            preview = item.get_by_role("form", name="Preview of Quiz: Light and sugar")
            await expect(preview.get_by_role("group")).to_have_count(3)
            await audits.check(page_a, "quiz preview")
        else:
            await audits.check(page_c, "quiz")

        # the thread: replies, likes, a reply form open under a reply, and a toast arriving
        await page_a.goto(f"/threads/{w.post_id}")
        await expect(page_a.get_by_test_id("reply")).to_contain_text("It reflects green light.")
        await expect(page_a.locator(".live-dot")).to_have_attribute("data-status", "live", timeout=10_000)
        await page_a.get_by_test_id("reply").first.get_by_role("button", name="Reply", exact=True).click()
        await expect(page_a.get_by_label("Your reply to this reply")).to_be_focused()
        await ok(await client.post(f"/api/forum/posts/{w.post_id}/replies",
                                   json={"content": "And absorbs red."}, headers=w.bob.headers))
        await expect(page_a.get_by_test_id("toast").first).to_be_visible(timeout=10_000)
        # announced politely, and the focus stays where Alice was typing
        toasts = page_a.locator("#toasts")
        await expect(toasts).to_have_attribute("aria-live", "polite")
        await expect(toasts).to_have_attribute("role", "status")
        await expect(page_a.get_by_label("Your reply to this reply")).to_be_focused()
        await audits.check(page_a, "thread with a toast")

        # a locked thread, as a learner sees it: the note, no reply box
        await ok(await client.patch(f"/api/forum/posts/{w.post_id}", json={"is_locked": True}, headers=w.alice.headers))
        await page_c.goto(f"/threads/{w.post_id}")
        await expect(page_c.get_by_test_id("locked-note")).to_have_text("This thread is locked: no new replies.")
        await expect(page_c.get_by_label("Your reply", exact=True)).to_be_hidden()
        await audits.check(page_c, "locked thread")

        # the notifications panel, the notifications page, me
        await page_a.get_by_test_id("bell").click()
        await expect(page_a.get_by_test_id("notif-panel")).to_contain_text("Bob")
        await audits.check(page_a, "notifications panel")
        await screenshot(page_a, "notifications-panel.png")
        await page_a.keyboard.press("Escape")
        await page_a.goto("/notifications")
        await expect(page_a.locator("li.notif").first).to_be_visible()
        await audits.check(page_a, "notifications page")
        await page_c.goto("/me")
        await expect(page_c.get_by_role("heading", name="Me", exact=True)).to_be_visible()
        await expect(page_c.get_by_role("heading", name="Flashcards")).to_be_visible()
        await audits.check(page_c, "me")
        await screenshot(page_c, "me.png")
        await page_c.get_by_role("button", name="Review due cards").first.click()
        await page_c.get_by_role("button", name="Show answer (Space)").click()
        await expect(page_c.locator(".card-back")).to_have_text("Green")
        await audits.check(page_c, "flashcard review")

        # My work: the learner's open suggestion (withdrawable), no courses of their own
        await my_work_page(page_c)
        await audits.check(page_c, "my work")

    assert len(audits.states) == (21 if QUIZ_UI else 18), audits.states
    audits.assert_clean()


# --- the keyboard -------------------------------------------------------------------------

# Every visible control that a pointer could use; Tab must reach each of them (a radio group is one
# stop: the arrows move within it).
CONTROLS = """() => [...new Set([...document.querySelectorAll('a[href], button, input, select, textarea, [contenteditable=true], [tabindex]')]
  .filter((el) => !el.disabled && el.tabIndex >= 0 && el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden')
  .map((el, i) => { el.dataset.kbd = el.type === 'radio' ? `radio:${el.name}` : String(i); return el.dataset.kbd }))]"""
# The focused element shows it: its own outline or box-shadow, or the editor's outline around it.
FOCUSED = """() => {
  const el = document.activeElement
  if (!el || el === document.body) return null
  const shows = (e) => { const s = getComputedStyle(e); return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none' }
  const host = el.closest('.cm-editor')
  return { id: el.dataset.kbd ?? null, visible: shows(el) || (!!host && shows(host)), what: el.outerHTML.slice(0, 120) }
}"""


async def tab_through(page: Page, limit: int = 200) -> None:
    """Tab from the top of the page until the focus comes back round: every control is reached, and
    every stop shows a focus indicator."""
    wanted = set(await page.evaluate(CONTROLS))
    assert wanted, "no controls on the page"
    await page.evaluate("() => { document.activeElement?.blur(); window.scrollTo(0, 0) }")
    reached: set[str] = set()
    invisible: list[str] = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(FOCUSED)
        if focused is None:
            continue
        if not focused["visible"]:
            invisible.append(focused["what"])
        if focused["id"] is not None:
            if focused["id"] in reached and reached >= wanted:
                break
            reached.add(focused["id"])
    missing = await page.evaluate("(ids) => ids.map((i) => document.querySelector(`[data-kbd='${i}']`)?.outerHTML.slice(0, 120))",
                                  sorted(wanted - reached))
    assert not missing, f"Tab never reaches: {missing}"
    assert not invisible, f"focus not visible on: {invisible}"


async def test_every_control_is_reachable_by_tab_with_visible_focus(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    w = await build_world(client)
    async with signed_in_pages(browser, server.base_url, w.alice, w.carol) as (page_a, page_c):
        await page_c.goto(f"/courses/{w.course.course_id}")
        await expect(page_c.get_by_role("button", name="Send feedback")).to_be_visible()
        await tab_through(page_c)
        await author_course_page(page_a, w)
        await tab_through(page_a)
        await my_work_page(page_c)
        await tab_through(page_c)

        await asyncio.gather(open_lesson(page_a, w.course.lesson_id), open_lesson(page_c, w.course.lesson_id, live=False))
        await expect(page_a.locator(".cm-suggestion")).to_have_text("sugar")
        await tab_through(page_a)
        await tab_through(page_c)

        await page_a.goto(f"/threads/{w.post_id}")
        await expect(page_a.get_by_test_id("reply")).to_contain_text("It reflects green light.")
        await tab_through(page_a)
        # the like button's name carries its visible count (WCAG 2.5.3), and says what it does
        like = page_a.get_by_test_id("like-reply").first
        await expect(like).to_have_accessible_name("Like 0")
        await expect(like).to_contain_text("♥ 0")  # what is seen: the sr-only "Like" is clipped away
        await expect(like.locator(".sr-only")).to_have_text("Like")
