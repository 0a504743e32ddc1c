"""Hostile request input never gives a 5xx (§3): deep JSON bodies, tampered cursors, odd query values.

Every route comes from ``/openapi.json``, so a route added later is swept too: each JSON-body route
gets a body nested 100,000 deep, each paginated list a set of tampered cursors, and the query
parameters that are numbers or dates get values Python's parsers choke on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.adversarial.probe import AttackWatch
from tests.support import DevUser, ServerProcess
from tests.support.catalog import build_course, enroll, ok

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


UUID0 = "00000000-0000-0000-0000-000000000000"
TAMPERED_CURSORS = [
    "!!!not-base64!!!",
    "a",  # one base64 character: invalid padding
    cursor_of(b"\xff\xfe\xfd"),  # not UTF-8
    cursor_of(b"[1"),  # not JSON
    cursor_of(b"{}"),  # not a list
    cursor_of(b"[]"),
    cursor_of(b"[1]"),  # too short
    cursor_of(json.dumps(["x", "y", "z", "w", "v"]).encode()),  # too long
    cursor_of(b"[" * 3000 + b"]" * 3000),  # nested past json.loads' recursion limit
    cursor_of(json.dumps([{"a": 1}, [2]]).encode()),
    cursor_of(json.dumps([None, None]).encode()),
    cursor_of(json.dumps([True, UUID0]).encode()),
    cursor_of(json.dumps(["2024-01-01", "not-a-uuid"]).encode()),
    cursor_of(json.dumps(["2024-01-01T00:00:00", UUID0]).encode()),  # naive timestamp
    cursor_of(json.dumps(["0001-01-01T00:00:00-23:59", UUID0]).encode()),  # before year 1 in UTC
    cursor_of(json.dumps(["9999-12-31T23:59:59+00:00", UUID0, 1]).encode()),
    cursor_of(json.dumps([10**30, UUID0]).encode()),  # over any integer column
    cursor_of(json.dumps([10**30, "2024-01-01T00:00:00Z", UUID0]).encode()),
    cursor_of(json.dumps(["2024-01-01T00:00:00Z", 10**30, UUID0]).encode()),
    cursor_of(b"[1e999, \"" + UUID0.encode() + b"\"]"),  # float overflow
    cursor_of(json.dumps(["x" * 5_000, UUID0]).encode()),
    cursor_of(json.dumps(["\u0000", UUID0]).encode()),  # NUL: PostgreSQL refuses it in text
    cursor_of(json.dumps([False, "2024-01-01T00:00:00Z", UUID0]).encode()),
]
ODD_VALUES = ["9" * 5000, "²", "-1", "1e3", "\u0000", "2024-13-45", "x" * 10_000, "0001-01-01", "9999-12-31"]


def problem(response: httpx.Response, what: str) -> list[str]:
    """What is wrong with an answer to hostile input: a 5xx, or an error that is not problem+json."""
    if response.status_code >= 500:
        return [f"{what} -> {response.status_code} {response.text[:200]}"]
    if response.status_code >= 400 and not response.headers.get("content-type", "").startswith(
            "application/problem+json"):
        return [f"{what} -> {response.status_code} {response.headers.get('content-type')}"]
    return []


async def send(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request; retried once on a new connection when the server dropped the previous one
    (it closes a keep-alive connection after an unhandled error, and the next request sees that)."""
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TransportError:
        return await client.request(method, url, **kwargs)


def assert_none(failures: list[str]) -> None:
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:40])


async def world(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser, bob: DevUser) -> dict[str, str]:
    """One object of each kind a path can name, owned by Alice (Bob is enrolled in her course)."""
    course = await build_course(client, alice)
    await enroll(db, bob, course.id)
    lesson = course.first_lesson
    post = ok(await client.post(f"/api/courses/{course.id}/forum/posts", headers=alice.headers,
                                json={"title": "T", "content": "C"}), 201)
    reply = ok(await client.post(f"/api/forum/posts/{post['id']}/replies", headers=alice.headers,
                                 json={"content": "R"}), 201)
    cards = ok(await client.post("/api/flashcard-sets", headers=alice.headers, json={"title": "S"}), 201)
    card = ok(await client.post(f"/api/flashcard-sets/{cards['id']}/cards", headers=alice.headers,
                                json={"front": "f", "back": "b"}), 201)
    quiz = ok(await client.post(f"/api/lessons/{lesson}/quizzes", headers=alice.headers, json={
        "title": "Q", "pass_score": 0.5,
        "questions": [{"id": "q1", "kind": "single", "prompt": "p", "options": ["a", "b"], "answer": 0}]}), 201)
    return {"course": course.id, "unit": course.units[0], "lesson": lesson, "post": post["id"],
            "reply": reply["id"], "set": cards["id"], "card": card["id"], "quiz": quiz["id"]}


