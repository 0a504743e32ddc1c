"""Schemathesis stateful runs: creates linked to the operations on what they created.

/openapi.json declares no OpenAPI links yet, so they are added here: a ``201`` of ``POST
/api/…/<things>`` links to every operation under ``/api/<things>/{id}`` with ``id`` taken from
the created object (``$response.body#/id``), e.g. a course's create to its units, outline,
publish and delete, a unit's lesson create to the lesson's routes. Schemathesis then chains them
(create, read, change, delete, read again) as the author, checking every response like the
stateless run (tests/fuzz/api_fuzz.py).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.core.failures import FailureGroup

from tests.fuzz.api_fuzz import CHECKS, Report, _expected, _key
from tests.fuzz.api_world import World

_PARAM = re.compile(r"\{[^}]+\}")


def linked_spec(base_url: str) -> tuple[dict[str, Any], int]:
    """/openapi.json with links from each create to the operations on the created object."""
    spec: dict[str, Any] = httpx.get(base_url + "/openapi.json", timeout=30).json()
    links = 0
    for path, ops in spec["paths"].items():
        create = ops.get("post")
        if not create or "201" not in create["responses"]:
            continue
        tail = _PARAM.split(path)[-1].strip("/")
        tail = tail.removeprefix("api/")
        prefix = f"/api/{tail}/{{id}}"
        for target_path, target_ops in spec["paths"].items():
            if not target_path.startswith(prefix):
                continue
            for target in target_ops.values():
                params = {"id": "$response.body#/id"}
                for name in _PARAM.findall(target_path)[1:]:
                    params[name.strip("{}")] = "$response.body#/id"  # e.g. {vid}: not a created id, but valid
                create["responses"]["201"].setdefault("links", {})[f"to_{target['operationId']}"] = {
                    "operationId": target["operationId"], "parameters": params}
                links += 1
    return spec, links


def run(world: World, *, scenarios: int, steps: int = 6, derandomize: bool = True) -> Report:
    """``scenarios`` stateful scenarios of up to ``steps`` calls each, as the author."""
    spec, _ = linked_spec(world.base_url)
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.update(base_url=world.base_url)
    report = Report()
    headers = world.headers("author")

    class Scenario(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers, "timeout": 10, "base_url": world.base_url}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None,
                              **kwargs: Any) -> None:
            report.cases += 1
            report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except FailureGroup as group:
                if _expected(case.operation.path, response):
                    return
                for failure in group.exceptions:
                    key = "stateful " + _key(case.operation.method, case.operation.path, "author", failure)
                    report.failures.setdefault(key, f"{case.as_curl_command()} -> {response.status_code} "
                                                    f"{response.text[:300]!r}")

    run_state_machine_as_test(Scenario, settings=settings(
        max_examples=scenarios, stateful_step_count=steps, derandomize=derandomize, database=None,
        deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck)))
    report.operations = len(spec["paths"])
    return report
