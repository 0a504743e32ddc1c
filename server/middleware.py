"""The app's own ASGI middleware: request id, access log and metrics; the SQL statement header.

(The NUL guard is :mod:`server.nul_guard`, the collab socket fast path :mod:`server.editing.live`.)
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import logs
from server.db import statement_counter
from server.metrics import Metrics

log = logging.getLogger("scriptorium.app")


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
