"""Playwright helpers for the browser tests: Debian's chromium, signed-in contexts, console checks."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from tests.support import ROOT, DevUser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The README's screenshots are refreshed on demand (UPDATE_SCREENSHOTS=1 ./scripts/test tests/web/test_web_live.py);
# ordinary runs write theirs under tests/.artifacts so the working tree stays clean.
SCREENSHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS")
               else ROOT / "tests" / ".artifacts" / "screenshots")


async def launch() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


class Console:
    """Collects a page's console errors and uncaught exceptions."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def attach(self, page: Page) -> None:
        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                self.errors.append(msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))


async def signed_in(browser: Browser, base_url: str, user: DevUser, *,
                    viewport: dict[str, int] | None = None,
                    expires_in: int = 3000) -> tuple[BrowserContext, Page, Console]:
    """A browser context where ``user`` is signed in (the session the sign-in page would store)."""
    context = await browser.new_context(base_url=base_url, viewport=viewport or {"width": 1280, "height": 860})
    session = {"sub": user.clerk_id, "name": user.name, "token": user.token, "expires_at": int(time.time()) + expires_in}
    await context.add_init_script(
        # (not on the about:blank a new page starts with: it has no storage)
        f"if (location.protocol.startsWith('http')) "
        f"localStorage.setItem('scriptorium.session', {json.dumps(json.dumps(session))})"
    )
    page = await context.new_page()
    console = Console()
    console.attach(page)
    return context, page, console


@asynccontextmanager
async def signed_in_pages(browser: Browser, base_url: str, *users: DevUser) -> AsyncIterator[tuple[Page, ...]]:
    """A page per user, each in its own signed-in context; every page opened in those contexts
    has its console watched. Closes the contexts, then asserts no page logged an error."""
    opened: list[tuple[BrowserContext, Page, Console]] = []
    try:
        for user in users:
            context, page, console = await signed_in(browser, base_url, user)
            context.on("page", console.attach)
            opened.append((context, page, console))
        yield tuple(page for _, page, _ in opened)
    finally:
        for context, _, _ in opened:
            await context.close()
    errors = [error for _, _, console in opened for error in console.errors]
    assert errors == [], errors


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    await page.screenshot(path=str(path))
    return path
