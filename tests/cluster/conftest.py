"""The collab and live suites against a real Redis Cluster (3 masters, 3 replicas) started by the
test run: tests/support/redis_cluster.py."""

from tests.support.redis_cluster import redis_cluster  # noqa: F401 (session fixture)
