"""The app shell through a real server: health, docs, metrics, problem details, body limits."""

from __future__ import annotations

import httpx

from tests.support import DevUser


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["migrations"] == "ok"


async def test_openapi_lists_routes_and_docs_page_serves(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert "get" in spec["paths"]["/api/me"] and "patch" in spec["paths"]["/api/me"]
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text


async def test_metrics_exposes_request_counts(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    body = (await client.get("/metrics")).text
    assert 'scriptorium_http_requests_total{method="GET",route="/healthz",status="200"}' in body


async def test_errors_are_problem_json(client: httpx.AsyncClient, alice: DevUser) -> None:
    missing = await client.get("/api/does-not-exist")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["title"] == "Not Found"
    wrong_method = await client.delete("/api/me", headers=alice.headers)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"
    assert "x-request-id" in missing.headers


async def test_bad_bodies(client: httpx.AsyncClient, alice: DevUser) -> None:
    malformed = await client.patch("/api/me", content=b"{not json", headers=alice.headers)
    assert malformed.status_code == 400
    wrong_type = await client.patch("/api/me", json={"name": 42}, headers=alice.headers)
    assert wrong_type.status_code == 422
    assert wrong_type.json()["errors"][0]["loc"] == "name"
    too_long = await client.patch("/api/me", json={"name": "x" * 500}, headers=alice.headers)
    assert too_long.status_code == 422
    unknown_zone = await client.patch("/api/me", json={"timezone": "Mars/Olympus"}, headers=alice.headers)
    assert unknown_zone.status_code == 422
    assert unknown_zone.json()["errors"][0]["loc"] == "timezone"
    huge = await client.patch("/api/me", content=b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}',
                              headers={**alice.headers, "content-type": "application/json"})
    assert huge.status_code == 413
    assert huge.headers["content-type"] == "application/problem+json"


async def test_patch_me_returns_whole_object(client: httpx.AsyncClient, alice: DevUser) -> None:
    response = await client.patch("/api/me", json={"name": "Alice B", "timezone": "Europe/Berlin"},
                                  headers=alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Alice B" and body["timezone"] == "Europe/Berlin"
    assert body == (await client.get("/api/me", headers=alice.headers)).json()
