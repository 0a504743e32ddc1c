"""The ASGI application: ``create_app(settings)`` assembles every domain, collab and realtime.

Only assembly lives here (as Starlette's ``applications.py``): which REST APIs, sockets, components
and middleware make up the app, in what order. Each piece is its own module; see the module map
in :mod:`server`.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from server.auth import Authenticator
from server.db import install_statement_counter, make_engine, make_sessionmaker
from server.infra import infra_routes
from server.metrics import Metrics
from server.middleware import RequestContext, StatementCounter
from server.nul_guard import RefuseNul
from server.problems import exception_handlers
from server.ratelimit import make_rate_limiter
from server.routing import Api
from server.settings import Settings
from server.state import Services
from server.web.static import spa_fallback, web_routes

log = logging.getLogger("scriptorium.app")

# The cyclic collector's thresholds: CPython's defaults but for the third. A full pass visits every
# object made since startup's freeze (2,500 open documents: ~37,000; 10-22 ms of held event loop
# measured under load), and was the longest stall of a 50-document load: once in each 10 s round,
# while full collections run every 2 s through that load found no garbage at all. With 10 (the
# default) a full pass may run after 10 passes of the middle generation (~20 s under that load);
# with 100, after 100, i.e. once 100 x 10 x 700 more container objects were made than freed (and,
# on CPython 3.11-3.13, once those surviving into the oldest generation are a quarter of it).
# Garbage cycles that reach the oldest generation wait that much longer, so connections must not
# leave cycles behind (tests/collab/test_hocuspocus.py checks a finished socket frees by reference
# counting alone). CPython 3.14's incremental collector ignores the third threshold.
GC_THRESHOLDS = (700, 10, 100)

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
    from server.editing.live import component as collab_component
    from server.gamification.activity import activity_component
    from server.loopwatch import component as loopwatch_component
    from server.markdown import component as markdown_component
    from server.metrics_listener import component as metrics_listener_component
    from server.ws.wiring import component as live_component

    return [loopwatch_component, metrics_listener_component, markdown_component, live_component,
            collab_component, activity_component]


def socket_routes() -> list[BaseRoute]:
    """WebSocket endpoints: ``/ws`` live events (``/collab/lessons/{id}`` sockets never reach the
    router: ``CollabFastPath`` serves them ahead of it)."""
    from server.ws.wiring import routes as live_routes

    return live_routes()


async def drain(state: Mapping[str, Any]) -> None:
    """SIGTERM, before the server closes any connection (it accepts no new one already; see
    :class:`server.cli.DrainingServer`): every collab room's log flushed and text materialised, then
    its sockets closed 1012 so clients reconnect elsewhere. ``state``: what the lifespan yielded.
    In-flight REST requests then finish, and the lifespan's shutdown stops the components."""
    svc = state.get("services")
    if isinstance(svc, Services) and svc.rooms is not None:
        await svc.rooms.drain()


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
                       rate_limiter=make_rate_limiter(
                           settings.rate_limit_per_minute, settings.rate_limit_burst,
                           redis_url=settings.redis_url, prefix=settings.redis_prefix, name="writes"),
                       restore_limiter=make_rate_limiter(
                           settings.restore_rate_per_minute if settings.rate_limit_per_minute > 0 else 0,
                           settings.restore_rate_burst,
                           redis_url=settings.redis_url, prefix=settings.redis_prefix, name="restore"))
        async with AsyncExitStack() as stack:
            stack.push_async_callback(svc.rate_limiter.close)
            stack.push_async_callback(svc.restore_limiter.close)
            for component in components():
                await stack.enter_async_context(component(svc))
            # Everything loaded so far lives as long as the process: keep it out of the collector's
            # full passes (they otherwise stall the event loop for tens of ms under load).
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            log.info("started", extra={"node_id": settings.node_id, "auth_mode": settings.auth_mode})
            try:
                yield {"services": svc}
            finally:
                log.info("stopping", extra={"node_id": settings.node_id})
        await engine.dispose()

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=exception_handlers())
    if settings.sql_statement_header:
        app.add_middleware(StatementCounter)
    app.router.default = spa_fallback(app.router.default)
    from server.editing.live import CollabFastPath

    app.add_middleware(CollabFastPath)
    app.add_middleware(RefuseNul)
    app.add_middleware(RequestContext, metrics=metrics)
    return app
