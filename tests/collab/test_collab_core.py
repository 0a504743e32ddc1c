"""Live co-editing through real sockets: sync, persistence, access and close codes, awareness."""

from __future__ import annotations

import contextlib
import socket
import uuid

import httpx
from pycrdt import Map
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.exceptions import ConnectionClosed

from collab import protocol as p
from server.catalog.models import Collaborator
from server.editing.models import LessonUpdate, LessonVersion
from tests.support import ServerProcess, dev_user, eventually
from tests.support.collab import YClient, closed_with, converge, lesson_row, make_lesson


async def test_editors_sync_and_the_lesson_row_follows(server: ServerProcess, client: httpx.AsyncClient,
                                                       db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    editor = await dev_user(client, "Editor")
    lesson = await make_lesson(db, author.clerk_id, title="Commas", body="Use them.",
                               editors=(editor.clerk_id,))
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    b = await YClient.connect(server.ws_url, lesson.id, editor.token)
    # Seeded from the stored lesson, exactly once.
    assert a.text() == {"title": "Commas", "body": "Use them."}
    assert b.text() == a.text()

    a.body.insert(len(str(a.body)), " Wisely.")
    b.title.insert(0, "On ")
    text = await converge([a, b])
    assert text == {"title": "On Commas", "body": "Use them. Wisely."}

    async def materialised() -> bool:
        row = await lesson_row(db, lesson.id)
        return row["title"] == "On Commas" and row["content"]["body"] == "Use them. Wisely."

    await eventually(materialised, within=4)
    row = await lesson_row(db, lesson.id)
    assert row["content"]["keep"] == 1  # other content keys survive
    assert "<p>Use them. Wisely.</p>" in row["content"]["html"]
    assert row["revision"] >= 1
    async with db.connect() as conn:
        writers = (await conn.execute(select(LessonUpdate.user_id).where(
            LessonUpdate.lesson_id == lesson.lesson_id))).scalars().all()
    assert None in writers  # the seed
    assert {author.clerk_id, editor.clerk_id} <= set(writers)
    await a.close()
    await b.close()

    async def version_recorded() -> list[str] | None:
        async with db.connect() as conn:
            row = (await conn.execute(select(LessonVersion.contributors, LessonVersion.body).where(
                LessonVersion.lesson_id == lesson.lesson_id))).first()
        return list(row.contributors) if row else None

    contributors = await eventually(version_recorded, within=5)
    assert set(contributors) == {author.clerk_id, editor.clerk_id}


async def test_a_late_joiner_gets_everything_and_offline_edits_merge(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, body="")
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    a.body.insert(0, "one two three")
    b = await YClient.connect(server.ws_url, lesson.id, author.token)
    await converge([a, b])
    b.body.insert(0, ">> ")
    assert (await converge([a, b]))["body"] == ">> one two three"
    await a.close()
    await b.close()


async def test_close_codes(server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    stranger = await dev_user(client, "Stranger")
    learner = await dev_user(client, "Learner")
    draft = await make_lesson(db, author.clerk_id)
    published = await make_lesson(db, author.clerk_id, published=True, learners=(learner.clerk_id,))
    ws = server.ws_url
    assert await closed_with(ws, f"/collab/lessons/{draft.id}") == 4401
    assert await closed_with(ws, f"/collab/lessons/{draft.id}?token=not-a-jwt") == 4401
    assert await closed_with(ws, f"/collab/lessons/not-a-uuid?token={author.token}") == 4404
    assert await closed_with(ws, f"/collab/lessons/{uuid.uuid4()}?token={author.token}") == 4404
    assert await closed_with(ws, f"/collab/lessons/{draft.id}?token={stranger.token}") == 4404
    assert await closed_with(ws, f"/collab/lessons/{published.id}?token={learner.token}") == 4403
    assert await closed_with(ws, f"/collab/lessons/{published.id}?token={stranger.token}") == 4403
    # A cookie sent from another site.
    assert await closed_with(ws, f"/collab/lessons/{draft.id}", origin="https://evil.example",
                             additional_headers={"Cookie": f"__session={author.token}"}) == 4403
    # Same-origin cookie works.
    same = await YClient.connect(ws, draft.id, None, origin=server.base_url,
                                 additional_headers={"Cookie": f"__session={author.token}"})
    await same.close()
    # A message over 2 MiB.
    big = await YClient.connect(ws, draft.id, author.token)
    # The server may refuse the frame (close 1009) before the client has finished sending it.
    with contextlib.suppress(ConnectionClosed):
        await big.ws.send(p.update_frame(b"\x00" * (2 * 1024 * 1024 + 10)))
    assert await big.wait_closed() == 1009
    # A message just under 2 MiB is fine (dropped as a bad update, the socket stays).
    ok = await YClient.connect(ws, draft.id, author.token)
    await ok.ws.send(p.awareness_frame(b"\x00" * (2 * 1024 * 1024 - 100)))
    ok.body.insert(0, "still here ")
    other = await YClient.connect(ws, draft.id, author.token)
    await converge([ok, other])
    assert other.text()["body"].startswith("still here ")
    await ok.close()
    await other.close()


async def test_viewer_is_read_only(server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    viewer = await dev_user(client, "Viewer")
    lesson = await make_lesson(db, author.clerk_id, body="original", viewers=(viewer.clerk_id,))
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    v = await YClient.connect(server.ws_url, lesson.id, viewer.token)
    v.body.insert(0, "VIEWER ")
    await v.set_awareness({"user": {"name": "Viewer"}})
    await eventually(lambda: _has(a, {"user": {"name": "Viewer"}}), within=5)  # awareness is shared
    a.body.insert(len("original"), " + author")
    await eventually(lambda: _body_endswith(v, " + author"), within=5)  # keeps receiving live edits
    # The viewer's edit reached neither the author nor the database.
    await v.roundtrip()  # the server has processed (and dropped) the viewer's edit
    assert a.text()["body"] == "original + author"
    fresh = await YClient.connect(server.ws_url, lesson.id, author.token)
    assert fresh.text()["body"] == "original + author"
    async with db.connect() as conn:
        writers = (await conn.execute(select(LessonUpdate.user_id).where(
            LessonUpdate.lesson_id == lesson.lesson_id))).scalars().all()
    assert viewer.clerk_id not in writers

    async def materialised() -> bool:
        return (await lesson_row(db, lesson.id))["content"]["body"] == "original + author"

    await eventually(materialised, within=4)
    assert v.close_code is None  # not closed
    for c in (a, v, fresh):
        await c.close()


async def _has(client: YClient, state: object) -> bool:
    return state in client.awareness.values()


async def _body_endswith(client: YClient, suffix: str) -> bool:
    return client.text()["body"].endswith(suffix)


async def test_awareness_on_join_and_cleanup_on_leave(server: ServerProcess, client: httpx.AsyncClient,
                                                      db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id)
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    await a.set_awareness({"cursor": 3, "user": "a"})
    b = await YClient.connect(server.ws_url, lesson.id, author.token)
    # The joiner gets the room's awareness at once.
    await eventually(lambda: _has(b, {"cursor": 3, "user": "a"}), within=2)
    await b.set_awareness({"cursor": 1, "user": "b"})
    await eventually(lambda: _has(a, {"cursor": 1, "user": "b"}), within=2)
    await b.close()

    async def gone() -> bool:
        return {"cursor": 1, "user": "b"} not in a.awareness.values()

    await eventually(gone, within=5)
    await a.close()


async def test_revoking_or_unpublishing_closes_sockets(server: ServerProcess, client: httpx.AsyncClient,
                                                       db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    editor = await dev_user(client, "Editor")
    lesson = await make_lesson(db, author.clerk_id, editors=(editor.clerk_id,))
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    e = await YClient.connect(server.ws_url, lesson.id, editor.token)
    async with db.begin() as conn:
        await conn.execute(delete(Collaborator).where(Collaborator.course_id == lesson.course_id))
    # The draft is now hidden from the former editor.
    assert await e.wait_closed(within=5) == 4404
    assert a.close_code is None
    await a.close()

    learner = await dev_user(client, "Learner")
    viewer = await dev_user(client, "Viewer")
    pub = await make_lesson(db, author.clerk_id, published=True, viewers=(viewer.clerk_id,))
    v = await YClient.connect(server.ws_url, pub.id, viewer.token)
    async with db.begin() as conn:
        await conn.execute(update(Collaborator).where(Collaborator.course_id == pub.course_id)
                           .values(user_id=learner.clerk_id))
    assert await v.wait_closed(within=5) == 4403


async def test_a_reader_that_falls_too_far_behind_is_closed_4008(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, body="")
    slow = await YClient.connect(server.ws_url, lesson.id, author.token)
    writer = await YClient.connect(server.ws_url, lesson.id, author.token)
    # A fixed receive buffer: Linux autotunes a loopback socket's up to tcp_rmem's max (32 MiB on
    # some machines), which would swallow the whole flood before the server's queue grew.
    slow.ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    slow.ws.transport.pause_reading()  # stops reading: the kernel buffers fill, then the server's queue
    chunk = "x" * (1024 * 1024)
    meta = writer.doc.get("meta", type=Map)  # the body is capped at 200,000 characters
    for n in range(30):  # 30 MiB towards a reader that takes nothing
        meta[f"chunk{n}"] = chunk
        await writer.roundtrip()  # the server has taken this chunk (and queued it for the reader)
    # The server reads one account at most 8 MiB/s (COLLAB_RECEIVE_BYTES_PER_SECOND): wait until it
    # has taken all 30 MiB (and queued them towards the slow reader) before that reader wakes up.
    await writer.roundtrip()
    slow.ws.transport.resume_reading()
    assert await slow.wait_closed(within=30) == 4008
    # The writer is unaffected.
    assert writer.close_code is None
    await writer.close()


async def test_admins_write_and_a_demoted_editor_becomes_read_only(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    from server.users.models import User

    author = await dev_user(client, "Author")
    admin = await dev_user(client, "Admin")
    editor = await dev_user(client, "Editor")
    async with db.begin() as conn:
        await conn.execute(update(User).where(User.clerk_id == admin.clerk_id).values(role="admin"))
    lesson = await make_lesson(db, author.clerk_id, body="base", editors=(editor.clerk_id,))
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    adm = await YClient.connect(server.ws_url, lesson.id, admin.token)
    e = await YClient.connect(server.ws_url, lesson.id, editor.token)
    adm.body.insert(0, "[admin]")
    await eventually(lambda: _body_startswith(a, "[admin]"), within=5)
    async with db.begin() as conn:
        await conn.execute(update(Collaborator).where(Collaborator.course_id == lesson.course_id)
                           .values(role="viewer"))
    attempt = 0

    async def demoted() -> bool:  # within a re-check period, the editor's writes stop landing
        nonlocal attempt
        attempt += 1
        marker = f"[e{attempt}]"
        e.body.insert(len(str(e.body)), marker)
        await e.roundtrip()
        fresh = await YClient.connect(server.ws_url, lesson.id, author.token)
        landed = marker in fresh.text()["body"]
        await fresh.close()
        return not landed

    await eventually(demoted, within=6, interval=0.2)
    e.body.insert(len(str(e.body)), "[demoted]")
    await e.roundtrip()
    a.body.insert(0, "[author]")
    await eventually(lambda: _body_startswith(e, "[author]"), within=5)  # still receives edits
    assert "[demoted]" not in a.text()["body"]
    assert e.close_code is None
    for c in (a, adm, e):
        await c.close()


async def _body_startswith(client: YClient, prefix: str) -> bool:
    return client.text()["body"].startswith(prefix)


async def test_metrics_count_rooms_sockets_and_updates(server: ServerProcess, client: httpx.AsyncClient,
                                                       db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id)
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    a.body.insert(0, "counted ")
    await a.roundtrip()
    text = (await client.get("/metrics")).text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line.startswith("scriptorium_collab") or line.startswith("scriptorium_websocket")}
    assert values["scriptorium_collab_rooms"] >= 1
    assert values['scriptorium_websocket_connections{endpoint="collab"}'] >= 1
    assert values["scriptorium_collab_updates_total"] >= 1
    assert values["scriptorium_collab_writes_paced"] in (0, 1)  # (whether the node was busy just now)
    await a.close()


async def test_saved_is_answered_only_once_the_edits_are_in_postgresql(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    """The protocol extension behind the editor's "Saved": 101 n is answered with 100 n after
    every update sent before it is committed. Checked by reading the log at the moment of the
    answer, with no waiting of any other kind."""
    from pycrdt import Doc, Text

    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id, body="")
    a = await YClient.connect(server.ws_url, lesson.id, author.token)
    await a.saved()  # nothing pending: answered straight away

    async def stored_body() -> str:
        async with db.connect() as conn:
            updates = (await conn.execute(select(LessonUpdate.update).where(
                LessonUpdate.lesson_id == lesson.lesson_id).order_by(LessonUpdate.id))).scalars().all()
        doc: Doc = Doc()
        for u in updates:
            doc.apply_update(u)
        return str(doc.get("body", type=Text))

    for round_ in range(3):
        for i in range(40):  # many small updates, several flush batches
            a.body.insert(len(str(a.body)), f"{round_}.{i} ")
        await a.saved()
        assert await stored_body() == str(a.body)
    # a deletion changes no state vector; it is acknowledged all the same
    del a.body[0:4]
    await a.saved()
    assert await stored_body() == str(a.body)
    await a.close()
