"""Per-user limits hold across nodes when Redis is configured: the write rate limit (429
problem+json with Retry-After) and the socket caps of /ws and collab (closed 4429), with a dead
node's sockets dropping out of the count; with Redis down, each node limits on its own (fail open
to per-node limits, never a 5xx)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support import DevUser, RedisServer, ServerProcess, dev_user, eventually
from tests.support.collab import YClient, closed_with, make_lesson
from tests.support.forum import CourseRef, make_course

BURST = 4
CAP = 2
CAP_TTL_S = 3.0
ENV = {"RATE_LIMIT_PER_MINUTE": "1", "RATE_LIMIT_BURST": str(BURST), "WS_SOCKETS_PER_USER": str(CAP),
       "COLLAB_SOCKETS_PER_USER": str(CAP), "CONNECTION_CAP_TTL_SECONDS": str(CAP_TTL_S)}
CLOSE_TOO_MANY = 4429


@pytest.fixture(scope="module")
def limits_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()  # this module's own: a test stops it
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nodes(database_url: str, data_dir: Path, limits_redis: RedisServer) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    a = ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=limits_redis.url,
                      env={**ENV, "NODE_ID": "node-a"})
    b = ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=limits_redis.url,
                      env={**ENV, "NODE_ID": "node-b"})
    a.start(timeout=90)  # the machine may be busy: two cores for several suites
    try:
        b.start(timeout=90)
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
async def http(nodes: tuple[ServerProcess, ServerProcess]) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    a, b = nodes
    limits = httpx.Limits(keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=a.base_url, timeout=30, limits=limits) as on_a, \
            httpx.AsyncClient(base_url=b.base_url, timeout=30, limits=limits) as on_b:
        yield on_a, on_b


async def _post(client: httpx.AsyncClient, course: CourseRef, user: DevUser, n: int) -> httpx.Response:
    return await client.post(f"/api/courses/{course.id}/forum/posts", headers=user.headers,
                             json={"title": f"Question {n}", "content": "Why?"})


def _is_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 429
    assert int(response.headers["Retry-After"]) >= 1


async def test_the_write_limit_is_shared_by_the_nodes(
        http: tuple[httpx.AsyncClient, httpx.AsyncClient], db: AsyncEngine) -> None:
    on_a, on_b = http
    author = await dev_user(on_a, "Author")
    other = await dev_user(on_a, "Other")
    course = await make_course(db, author)
    other_course = await make_course(db, other)
    for n in range(BURST):  # the burst, split over both nodes
        response = await _post(on_a if n % 2 else on_b, course, author, n)
        assert response.status_code == 201, response.text
    _is_rate_limited(await _post(on_a, course, author, BURST))
    _is_rate_limited(await _post(on_b, course, author, BURST + 1))
    # Per user: someone else still writes, on either node.
    assert (await _post(on_b, other_course, other, 0)).status_code == 201


async def _ws(node: ServerProcess, user: DevUser) -> ClientConnection:
    return await connect(f"{node.ws_url}/ws?token={user.token}", open_timeout=10)


async def _answers_ping(ws: ClientConnection) -> bool:
    await ws.send(json.dumps({"type": "ping"}))
    return json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}


async def _refused_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code


async def test_the_socket_caps_hold_across_nodes(
        nodes: tuple[ServerProcess, ServerProcess], http: tuple[httpx.AsyncClient, httpx.AsyncClient],
        db: AsyncEngine) -> None:
    a, b = nodes
    user = await dev_user(http[0], "Sockets")
    first, second = await _ws(a, user), await _ws(b, user)
    assert await _answers_ping(first) and await _answers_ping(second)
    assert await _refused_with(await _ws(a, user)) == CLOSE_TOO_MANY
    assert await _refused_with(await _ws(b, user)) == CLOSE_TOO_MANY
    await second.close()  # a closed socket frees its place at once, for any node
    third = await _ws(a, user)
    assert await _answers_ping(third)
    await first.close()
    await third.close()

    # Collab sockets: their own cap, across nodes too.
    lesson = await make_lesson(db, user.clerk_id, body="")
    editors = [await YClient.connect(node.ws_url, lesson.id, user.token) for node in (a, b)]
    assert await closed_with(b.ws_url, f"/collab/lessons/{lesson.id}?token={user.token}") == CLOSE_TOO_MANY
    await editors[0].close()
    again = await YClient.connect(b.ws_url, lesson.id, user.token)
    assert again.text()["body"] == ""
    for editor in (editors[1], again):
        await editor.close()


async def test_with_redis_down_each_node_limits_on_its_own(
        nodes: tuple[ServerProcess, ServerProcess], http: tuple[httpx.AsyncClient, httpx.AsyncClient],
        limits_redis: RedisServer, db: AsyncEngine) -> None:
    a, _ = nodes
    on_a, _ = http
    author = await dev_user(on_a, "Offline author")
    course = await make_course(db, author)
    user = await dev_user(on_a, "Offline sockets")
    limits_redis.stop()
    try:
        # Fail open to this node's buckets: writes go on (no 5xx), and its own limit still holds.
        for n in range(BURST):
            response = await _post(on_a, course, author, n)
            assert response.status_code == 201, response.text
        _is_rate_limited(await _post(on_a, course, author, BURST))
        sockets = [await _ws(a, user) for _ in range(CAP)]
        for ws in sockets:
            assert await _answers_ping(ws)
        assert await _refused_with(await _ws(a, user)) == CLOSE_TOO_MANY
        for ws in sockets:
            await ws.close()
    finally:
        limits_redis.start()


async def test_a_dead_nodes_sockets_stop_counting(
        nodes: tuple[ServerProcess, ServerProcess], http: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    a, b = nodes  # last: it kills node B
    user = await dev_user(http[0], "Crash")
    held: list[Any] = [await _ws(b, user) for _ in range(CAP)]
    for ws in held:
        assert await _answers_ping(ws)

    async def accepted() -> bool:
        ws = await _ws(a, user)
        try:
            return await _answers_ping(ws)
        except ConnectionClosed:
            assert ws.close_code == CLOSE_TOO_MANY
            return False
        finally:
            await ws.close()

    # Refused on A (once its Redis client is back from the previous test's outage: until then A
    # counts on its own, see realtime.caps).
    await eventually(lambda: _not(accepted), within=10, interval=0.5)
    b.kill()  # no goodbye: its entries expire within the TTL
    assert await eventually(accepted, within=CAP_TTL_S + 10, interval=0.5)


async def _not(check: Any) -> bool:
    return not await check()
