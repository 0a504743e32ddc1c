"""The ASGI application: ``create_app(settings)`` composes every domain, collab and realtime."""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import logs, openapi
from server.auth import Authenticator
from server.db import install_statement_counter, make_engine, make_sessionmaker, statement_counter
from server.errors import ProblemError
from server.metrics import Metrics
from server.migrate import head_revision
from server.ratelimit import RateLimiter
from server.routing import Api, Operation
from server.settings import Settings
from server.state import Services, services

log = logging.getLogger("scriptorium.app")

WEB_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"

# A component starts with the app and stops with it: realtime broker and hub, collab rooms…
Component = Callable[[Services], AbstractAsyncContextManager[None]]


def domain_apis() -> list[Api]:
    """Every domain's REST routes. Imported here, not at module import, to keep imports cheap."""
    from server.catalog.api import api as catalog_api
    from server.editing.api import api as editing_api
    from server.feedback.api import api as feedback_api
    from server.flashcards.api import api as flashcards_api
    from server.forum.api import api as forum_api
    from server.gamification.api import api as gamification_api
    from server.learning.api import api as learning_api
    from server.media.api import api as media_api
    from server.notifications.api import api as notifications_api
    from server.users.api import api as users_api
    from server.web.api import api as web_api

    return [users_api, web_api, catalog_api, editing_api, forum_api, notifications_api, learning_api,
            feedback_api, media_api, gamification_api, flashcards_api]


def components() -> list[Component]:
    from server import live
    from server.editing.live import component as collab_component
    from server.gamification.activity import activity_component
    from server.loopwatch import component as loopwatch_component
    from server.markdown import component as markdown_component
    from server.metrics_listener import component as metrics_listener_component

    return [loopwatch_component, metrics_listener_component, markdown_component, live.component,
            collab_component, activity_component]


def socket_routes() -> list[BaseRoute]:
    """WebSocket endpoints: ``/ws`` live events (``/collab/lessons/{id}`` sockets never reach the
    router: ``CollabFastPath`` serves them ahead of it)."""
    from server import live

    return live.routes()


# --- errors ------------------------------------------------------------------------------


def problem_response(exc: ProblemError) -> Response:
    return JSONResponse(exc.to_problem(), status_code=exc.status, headers=exc.headers,
                        media_type="application/problem+json")


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(exc)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not Found", 405: "Method Not Allowed"}
    err = ProblemError(exc.detail if exc.detail else None, headers=dict(exc.headers or {}))
    err.status, err.title = exc.status_code, titles.get(exc.status_code, "Error")
    err.type_slug = err.title.lower().replace(" ", "-")
    err.detail = {404: "No such resource.", 405: "Method not allowed here."}.get(exc.status_code, err.detail)
    return problem_response(err)


async def on_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem_response(ProblemError("Something went wrong on our side."))


# --- middleware --------------------------------------------------------------------------


class RequestContext:
    """Request id, access log and metrics for every HTTP request (never logs the query string)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.replace("-", "").isalnum() else uuid.uuid4().hex
        token = logs.request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        if scope["type"] == "websocket":
            # The server's own send (not a wrapper): the /ws hub writes pre-encoded frames
            # straight to the transport when the server is uvicorn's sans-I/O protocol.
            scope["state"]["asgi_send"] = send
            try:
                await self.app(scope, receive, send)
            finally:
                logs.request_id.reset(token)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()
            self.metrics.latency.labels(scope["method"], template).observe(elapsed)
            if log.isEnabledFor(logging.DEBUG) or status >= 500:
                log.log(logging.ERROR if status >= 500 else logging.DEBUG, "request",
                        extra={"method": scope["method"], "path": scope["path"], "status": status,
                               "ms": round(elapsed * 1000, 2)})
            logs.request_id.reset(token)


class StatementCounter:
    """Adds ``X-SQL-Statements`` (SQL statements run for this request) when the setting is on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counter = [0]
        token = statement_counter.set(counter)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-sql-statements", str(counter[0]).encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            statement_counter.reset(token)


# --- infrastructure routes ----------------------------------------------------------------


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


