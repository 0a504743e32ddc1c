"""Interop with the stock JavaScript client: yjs + y-websocket's WebsocketProvider under Node."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import ROOT, ServerProcess, dev_user, eventually
from tests.support.collab import YClient, lesson_row, make_lesson

JS = ROOT / "tests" / "js"

pytestmark = pytest.mark.node


def ensure_node_modules() -> None:
    if not (JS / "node_modules").exists():
        subprocess.run([str(ROOT / "scripts" / "test-deps")], check=True)


async def next_event(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert line, "the Node client exited early"
    event: dict[str, Any] = json.loads(line)
    return event


async def test_stock_y_websocket_client_interoperates(server: ServerProcess, client: httpx.AsyncClient,
                                                      db: AsyncEngine) -> None:
    ensure_node_modules()
    author = await dev_user(client, "Author")
    editor = await dev_user(client, "Editor")
    lesson = await make_lesson(db, author.clerk_id, title="Interop", body="Python and JS",
                               editors=(editor.clerk_id,))
    py = await YClient.connect(server.ws_url, lesson.id, author.token)
    proc = await asyncio.create_subprocess_exec(
        "node", str(JS / "interop.mjs"), server.ws_url, lesson.id, editor.token,
        cwd=JS, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        synced = await next_event(proc)
        assert synced == {"event": "synced", "title": "Interop", "body": "Python and JS"}

        async def js_edit_arrived() -> bool:
            return py.text()["body"] == "Python and JS + JS ✓"

        await eventually(js_edit_arrived, within=5)
        await eventually(lambda: _js_cursor(py), within=5)
        py.body.insert(0, "PY ")
        await py.set_awareness({"user": {"name": "py"}})
        saw = await next_event(proc)
        assert saw["event"] == "saw-python"
        assert saw["body"] == "PY Python and JS + JS ✓"
        assert {"user": {"name": "py"}} in saw["peers"]
        await py.close()
        left = await next_event(proc)  # the Python peer's cursor disappears when it leaves
        assert left["event"] == "python-left", left
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def materialised() -> bool:
        return (await lesson_row(db, lesson.id))["content"]["body"] == "PY Python and JS + JS ✓"

    await eventually(materialised, within=5)


async def _js_cursor(client: YClient) -> bool:
    return {"user": {"name": "js"}} in client.awareness.values()


def test_test_deps_script_is_executable() -> None:
    assert (ROOT / "scripts" / "test-deps").stat().st_mode & 0o111
    assert Path(JS / "package-lock.json").exists()
