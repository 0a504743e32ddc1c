"""Schemathesis against /openapi.json with real tokens and seeded ids: no 5xx, declared schemas, no tracebacks.

The short, derandomized run of issue 11; the long run is bench/fuzz/api_long.py (figures in
bench/fuzz/RESULTS.md).
"""

from __future__ import annotations

import pytest

from tests.fuzz import api_fuzz, api_stateful
from tests.fuzz.api_world import seed
from tests.support import ServerProcess

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning")


def test_every_operation_under_schemathesis(server: ServerProcess) -> None:
    assert server.log_path is not None
    log_start = server.log_path.stat().st_size
    world = seed(server.base_url, tag="schemathesis")

    report = api_fuzz.run(world, positive=5, negative=3)

    print(report.summary())
    assert report.operations >= 90, report.summary()
    assert report.cases >= 3 * report.operations, report.summary()
    # Real ids reach real rows: most cases are answered with something other than 404.
    assert sum(n for code, n in report.statuses.items() if code < 300) >= report.operations // 2, report.summary()
    failures = "\n".join(f"{key}\n    {example}" for key, example in sorted(report.failures.items()))
    assert not report.failures, f"{report.summary()}\n{failures}"
    with server.log_path.open("rb") as log:
        log.seek(log_start)
        tail = log.read().decode(errors="replace")
    assert "Traceback" not in tail, tail[-5000:]


def test_stateful_scenarios_over_create_links(server: ServerProcess) -> None:
    """Create → read/change/delete chains (links added by tests/fuzz/api_stateful.py), as the author."""
    world = seed(server.base_url, tag="stateful")
    _, links = api_stateful.linked_spec(server.base_url)
    assert links >= 40, links

    report = api_stateful.run(world, scenarios=12)

    print(report.summary())
    assert report.statuses.get(201, 0) >= 3, report.summary()  # the chains do create things
    failures = "\n".join(f"{key}\n    {example}" for key, example in sorted(report.failures.items()))
    assert not report.failures, f"{report.summary()}\n{failures}"
