"""Media in Chromium: a file dropped or picked in one editor is uploaded (with a progress bar) and its
Markdown link appears in the co-editor's editor; a refused file says why (415 type, 413 size); the
course's media library lists files with where they are used and deletes them; a video and an audio
lesson show a player; a pasted image is uploaded with the progress bar shown meanwhile."""

from __future__ import annotations

import asyncio
import base64
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.support import ServerProcess, dev_user, running
from tests.support.web import launch, screenshot, signed_in, signed_in_pages

pytestmark = pytest.mark.browser

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
MP4 = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 40
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 32
CAP = 64 * 1024  # MEDIA_MAX_BYTES of small_cap_server
BODY = "# Volcanoes\n\nMagma rises.\n"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    expect.set_options(timeout=20_000)  # a loaded machine: pages here make several requests each
    async for b in launch():
        yield b
    expect.set_options(timeout=5_000)


@pytest.fixture(scope="module")
def small_cap_server(database_url: str) -> Iterator[ServerProcess]:
    """A server of its own whose upload cap (MEDIA_MAX_BYTES) is 64 KiB, so a 413 needs no 50 MiB file."""
    data_dir = Path(tempfile.mkdtemp(prefix="scr-web-media-"))
    with running(ServerProcess(database_url=database_url, data_dir=data_dir,
                               env={"RATE_LIMIT_PER_MINUTE": "0", "MEDIA_MAX_BYTES": str(CAP)})) as proc:
        yield proc


async def open_lesson(page: Page, lesson_id: str) -> None:
    await page.goto(f"/lessons/{lesson_id}")
    await expect(page.get_by_test_id("conn-status")).to_have_text("Live")
    await expect(page.locator(".body-editor .cm-content")).to_contain_text("Magma rises")


async def drop_file(page: Page, name: str, data: bytes, mime: str) -> None:
    """Drop a file on the body editor as a person dragging it from their desktop would."""
    transfer = await page.evaluate_handle(
        """([name, b64, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))
            const dt = new DataTransfer()
            dt.items.add(new File([bytes], name, { type: mime }))
            return dt
        }""", [name, base64.b64encode(data).decode(), mime])
    await page.dispatch_event(".body-editor .cm-content", "drop", {"dataTransfer": transfer})


