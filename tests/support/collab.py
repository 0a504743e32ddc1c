"""Helpers for the live co-editing tests: rows made directly in PostgreSQL, a pycrdt client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from pycrdt import Doc, Map, Text
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from collab import protocol as p
from server.catalog.models import Collaborator, Course, Lesson, Unit
from server.learning.models import UserCourse
from tests.support import DevUser, ServerProcess, dev_user, eventually


@dataclass
class LessonRow:
    course_id: uuid.UUID
    lesson_id: uuid.UUID

    @property
    def id(self) -> str:
        return str(self.lesson_id)


async def make_lesson(db: AsyncEngine, author: str, *, title: str = "A lesson", body: str = "Hello",
                      published: bool = False, editors: tuple[str, ...] = (),
                      viewers: tuple[str, ...] = (), learners: tuple[str, ...] = ()) -> LessonRow:
    course_id, unit_id, lesson_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(insert(Course).values(id=course_id, author_id=author, title="Course",
                                                 is_published=published))
        await conn.execute(insert(Unit).values(id=unit_id, course_id=course_id, title="Unit"))
        await conn.execute(insert(Lesson).values(id=lesson_id, unit_id=unit_id, title=title,
                                                 content_type="text", content={"body": body, "keep": 1}))
        for user in editors:
            await conn.execute(insert(Collaborator).values(course_id=course_id, user_id=user, role="editor"))
        for user in viewers:
            await conn.execute(insert(Collaborator).values(course_id=course_id, user_id=user, role="viewer"))
        for user in learners:
            await conn.execute(insert(UserCourse).values(course_id=course_id, user_id=user))
    return LessonRow(course_id, lesson_id)


@dataclass
class MetaWriter:
    """An author connected to a new lesson of theirs (``client``), and a copy of the room's
    document (``doc``, its ``meta`` Map) to build updates on that the client does not send itself:
    sent as raw frames, as an attacker would."""

    author: DevUser
    lesson: LessonRow
    client: YClient
    doc: Doc[Any]
    meta: Map[Any]

    @classmethod
    async def connect(cls, server: ServerProcess, http: httpx.AsyncClient, db: AsyncEngine, title: str) -> MetaWriter:
        author = await dev_user(http, "Author")
        lesson = await make_lesson(db, author.clerk_id, title=title, body="Body.")
        client = await YClient.connect(server.ws_url, lesson.id, author.token)
        doc: Doc[Any] = Doc()
        doc.apply_update(client.doc.get_update())
        return cls(author, lesson, client, doc, doc.get("meta", type=Map))


async def lesson_row(db: AsyncEngine, lesson_id: str) -> dict[str, Any]:
    async with db.connect() as conn:
        row = (await conn.execute(select(Lesson.title, Lesson.content, Lesson.revision)
                                  .where(Lesson.id == uuid.UUID(lesson_id)))).one()
    return {"title": row.title, "content": row.content, "revision": row.revision}


class YClient:
    """A y-websocket client on pycrdt: syncs, applies and sends updates, tracks awareness."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.doc: Doc = Doc()
        self.title = self.doc.get("title", type=Text)
        self.body = self.doc.get("body", type=Text)
        self.synced = asyncio.Event()
        self.awareness: dict[int, Any] = {}
        self.close_code: int | None = None
        self.received = 0
        self._remote = False
        self._asked = 0
        self._saved: dict[int, asyncio.Future[None]] = {}
        self._sub = self.doc.observe(self._on_local)
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, base_ws: str, lesson_id: str, token: str | None, *,
                      sync: bool = True, **kw: Any) -> YClient:
        url = f"{base_ws}/collab/lessons/{lesson_id}" + (f"?token={token}" if token else "")
        ws = await connect(url, max_size=None, **kw)
        client = cls(ws)
        await client.ws.send(p.step1_frame(client.doc.get_state()))
        if sync:
            await asyncio.wait_for(client.synced.wait(), 10)
        return client

    def _on_local(self, event: Any) -> None:
        if self._remote:
            return
        frame = p.update_frame(event.update)
        asyncio.get_running_loop().create_task(self._send(frame))

    async def _send(self, frame: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(frame)

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                assert isinstance(data, bytes)
                self.received += 1
                frame = p.parse_frame(data)
                if frame.type == p.MSG_SYNC:
                    if frame.sync == p.SYNC_STEP1:
                        await self.ws.send(p.step2_frame(self.doc.get_update(frame.payload)))
                    else:
                        self._remote = True
                        try:
                            self.doc.apply_update(frame.payload)
                        finally:
                            self._remote = False
                        if frame.sync == p.SYNC_STEP2:
                            self.synced.set()
                elif frame.type == p.MSG_SAVED:
                    answered = self._saved.pop(p.read_var_uint(data, 1)[0], None)
                    if answered is not None and not answered.done():
                        answered.set_result(None)
                elif frame.type == p.MSG_AWARENESS:
                    for entry in p.parse_awareness(frame.payload):
                        if entry.removed:
                            self.awareness.pop(entry.client_id, None)
                        else:
                            self.awareness[entry.client_id] = json.loads(entry.state)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code

    async def roundtrip(self) -> None:
        """Wait until the server has processed everything this client sent so far (a sync step 1
        sent now is answered after them)."""
        self.synced.clear()
        await self.ws.send(p.step1_frame(self.doc.get_state()))
        await asyncio.wait_for(self.synced.wait(), 10)

    async def saved(self, within: float = 10) -> None:
        """Ask the server ("saved?", the protocol extension) and wait for its answer: everything
        this client sent before is then committed. Sent like updates, so it is ordered after them."""
        self._asked += 1
        answered = asyncio.get_running_loop().create_future()
        self._saved[self._asked] = answered
        await asyncio.get_running_loop().create_task(self._send(p.query_saved_frame(self._asked)))
        await asyncio.wait_for(answered, within)

    async def set_awareness(self, state: Any, clock: int = 1) -> None:
        entry = p.AwarenessEntry(self.doc.client_id, clock, json.dumps(state))
        await self.ws.send(p.awareness_frame(p.encode_awareness([entry])))

    def text(self) -> dict[str, str]:
        return {"title": str(self.title), "body": str(self.body)}

    async def wait_closed(self, within: float = 10) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._task), within)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 5)


