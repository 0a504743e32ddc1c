"""The web app in Firefox (Debian's firefox-esr over Marionette, see tests/support/firefox.py): the
core paths of the Chromium suite — co-editing converges both ways with another editor, "Saved"
comes from the server, a reply and its notification toast arrive live without a reload — with no
script errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.collab import YClient
from tests.support.firefox import Firefox
from tests.support import ServerProcess, dev_user, eventually
from tests.web.test_web_live import add_collaborator, make_course

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def firefox() -> AsyncIterator[Firefox]:
    browser = Firefox()
    try:
        await browser.start()
        yield browser
    finally:
        await browser.stop()


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