def fill(path: str, ids: dict[str, str], user: DevUser) -> str:
    """A concrete URL for an OpenAPI path template, naming objects of ``ids``."""
    path = path.removeprefix("/api")
    by_prefix = {"/courses/": "course", "/units/": "unit", "/lessons/": "lesson", "/forum/posts/": "post",
                 "/forum/replies/": "reply", "/flashcard-sets/": "set", "/flashcards/": "card",
                 "/quizzes/": "quiz"}

    def name(match: re.Match[str]) -> str:
        param = match.group(1)
        if param == "clerk_id":
            return user.clerk_id
        before = path[: match.start()]
        for prefix, key in by_prefix.items():
            if before.endswith(prefix):
                return ids[key]
        return UUID0

    return "/api" + re.sub(r"\{(\w+)\}", name, path)


async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    loaded: dict[str, Any] = ok(await client.get("/openapi.json"))
    return loaded


async def test_deeply_nested_json_bodies_are_422(client: httpx.AsyncClient, db: AsyncEngine,
                                                 alice: DevUser, bob: DevUser) -> None:
    ids = await world(client, db, alice, bob)
    failures: list[str] = []
    checked = 0
    for path, methods in (await spec(client))["paths"].items():
        for method, operation in methods.items():
            if "requestBody" not in operation or "webhooks" in path:
                continue
            url = fill(path, ids, alice)
            for body in (DEEP, DEEP_OBJECT):
                response = await client.request(method.upper(), url, content=body, headers={
                    **alice.headers, "Content-Type": "application/json"})
                failures += problem(response, f"{method.upper()} {url} deep body")
                if response.status_code not in (401, 403, 404, 409, 415, 422):
                    failures.append(f"{method.upper()} {url}: {response.status_code} {response.text[:200]}")
                checked += 1
    assert_none(failures)
    assert checked >= 30


async def test_tampered_cursors_are_4xx(client: httpx.AsyncClient, db: AsyncEngine,
                                        alice: DevUser, bob: DevUser) -> None:
    ids = await world(client, db, alice, bob)
    failures: list[str] = []
    checked = 0
    for path, methods in (await spec(client))["paths"].items():
        operation = methods.get("get")
        if operation is None or not any(p["name"] == "cursor" for p in operation.get("parameters", [])):
            continue
        url = fill(path, ids, alice)
        for cursor in TAMPERED_CURSORS:
            for extra in ({}, {"q": "course"}, {"sort": "recent"}):
                response = await client.get(url, params={"cursor": cursor, **extra}, headers=alice.headers)
                failures += problem(response, f"GET {url} cursor={cursor[:40]} {extra}")
                checked += 1
    assert_none(failures)
    assert checked >= 12 * len(TAMPERED_CURSORS)


