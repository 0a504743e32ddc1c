"""The layout at the sizes people use, measured from the boxes Chromium lays out: on a laptop screen
(1366×768, 1280×800) the lesson editor is the main column, the side panel a narrow one and the
preview a toggle; from 1600 px the preview sits beside the editor; at 360 px nothing scrolls
sideways, the side panel moves under the editor, and the controls fit and are big enough to tap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support import ServerProcess, dev_user
from tests.support.web import launch, screenshot, signed_in
from tests.web.test_web_live import add_collaborator, make_course, open_lesson, select_text, type_at_end

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    expect.set_options(timeout=20_000)  # a loaded machine: these pages make several requests each
    try:
        async for b in launch():
            yield b
    finally:
        expect.set_options(timeout=5_000)


async def box(page: Page, css: str) -> dict[str, float]:
    found = await page.locator(css).first.bounding_box()
    assert found is not None, f"{css} is not laid out"
    return {"x": found["x"], "y": found["y"], "width": found["width"], "height": found["height"]}


async def overflow(page: Page) -> int:
    """How far the page scrolls sideways (0: not at all)."""
    extra: int = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    return extra


# visible controls whose box leaves the viewport sideways, or is smaller than 24×24 (WCAG 2.5.8)
MISFITS = """() => [...document.querySelectorAll('button, input, select, textarea, a.button')]
  .filter((el) => el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden' && !el.closest('.sr-only'))
  .map((el) => [el, el.getBoundingClientRect()])
  .filter(([el, r]) => r.left < 0 || r.right > document.documentElement.clientWidth || r.width < 24 || r.height < 24)
  .map(([el, r]) => `${el.outerHTML.slice(0, 80)} at ${Math.round(r.left)}..${Math.round(r.right)} (${Math.round(r.width)}×${Math.round(r.height)})`)"""


@pytest.mark.parametrize("size", [(1366, 768), (1280, 800)])
async def test_laptop_screen_gives_the_editor_the_room(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient, size: tuple[int, int]
) -> None:
    width, height = size
    alice = await dev_user(client, "Alice")
    course = await make_course(client, alice)
    ctx, page, console = await signed_in(browser, server.base_url, alice, viewport={"width": width, "height": height})
    try:
        await open_lesson(page, course.lesson_id)
        editor = await box(page, ".body-editor .cm-editor")
        side = await box(page, "aside.side")
        # the editor is the main column: most of the screen, several times the side panel
        assert editor["width"] / width >= 0.65, (editor, width)
        assert side["width"] <= 280 and editor["width"] >= 3 * side["width"], (editor, side)
        assert side["x"] >= editor["x"] + editor["width"]  # beside it, on the right
        # the editor fills the screen's height below the bars, and its top is on the first screen
        assert editor["y"] < height / 3 and editor["y"] + editor["height"] >= height - 120, (editor, height)
        assert await overflow(page) == 0

        # the preview is a toggle: closed for an editor here, opened under the editor (which keeps its width)
        toggle = page.get_by_role("button", name="Preview")
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await expect(page.get_by_test_id("preview")).to_be_hidden()
        await toggle.click()
        await expect(toggle).to_have_attribute("aria-expanded", "true")
        await expect(page.get_by_test_id("preview").locator("h1")).to_have_text("Photosynthesis")
        preview = await box(page, "[data-testid=preview]")
        assert preview["y"] >= editor["y"] + editor["height"]
        assert (await box(page, ".body-editor .cm-editor"))["width"] == editor["width"]
        # typing shows in the preview; the choice is remembered on the next visit
        await type_at_end(page, "\n## Stomata\n")
        await expect(page.get_by_test_id("preview").locator("h2")).to_have_text("Stomata")
        await page.reload()
        await expect(page.get_by_role("button", name="Preview")).to_have_attribute("aria-expanded", "true")
        await expect(page.get_by_test_id("preview")).to_be_visible()
        await page.get_by_role("button", name="Preview").click()
        await expect(page.get_by_test_id("preview")).to_be_hidden()
    finally:
        await ctx.close()
    assert console.errors == []


async def test_wide_screen_shows_the_preview_beside_the_editor(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice = await dev_user(client, "Alice")
    course = await make_course(client, alice)
    ctx, page, console = await signed_in(browser, server.base_url, alice, viewport={"width": 1680, "height": 1000})
    try:
        await open_lesson(page, course.lesson_id)
        await expect(page.get_by_role("button", name="Preview")).to_have_attribute("aria-expanded", "true")
        editor = await box(page, ".body-editor .cm-editor")
        preview = await box(page, "[data-testid=preview]")
        side = await box(page, "aside.side")
        assert editor["x"] + editor["width"] <= preview["x"] < side["x"], (editor, preview, side)
        assert editor["width"] > preview["width"] > side["width"], (editor, preview, side)
        assert await overflow(page) == 0
    finally:
        await ctx.close()
    assert console.errors == []


async def test_360_px_wide(browser: Browser, server: ServerProcess, client: httpx.AsyncClient) -> None:
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob")
    carol = await dev_user(client, "Carol")
    course = await make_course(client, alice, publish=True)
    await add_collaborator(client, course, bob, "editor")
    (await client.put(f"/api/courses/{course.course_id}/enrollment", headers=carol.headers)).raise_for_status()
    post: dict[str, Any] = (await client.post(f"/api/courses/{course.course_id}/forum/posts",
                                              json={"title": "Why green?", "content": "A long question " * 20},
                                              headers=alice.headers)).json()
    (await client.post(f"/api/forum/posts/{post['id']}/replies", json={"content": "Because."},
                       headers=bob.headers)).raise_for_status()
    phone = {"width": 360, "height": 740}
    ctx_a, page, console_a = await signed_in(browser, server.base_url, alice, viewport=phone)
    ctx_c, page_c, console_c = await signed_in(browser, server.base_url, carol, viewport=phone)
    try:
        # the editor: full width, the side panel under it, the bar's controls on screen; typing works
        await open_lesson(page, course.lesson_id)
        editor = await box(page, ".body-editor .cm-editor")
        side = await box(page, "aside.side")
        assert editor["width"] >= 300 and side["y"] >= editor["y"] + editor["height"], (editor, side)
        assert await overflow(page) == 0
        assert await page.evaluate(MISFITS) == []
        await type_at_end(page, "\nOn a phone.")
        await expect(page.get_by_test_id("saved")).to_have_text("Saved", timeout=10_000)
        await page.get_by_role("button", name="Preview").click()
        await expect(page.get_by_test_id("preview")).to_contain_text("On a phone.")
        assert await overflow(page) == 0
        await screenshot(page, "lesson-360.png")

        # the learner's suggestion form, opened on a selection, fits too
        await open_lesson(page_c, course.lesson_id, live=False)
        await select_text(page_c, "sugar")
        await page_c.get_by_test_id("suggest-start").click()
        await expect(page_c.get_by_test_id("suggest-replacement")).to_be_focused()
        assert await overflow(page_c) == 0
        assert await page_c.evaluate(MISFITS) == []

        # the other pages
        for path, ready in ((f"/courses/{course.course_id}", page.get_by_role("heading", name="Outline")),
                            (f"/threads/{post['id']}", page.get_by_test_id("reply")),
                            ("/me", page.get_by_role("heading", name="Flashcards")),
                            ("/", page.get_by_test_id("course-card").first)):
            await page.goto(path)
            await expect(ready).to_be_visible()
            assert await overflow(page) == 0, path
            assert await page.evaluate(MISFITS) == [], path
        await page.get_by_test_id("bell").click()
        panel = await box(page, "[data-testid=notif-panel]")
        assert panel["x"] >= 0 and panel["x"] + panel["width"] <= 360, panel
    finally:
        await ctx_a.close()
        await ctx_c.close()
    assert console_a.errors == [] and console_c.errors == []
