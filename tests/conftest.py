"""Fixtures: one PostgreSQL and Redis per run, a fresh database per server, real uvicorn servers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db import make_engine
from tests.support import DevUser, Postgres, RedisServer, ServerProcess, dev_user


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``LOOP_TIMING_PASS=only`` keeps the tests marked ``loop_timing``, ``skip`` the others
    (scripts/test's two passes; an environment variable, so a ``-m`` of the caller still
    applies). The deselected are reported as deselected, never as skipped."""
    mode = os.environ.get("LOOP_TIMING_PASS", "")
    if mode not in ("only", "skip"):
        return
    keep, drop = [], []
    for item in items:
        timed = item.get_closest_marker("loop_timing") is not None
        (keep if timed == (mode == "only") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    return Postgres()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server owned by the test run (restartable)."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    import os

    return os.environ.get("TEST_REDIS_URL") or redis_server.url


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="scr-data-"))


@pytest.fixture(scope="session")
async def database_url(postgres: Postgres) -> AsyncIterator[str]:
    """A migrated database shared by the session's default server."""
    async with postgres.migrated() as url:
        yield url


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def server(database_url: str, data_dir: Path) -> Iterator[ServerProcess]:
    """The default server: embedded-style single node, in-process broker, dev auth."""
    proc = ServerProcess(database_url=database_url, data_dir=data_dir,
                         env={"RATE_LIMIT_PER_MINUTE": "0", "SQL_STATEMENT_HEADER": "1"}).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
async def client(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    # Idle connections are dropped before uvicorn's 5 s keep-alive closes them: reusing one the
    # server is closing at that moment is a ReadError that says nothing about the server.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30,
                                 limits=httpx.Limits(keepalive_expiry=2.0)) as c:
        yield c


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> DevUser:
    return await dev_user(client, "Alice")


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> DevUser:
    return await dev_user(client, "Bob")
