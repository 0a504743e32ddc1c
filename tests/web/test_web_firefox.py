"""The web app in Firefox (Debian's firefox-esr over Marionette, see tests/support/firefox.py), at
parity with the Chromium suite: co-editing converges both ways with another editor, "Saved" comes
from the server; a Firefox editor and a Chromium editor see each other's cursor labelled with the
other's name; a learner in Firefox suggests an edit that the author, in Firefox, sees highlighted
and accepts; history shows a version and restores it; a reply and its notification toast arrive live
without a reload — with no script errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient
from tests.support.firefox import Firefox
from tests.support.web import launch, signed_in_pages
from tests.web.test_web_live import add_collaborator, make_course, open_lesson, type_at_end

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def firefox() -> AsyncIterator[Firefox]:
    browser = Firefox()
    try:
        await browser.start()
        yield browser
    finally:
        await browser.stop()


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    async for b in launch():
        yield b


BODY_TEXT = "return document.querySelector('.body-editor')?.editorView?.state.doc.toString() ?? null"


async def test_co_editing_in_firefox_with_another_editor(firefox: Firefox, server: ServerProcess,
                                                         client: httpx.AsyncClient) -> None:
    fiona = await dev_user(client, "Fiona")
    pat = await dev_user(client, "Pat")
    course = await make_course(client, fiona)
    await add_collaborator(client, course, pat, "editor")

    await firefox.sign_in(server.base_url, fiona.clerk_id, fiona.name, fiona.token)
    await firefox.goto(f"{server.base_url}/lessons/{course.lesson_id}")
    await firefox.until("return document.querySelector('[data-testid=conn-status]')?.textContent === 'Live'")
    await firefox.until(BODY_TEXT.replace("return ", "return (") + ")?.includes('Plants turn light')")

    # Pat edits from another client (pycrdt over the same y-websocket protocol)
    pat_client = await YClient.connect(server.ws_url, course.lesson_id, pat.token)
    try:
        # Fiona types real keystrokes at the end of the body
        await firefox.js("const v = document.querySelector('.body-editor').editorView;"
                         "v.focus(); v.dispatch({selection: {anchor: v.state.doc.length}})")
        await firefox.type_into(".body-editor .cm-content", "Typed in Firefox.")

        async def pat_sees_it() -> bool:
            return "Typed in Firefox." in str(pat_client.body)
        await eventually(pat_sees_it, within=10)

        pat_client.body.insert(0, "From Pat. ")
        await firefox.until(BODY_TEXT.replace("return ", "return (") + ")?.startsWith('From Pat. ')")
        ff_text = await firefox.js(BODY_TEXT)
        await eventually(lambda: _same(pat_client, ff_text), within=10)
        assert ff_text.startswith("From Pat. ") and ff_text.endswith("Typed in Firefox.")

        # "Saved" is the server's acknowledgement that Fiona's edits are committed
        await firefox.until("return document.querySelector('[data-testid=saved]')?.textContent === 'Saved'")

        async def stored() -> bool:
            lesson = (await client.get(f"/api/lessons/{course.lesson_id}", headers=fiona.headers)).json()
            return bool(lesson["content"]["body"] == ff_text)
        await eventually(stored, within=6)
    finally:
        await pat_client.close()
    assert await firefox.errors() == []


async def _same(peer: YClient, text: str) -> bool:
    return str(peer.body) == text


async def test_a_reply_and_its_toast_arrive_live_in_firefox(firefox: Firefox, server: ServerProcess,
                                                           client: httpx.AsyncClient) -> None:
    fiona = await dev_user(client, "Fiona")
    bob = await dev_user(client, "Bob")
    course = await make_course(client, fiona, publish=True)
    r = await client.post(f"/api/courses/{course.course_id}/forum/posts",
                          json={"title": "Stomata", "content": "When do they close?"}, headers=fiona.headers)
    r.raise_for_status()
    post = r.json()

    await firefox.sign_in(server.base_url, fiona.clerk_id, fiona.name, fiona.token)
    await firefox.goto(f"{server.base_url}/threads/{post['id']}")
    await firefox.until("return document.querySelector('.live-dot')?.dataset.status === 'live'")
    await firefox.js("document.querySelectorAll('[data-testid=toast]').forEach((t) => t.remove())")

    r = await client.post(f"/api/forum/posts/{post['id']}/replies", json={"content": "At night, mostly."},
                          headers=bob.headers)
    r.raise_for_status()
    await firefox.until("return [...document.querySelectorAll('[data-testid=reply]')]"
                        ".some((e) => e.textContent.includes('At night, mostly.'))")
    toast = await firefox.until("return document.querySelector('[data-testid=toast]')?.textContent")
    assert "Bob" in toast
    # the toast announces politely and does not take the focus
    assert await firefox.js("return document.querySelector('#toasts')?.getAttribute('aria-live')") == "polite"
    assert await firefox.js("return !document.activeElement?.closest('#toasts')")
    assert await firefox.errors() == []


LIVE = "return document.querySelector('[data-testid=conn-status]')?.textContent === 'Live'"


async def test_cursors_with_names_between_firefox_and_chromium(firefox: Firefox, chromium: Browser,
                                                               server: ServerProcess,
                                                               client: httpx.AsyncClient) -> None:
    fiona = await dev_user(client, "Fiona")
    pat = await dev_user(client, "Pat")
    course = await make_course(client, fiona)
    await add_collaborator(client, course, pat, "editor")

    await firefox.sign_in(server.base_url, fiona.clerk_id, fiona.name, fiona.token)
    await firefox.goto(f"{server.base_url}/lessons/{course.lesson_id}")
    await firefox.until(LIVE)
    async with signed_in_pages(chromium, server.base_url, pat) as (page,):
        await open_lesson(page, course.lesson_id)
        # each lists the other as present
        await expect(page.get_by_test_id("presence")).to_contain_text("Fiona")
        await firefox.until("return document.querySelector('[data-testid=presence]')?.textContent.includes('Pat')")

        # Fiona types in Firefox: Pat sees her text and her cursor, labelled with her name
        await firefox.js("const v = document.querySelector('.body-editor').editorView;"
                         "v.focus(); v.dispatch({selection: {anchor: v.state.doc.length}})")
        await firefox.type_into(".body-editor .cm-content", "Fiona writes.")
        await expect(page.locator(".body-editor .cm-content")).to_contain_text("Fiona writes.", timeout=10_000)
        await expect(page.locator(".cm-ySelectionInfo", has_text="Fiona")).to_be_visible(timeout=10_000)

        # Pat types in Chromium: Firefox shows his cursor, labelled "Pat", on screen
        await type_at_end(page, " Pat adds.")
        await firefox.until(BODY_TEXT.replace("return ", "return (") + ")?.endsWith('Pat adds.')")
        label = await firefox.until(
            "const l = [...document.querySelectorAll('.cm-ySelectionInfo')].find((e) => e.textContent === 'Pat');"
            "if (!l) return null; const r = l.getBoundingClientRect();"
            "return r.width > 0 && r.height > 0 && getComputedStyle(l).opacity === '1' ? l.textContent : null")
        assert label == "Pat"
        # ... at the end of the text, where Pat's caret is
        assert await firefox.js(
            "const caret = document.querySelector('.cm-ySelectionCaret'); const v = document.querySelector('.body-editor').editorView;"
            "return v.posAtDOM(caret) === v.state.doc.length")
    assert await firefox.errors() == []


async def test_suggestion_from_firefox_accepted_in_firefox(firefox: Firefox, server: ServerProcess,
                                                           client: httpx.AsyncClient) -> None:
    fiona = await dev_user(client, "Fiona")
    lena = await dev_user(client, "Lena")
    course = await make_course(client, fiona, publish=True)
    (await client.put(f"/api/courses/{course.course_id}/enrollment", headers=lena.headers)).raise_for_status()

    # Lena, a learner, selects "sugar" and proposes "glucose"
    await firefox.sign_in(server.base_url, lena.clerk_id, lena.name, lena.token)
    await firefox.goto(f"{server.base_url}/lessons/{course.lesson_id}")
    await firefox.until("return document.querySelector('[data-testid=role]')?.textContent.includes('suggest')")
    await firefox.until(BODY_TEXT.replace("return ", "return (") + ")?.includes('sugar')")
    await firefox.js("const v = document.querySelector('.body-editor').editorView; const at = v.state.doc.toString().indexOf('sugar');"
                     "v.focus(); v.dispatch({selection: {anchor: at, head: at + 5}})")
    await firefox.click("[data-testid=suggest-start]")
    assert await firefox.until("return document.querySelector('[data-testid=suggest-selection]')?.textContent") == "sugar"
    await firefox.type_into("[data-testid=suggest-replacement]", "glucose", clear=True)
    await firefox.type_into("[data-testid=suggest-comment]", "More precise")
    await firefox.click("[data-testid=suggest-send]")
    await firefox.until("return document.body.textContent.includes('Suggestion sent. The authors have been notified.')")
    assert await firefox.errors() == []

    # Fiona, the author, sees it listed and highlighted in the text, and accepts it
    await firefox.sign_in(server.base_url, fiona.clerk_id, fiona.name, fiona.token)
    await firefox.goto(f"{server.base_url}/lessons/{course.lesson_id}")
    await firefox.until(LIVE)
    item = await firefox.until("return document.querySelector('[data-testid=suggestion]')?.textContent")
    assert "glucose" in item and "More precise" in item
    assert "lena" in item.lower()  # who suggested it (her name, or her clerk id, user_lena_…)
    assert await firefox.until("return document.querySelector('.cm-suggestion')?.textContent") == "sugar"
    await firefox.click("[data-testid=suggestion] [data-testid=accept]")
    await firefox.until("return document.querySelector('[data-testid=suggestions]')?.textContent.includes('None open.')")
    await firefox.until(BODY_TEXT.replace("return ", "return (") + ")?.includes('light into glucose')")

    async def stored() -> bool:
        lesson = (await client.get(f"/api/lessons/{course.lesson_id}", headers=fiona.headers)).json()
        return "light into glucose" in lesson["content"]["body"]
    await eventually(stored, within=10)
    assert await firefox.errors() == []


async def test_history_shows_and_restores_a_version_in_firefox(firefox: Firefox, server: ServerProcess,
                                                               client: httpx.AsyncClient) -> None:
    fiona = await dev_user(client, "Fiona")
    course = await make_course(client, fiona)
    await firefox.sign_in(server.base_url, fiona.clerk_id, fiona.name, fiona.token)
    await firefox.goto(f"{server.base_url}/lessons/{course.lesson_id}")
    await firefox.until(LIVE)
    await firefox.js("const v = document.querySelector('.body-editor').editorView;"
                     "v.focus(); v.dispatch({selection: {anchor: v.state.doc.length}})")
    await firefox.type_into(".body-editor .cm-content", "Draft two.")
    await firefox.until("return document.querySelector('[data-testid=saved]')?.textContent === 'Saved'")
    await firefox.goto(f"{server.base_url}/")  # the last client leaving records a version

    async def version_with_draft() -> str | None:
        items = (await client.get(f"/api/lessons/{course.lesson_id}/versions", headers=fiona.headers)).json()["items"]
        for entry in items:
            full = (await client.get(f"/api/lessons/{course.lesson_id}/versions/{entry['id']}",
                                     headers=fiona.headers)).json()
            if "Draft two." in full["body"]:
                return str(entry["id"])
        return None
    vid = await eventually(version_with_draft, within=15)

    # the draft is deleted, then restored from the history panel
    await firefox.goto(f"{server.base_url}/lessons/{course.lesson_id}")
    await firefox.until(LIVE)
    await firefox.until(BODY_TEXT.replace("return ", "return (") + ")?.includes('Draft two.')")
    await firefox.js("const v = document.querySelector('.body-editor').editorView; const at = v.state.doc.toString().indexOf('Draft two.');"
                     "v.dispatch({changes: {from: at, to: at + 'Draft two.'.length}})")
    await firefox.until("return document.querySelector('[data-testid=saved]')?.textContent === 'Saved'")
    # the history panel listed the versions when the page opened (Refresh would rebuild the list)
    await firefox.until(f"return !!document.querySelector(\"[data-testid=versions] li[data-vid='{vid}'] button\")")
    await firefox.click(f"[data-testid=versions] li[data-vid='{vid}'] button")
    await firefox.until("return document.querySelector('.version-view')?.textContent.includes('Draft two.')")
    await firefox.click_button("Restore this version", within=".version-view")
    await firefox.until(BODY_TEXT.replace("return ", "return (") + ")?.includes('Draft two.')")

    async def stored() -> bool:
        lesson = (await client.get(f"/api/lessons/{course.lesson_id}", headers=fiona.headers)).json()
        return "Draft two." in lesson["content"]["body"]
    await eventually(stored, within=10)
    assert await firefox.errors() == []
