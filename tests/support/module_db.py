"""A migrated database of each test module's own, under the session fixtures' names
(``database_url``, ``db``). A conftest imports these where its modules must not inherit what the
rest of the run left in the shared database: the fault and cluster suites start Redis servers of
their own, and a node on a fresh Redis first restores the live history and drains the outbox of
every earlier test into it. The session fixtures built on the shared database (``server``,
``client``, ``alice``…) must not be used beside these: they would not see this database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db import make_engine
from tests.support import Postgres


@pytest.fixture(scope="module", name="database_url")
async def module_database_url(postgres: Postgres) -> AsyncIterator[str]:
    async with postgres.migrated() as url:
        yield url


@pytest.fixture(scope="module", name="db")
async def module_db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()
