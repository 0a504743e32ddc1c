"""Fixtures of the fault suites: services the test owns, so it may stop them, and a database of
each module's own (tests/support/module_db.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import RedisServer
from tests.support.module_db import module_database_url, module_db  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this module's own (never the machine's shared one)."""
    server = RedisServer().start()
    yield server
    server.stop()
