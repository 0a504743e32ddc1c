"""Infrastructure routes: /healthz, /readyz, /metrics (when served on the app), /openapi.json, /docs."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server import openapi
from server.metrics import Metrics
from server.migrate import head_revision
from server.routing import Operation
from server.settings import Settings
from server.state import services


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = services(request)
    checks: dict[str, Any] = {}
    try:
        async with svc.engine.connect() as conn:
            current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        checks["database"] = "ok"
        checks["migrations"] = "ok" if current == head_revision() else f"at {current}, head is {head_revision()}"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if svc.broker is not None:
        try:
            await svc.broker.ping()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503)


def infra_routes(settings: Settings, metrics: Metrics, operations: list[Operation]) -> list[BaseRoute]:
    spec = openapi.build(operations)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(spec)

    async def docs(request: Request) -> Response:
        return HTMLResponse(openapi.DOCS_HTML)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    # Metrics reveal traffic, users online and rooms: on the public port only when asked for
    # (METRICS=on, local runs and tests); METRICS=host:port serves them apart (metrics_listener).
    if settings.metrics == "app":
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    return routes