async def test_odd_query_values_are_4xx(client: httpx.AsyncClient, db: AsyncEngine,
                                        alice: DevUser, bob: DevUser) -> None:
    ids = await world(client, db, alice, bob)
    failures: list[str] = []
    for path, methods in (await spec(client))["paths"].items():
        operation = methods.get("get")
        if operation is None:
            continue
        names = [p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"]
        url = fill(path, ids, alice)
        for name in [*names, "limit", "days"]:
            for value in ODD_VALUES:
                response = await client.get(url, params={name: value}, headers=alice.headers)
                failures += problem(response, f"GET {url} {name}={value[:20]}")
    assert_none(failures)


@pytest.mark.parametrize("content_length", ["9" * 5000, "1" + "0" * 30])
async def test_odd_content_length(client: httpx.AsyncClient, alice: DevUser, content_length: str) -> None:
    """A Content-Length that is digits to ``str.isdigit`` but not to ``int`` (the server may also refuse it
    before the app sees it: any 4xx will do)."""
    try:
        response = await client.post("/api/flashcard-sets", content=b'{"title":"x"}',
                                     headers={**alice.headers, "Content-Type": "application/json",
                                              "Content-Length": content_length})
    except httpx.HTTPError:
        return  # refused at the protocol level, never reached the app
    assert response.status_code < 500, response.text


async def test_nul_in_json_text_is_422(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                       bob: DevUser) -> None:
    """PostgreSQL refuses NUL in text and jsonb: before, each of these was a 500."""
    ids = await world(client, db, alice, bob)
    failures: list[str] = []
    for method, url, body in (
        ("POST", "/api/courses", {"title": "a\u0000b"}),
        ("PATCH", "/api/me", {"name": "\u0000"}),
        ("POST", f"/api/courses/{ids['course']}/forum/posts", {"title": "t", "content": "x\u0000"}),
        ("PATCH", f"/api/lessons/{ids['lesson']}", {"content": {"body": "b", "video_url\u0000": "x"}}),
        ("POST", "/api/flashcard-sets", {"title": "s", "description": "\u0000"}),
    ):
        response = await client.request(method, url, json=body, headers=alice.headers)
        failures += problem(response, f"{method} {url}")
        if response.status_code != 422:
            failures.append(f"{method} {url}: {response.status_code} {response.text[:200]}")
    assert_none(failures)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_hostile_tokens_are_401(client: httpx.AsyncClient) -> None:
    """A token is parsed before its signature is checked: its header must not be able to break that."""
    failures: list[str] = []
    for header in (b"[" * 5000 + b"]" * 5000, b'{"alg":"RS256","kid":' + b"[" * 5000 + b"]" * 5000 + b"}",
                   b"\xff\xfe", b'{"alg":"RS256"}', b"null", b"1e999"):
        jwt = f"{b64url(header)}.{b64url(b'{}')}.{b64url(b'sig')}"
        for headers in ({"Authorization": f"Bearer {jwt}"}, {"Cookie": f"__session={jwt}"}):
            response = await client.get("/api/me", headers=headers)
            failures += problem(response, f"token header {header[:20]!r} via {next(iter(headers))}")
            if response.status_code != 401:
                failures.append(f"{header[:20]!r}: {response.status_code}")
    assert_none(failures)


async def test_malformed_multipart_is_4xx(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                          bob: DevUser) -> None:
    ids = await world(client, db, alice, bob)
    url = f"/api/lessons/{ids['lesson']}/media"
    failures: list[str] = []
    cases = [
        ("multipart/form-data; boundary=xyz", b"garbage without any boundary"),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n"),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\n" + b"X" * 100_000 + b"\r\n\r\ndata\r\n--xyz--\r\n"),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
         b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),  # never closed
        ("multipart/form-data; boundary=" + "b" * 5000, b"--x"),
        ("multipart/form-data; boundary=\"a b\"", b"--a b\r\n\r\n"),
    ]
    for content_type, body in cases:
        response = await client.post(url, content=body, headers={**alice.headers, "Content-Type": content_type})
        failures += problem(response, f"multipart {body[:30]!r}")
        if response.status_code < 400:
            failures.append(f"multipart {body[:30]!r}: {response.status_code}")
    assert_none(failures)


async def test_out_of_range_numbers_are_4xx(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                            bob: DevUser) -> None:
    """Numbers PostgreSQL columns cannot hold (int4 positions, CHECKed ranges) and JSON's
    non-standard NaN/Infinity: before, some of these reached the database and failed as 500s."""
    ids = await world(client, db, alice, bob)
    failures: list[str] = []
    raw_bodies = [
        ("POST", f"/api/flashcard-sets/{ids['set']}/cards", '{"front": "f", "back": "b", "position": %s}'),
        ("PATCH", f"/api/flashcards/{ids['card']}", '{"position": %s}'),
        ("POST", f"/api/courses/{ids['course']}/units", '{"title": "U", "position": %s}'),
        ("POST", f"/api/units/{ids['unit']}/lessons", '{"title": "L", "content_type": "text", "position": %s}'),
        ("PATCH", f"/api/lessons/{ids['lesson']}", '{"position": %s}'),
        ("PATCH", f"/api/quizzes/{ids['quiz']}", '{"pass_score": %s}'),
        ("POST", f"/api/courses/{ids['course']}/feedback", '{"rating": %s}'),
        ("POST", "/api/me/goals", '{"title": "G", "target_type": "lessons", "target_value": %s}'),
    ]
    for method, url, template in raw_bodies:
        for number in ("1" + "0" * 30, str(2**31), "-" + str(2**31), "1e999", "NaN", "Infinity", "1e10"):
            response = await send(client, method, url, content=(template % number).encode(),
                                  headers={**alice.headers, "Content-Type": "application/json"})
            failures += problem(response, f"{method} {url} {number}")
    assert_none(failures)


