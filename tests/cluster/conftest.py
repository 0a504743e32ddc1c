"""The collab and live suites against a real Redis Cluster (3 masters, 3 replicas) started by the
test run: tests/support/redis_cluster.py; a database of each module's own
(tests/support/module_db.py)."""

from collections.abc import Iterator

import pytest

from tests.support.module_db import module_database_url, module_db  # noqa: F401 (fixtures)
from tests.support.redis_cluster import RedisCluster


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A 3-master, 3-replica Redis Cluster of this test run's own."""
    cluster = RedisCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
