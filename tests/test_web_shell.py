"""The web app's shell: served from web/dist, SPA fallback, config route, sign-in, small screens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support import ServerProcess, dev_user
from tests.web_support import Console, launch

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async for b in launch():
        yield b


async def test_index_assets_and_spa_fallback(client: httpx.AsyncClient) -> None:
    index = await client.get("/")
    assert index.status_code == 200
    assert '<div id="toasts"' in index.text or 'id="toasts"' in index.text
    asset = index.text.split('src="', 1)[1].split('"', 1)[0]
    assert asset.startswith("/assets/")
    js = await client.get(asset)
    assert js.status_code == 200
    assert "immutable" in js.headers["cache-control"]
    assert "javascript" in js.headers["content-type"]

    # app paths give index.html to a browser; API and infra paths keep their own answers
    page = await client.get(f"/courses/{uuid.uuid4()}", headers={"accept": "text/html"})
    assert page.status_code == 200 and "Scriptorium" in page.text
    api_missing = await client.get("/api/definitely-not-here", headers={"accept": "text/html"})
    assert api_missing.status_code == 404
    assert api_missing.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/assets/nope.js")).status_code == 404
    assert (await client.get("/healthz")).status_code == 200

    config = await client.get("/api/config")
    assert config.json() == {"auth_mode": "dev", "clerk_publishable_key": None}


async def test_no_secrets_in_bundle(client: httpx.AsyncClient) -> None:
    index = await client.get("/")
    text = index.text
    for marker in ("BEGIN PRIVATE KEY", "sk_live_", "sk_test_", "whsec_"):
        assert marker not in text
    asset = text.split('src="', 1)[1].split('"', 1)[0]
    js = (await client.get(asset)).text
    for marker in ("BEGIN PRIVATE KEY", "sk_live_", "sk_test_", "whsec_"):
        assert marker not in js


async def test_sign_in_and_small_screen(browser: Browser, server: ServerProcess) -> None:
    context = await browser.new_context(base_url=server.base_url, viewport={"width": 360, "height": 740})
    page = await context.new_page()
    console = Console()
    console.attach(page)
    name = f"Zoe {uuid.uuid4().hex[:6]}"
    await page.goto("/me")
    await expect(page).to_have_url(f"{server.base_url}/signin?next=%2Fme")
    await page.get_by_label("Name").fill(name)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_test_id("me-name")).to_have_text(name)
    await expect(page.get_by_role("heading", name="Me")).to_be_visible()
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Courses")).to_be_visible()
    # no horizontal scrolling at 360 px
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360
    # keyboard: the skip link is the first stop
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await context.close()
    assert console.errors == []


async def test_anonymous_reader_sees_the_public_catalogue(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    author = await dev_user(client, "Ada")
    title = f"Public botany {uuid.uuid4().hex[:6]}"
    course = (await client.post("/api/courses", json={"title": title}, headers=author.headers)).json()
    unit = (await client.post(f"/api/courses/{course['id']}/units", json={"title": "U"}, headers=author.headers)).json()
    (await client.post(f"/api/units/{unit['id']}/lessons",
                       json={"title": "Roots", "content_type": "text", "content": {"body": "Roots *drink*."}},
                       headers=author.headers)).raise_for_status()
    (await client.post(f"/api/courses/{course['id']}/publish", headers=author.headers)).raise_for_status()

    context = await browser.new_context(base_url=server.base_url)
    page = await context.new_page()
    console = Console()
    console.attach(page)
    await page.goto("/")
    await page.get_by_label("Search courses").fill(title)
    await page.get_by_role("link", name=title).click()
    await expect(page.get_by_role("heading", name=title)).to_be_visible()
    await page.get_by_role("link", name="Roots").click()
    await expect(page.get_by_test_id("preview").locator("em")).to_have_text("drink")
    await expect(page.get_by_test_id("role")).to_have_text("Read-only")
    await expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    await context.close()
    assert console.errors == []
