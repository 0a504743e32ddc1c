"""The web app's shell: served from web/dist, SPA fallback, config route, sign-in, small screens."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.async_api import Browser, Page, Route, expect

from tests.support import ROOT, ServerProcess, dev_user
from tests.support.web import Console, launch, signed_in

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
    dist = ROOT / "web" / "dist"
    files = [p for p in dist.rglob("*") if p.is_file()]
    assert any(p.suffix == ".js" for p in files)
    for path in files:
        text = path.read_text(errors="replace")
        for marker in ("BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY", "sk_live_", "sk_test_", "whsec_"):
            assert marker not in text, (path, marker)
        served = await client.get("/" + path.relative_to(dist).as_posix())
        assert served.status_code == 200 and served.content == path.read_bytes()


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
    await expect(page.get_by_role("heading", name="Me", exact=True)).to_be_visible()
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


async def test_clerk_mode_loads_clerk_only_then(
    browser: Browser, server: ServerProcess, database_url: str, data_dir: Path
) -> None:
    # dev mode (the default server) never asks for Clerk's script
    requested: list[str] = []
    context = await browser.new_context(base_url=server.base_url)
    page = await context.new_page()
    page.on("request", lambda req: requested.append(req.url))
    await page.goto("/signin")
    await expect(page.get_by_role("heading", name="Sign in (development mode)")).to_be_visible()
    await context.close()
    assert not [u for u in requested if "clerk" in u]

    # Clerk mode: /api/config exposes the publishable key and the page loads clerk-js from its frontend API
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    publishable = "pk_test_" + base64.b64encode(b"example-app.clerk.accounts.dev$").decode()
    clerk = ServerProcess(database_url=database_url, data_dir=data_dir,
                          env={"CLERK_JWT_KEY": pem, "CLERK_PUBLISHABLE_KEY": publishable}).start()
    try:
        async with httpx.AsyncClient(base_url=clerk.base_url) as c:
            assert (await c.get("/api/config")).json() == {"auth_mode": "clerk", "clerk_publishable_key": publishable}
            assert (await c.post("/api/dev/token", json={"sub": "user_x"})).status_code == 403
        context = await browser.new_context(base_url=clerk.base_url)
        page = await context.new_page()
        asked: list[str] = []

        async def fake_clerk(route: Route) -> None:
            asked.append(route.request.url)
            await route.fulfill(status=200, content_type="text/javascript",
                                body="window.Clerk = { load: async () => {}, user: null, session: null, "
                                     "addListener: () => {}, mountSignIn: (el) => { el.textContent = 'Clerk sign-in' } }")

        await context.route("https://example-app.clerk.accounts.dev/**", fake_clerk)
        await page.goto("/signin")
        await expect(page.locator("#clerk-sign-in")).to_have_text("Clerk sign-in")
        assert asked and asked[0].startswith("https://example-app.clerk.accounts.dev/npm/@clerk/clerk-js@5/")
        await context.close()
    finally:
        clerk.stop()


async def tab_to(page: Page, what: str, test: str, limit: int = 120) -> None:
    """Press Tab until the focused element passes ``test`` (JS over ``el``), as a keyboard user would."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate(f"(() => {{ const el = document.activeElement; return !!el && ({test}); }})()"):
            return
    raise AssertionError(f"Tab never reached {what}")


async def test_keyboard_only_sign_in_find_enroll_and_complete(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """Everything a learner needs, with the keyboard alone: sign in, search, open a course, enroll,
    mark a lesson complete; the focus is always visible (an outline or box-shadow)."""
    author = await dev_user(client, "Ada")
    word = uuid.uuid4().hex[:8]
    title = f"Lichens {word}"
    course = (await client.post("/api/courses", json={"title": title}, headers=author.headers)).json()
    unit = (await client.post(f"/api/courses/{course['id']}/units", json={"title": "U"}, headers=author.headers)).json()
    for name in ("Algae", "Fungi"):
        (await client.post(f"/api/units/{unit['id']}/lessons", json={"title": name, "content_type": "text"},
                           headers=author.headers)).raise_for_status()
    (await client.post(f"/api/courses/{course['id']}/publish", headers=author.headers)).raise_for_status()

    context = await browser.new_context(base_url=server.base_url)
    page = await context.new_page()
    console = Console()
    console.attach(page)
    focus_visible = ("(() => { const s = getComputedStyle(document.activeElement);"
                     " return s.outlineStyle !== 'none' || s.boxShadow !== 'none'; })()")
    try:
        await page.goto("/")
        await expect(page.get_by_role("heading", name="Courses")).to_be_visible()
        await tab_to(page, "the Sign in link", "el.tagName === 'A' && el.textContent.trim() === 'Sign in'")
        assert await page.evaluate(focus_visible)
        await page.keyboard.press("Enter")
        await tab_to(page, "the name field", "el.id === 'signin-name'")
        await page.keyboard.type(f"Kim {word}")
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("button", name="Sign out")).to_be_visible()

        await page.goto("/")
        await tab_to(page, "the search box", "el.id === 'q'")
        await page.keyboard.type(word)
        await expect(page.get_by_test_id("course-card")).to_have_count(1)
        await tab_to(page, "the course link", f"el.tagName === 'A' && el.textContent.includes({title!r})")
        assert await page.evaluate(focus_visible)
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()

        await tab_to(page, "Enroll", "el.tagName === 'BUTTON' && el.textContent === 'Enroll'")
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("button", name="Leave course")).to_be_visible()
        await tab_to(page, "the first lesson's checkbox", "el.getAttribute('aria-label') === 'Mark “Algae” complete'")
        await page.keyboard.press("Space")
        await expect(page.get_by_text("50% complete")).to_be_visible()
    finally:
        await context.close()
    assert console.errors == []


async def test_a_rejected_form_shows_the_servers_field_message(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """A 422 from the server reaches the person as its field and message, not as a script error."""
    user = await dev_user(client, "Rhea")
    context, page, console = await signed_in(browser, server.base_url, user)
    try:
        await page.goto("/")
        # spaces pass the input's `required` but the server strips them and refuses an empty title
        await page.get_by_label("New course title").fill("   ")
        await page.get_by_role("button", name="Create course").click()
        toast = page.get_by_test_id("toast").filter(has_text="Something went wrong")
        await expect(toast).to_contain_text("title: ")
        await expect(toast).to_contain_text("invalid fields")
    finally:
        await context.close()
    # the browser logs the refused request itself; nothing else may fail
    assert [e for e in console.errors if "status of 422" not in e] == []
