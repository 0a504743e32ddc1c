"""Deleted stays deleted (§2): no webhook delivery or token claim refills an anonymised user.

Measured before the tombstone: a ``user.updated`` delivered after ``user.deleted`` (Svix retries
and reorders) restored the deleted user's email and name, and the user's still-valid token kept
working and re-filled the row from its claims.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.users.test_auth import _user_row, clerk_env, clerk_user, signed, token
from tests.support import ServerProcess, running


@pytest.fixture(scope="module")
def clerk_server(database_url: str, data_dir: Path) -> Iterator[ServerProcess]:
    with running(ServerProcess(database_url=database_url, data_dir=data_dir, env=clerk_env())) as proc:
        yield proc


@pytest.fixture(scope="module")
async def clerk(clerk_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=clerk_server.base_url, timeout=30) as c:
        yield c


async def deliver(clerk: httpx.AsyncClient, event_type: str, data: dict[str, object]) -> str:
    body, headers = signed({"type": event_type, "data": data})
    response = await clerk.post("/api/webhooks/clerk", content=body, headers=headers)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


ANONYMOUS = {"email": None, "name": None, "image_url": None}


async def test_late_or_replayed_update_never_refills_a_deleted_user(clerk: httpx.AsyncClient,
                                                                    db: AsyncEngine) -> None:
    uid = f"user_{uuid.uuid4().hex[:8]}"
    await deliver(clerk, "user.created", clerk_user(uid, 1000))
    assert await deliver(clerk, "user.deleted", {"id": uid, "deleted": True}) == "anonymised"
    # A retried update from before the deletion, one stamped after it, one without a stamp,
    # and a late user.created: none of them brings the profile back.
    for event_type, stamp in (("user.updated", 2000), ("user.updated", 10**13), ("user.updated", None),
                              ("user.created", 500)):
        assert await deliver(clerk, event_type, clerk_user(uid, stamp, first="Back")) == "deleted"
        assert await _user_row(db, uid) == {"clerk_id": uid, **ANONYMOUS}


async def test_deletion_of_a_never_seen_user_blocks_a_late_create(clerk: httpx.AsyncClient,
                                                                  db: AsyncEngine) -> None:
    uid = f"user_{uuid.uuid4().hex[:8]}"
    await deliver(clerk, "user.deleted", {"id": uid, "deleted": True})
    assert await deliver(clerk, "user.created", clerk_user(uid, 1000)) == "deleted"
    assert await _user_row(db, uid) == {"clerk_id": uid, **ANONYMOUS}


async def test_a_deleted_users_valid_token_is_401_and_never_refills(clerk: httpx.AsyncClient,
                                                                   db: AsyncEngine) -> None:
    uid = f"user_{uuid.uuid4().hex[:8]}"
    jwt = token(sub=uid, email=f"{uid}@example.com", name="Mallory", image_url="https://img.test/m.png")
    headers = {"Authorization": f"Bearer {jwt}"}
    assert (await clerk.get("/api/me", headers=headers)).status_code == 200
    await deliver(clerk, "user.deleted", {"id": uid, "deleted": True})
    for method, path in (("GET", "/api/me"), ("PATCH", "/api/me"), ("GET", "/api/courses")):
        response = await clerk.request(method, path, headers=headers, json={"name": "Mallory again"}
                                       if method == "PATCH" else None)
        assert response.status_code == 401, f"{method} {path}: {response.status_code} {response.text}"
        assert response.headers["content-type"].startswith("application/problem+json")
    assert await _user_row(db, uid) == {"clerk_id": uid, **ANONYMOUS}
