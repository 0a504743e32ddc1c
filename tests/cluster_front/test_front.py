"""``scripts/cluster`` for real: PostgreSQL, Redis and three nodes behind Debian's nginx, started by
the same code the script runs (``deploy/cluster.py``), and users working through the proxy while
their sockets sit on different nodes (each node's ``scriptorium_websocket_connections`` gauge,
read on its own metrics listener, says where each socket landed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from server.db import make_engine
from tests.support import REDIS_PREFIX, ROOT, Postgres, dev_user, eventually, free_port, inherited_env
from tests.support.collab import YClient, make_lesson
from tests.support.forum import create_post, create_reply, make_course
from tests.support.realtime import events, subscribe

NODES = 3
GAUGE = 'scriptorium_websocket_connections{{endpoint="{}"}} '


@dataclass
class Cluster:
    proc: subprocess.Popen[bytes]
    url: str
    nodes: list[dict[str, Any]]
    database_url: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-3000:]
    return ""


@pytest.fixture(scope="module")
async def cluster(postgres: Postgres, redis_url: str) -> AsyncIterator[Cluster]:
    url = await postgres.create_database()  # migrated by the cluster itself
    data_dir = Path(tempfile.mkdtemp(prefix="scr-cluster-"))
    port = free_port()
    env = inherited_env()
    env.update(DATABASE_URL=url, REDIS_URL=redis_url, REDIS_PREFIX=REDIS_PREFIX, DEMO_ON_EMPTY="0",
               AUTH_MODE="dev", RATE_LIMIT_PER_MINUTE="0", CHECK_RESPONSES="1", LOG_LEVEL="warning",
               PYTHONUNBUFFERED="1")
    proc = await asyncio.to_thread(subprocess.Popen, [sys.executable, str(ROOT / "deploy" / "cluster.py"), "--nodes", str(NODES),
                             "--port", str(port), "--data-dir", str(data_dir)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 120)
        logs = data_dir / "cluster"
        assert line, "scripts/cluster exited before it was up:\n" + "\n".join(
            f"--- {p.name}\n{_tail(p)}" for p in sorted(logs.glob("*.log")))
        info = json.loads(line)
        yield Cluster(proc, info["url"], info["nodes"], url)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        await postgres.drop_database(url)


async def gauge(node: dict[str, Any], endpoint: str) -> float:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(node["metrics"])).text
    line = GAUGE.format(endpoint)
    return next((float(row[len(line):]) for row in text.splitlines() if row.startswith(line)), 0.0)


async def where(cluster: Cluster, endpoint: str) -> list[float]:
    return [await gauge(node, endpoint) for node in cluster.nodes]


async def test_every_node_is_up_behind_the_proxy(cluster: Cluster) -> None:
    assert [n["id"] for n in cluster.nodes] == [f"app{i}" for i in range(1, NODES + 1)]
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(cluster.url + "/readyz")).status_code == 200
        for node in cluster.nodes:
            assert (await client.get(node["url"] + "/readyz")).status_code == 200
            # metrics on the node's own listener, never through the proxy
            assert "scriptorium_" in (await client.get(node["metrics"])).text
        assert (await client.get(cluster.url + "/metrics")).status_code == 404


async def test_co_editing_with_the_two_authors_on_different_nodes(cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as client:
        alice = await dev_user(client, "Alice")
        bob = await dev_user(client, "Bob")
    engine = make_engine(cluster.database_url)
    try:
        lesson = await make_lesson(engine, alice.clerk_id, body="Hello", editors=(bob.clerk_id,))
    finally:
        await engine.dispose()
    assert await where(cluster, "collab") == [0.0] * NODES
    a = await YClient.connect(cluster.ws_url, lesson.id, alice.token, origin=cluster.url)
    b = await YClient.connect(cluster.ws_url, lesson.id, bob.token, origin=cluster.url)
    try:
        # least_conn: the second socket goes to a node without one
        spread = await where(cluster, "collab")
        assert sorted(spread) == [0.0] * (NODES - 2) + [1.0, 1.0], spread
        assert a.text()["body"] == b.text()["body"] == "Hello"
        a.body.insert(len(a.body), ", Bob")

        async def b_sees_it() -> bool:
            return b.text()["body"] == "Hello, Bob"

        await eventually(b_sees_it)
        b.title.insert(0, "Together: ")

        async def a_sees_it() -> bool:
            return a.text()["title"].startswith("Together: ")

        await eventually(a_sees_it)
        await a.saved()
        await b.saved()
    finally:
        await a.ws.close()
        await b.ws.close()
    # what both wrote is what REST reads, through the proxy (whichever node answers)
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as client:

        async def materialised() -> dict[str, Any] | None:
            r = await client.get(f"/api/lessons/{lesson.id}", headers=alice.headers)
            body: dict[str, Any] = r.json()
            return body if (body["title"].startswith("Together: ")
                            and body["content"]["body"] == "Hello, Bob") else None

        await eventually(materialised, within=20)


async def test_a_reply_posted_on_one_node_reaches_a_reader_on_another(cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as client:
        author = await dev_user(client, "Teacher")
        reader = await dev_user(client, "Reader")
    engine = make_engine(cluster.database_url)
    try:
        course = await make_course(engine, author)
    finally:
        await engine.dispose()
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as client:
        post = await create_post(client, course, author, title="Live through nginx")
        thread = await client.get(f"/api/forum/posts/{post['id']}/replies", headers=reader.headers)
        assert thread.status_code == 200
    before = await where(cluster, "ws")
    ws: ClientConnection = await connect(f"{cluster.ws_url}/ws?token={reader.token}", origin=Origin(cluster.url),
                                         open_timeout=10)
    try:
        subscribed = await subscribe(ws, f"thread:{post['id']}")
        assert subscribed["type"] == "subscribed"
        after = await where(cluster, "ws")
        [home] = [i for i, (x, y) in enumerate(zip(before, after, strict=True)) if y == x + 1]
        others = [n for i, n in enumerate(cluster.nodes) if i != home]
        # one reply on each other node, straight to it; one through the proxy
        texts = []
        for node in others:
            async with httpx.AsyncClient(base_url=node["url"], timeout=10) as direct:
                texts.append(f"from {node['id']} {uuid.uuid4().hex[:6]}")
                await create_reply(direct, post["id"], author, texts[-1])
        async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as client:
            texts.append("through the proxy")
            await create_reply(client, post["id"], author, texts[-1])
        frames = await events(ws, len(texts))
        assert [f["event"] for f in frames] == ["reply.created"] * len(texts)
        assert [f["data"]["content"] for f in frames] == texts
        ids = [f["id"] for f in frames]
        assert ids == list(range(ids[0], ids[0] + len(texts)))  # no gap, no duplicate
    finally:
        await ws.close()


async def test_a_dead_node_is_skipped_and_restarted(cluster: Cluster) -> None:
    victim = cluster.nodes[-1]
    os.killpg(victim["pid"], signal.SIGKILL)  # the node's own process group (start_new_session)
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as client:
        for _ in range(3 * NODES):  # every node's turn comes: the dead one is passed over
            assert (await client.get("/api/courses")).status_code == 200

        async def back() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(victim["url"] + "/readyz")).status_code == 200
            return False

        await eventually(back, within=60, interval=0.2)