async def test_dropped_image_reaches_the_co_editor_and_the_library(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob")
    r = await client.post("/api/courses", json={"title": "Geology"}, headers=alice.headers)
    r.raise_for_status()
    course_id = r.json()["id"]
    unit = (await client.post(f"/api/courses/{course_id}/units", json={"title": "Rocks"},
                              headers=alice.headers)).json()
    created = await client.post(f"/api/units/{unit['id']}/lessons", json={
        "title": "Volcanoes", "content_type": "text", "content": {"body": BODY}}, headers=alice.headers)
    created.raise_for_status()
    lesson = created.json()["id"]
    added = await client.post(f"/api/courses/{course_id}/collaborators",
                              json={"clerk_id": bob.clerk_id, "role": "editor"}, headers=alice.headers)
    added.raise_for_status()

    async with signed_in_pages(browser, server.base_url, alice, bob) as (page_a, page_b):
        await asyncio.gather(open_lesson(page_a, lesson), open_lesson(page_b, lesson))
        await page_a.locator(".body-editor .cm-content").click()
        await page_a.keyboard.press("Control+End")

        # an image dropped in Alice's editor: uploaded, linked at her cursor, seen by Bob
        await drop_file(page_a, "crater.png", PNG, "image/png")
        await expect(page_a.get_by_test_id("upload-status")).to_have_text("Added crater.png.")
        await expect(page_b.locator(".body-editor .cm-content")).to_contain_text("![crater.png](/media/")
        toggle = page_a.get_by_test_id("preview-toggle")  # the preview sits behind a toggle on a laptop screen
        if await toggle.get_attribute("aria-expanded") != "true":
            await toggle.click()
        await expect(page_a.get_by_test_id("preview").get_by_role("img", name="crater.png")).to_be_visible()
        media = (await client.get(f"/api/lessons/{lesson}/media", headers=alice.headers)).json()["items"]
        assert len(media) == 1 and media[0]["mime_type"] == "image/png" and media[0]["size_bytes"] == len(PNG)
        text_b: str = await page_b.evaluate("() => document.querySelector('.body-editor').editorView.state.doc.toString()")
        assert text_b == BODY + f"![crater.png]({media[0]['url']})\n"

        # a video picked with the button (the file input the drop handler shares) gets a player in the preview
        await page_b.get_by_test_id("media-input").set_input_files(
            files=[{"name": "eruption.mp4", "mimeType": "video/mp4", "buffer": MP4}])
        await expect(page_b.get_by_test_id("upload-status")).to_have_text("Added eruption.mp4.")
        await expect(page_a.locator(".body-editor .cm-content")).to_contain_text("[eruption.mp4](/media/")
        await expect(page_a.get_by_test_id("preview").locator("video")).to_have_attribute("src", re.compile(r"^/media/[0-9a-f]{32}\.mp4$"))

        # the course's media library: size, type, where each file is used; delete
        await expect(page_a.get_by_test_id("saved")).to_have_text("Saved")
        # "Saved" is the update log; the library reads lessons.content, which the room writes within
        # 2 s of the last edit (Bob's page keeps the room open): wait until REST has both links (a
        # waited-for function is not awaited, so each poll starts a fetch and reads the last answer)
        await page_a.wait_for_function(
            """(lesson) => {
                const w = window
                if (!w.__bodyFetch) {
                    const token = JSON.parse(localStorage.getItem('scriptorium.session')).token
                    w.__bodyFetch = fetch(`/api/lessons/${lesson}`, { headers: { authorization: `Bearer ${token}` } })
                        .then((r) => r.json())
                        .then((j) => { w.__body = j.content?.body || '' })
                        .finally(() => { w.__bodyFetch = null })
                }
                const body = w.__body || ''
                return body.includes('![crater.png](/media/') && body.includes('[eruption.mp4](/media/')
            }""", arg=lesson, polling=200, timeout=15_000)
        await page_a.goto(f"/courses/{course_id}")
        library = page_a.get_by_test_id("media-library")
        rows = library.get_by_test_id("media-row")
        await expect(rows).to_have_count(2)
        png_row = rows.filter(has_text="image/png")
        await expect(png_row).to_contain_text(f"{len(PNG)} B")
        await expect(png_row.locator(".used-in")).to_have_text("Used in Volcanoes")
        await screenshot(page_a, "media-library.png")
        await png_row.get_by_role("button", name="Delete").click()
        await png_row.get_by_role("button", name="Yes, delete").click()
        await expect(rows).to_have_count(1)
        await expect(rows).to_contain_text("video/mp4")
        remaining = (await client.get(f"/api/lessons/{lesson}/media", headers=alice.headers)).json()["items"]
        assert [m["mime_type"] for m in remaining] == ["video/mp4"]

        # a video lesson plays its media
        video = await client.post(f"/api/units/{unit['id']}/lessons", json={
            "title": "Eruption film", "content_type": "video"}, headers=alice.headers)
        video.raise_for_status()
        uploaded = await client.post(f"/api/lessons/{video.json()['id']}/media",
                                     files={"file": ("film.mp4", MP4, "video/mp4")}, headers=alice.headers)
        uploaded.raise_for_status()
        patched = await client.patch(f"/api/lessons/{video.json()['id']}", headers=alice.headers,
                                     json={"content": {"media_id": uploaded.json()["id"]}})
        patched.raise_for_status()
        await page_a.goto(f"/lessons/{video.json()['id']}")
        player = page_a.get_by_test_id("lesson-player")
        await expect(player.locator("video")).to_have_attribute("src", uploaded.json()["url"])
        await expect(player.get_by_role("link", name="Watch the video")).to_be_visible()

    # a refused file says why, and nothing is inserted (its 415 is the one console error: Chromium
    # logs every failed request)
    ctx, page, console = await signed_in(browser, server.base_url, alice)
    try:
        await page.goto(f"/lessons/{video.json()['id']}")  # a lesson whose body links to nothing
        await expect(page.get_by_test_id("conn-status")).to_have_text("Live")
        before = await page.evaluate("() => document.querySelector('.body-editor').editorView.state.doc.toString()")
        await page.get_by_test_id("media-input").set_input_files(
            files=[{"name": "notes.html", "mimeType": "text/html", "buffer": b"<!doctype html><p>hi</p>"}])
        status = page.get_by_test_id("upload-status")
        await expect(status).to_contain_text("notes.html was not added: this type of file is not accepted.")
        await expect(status).to_have_class("upload-status error")
        after = await page.evaluate("() => document.querySelector('.body-editor').editorView.state.doc.toString()")
        assert after == before
        stored = (await client.get(f"/api/lessons/{video.json()['id']}/media", headers=alice.headers)).json()["items"]
        assert [m["mime_type"] for m in stored] == ["video/mp4"]
    finally:
        await ctx.close()
    assert len(console.errors) == 1 and "415" in console.errors[0], console.errors


async def test_paste_progress_too_large_and_audio_player(browser: Browser, small_cap_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=small_cap_server.base_url, timeout=30) as client:
        alice = await dev_user(client, "Alice")
        r = await client.post("/api/courses", json={"title": "Seismology"}, headers=alice.headers)
        r.raise_for_status()
        course_id = r.json()["id"]
        unit = (await client.post(f"/api/courses/{course_id}/units", json={"title": "Waves"},
                                  headers=alice.headers)).json()
        created = await client.post(f"/api/units/{unit['id']}/lessons", json={
            "title": "Volcanoes", "content_type": "text", "content": {"body": BODY}}, headers=alice.headers)
        created.raise_for_status()
        lesson = created.json()["id"]
        audio = await client.post(f"/api/units/{unit['id']}/lessons", json={
            "title": "Rumbles", "content_type": "audio"}, headers=alice.headers)
        audio.raise_for_status()
        audio_id = audio.json()["id"]
        uploaded = await client.post(f"/api/lessons/{audio_id}/media",
                                     files={"file": ("rumble.mp3", MP3, "audio/mpeg")}, headers=alice.headers)
        uploaded.raise_for_status()
        (await client.patch(f"/api/lessons/{audio_id}", headers=alice.headers,
                            json={"content": {"media_id": uploaded.json()["id"]}})).raise_for_status()

        ctx, page, console = await signed_in(browser, small_cap_server.base_url, alice)
        try:
            # the first upload is held at the network until the progress bar has been seen
            release = asyncio.Event()

            async def hold(route: Route) -> None:
                if route.request.method == "POST":
                    await release.wait()
                await route.continue_()

            await page.route("**/api/lessons/*/media", hold)
            await open_lesson(page, lesson)
            await page.locator(".body-editor .cm-content").click()
            await page.keyboard.press("Control+End")

            # an image pasted into the editor (a ClipboardEvent holding a file, as a screenshot pasted is)
            await page.evaluate(
                """([name, b64]) => {
                    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))
                    const dt = new DataTransfer()
                    dt.items.add(new File([bytes], name, { type: 'image/png' }))
                    document.querySelector('.body-editor .cm-content').dispatchEvent(
                        new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }))
                }""", ["pasted.png", base64.b64encode(PNG).decode()])
            bar = page.get_by_test_id("upload-progress")
            status = page.get_by_test_id("upload-status")
            await expect(bar).to_be_visible()
            await expect(page.get_by_role("progressbar", name="Upload progress")).to_be_visible()
            await expect(status).to_have_text("Uploading pasted.png…")
            release.set()
            await expect(status).to_have_text("Added pasted.png.")
            await expect(bar).to_be_hidden()
            await page.unroute("**/api/lessons/*/media", hold)
            media = (await client.get(f"/api/lessons/{lesson}/media", headers=alice.headers)).json()["items"]
            assert [(m["mime_type"], m["size_bytes"]) for m in media] == [("image/png", len(PNG))]
            text = await page.evaluate("() => document.querySelector('.body-editor').editorView.state.doc.toString()")
            assert text == BODY + f"![pasted.png]({media[0]['url']})\n"

            # a file over the cap: the 413 says it is too large, nothing is inserted or stored
            big = PNG + b"\x00" * (CAP + 1000 - len(PNG))
            await page.get_by_test_id("media-input").set_input_files(
                files=[{"name": "huge.png", "mimeType": "image/png", "buffer": big}])
            await expect(status).to_have_text(
                f"huge.png was not added: it is too large. The file is over {CAP} bytes.")
            await expect(status).to_have_class("upload-status error")
            await expect(bar).to_be_hidden()
            after = await page.evaluate("() => document.querySelector('.body-editor').editorView.state.doc.toString()")
            assert after == text
            stored = (await client.get(f"/api/lessons/{lesson}/media", headers=alice.headers)).json()["items"]
            assert len(stored) == 1

            # an audio lesson plays its file (above the rendered lesson: an editor opens the preview)
            await page.goto(f"/lessons/{audio_id}")
            toggle = page.get_by_test_id("preview-toggle")
            if await toggle.get_attribute("aria-expanded") != "true":
                await toggle.click()
            player = page.get_by_test_id("lesson-player")
            await expect(player.locator("audio")).to_be_visible()
            await expect(player.locator("audio")).to_have_attribute("src", uploaded.json()["url"])
            await expect(player.locator("audio")).to_have_accessible_name("Rumbles (audio)")
            await expect(player.get_by_role("link", name="Listen to the audio")).to_have_attribute(
                "href", uploaded.json()["url"])
        finally:
            await ctx.close()
        # the 413 is the one console error (Chromium logs every failed request)
        assert len(console.errors) == 1 and "413" in console.errors[0], console.errors
