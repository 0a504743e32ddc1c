"""Schemathesis against a running server's ``/openapi.json``: every operation, every kind of caller.

Each operation gets ``positive`` schema-valid and ``negative`` schema-invalid cases; path ids come
from the seeded :class:`~tests.fuzz.api_world.World` (or are generated), the caller is drawn from
author, learner, stranger and anonymous. Failures are collected (not raised) so one run lists them
all; each is one line ``METHOD path [role]: check: message``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from tests.fuzz.api_world import ROLES, World

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
# Order: reads first, writes next, deletes last, so the seeded rows serve as many cases as possible.
_METHOD_ORDER = {"get": 0, "put": 1, "post": 1, "patch": 2, "delete": 3}


@dataclass
class Report:
    cases: int = 0
    operations: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # key -> first example (curl-ish)
    seconds: float = 0.0
    unsatisfiable: list[str] = field(default_factory=list)

    def summary(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (f"{self.cases} cases over {self.operations} operations in {self.seconds:.1f}s; statuses {codes}; "
                f"{len(self.failures)} distinct failures")


def _expected(path: str, response: requests.Response) -> bool:
    """Answers that are right although a check flags them."""
    # Dev mode cannot have a webhook secret (AUTH_MODE=dev is refused with CLERK_* set): 503 is the
    # documented answer of an unconfigured endpoint, not a crash.
    return (path == "/api/webhooks/clerk" and response.status_code == 503
            and "CLERK_WEBHOOK_SECRET is not configured" in response.text)


def _key(method: str, path: str, role: str, failure: Any) -> str:
    title = getattr(failure, "title", type(failure).__name__)
    return f"{method.upper()} {path} [{role}]: {title}"


def run(world: World, *, positive: int, negative: int, seed: int | None = None, timeout: float = 10.0,
        on_case: Callable[[Report], None] | None = None) -> Report:
    """Fuzz every operation; ``positive``/``negative`` examples each (hypothesis ``max_examples``).

    Without ``seed`` the run is derandomized (the same cases every time: the in-suite run); with
    one, each operation draws from ``seed`` + its index (the long runs vary it).
    """
    schema = schemathesis.openapi.from_url(world.base_url + "/openapi.json")
    report = Report()
    session = requests.Session()
    started = time.monotonic()
    operations = [r.ok() for r in schema.get_all_operations()]
    operations.sort(key=lambda op: (_METHOD_ORDER.get(op.method.lower(), 1), op.path))
    report.operations = len(operations)
    for index, op in enumerate(operations):
        for mode, examples in ((GenerationMode.POSITIVE, positive), (GenerationMode.NEGATIVE, negative)):
            if examples > 0:
                test = _operation_test(world, op, mode, examples, seed is None, report, session, timeout, on_case)
                try:
                    (test if seed is None else hypothesis_seed(seed + index)(test))()
                except Unsatisfiable:
                    # Nothing of this operation can be made invalid (no parameters, no body).
                    report.unsatisfiable.append(f"{op.method.upper()} {op.path} {mode.value}")
    report.seconds = time.monotonic() - started
    session.close()
    return report


def _operation_test(world: World, op: Any, mode: GenerationMode, examples: int, derandomize: bool, report: Report,
                    session: requests.Session, timeout: float,
                    on_case: Callable[[Report], None] | None) -> Callable[[], None]:
    # Each path parameter: a real id of the right resource, or whatever schemathesis generates (None).
    fixed = st.fixed_dictionaries({p.name: st.sampled_from([*world.pool(op.path, p.name), None])
                                   for p in op.path_parameters})

    @given(data=st.data(), role=st.sampled_from(ROLES), chosen=fixed)
    @settings(max_examples=examples, derandomize=derandomize, database=None, deadline=None, print_blob=False,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def one(data: st.DataObject, role: str, chosen: dict[str, str | None]) -> None:
        path_parameters = {k: v for k, v in chosen.items() if v is not None}
        case = data.draw(op.as_strategy(mode, path_parameters=path_parameters or None))
        # The caller is the drawn role: schemathesis' own made-up bearer tokens would make nearly every
        # case a 401 and test nothing behind authentication.
        headers = world.headers(role)
        if case.headers is not None:
            case.headers.pop("Authorization", None)
        response = case.call(base_url=world.base_url, session=session, headers=headers, timeout=timeout)
        report.cases += 1
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            if _expected(op.path, response):
                return
            for failure in group.exceptions:
                key = _key(op.method, op.path, role, failure)
                if key not in report.failures:
                    report.failures[key] = (f"{case.as_curl_command()} -> {response.status_code} "
                                            f"{response.text[:300]!r}")
        if on_case is not None:
            on_case(report)

    return one  # type: ignore[no-any-return]
