"""Helpers for the /ws tests: a server per broker backend, emitting through the outbox, clients."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from websockets.asyncio.client import ClientConnection, connect

from server.catalog.models import Course
from server.db import make_engine
from server.forum.models import ForumPost
from server.migrate import upgrade
from server.outbox.emit import emit
from tests.support import DevUser, Postgres, ServerProcess, dev_user


@dataclass
class Live:
    """One deployment under test: server(s), its database engine, an HTTP client."""

    backend: str
    server: ServerProcess
    engine: AsyncEngine
    client: httpx.AsyncClient
    extra: list[ServerProcess] = field(default_factory=list)

    async def user(self, name: str) -> DevUser:
        return await dev_user(self.client, name)

    async def emit(self, channel: str, event: str, data: dict[str, Any]) -> None:
        """Record an event in a committed transaction: the production path of the drain."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            await emit(session, channel=channel, event=event, data=data)
            await session.commit()

    async def emit_many(self, channel: str, count: int, *, start: int = 0, per_tx: int = 50,
                        pad: str = "") -> None:
        for first in range(start, start + count, per_tx):
            async with AsyncSession(self.engine, expire_on_commit=False) as session:
                for n in range(first, min(first + per_tx, start + count)):
                    await emit(session, channel=channel, event="reply.created",
                               data={"id": str(uuid.uuid4()), "n": n, "pad": pad})
                await session.commit()

    async def course(self, author: DevUser, *, published: bool = True) -> uuid.UUID:
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            course = Course(author_id=author.clerk_id, title="Live course", is_published=published)
            session.add(course)
            await session.commit()
            return course.id

    async def thread(self, author: DevUser, course_id: uuid.UUID) -> uuid.UUID:
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            post = ForumPost(course_id=course_id, user_id=author.clerk_id, title="Q", content="Why?")
            session.add(post)
            await session.commit()
            return post.id

    def ws(self, user: DevUser | None, server: ServerProcess | None = None, **kwargs: Any) -> Any:
        base = (server or self.server).ws_url
        query = f"?token={user.token}" if user else ""
        return connect(f"{base}/ws{query}", open_timeout=10, **kwargs)


async def recv(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), within)
    frame: dict[str, Any] = json.loads(raw)
    return frame


async def slow_closes(client: httpx.AsyncClient) -> float:
    """How many /ws sockets the server has closed as too slow (4008), from its /metrics."""
    response = await client.get("/metrics")
    response.raise_for_status()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "scriptorium_websocket_slow_closes_total" and sample.labels == {"endpoint": "ws"}:
                return sample.value
    return 0.0


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


async def subscribe(ws: ClientConnection, channel: str, since: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
    if since is not None:
        frame["since"] = since
    await send(ws, frame)
    return await recv(ws)


async def events(ws: ClientConnection, count: int, within: float = 20.0) -> list[dict[str, Any]]:
    """The next ``count`` event frames (other frames are a failure)."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while len(out) < count:
            frame = await recv(ws, within)
            assert frame["type"] == "event", frame
            out.append(frame)
    return out


async def nothing_more(live: Live, sockets: ClientConnection | list[ClientConnection], channel: str) -> None:
    """No stray frame is pending: a fresh marker event is the very next frame on each socket."""
    marker = uuid.uuid4().hex
    await live.emit(channel, "marker", {"marker": marker})
    for ws in sockets if isinstance(sockets, list) else [sockets]:
        frame = await recv(ws)
        assert frame["type"] == "event" and frame["event"] == "marker", frame
        assert frame["data"]["marker"] == marker, frame


@asynccontextmanager
async def live_deployment(backend: str, postgres: Postgres, data_dir: Path,
                          redis_url: str) -> AsyncIterator[Live]:
    """A server with the in-process broker (``backend="memory"``) or one with Redis, on a database
    of its own (the outbox of a database is drained by the servers that use it)."""
    url = await postgres.create_database()
    await upgrade(url)
    server = ServerProcess(database_url=url, data_dir=data_dir,
                           redis_url=redis_url if backend == "redis" else None,
                           env={"RATE_LIMIT_PER_MINUTE": "0"})
    await asyncio.to_thread(server.start)
    engine = make_engine(url)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            yield Live(backend, server, engine, client)
    finally:
        server.stop()
        await engine.dispose()
        await postgres.drop_database(url)
