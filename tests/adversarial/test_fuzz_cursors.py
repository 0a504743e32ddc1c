"""Tampered ``cursor`` values on every paginated route: always a 4xx problem (or a page), never a 5xx.

A cursor is base64 of a JSON list the server made; a client can send any bytes instead. Each list
route that takes ``cursor`` (from /openapi.json, path ids filled with seeded rows) gets well-formed
base64 JSON of the wrong shape and types (strings with NUL or lone surrogates, huge numbers,
nested values, wrong lengths) and plain garbage. Deeply nested cursors are a separate known item.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fuzz.api_world import seed
from tests.support import ServerProcess

_PARAM = re.compile(r"\{([^}]+)\}")

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "2024-01-01T00:00:00+00:00", "2024-13-45",
                     "00000000-0000-0000-0000-000000000000", "not-a-uuid", "9" * 40, "-1", ""]),
)
cursor_values = st.one_of(
    st.lists(st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars,
                                                                               max_size=3)), max_size=5),
    scalars, st.dictionaries(st.text(max_size=5), scalars, max_size=3),
)


def _encode(value: Any) -> str:
    raw = json.dumps(value).encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


raw_cursors = st.one_of(cursor_values.map(_encode), st.text(max_size=60),
                        st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode()))


def test_tampered_cursors_are_4xx(server: ServerProcess) -> None:
    world = seed(server.base_url, tag="cursors")
    spec = httpx.get(server.base_url + "/openapi.json").json()
    headers = world.headers("author")
    routes = []
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http:
        for path, ops in spec["paths"].items():
            get = ops.get("get")
            if not (get and any(p["name"] == "cursor" and p["in"] == "query" for p in get["parameters"])):
                continue
            # The first filling of the path ids with seeded rows that the author can list.
            candidates = [path]
            for name in _PARAM.findall(path):
                pool = world.pool(path, name)
                assert pool, f"no seeded id for {name} of {path}"
                candidates = [c.replace("{" + name + "}", v) for c in candidates for v in pool]
            # a search needs its words (q): a plain one
            if any(p["name"] == "q" and p["in"] == "query" for p in get["parameters"]):
                candidates = [f"{c}?q=post" for c in candidates]
            found = next((c for c in candidates if http.get(c).status_code == 200), None)
            assert found, f"no seeded filling of {path} answers 200: {candidates[:3]}"
            routes.append(found)
    assert len(routes) >= 12, routes
    failures: dict[str, str] = {}

    # No keep-alive: uvicorn drops the connection after an unhandled error, which would fail the next case.
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30,
                      limits=httpx.Limits(max_keepalive_connections=0)) as http:
        for route in routes:
            _fuzz_route(http, route, failures)()
    assert not failures, "\n".join(f"{k} (cursor {v!r})" for k, v in sorted(failures.items()))


# Tried on every route besides what hypothesis draws: one of each kind of wrong value.
NASTY = [_encode(v) for v in ([], ["\x00"], ["\ud800"], [None], [1], ["x"], [10**30], [1.5e308], [True, True],
                              ["2024-01-01T00:00:00+00:00", "x"], ["2024-01-01T00:00:00+00:00", "\x00"],
                              [1, 2, 3, 4], {"a": 1}, "x")] + ["!!!", "%%", "\x00"]


def _fuzz_route(http: httpx.Client, route: str, failures: dict[str, str]) -> Any:
    test = given(cursor=raw_cursors)(_check(http, route, failures))
    for cursor in NASTY:
        test = example(cursor=cursor)(test)
    return test


def _check(http: httpx.Client, route: str, failures: dict[str, str]) -> Any:
    @settings(max_examples=20, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    def one(cursor: str) -> None:
        response = http.get(route, params={"cursor": cursor})
        if response.status_code >= 500 or (
                response.status_code >= 400 and response.headers.get("content-type") != "application/problem+json"):
            failures.setdefault(f"{route} -> {response.status_code}", cursor)

    return one