async def test_bodies_of_many_values_do_not_hold_the_loop(client: httpx.AsyncClient, server: ServerProcess,
                                                          alice: DevUser) -> None:
    """1 MiB of ``[],`` parsed in ~190 ms (json.loads holds the loop and the GIL): a body of more
    than 30,000 values is now refused from a count of its separators, before parsing."""
    lists = b"[" + b"[]," * 349_000 + b"[]]"
    numbers = b"[" + b"0," * 520_000 + b"0]"
    strings = b"[" + b'"",' * 349_000 + b'""]'  # the recount outside strings, at its worst
    escapes = b'["' + b'\\",' * 349_000  # an unterminated string of escaped quotes and commas
    async with AttackWatch(server) as watch:
        for body in (lists, numbers, strings, escapes) * 3:
            response = await client.post("/api/flashcard-sets", content=body,
                                         headers={**alice.headers, "Content-Type": "application/json"})
            assert response.status_code in (400, 422), response.text[:200]
            # Paced: what is measured is the work one body costs the server, not how fast this
            # process can push megabytes through loopback (the innocent client shares its GIL).
            await asyncio.sleep(0.05)
    watch.assert_unharmed()


async def test_odd_range_headers_on_media(client: httpx.AsyncClient, db: AsyncEngine, alice: DevUser,
                                          bob: DevUser) -> None:
    ids = await world(client, db, alice, bob)
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 2000
    media = ok(await client.post(f"/api/lessons/{ids['lesson']}/media", files={"file": ("a.png", png, "image/png")},
                                 headers=alice.headers), 201)
    failures: list[str] = []
    for value in ("bytes=abc", "bytes=99999999999999999999999-", "bytes=-0", "bytes=5-1", "lines=0-1",
                  "bytes=" + ",".join(f"{i}-{i}" for i in range(2000)), "bytes=0-1,\u00b2-3"):
        try:
            response = await send(client, "GET", media["url"], headers={"Range": value})
        except UnicodeEncodeError:
            continue
        if response.status_code >= 500:
            failures.append(f"Range {value[:40]} -> {response.status_code}")
    assert_none(failures)


async def test_long_searches_are_422(client: httpx.AsyncClient, alice: DevUser) -> None:
    """A 30,000-word ``q`` made websearch_to_tsquery exceed PostgreSQL's stack depth: a 500."""
    failures: list[str] = []
    for name in ("q", "tag", "author", "language"):
        for value in ("a " * 30_000, "a&b|" * 5_000, "x" * 201):
            response = await send(client, "GET", "/api/courses", params={name: value}, headers=alice.headers)
            failures += problem(response, f"{name}={value[:12]!r}")
            if response.status_code != 422:
                failures.append(f"{name}={value[:12]!r}: {response.status_code}")
    ok(await client.get("/api/courses", params={"q": "x" * 200}, headers=alice.headers))
    assert_none(failures)


async def test_brackets_and_commas_inside_text_are_one_value(client: httpx.AsyncClient, alice: DevUser) -> None:
    """The value count skips strings: Markdown full of ``![``, ``[x]`` and commas is one value."""
    course = await build_course(client, alice)
    body = "![" * 20_000 + "[x], " * 10_000 + "{a, b}" * 5_000
    lesson = ok(await client.patch(f"/api/lessons/{course.first_lesson}", json={"content": {"body": body}},
                                   headers=alice.headers))
    assert lesson["content"]["body"] == body
