"""A Tiptap editor (``@tiptap/core`` + ``@tiptap/extension-collaboration`` + the stock
``@hocuspocus/provider``, tests/web/tiptap) in Chromium types into a lesson over ``WS /collab``
while the app's CodeMirror lesson page edits it over ``/collab/lessons/{id}``: each shows both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support import ROOT, ServerProcess, eventually
from tests.support.web import Console, launch, screenshot, signed_in_pages
from tests.web.test_web_live import body_text, co_authors, open_lesson, type_at_start

pytestmark = pytest.mark.browser

PAGE = ROOT / "tests" / "web" / "tiptap" / "index.html"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async for b in launch():
        yield b


async def test_tiptap_and_codemirror_co_edit_a_lesson(browser: Browser, server: ServerProcess,
                                                      client: httpx.AsyncClient) -> None:
    alice, bob, course = await co_authors(client)
    tiptap_context = await browser.new_context()
    tiptap = await tiptap_context.new_page()
    console = Console()
    console.attach(tiptap)
    try:
        async with signed_in_pages(browser, server.base_url, alice) as (codemirror,):
            await open_lesson(codemirror, course.lesson_id)
            query = urlencode({"ws": server.ws_url, "lesson": course.lesson_id, "token": bob.token})
            await tiptap.goto(f"{PAGE.as_uri()}?{query}")
            await expect(tiptap.locator("#status")).to_have_text("Live (read-write)", timeout=15_000)
            prose = tiptap.locator("#editor .ProseMirror")
            await expect(prose).to_contain_text("Plants turn light into sugar.")

            await prose.click()
            await tiptap.keyboard.press("Control+End")
            await tiptap.keyboard.type("Typed in Tiptap.", delay=15)
            await type_at_start(codemirror, "From CodeMirror. ")

            await expect(codemirror.locator(".body-editor .cm-content")).to_contain_text(
                "Typed in Tiptap.", timeout=10_000)
            await expect(prose).to_contain_text("From CodeMirror. # Photosynthesis", timeout=10_000)
            expected = "From CodeMirror. # Photosynthesis\n\nPlants turn light into sugar.\nTyped in Tiptap."

            async def codemirror_has_both() -> bool:
                return await body_text(codemirror) == expected

            await eventually(codemirror_has_both, within=10)
            tiptap_text = await tiptap.evaluate(
                "() => { const d = window.tiptapEditor.state.doc; return d.textBetween(0, d.content.size, '\\n') }")
            assert tiptap_text == expected
            await screenshot(tiptap, "tiptap-on-scriptorium.png")
    finally:
        await tiptap_context.close()
    assert console.errors == [], console.errors