WEB_RESERVED = ("api", "docs", "openapi.json", "metrics", "healthz", "readyz", "collab", "ws", "media")


def web_index() -> Response:
    index = WEB_DIST / "index.html"
    if not index.is_file():
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>Scriptorium</title>"
            "<h1>Scriptorium</h1><p>The API is running (web/dist is not built). "
            "See <a href='/docs'>/docs</a>.</p>"
        )
    return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})


class HashedAssets(StaticFiles):
    """web/dist/assets: file names carry a content hash, so they may be cached for a year."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def web_routes() -> list[BaseRoute]:
    """The web app from web/dist: `/`, hashed assets, and top-level files such as the favicon.

    Other app paths (/courses/…, /lessons/…) get index.html from :func:`spa_fallback`."""

    async def landing(request: Request) -> Response:
        return web_index()

    async def top_file(request: Request) -> Response:
        name = request.path_params["name"]
        candidate = WEB_DIST / name
        if name.startswith(".") or not candidate.is_file():
            raise HTTPException(404)
        return FileResponse(candidate, headers={"Cache-Control": "no-cache"})

    return [
        Route("/", landing, methods=["GET", "HEAD"]),
        Mount("/assets", app=HashedAssets(directory=WEB_DIST / "assets", check_dir=False), name="assets"),
        Route("/{name:str}.{ext:str}", top_file_with_ext(top_file), methods=["GET", "HEAD"]),
    ]


def top_file_with_ext(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        params = request.path_params
        request.scope["path_params"] = {"name": f"{params['name']}.{params['ext']}"}
        if params["name"] in WEB_RESERVED:
            raise HTTPException(404)
        return await handler(request)

    return wrapped


def spa_fallback(not_found: ASGIApp) -> ASGIApp:
    """The router's default: index.html for a GET of an app path (not API or infra), else 404."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            first = scope["path"].lstrip("/").split("/", 1)[0]
            accept = dict(scope.get("headers") or []).get(b"accept", b"")
            if first not in WEB_RESERVED and first != "assets" and b"text/html" in accept:
                await web_index()(scope, receive, send)
                return
        await not_found(scope, receive, send)

    return app


# --- the app ------------------------------------------------------------------------------


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set (the CLI starts an embedded PostgreSQL for you)")
    metrics = Metrics()
    apis = domain_apis()
    operations = [op for api in apis for op in api.operations]
    routes: list[BaseRoute] = [*infra_routes(settings, metrics, operations)]
    for api in apis:
        routes.extend(api.routes)
    routes.extend(socket_routes())
    from server.media.api import media_routes

    routes.extend(media_routes())
    routes.extend(web_routes())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        assert settings.database_url
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size,
                             max_overflow=settings.db_max_overflow)
        if settings.sql_statement_header:
            install_statement_counter(engine)
        sessions = make_sessionmaker(engine)
        svc = Services(settings=settings, engine=engine, sessions=sessions,
                       auth=Authenticator(settings, sessions), metrics=metrics,
                       rate_limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
                       restore_limiter=RateLimiter(
                           settings.restore_rate_per_minute if settings.rate_limit_per_minute > 0 else 0,
                           settings.restore_rate_burst))
        async with AsyncExitStack() as stack:
            for component in components():
                await stack.enter_async_context(component(svc))
            # Everything loaded so far lives as long as the process: keep it out of the collector's
            # full passes (they otherwise stall the event loop for tens of ms under load).
            gc.collect()
            gc.freeze()
            log.info("started", extra={"node_id": settings.node_id, "auth_mode": settings.auth_mode})
            try:
                yield {"services": svc}
            finally:
                log.info("stopping", extra={"node_id": settings.node_id})
        await engine.dispose()

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ProblemError: on_problem,
        HTTPException: on_http_exception,
        Exception: on_error,
    }
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    if settings.sql_statement_header:
        app.add_middleware(StatementCounter)
    app.router.default = spa_fallback(app.router.default)
    from server.editing.live import CollabFastPath

    app.add_middleware(CollabFastPath)
    from server.nul_guard import RefuseNul

    app.add_middleware(RefuseNul)
    app.add_middleware(RequestContext, metrics=metrics)
    return app
