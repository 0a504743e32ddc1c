"""A deleted user's open sockets end (§2, §7; issue 11, fixa item 2).

Before: the collab re-check re-read the user row but ignored ``deleted_at`` and the /ws re-check
never looked at it, so a user deleted by the ``user.deleted`` webhook kept editing and receiving
live events on the sockets opened before. Now the collab socket is closed 4401 and each /ws
subscription (``user:me`` included) ends with ``error`` ``not_found`` within a re-check interval.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect

from tests.adversarial.test_deleted_users import deliver
from tests.api.users.test_auth import clerk_env, token
from tests.support import ServerProcess, running
from tests.support.collab import YClient, make_lesson

WS_RECHECK = 1.0


@pytest.fixture(scope="module")
def clerk_server(database_url: str, data_dir: Path) -> Iterator[ServerProcess]:
    with running(ServerProcess(database_url=database_url, data_dir=data_dir,
                               env=clerk_env(WS_RECHECK_SECONDS=str(WS_RECHECK)))) as proc:
        yield proc


@pytest.fixture(scope="module")
async def clerk(clerk_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=clerk_server.base_url, timeout=30) as c:
        yield c


async def test_deleting_a_user_ends_their_open_collab_and_ws_sockets(
        clerk_server: ServerProcess, clerk: httpx.AsyncClient, db: AsyncEngine) -> None:
    uid = f"user_{uuid.uuid4().hex[:8]}"
    jwt = token(sub=uid, email=f"{uid}@example.com", name="Mallory", image_url="https://img.test/m.png")
    assert (await clerk.get("/api/me", headers={"Authorization": f"Bearer {jwt}"})).status_code == 200
    lesson = await make_lesson(db, uid)
    editor = await YClient.connect(clerk_server.ws_url, lesson.id, jwt)
    async with connect(f"{clerk_server.ws_url}/ws?token={jwt}") as live:
        await live.send(json.dumps({"type": "subscribe", "channel": "user:me"}))
        frame = json.loads(await asyncio.wait_for(live.recv(), 10))
        assert frame["type"] == "subscribed", frame
        await deliver(clerk, "user.deleted", {"id": uid, "deleted": True})
        loop = asyncio.get_running_loop()
        started = loop.time()
        # collab re-checks every 2 s, /ws every WS_RECHECK s (batched): both well within 10 s
        frame = json.loads(await asyncio.wait_for(live.recv(), 10))
        ws_after = loop.time() - started
        assert frame["type"] == "error" and frame["code"] == "not_found", frame
        assert await editor.wait_closed(10) == 4401
        collab_after = loop.time() - started
    print(f"\n/ws subscription ended after {ws_after:.1f} s, collab closed after {collab_after:.1f} s")