async def closed_with(base_ws: str, path: str, **kw: Any) -> int | None:
    """Connect and return the close code the server sends."""
    async with connect(base_ws + path, **kw) as ws:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code


async def converge(clients: list[YClient], within: float = 15) -> dict[str, str]:
    async def same() -> dict[str, str] | None:
        texts = [c.text() for c in clients]
        return texts[0] if all(t == texts[0] for t in texts) else None

    result: dict[str, str] = await eventually(same, within=within)
    return result


@dataclass
class CoEditors:
    """An author on node A and an editor on node B of one lesson (see :func:`co_editors`)."""

    author: DevUser
    editor: DevUser
    lesson: LessonRow
    a: YClient
    b: YClient


async def co_editors(db: AsyncEngine, a_node: ServerProcess, b_node: ServerProcess, *,
                     title: str = "A lesson", body: str = "Hello") -> CoEditors:
    """Two dev users, a lesson of the first with the second as its editor, the author connected
    to ``a_node`` and the editor to ``b_node``."""
    async with httpx.AsyncClient(base_url=a_node.base_url) as http:
        author = await dev_user(http, "Author")
        editor = await dev_user(http, "Editor")
    lesson = await make_lesson(db, author.clerk_id, title=title, body=body, editors=(editor.clerk_id,))
    a = await YClient.connect(a_node.ws_url, lesson.id, author.token)
    b = await YClient.connect(b_node.ws_url, lesson.id, editor.token)
    return CoEditors(author, editor, lesson, a, b)
