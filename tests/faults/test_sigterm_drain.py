"""SIGTERM drains a node: it stops accepting, flushes every room's log and materialises its text,
THEN closes the collab sockets with 1012 (service restart: clients reconnect elsewhere), finishes
in-flight requests and exits 0 within 10 s. What the server had received is all there afterwards,
without anyone having asked "saved?"."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest
from pycrdt import Doc, Text
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.editing.models import LessonUpdate
from tests.support import RedisServer, ServerProcess, dev_user, eventually
from tests.support.collab import YClient, converge, lesson_row, make_lesson


async def logged_text(db: AsyncEngine, lesson_id: str) -> str:
    """The body as the lesson's update log replays it (what a node loading the room sees)."""
    async with db.connect() as conn:
        updates = (await conn.execute(select(LessonUpdate.update).where(
            LessonUpdate.lesson_id == uuid.UUID(lesson_id)).order_by(LessonUpdate.id))).scalars().all()
    doc: Doc = Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("body", type=Text))


def unread_bytes(server_port: int, client_port: int) -> int | None:
    """The bytes the kernel holds for the server's end of a loopback connection, not yet read by
    the server (None: no such connection)."""
    wanted = (f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}")
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            return int(fields[4].split(":")[1], 16)
    return None


async def start_request(port: int, token: str, body: bytes, sent: int) -> tuple[asyncio.StreamReader,
                                                                                 asyncio.StreamWriter]:
    """A PATCH /api/me whose headers and first ``sent`` body bytes the server has read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PATCH /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                 + body[:sent])
    await writer.drain()
    client_port = writer.get_extra_info("sockname")[1]

    async def read_by_server() -> bool:
        return unread_bytes(port, client_port) == 0

    await eventually(read_by_server, within=5)
    return reader, writer


async def test_sigterm_saves_what_was_received_then_closes_1012_and_exits_0(
        database_url: str, data_dir: Path, db: AsyncEngine) -> None:
    node = ServerProcess(database_url=database_url, data_dir=data_dir, env={"RATE_LIMIT_PER_MINUTE": "0"})
    await asyncio.to_thread(node.start)
    try:
        async with httpx.AsyncClient(base_url=node.base_url) as http:
            author = await dev_user(http, "Author")
            editor = await dev_user(http, "Editor")
        lesson = await make_lesson(db, author.clerk_id, body="", editors=(editor.clerk_id,))
        writer = await YClient.connect(node.ws_url, lesson.id, author.token)
        co_editor = await YClient.connect(node.ws_url, lesson.id, editor.token)
        for i in range(60):
            writer.body.insert(len(str(writer.body)), f"<{i}>")
        co_editor.body.insert(0, "[co]")
        # Both know the server has taken their edits; neither asked "saved?".
        await writer.roundtrip()
        await co_editor.roundtrip()
        # (the two first inserts were concurrent: which comes first is the CRDT's choice)
        expected = (await converge([writer, co_editor]))["body"]
        assert sorted([expected.removeprefix("[co]").removesuffix("[co]"), "[co]"]) == sorted(
            ["".join(f"<{i}>" for i in range(60)), "[co]"])

        # A REST write in flight: its headers and half its body are in when SIGTERM comes.
        body = json.dumps({"name": "Renamed while draining"}).encode()
        reader, request = await start_request(node.port, editor.token, body, len(body) // 2)

        assert node.proc is not None
        proc = node.proc
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        codes = await asyncio.gather(writer.wait_closed(within=10), co_editor.wait_closed(within=10))
        # The moment a client sees 1012, what it had sent is in the log and in the lesson row.
        row, logged = await lesson_row(db, lesson.id), await logged_text(db, lesson.id)
        assert codes == [1012, 1012]
        assert logged == expected
        assert row["content"]["body"] == expected
        assert row["content"]["keep"] == 1  # materialised into the row, not over it
        # The drained node refuses new connections, and finishes the request in flight.
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", node.port)
        request.write(body[len(body) // 2:])
        response = await asyncio.wait_for(reader.read(), 10)
        request.close()
        assert response.startswith(b"HTTP/1.1 200 "), response[:300]
        assert json.loads(response.split(b"\r\n\r\n", 1)[1])["name"] == "Renamed while draining"

        code = await asyncio.to_thread(proc.wait, 10)
        took = time.monotonic() - sent
        assert code == 0, node.log_text()
        assert took < 10, took

        # Restarted: every edit it had received is there.
        await asyncio.to_thread(node.start)
        again = await YClient.connect(node.ws_url, lesson.id, author.token)
        assert str(again.body) == expected
        await again.close()
    finally:
        await asyncio.to_thread(node.stop)


async def test_sigterm_with_two_workers_saves_every_worker_s_rooms_and_exits_within_10s(
        database_url: str, data_dir: Path, db: AsyncEngine, own_redis: RedisServer) -> None:
    """``serve --workers 2`` (uvicorn's supervisor; the rooms of two workers meet over Redis):
    SIGTERM to the supervisor only, as a container runtime sends it. Each worker saves what it
    received before its sockets close 1012, and the whole server exits 0 within 10 s."""
    node = ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=own_redis.url, workers=2,
                         # one NODE_ID for the server: each worker must still be a node of its own
                         env={"RATE_LIMIT_PER_MINUTE": "0", "NODE_ID": f"workers-{uuid.uuid4().hex[:6]}"})
    await asyncio.to_thread(node.start, 90)  # two workers to spawn
    try:
        async with httpx.AsyncClient(base_url=node.base_url) as http:
            author = await dev_user(http, "Author")
        lessons = [await make_lesson(db, author.clerk_id, body="") for _ in range(3)]
        # 9 sockets, 3 per lesson: the kernel spreads them over both workers' accept queues
        writers = [await YClient.connect(node.ws_url, lessons[i % 3].id, author.token) for i in range(9)]
        for n, writer in enumerate(writers):
            for i in range(20):
                writer.body.insert(len(str(writer.body)), f"<{n}.{i}>")
        for writer in writers:
            await writer.roundtrip()  # the server has taken them; nobody asked "saved?"
        expected = [(await converge(writers[i::3]))["body"] for i in range(3)]
        for i in range(3):
            for n in range(i, 9, 3):
                assert all(f"<{n}.{k}>" in expected[i] for k in range(20))

        assert node.proc is not None
        proc = node.proc
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # the supervisor alone
        codes = await asyncio.gather(*(writer.wait_closed(within=10) for writer in writers))
        logged = [await logged_text(db, lesson.id) for lesson in lessons]
        assert codes == [1012] * 9, codes
        assert logged == expected  # saved before the 1012, in every worker
        code = await asyncio.to_thread(proc.wait, 10)
        took = time.monotonic() - sent
        assert code == 0, node.log_text()
        assert took < 10, took
        assert "Traceback" not in node.log_text(), node.log_text()
    finally:
        await asyncio.to_thread(node.stop)
