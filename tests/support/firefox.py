"""Firefox for the browser tests: Debian's firefox-esr driven over Marionette, its built-in remote
protocol (what geckodriver speaks to it).

Playwright's Firefox is a patched build downloaded from Playwright's servers, and geckodriver and
Mozilla's Python client (marionette_driver, whose mozrunner imports telnetlib, gone in Python
3.13) are not usable here, so this speaks the protocol itself: length-prefixed JSON frames,
``[0, id, command, params]`` → ``[1, id, error, result]``, the WebDriver commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support import eventually

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox") or "/usr/bin/firefox-esr"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
PREFS = {
    "marionette.port": 0,  # any free port, written to <profile>/MarionetteActivePort
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "dom.webnotifications.enabled": False,
}
# Script errors of the page, collected from the first script that runs after each navigation.
ERRORS_HOOK = """
window.__errors = window.__errors || [];
window.addEventListener('error', (e) => window.__errors.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason)));
"""


class MarionetteError(RuntimeError):
    pass


class Firefox:
    """A headless Firefox and one WebDriver session over Marionette."""

    def __init__(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="scr-firefox-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._ids = 0

    def _launch(self) -> None:
        (self.profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in PREFS.items()))
        with (self.profile / "firefox.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [FIREFOX, "--headless", "--marionette", "--no-remote", "--profile", str(self.profile),
                 "about:blank"], stdout=log, stderr=subprocess.STDOUT)

    async def start(self) -> None:
        await asyncio.to_thread(self._launch)
        port_file = self.profile / "MarionetteActivePort"

        async def port() -> int | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise MarionetteError(f"firefox exited with {self.proc.returncode}; see {self.profile}/firefox.log")
            text = port_file.read_text().strip() if port_file.exists() else ""
            return int(text) if text.isdigit() else None

        active = await eventually(port, within=60, interval=0.1)
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", active)
        hello = await self._read()
        assert isinstance(hello, dict) and hello.get("marionetteProtocol") == 3, hello
        await self.command("WebDriver:NewSession", {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": True}}})

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.command("WebDriver:DeleteSession"), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.command("Marionette:Quit", {"flags": ["eForceQuit"]}), 5)
        if self.writer is not None:
            self.writer.close()
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.proc.wait, 10)
            if self.proc.poll() is None:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    # --- the protocol ----------------------------------------------------------------------

    async def _read(self) -> Any:
        assert self.reader is not None
        size = int((await self.reader.readuntil(b":"))[:-1])
        return json.loads(await self.reader.readexactly(size))

    async def command(self, name: str, params: dict[str, Any] | None = None) -> Any:
        assert self.writer is not None
        self._ids += 1
        body = json.dumps([0, self._ids, name, params or {}]).encode()
        self.writer.write(str(len(body)).encode() + b":" + body)
        while True:
            kind, msg_id, error, result = await asyncio.wait_for(self._read(), 60)
            if kind == 1 and msg_id == self._ids:
                break
        if error:
            raise MarionetteError(f"{name}: {error.get('error')}: {error.get('message')}")
        return result

    # --- what the tests use ------------------------------------------------------------------

    async def js(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body; ``arguments`` are ``args``) in the page; its return value."""
        result = await self.command("WebDriver:ExecuteScript", {"script": script, "args": list(args)})
        return result.get("value")

    async def goto(self, url: str) -> None:
        await self.command("WebDriver:Navigate", {"url": url})
        await self.js(ERRORS_HOOK)

    async def find(self, css: str | None = None, *, xpath: str | None = None) -> str:
        """The WebDriver id of the first element matching ``css`` (or ``xpath``)."""
        using, value = ("xpath", xpath) if xpath is not None else ("css selector", css)
        found = await self.command("WebDriver:FindElement", {"using": using, "value": value})
        element: str = found["value"][ELEMENT]
        return element

    async def type_into(self, css: str, text: str, *, clear: bool = False) -> None:
        """Real key events into the element (at its current caret; into an emptied field with ``clear``)."""
        element = await self.find(css)
        if clear:
            await self.command("WebDriver:ElementClear", {"id": element})
        await self.command("WebDriver:ElementSendKeys", {"id": element, "text": text})

    async def click(self, css: str | None = None, *, xpath: str | None = None) -> None:
        """A real pointer click in the middle of the element (scrolled into view; refused if covered)."""
        await self.command("WebDriver:ElementClick", {"id": await self.find(css, xpath=xpath)})

    async def click_button(self, name: str, within: str = "") -> None:
        """Click the button whose text is ``name`` (under the element matching the CSS ``within``)."""
        scope = f"{within} " if within else ""
        element = await self.js(
            "return [...document.querySelectorAll(arguments[0] + 'button')]"
            ".find((b) => b.textContent.trim() === arguments[1] && b.getClientRects().length) ?? null",
            scope, name)
        if element is None:
            raise MarionetteError(f"no visible button {name!r} {('in ' + within) if within else ''}")
        await self.command("WebDriver:ElementClick", {"id": element[ELEMENT]})

    async def until(self, script: str, *args: Any, within: float = 15) -> Any:
        """Poll a page expression until it is truthy (a bounded wait on what the page shows)."""
        async def check() -> Any:
            return await self.js(script, *args)
        return await eventually(check, within=within, interval=0.05)

    async def sign_in(self, base_url: str, clerk_id: str, name: str | None, token: str) -> None:
        """Store the session the sign-in page would store (as the Chromium suite does)."""
        await self.goto(base_url + "/")
        session = {"sub": clerk_id, "name": name, "token": token, "expires_at": int(time.time()) + 3000}
        await self.js("localStorage.setItem('scriptorium.session', arguments[0])", json.dumps(session))

    async def errors(self) -> list[str]:
        found: list[str] = await self.js("return window.__errors || []")
        return found
