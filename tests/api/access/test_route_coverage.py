"""Every REST route has an access declaration (the router refuses to register one without) and a
row in the access table (tests/api/access/test_access_table*.py), and every success body has a declared
response model, so no route can be added without saying who may call it and what it answers."""

from __future__ import annotations

import importlib
import pkgutil
import re

import server
from server.routing import Api, Operation
from tests.api.access import (
    test_access_table,
    test_access_table_catalog,
    test_access_table_editing,
    test_access_table_forum,
    test_access_table_learning,
    test_access_table_me,
)

TABLES = (test_access_table, test_access_table_learning, test_access_table_catalog, test_access_table_forum,
          test_access_table_editing, test_access_table_me)


def operations() -> list[Operation]:
    found: list[Operation] = []
    for module in pkgutil.walk_packages(server.__path__, "server."):
        if module.name.endswith(".api"):
            api = getattr(importlib.import_module(module.name), "api", None)
            if isinstance(api, Api):
                found.extend(api.operations)
    return found


def shape(method: str, path: str) -> str:
    return f"{method} {re.sub(r'{[^}]*}', '{}', path.partition('?')[0])}"  # a row may carry a query


def test_every_route_is_found() -> None:
    assert len(operations()) >= 95  # the routes of docs/API.md §4 and the web shell's


def test_every_route_has_a_row_in_the_access_table() -> None:
    rows = {shape(case.method, "/api" + case.path) for table in TABLES for case in table.CASES}
    missing = sorted(shape(op.method, op.path) + f"  [{op.access.name}]" for op in operations()
                     if shape(op.method, op.path) not in rows)
    assert not missing, "routes with no row in the access table:\n" + "\n".join(missing)


def test_every_write_row_has_a_probe() -> None:
    lacking = [case.id for table in TABLES for case in table.CASES if case.method != "GET" and not case.probe]
    assert not lacking, "writes whose effect the access table cannot see:\n" + "\n".join(lacking)


def test_every_success_body_has_a_response_model() -> None:
    missing = sorted(shape(op.method, op.path) for op in operations()
                     if op.status != 204 and op.response is None)
    assert not missing, "routes without response=:\n" + "\n".join(missing)
