"""The stock ``@hocuspocus/provider`` (npm, unchanged, under Node) against ``WS /collab``:
co-editing with y-websocket and pycrdt clients, read-only viewers, refused tokens, and 50
documents over one socket (tests/js/hocuspocus.mjs drives the provider)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth import DEV_ISSUER
from tests.collab.test_collab_js import JS, ensure_node_modules, next_event
from tests.collab.test_suggestions import version_of
from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient, lesson_row, make_lesson

pytestmark = pytest.mark.node


async def node(mode: str, server: ServerProcess, **args: Any) -> asyncio.subprocess.Process:
    ensure_node_modules()
    return await asyncio.create_subprocess_exec(
        "node", str(JS / "hocuspocus.mjs"), mode, server.ws_url, json.dumps(args),
        cwd=JS, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)


async def finished(proc: asyncio.subprocess.Process) -> None:
    try:
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def provider_sees_change(proc: asyncio.subprocess.Process, before: str, after: str,
                               change: Callable[[], Awaitable[None]]) -> None:
    """A ``coedit`` provider synced on ``before`` and saved sees ``after`` once ``change`` (a
    REST write to the lesson) is made."""
    try:
        synced = await next_event(proc)
        assert (synced["event"], synced["body"]) == ("synced", before), synced
        assert (await next_event(proc))["event"] == "saved"
        await change()
        saw = await next_event(proc)
        assert saw == {"event": "saw", "body": after}, saw
        await finished(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def go_on(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"next\n")
    await proc.stdin.drain()


async def test_provider_coedits_with_y_websocket_and_pycrdt(server: ServerProcess, client: httpx.AsyncClient,
                                                           db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    editor = await dev_user(client, "Editor")
    lesson = await make_lesson(db, author.clerk_id, title="Tiptap", body="Base", editors=(editor.clerk_id,))
    py = await YClient.connect(server.ws_url, lesson.id, author.token)
    hocus = await node("coedit", server, lesson=lesson.id, token=editor.token, text=" +HP", wait=["+YW", "+PY"])
    yws = await node("ywebsocket", server, lesson=lesson.id, token=author.token, text=" +YW", wait=["+HP", "+PY"])
    try:
        synced = await next_event(hocus)
        assert synced["event"] == "synced", synced
        assert (synced["scope"], synced["title"]) == ("read-write", "Tiptap")
        assert synced["body"].startswith("Base")
        assert (await next_event(yws))["event"] == "synced"
        saved = await next_event(hocus)  # the provider's own edit acknowledged (committed)
        assert saved["event"] == "saved", saved
        assert 1 in saved["statuses"] and 0 not in saved["statuses"], saved
        py.body.insert(len(str(py.body)), " +PY")
        for proc in (hocus, yws):
            saw = await next_event(proc)
            assert saw["event"] == "saw", saw
            assert {"+HP", "+YW", "+PY"} <= set(saw["body"].split())

        async def python_saw_both() -> bool:
            return {"+HP", "+YW", "+PY"} <= set(py.text()["body"].split())

        await eventually(python_saw_both, within=10)
        await finished(hocus)
        await finished(yws)
    finally:
        for proc in (hocus, yws):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    body = py.text()["body"]
    await py.close()

    async def materialised() -> bool:
        return (await lesson_row(db, lesson.id))["content"]["body"] == body

    await eventually(materialised, within=10)


async def test_viewer_is_read_only_and_its_updates_reach_no_one(server: ServerProcess, client: httpx.AsyncClient,
                                                               db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    viewer = await dev_user(client, "Viewer")
    lesson = await make_lesson(db, author.clerk_id, body="Shared", viewers=(viewer.clerk_id,))
    py = await YClient.connect(server.ws_url, lesson.id, author.token)
    proc = await node("viewer", server, lesson=lesson.id, token=viewer.token, text="VIEWER ", wait=["AFTER"])
    try:
        synced = await next_event(proc)
        assert (synced["event"], synced["scope"], synced["body"]) == ("synced", "readonly", "Shared")
        refused = await next_event(proc)  # the server answered its update: not applied
        assert refused == {"event": "refused", "status": 0, "unsynced": 1}, refused
        py.body.insert(len(str(py.body)), " AFTER")
        await go_on(proc)
        seen = await next_event(proc)
        assert seen["event"] == "body" and seen["body"] == "VIEWER Shared AFTER"  # its own, locally
        await finished(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    other = await YClient.connect(server.ws_url, lesson.id, author.token)
    assert py.text()["body"] == other.text()["body"] == "Shared AFTER"
    await other.close()
    await py.close()

    async def materialised() -> bool:
        return (await lesson_row(db, lesson.id))["content"]["body"] == "Shared AFTER"

    await eventually(materialised, within=10)


def expired_token(server: ServerProcess, sub: str) -> str:
    key = serialization.load_pem_private_key((server.data_dir / "dev-jwt-key.pem").read_bytes(), password=None)
    now = int(time.time())
    claims = {"sub": sub, "iss": DEV_ISSUER, "iat": now - 7200, "nbf": now - 7200, "exp": now - 60}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "dev"})  # type: ignore[arg-type]


async def test_bad_expired_and_unauthorised_tokens_fail_authentication(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    stranger = await dev_user(client, "Stranger")
    lesson = await make_lesson(db, author.clerk_id, published=True)
    cases = [
        ({"token": "not-a-token"}, "4401: The token is malformed."),
        ({"token": expired_token(server, author.clerk_id)}, "4401: The token has expired."),
        ({"token": ""}, "4401: Sign in to edit lessons."),
        ({"token": stranger.token}, "4403: Only the author, collaborators and admins may join."),
        ({"token": author.token, "lesson": str(uuid.uuid4())}, "4404: No such lesson."),
        ({"token": author.token, "name": "notes:" + lesson.id},
         "4404: Unknown document: documents are named lesson:<lesson id>."),
    ]
    for args, reason in cases:
        proc = await node("denied", server, **{"lesson": lesson.id, **args})
        try:
            answer = await next_event(proc)
            assert answer == {"event": "failed", "reason": reason, "scope": None}, (args, answer)
            await finished(proc)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_fifty_documents_over_one_socket(server: ServerProcess, client: httpx.AsyncClient,
                                               db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lessons = [await make_lesson(db, author.clerk_id, body=f"doc{i}") for i in range(50)]
    proc = await node("many", server, lessons=[lesson.id for lesson in lessons], token=author.token)
    try:
        converged = await next_event(proc)
        assert converged["event"] == "converged", converged
        for i, body in enumerate(converged["bodies"]):
            assert f"[A{i}]" in body and f"[B{i}]" in body and body.endswith(f"doc{i}")
        await go_on(proc)  # socket A's first document is closed by its provider (destroy)
        after = await next_event(proc)
        assert after["event"] == "still-open", after
        assert "[again" not in after["a0"] and "[B0-after]" not in after["a0"]  # closed: gets nothing more
        assert after["b0"].startswith("[B0-after]")  # the same document on socket B still works
        for i, body in enumerate(after["bodies"][1:], start=1):
            assert f"[again{i}]" in body
        await finished(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def materialised() -> bool:
        rows = [await lesson_row(db, lessons[i].id) for i in (0, 1, 49)]
        return (rows[0]["content"]["body"].startswith("[B0-after]")
                and "[again1]" in rows[1]["content"]["body"] and "[again49]" in rows[2]["content"]["body"])

    await eventually(materialised, within=10)


async def test_rest_restore_reaches_a_provider(server: ServerProcess, client: httpx.AsyncClient,
                                               db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, body="Original.")
    py = await YClient.connect(server.ws_url, lesson.id, author.token)
    py.body.insert(len(str(py.body)), " Changed.")
    await py.saved()
    await py.close()  # the last one leaves: a version of "Original. Changed."

    async def first_version() -> Any:
        r = await client.get(f"/api/lessons/{lesson.id}/versions", headers=author.headers)
        return r.json()["items"] or None

    version = (await eventually(first_version, within=10))[0]
    py = await YClient.connect(server.ws_url, lesson.id, author.token)
    del py.body[0:len(str(py.body))]
    py.body.insert(0, "Rewritten.")
    await py.saved()
    proc = await node("coedit", server, lesson=lesson.id, token=author.token, text="", wait=["Original. Changed."])

    async def restore() -> None:
        r = await client.post(f"/api/lessons/{lesson.id}/versions/{version['id']}/restore", headers=author.headers)
        assert r.status_code == 200, r.text

    await provider_sees_change(proc, "Rewritten.", "Original. Changed.", restore)
    await py.close()


async def test_accepted_suggestion_reaches_a_provider(server: ServerProcess, client: httpx.AsyncClient,
                                                      db: AsyncEngine) -> None:
    author, learner = await dev_user(client, "Author"), await dev_user(client, "Learner")
    lesson = await make_lesson(db, author.clerk_id, body="The cat sat.", published=True,
                               learners=(learner.clerk_id,))
    proc = await node("coedit", server, lesson=lesson.id, token=author.token, text="", wait=["The dog sat."])

    async def suggest_and_accept() -> None:
        created = await client.post(f"/api/lessons/{lesson.id}/suggested-edits", headers=learner.headers, json={
            "field": "body", "base_version": await version_of(db, lesson.id),
            "changes": [{"index": 4, "delete": 3, "insert": "dog"}]})
        assert created.status_code == 201, created.text
        accepted = await client.post(f"/api/suggested-edits/{created.json()['id']}/accept", headers=author.headers)
        assert accepted.status_code == 200 and accepted.json()["status"] == "accepted", accepted.text

    await provider_sees_change(proc, "The cat sat.", "The dog sat.", suggest_and_accept)
