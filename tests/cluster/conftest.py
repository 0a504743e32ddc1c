"""The collab and live suites against a real Redis Cluster (3 masters, 3 replicas) started by the
test run: tests/support/redis_cluster.py; a database of each module's own
(tests/support/module_db.py)."""

from tests.support.module_db import module_database_url, module_db  # noqa: F401 (fixtures)
from tests.support.redis_cluster import redis_cluster  # noqa: F401 (session fixture)
