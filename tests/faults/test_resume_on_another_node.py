"""Resume on another node (docs/API.md §7): a /ws client whose node dies (kill -9) resumes with
`since` = the last id it saw on the other node and gets every later event exactly once, in order,
including those written while it was away and while it replays; a socket dropped mid-replay
resumes the same way.

Two real server processes on one database and a Redis this module starts and stops itself
(never the machine's); a writer keeps committing events to the channel throughout. The checks
are on the exact sequence of ids the client received (nothing deduplicated before comparing).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from server.db import make_engine
from server.migrate import upgrade
from server.outbox.drain import DRAIN_LOCK
from server.outbox.emit import emit
from tests.support import Postgres, RedisServer, ServerProcess, eventually
from tests.support.realtime import Live, nothing_more, subscribe


@asynccontextmanager
async def two_nodes(postgres: Postgres, data_dir: Path, redis_url: str) -> AsyncIterator[Live]:
    url = await postgres.create_database()
    await upgrade(url)
    servers = [ServerProcess(database_url=url, data_dir=data_dir, redis_url=redis_url,
                             env={"RATE_LIMIT_PER_MINUTE": "0"}) for _ in range(2)]
    engine = make_engine(url)
    try:
        for server in servers:
            await asyncio.to_thread(server.start)
        async with httpx.AsyncClient(base_url=servers[0].base_url, timeout=30) as client:
            yield Live("redis", servers[0], engine, client, servers[1:])
    finally:
        for server in servers:
            server.stop()
        await engine.dispose()
        await postgres.drop_database(url)


class Writer:
    """Commits one event per transaction to ``channel`` until stopped (event ``n`` gets id n+1)."""

    def __init__(self, live: Live, channel: str, *, start: int = 0) -> None:
        self.live, self.channel = live, channel
        self.written = start
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self.stop.is_set():
            async with AsyncSession(self.live.engine, expire_on_commit=False) as session:
                await emit(session, channel=self.channel, event="reply.created",
                           data={"id": str(uuid.uuid4()), "n": self.written})
                await session.commit()
            self.written += 1
            await asyncio.sleep(0)  # let the readers run between commits

    def start(self) -> Writer:
        self.task = asyncio.create_task(self._run())
        return self

    async def written_at_least(self, count: int) -> None:
        await eventually(lambda: _true(self.written >= count), within=60)

    async def finish(self) -> int:
        self.stop.set()
        assert self.task is not None
        await self.task
        return self.written


async def _true(value: bool) -> bool:
    return value


async def read_events(ws: ClientConnection, got: list[dict[str, Any]], *, until_id: int | None = None,
                      count: int | None = None, within: float = 60.0) -> None:
    """Append event frames to ``got`` until ``count`` more arrived or ``until_id`` was seen (any
    other frame is a failure)."""
    target = len(got) + count if count is not None else None
    async with asyncio.timeout(within):
        while not ((target is not None and len(got) >= target)
                   or (until_id is not None and got and got[-1]["id"] >= until_id)):
            frame = json.loads(await ws.recv())
            assert frame["type"] == "event", frame
            got.append(frame)


async def drainer(live: Live) -> ServerProcess | None:
    """The node whose drain connection holds the drain lock (its pid is in application_name)."""
    async with live.engine.connect() as conn:
        name = (await conn.execute(text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted "
            "AND ((l.classid::bigint << 32) | l.objid::bigint) = :k AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"), {"k": DRAIN_LOCK})).scalar()
    for node in (live.server, *live.extra):
        if name and node.proc is not None and name.endswith(f" pid={node.proc.pid}"):
            return node
    return None


def check_sequence(got: list[dict[str, Any]], first: int, last: int) -> None:
    ids = [f["id"] for f in got]
    assert ids == list(range(first, last + 1)), (
        f"{len(ids)} ids, expected {last - first + 1}; first differences: "
        f"{[(i, x) for i, x in zip(range(first, last + 1), ids, strict=False) if i != x][:5]}")
    assert [f["data"]["n"] for f in got] == [i - 1 for i in ids]


@pytest.mark.parametrize(("victim", "away"), [("drainer", 100), ("follower", 100), ("drainer", 0)])
async def test_client_resumes_on_the_other_node_after_kill(victim: str, away: int, postgres: Postgres,
                                                           data_dir: Path, own_redis: RedisServer) -> None:
    """``away``: events written after the last one the client saw before it reconnects (0: it
    reconnects at once, maybe before the survivor has taken over the drain)."""
    async with two_nodes(postgres, data_dir, own_redis.url) as live:
        alice = await live.user("Alice")
        channel = f"course:{await live.course(alice)}"
        leader = await eventually(lambda: drainer(live))
        other = live.extra[0] if leader is live.server else live.server
        # kill the node that drains the outbox, or the one that does not
        doomed, survivor = (leader, other) if victim == "drainer" else (other, leader)

        writer = Writer(live, channel).start()
        got: list[dict[str, Any]] = []
        try:
            async with live.ws(alice, server=doomed) as ws:
                assert (await subscribe(ws, channel, since=0))["type"] == "subscribed"
                await read_events(ws, got, count=60)
                assert got[0]["id"] == 1, got[0]
                doomed.kill()
                # whatever was already on its way to the client still counts
                with pytest.raises(ConnectionClosed):
                    await read_events(ws, got, count=10**9)
            before = len(got)
            last_seen = got[-1]["id"]
            # events keep being written while the client is away
            await writer.written_at_least(last_seen + away)
            async with live.ws(alice, server=survivor) as ws:
                subscribed = await subscribe(ws, channel, since=last_seen)
                assert subscribed["type"] == "subscribed", subscribed
                # ...and while it replays and after it is live again
                await read_events(ws, got, count=150)
                total = await writer.finish()
                await read_events(ws, got, until_id=total)
                check_sequence(got, 1, total)
                assert total - before >= 150
                await nothing_more(live, ws, channel)
        finally:
            writer.stop.set()
            if writer.task is not None:
                await asyncio.gather(writer.task, return_exceptions=True)


async def test_drop_during_replay_resumes_without_gap_or_duplicate(postgres: Postgres, data_dir: Path,
                                                                   own_redis: RedisServer) -> None:
    async with two_nodes(postgres, data_dir, own_redis.url) as live:
        node_b = live.extra[0]
        alice = await live.user("Alice")
        channel = f"course:{await live.course(alice)}"
        await live.emit_many(channel, 800)  # the backlog to replay...
        writer = Writer(live, channel, start=800).start()  # ...and the writer keeps going
        try:
            await writer.written_at_least(900)

            async def published() -> bool:
                async with live.ws(alice, server=node_b) as probe:
                    return bool((await subscribe(probe, channel))["last_id"] >= 900)

            await eventually(published, within=30)
            since = 5
            got: list[dict[str, Any]] = []
            # two drops, each well inside a replay of hundreds: the connection lost (no close
            # handshake), then the client closing it
            for drop_after, abort in ((150, True), (200, False)):
                # max_queue=None: a client that stops reading with frames queued pauses its
                # transport, so its close handshake would wait out close_timeout (10 s) behind
                # the unread replay (the client library's flow control, not the server's)
                async with live.ws(alice, server=node_b, max_queue=None) as ws:
                    subscribed = await subscribe(ws, channel, since=since)
                    assert subscribed["type"] == "subscribed", subscribed
                    assert subscribed["last_id"] >= since + drop_after + 100  # still replaying
                    await read_events(ws, got, count=drop_after)
                    if abort:
                        assert ws.transport is not None
                        ws.transport.abort()
                    else:
                        await ws.close()
                since = got[-1]["id"]
            async with live.ws(alice, server=node_b) as ws:
                assert (await subscribe(ws, channel, since=since))["type"] == "subscribed"
                await read_events(ws, got, count=100)
                total = await writer.finish()
                await read_events(ws, got, until_id=total)
                check_sequence(got, 6, total)
                await nothing_more(live, ws, channel)
        finally:
            writer.stop.set()
            if writer.task is not None:
                await asyncio.gather(writer.task, return_exceptions=True)


def test_check_sequence_is_strict() -> None:
    """check_sequence fails on a duplicate or a gap (the checks above can fail)."""
    for ids in ((1, 2, 2, 3), (1, 3), (2, 1, 3)):
        with pytest.raises(AssertionError):
            check_sequence([{"id": i, "data": {"n": i - 1}} for i in ids], 1, 3)
    check_sequence([{"id": i, "data": {"n": i - 1}} for i in (1, 2, 3)], 1, 3)
