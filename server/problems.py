"""Errors as RFC 9457 problem+json (docs/API.md §1): the app's exception handlers.

Domain code raises :class:`server.errors.ProblemError`; Starlette's own 404/405 and anything
unexpected are answered in the same shape (the latter logged, never shown to the client).

PostgreSQL or Redis being unreachable (refused or lost connections, a server shutting down, an
exhausted pool; :func:`unavailable_cause`) is not a bug of ours: it is answered **503** with
``Retry-After`` (:class:`~server.errors.ServiceUnavailable`) and logged as one warning per burst,
not a stack trace per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import asyncpg
import redis.exceptions
import sqlalchemy.exc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.errors import ProblemError, ServiceUnavailable

log = logging.getLogger("scriptorium.app")

RETRY_AFTER_S = 5
UNAVAILABLE_LOG_EVERY_S = 30.0  # one warning per burst of 503s

# PostgreSQL errors that mean "the server is not there (for now)": connection exceptions (08xxx),
# admin / crash shutdown and "the database system is starting up / shutting down" (57P01-57P03),
# too many connections (53300).
_PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
)
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    *_PG_UNAVAILABLE,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free in time
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
)
# Where an OSError (refused, reset, no socket file, timed out) means the database or Redis.
_CLIENT_MODULES = ("/asyncpg/", "/redis/", "/sqlalchemy/pool/")


def _raised_in_client(tb: TracebackType | None) -> bool:
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        if any(part in filename for part in _CLIENT_MODULES):
            return True
        tb = tb.tb_next
    return False


def _is_unavailable(err: BaseException) -> bool:
    if isinstance(err, _UNAVAILABLE):
        return True
    if isinstance(err, sqlalchemy.exc.DBAPIError) and err.connection_invalidated:
        return True  # SQLAlchemy's verdict: the connection died under this statement
    if isinstance(err, asyncpg.InterfaceError) and "connection is closed" in str(err):
        return True
    return isinstance(err, OSError) and _raised_in_client(err.__traceback__)


def unavailable_cause(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain (itself, ``__cause__``, ``__context__``) saying that PostgreSQL
    or Redis is unreachable, else None (a bug, or a query that failed on a live database)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        err = pending.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if _is_unavailable(err):
            return err
        if isinstance(err, sqlalchemy.exc.DBAPIError) and isinstance(err.orig, BaseException):
            pending.append(err.orig)
        pending.extend(e for e in (err.__cause__, err.__context__) if e is not None)
    return None


class _BurstLog:
    """One warning when a burst of 503s starts, then at most one per ``every`` seconds (with the
    number answered meanwhile): an outage under load is not a log line per request."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.last = -1e18
        self.suppressed = 0

    def note(self, cause: BaseException, path: str) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.suppressed += 1
            return
        log.warning("database or redis unavailable; answering 503", extra={
            "path": path, "error": f"{type(cause).__module__}.{type(cause).__name__}: {cause}",
            "suppressed": self.suppressed})
        self.last, self.suppressed = now, 0


_unavailable_log = _BurstLog(UNAVAILABLE_LOG_EVERY_S)


def unavailable_response(cause: BaseException, request: Request) -> Response:
    _unavailable_log.note(cause, request.url.path)
    return problem_response(ServiceUnavailable(
        "A service this request needs (the database) is unreachable right now; retry shortly.",
        headers={"Retry-After": str(RETRY_AFTER_S)}))


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
    """Anything unexpected: 503 when it is an unreachable database or Redis, else a logged 500.

    Registered for ``Exception`` (Starlette's outermost handler, which re-raises to the server
    after answering) and for the types a connection failure surfaces as (answered where they are
    raised, so an outage does not print a server traceback per request)."""
    cause = unavailable_cause(exc)
    if cause is not None:
        return unavailable_response(cause, request)
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem_response(ProblemError("Something went wrong on our side."))


# The outer types of a connection failure: OSError (asyncpg's connect raises it bare), SQLAlchemy's
# wrappers and pool timeout, asyncpg's and redis' own (a route using them directly).
_CONNECTION_FAILURE_TYPES: tuple[type[Exception], ...] = (
    OSError, sqlalchemy.exc.DBAPIError, sqlalchemy.exc.TimeoutError, asyncpg.PostgresError,
    asyncpg.InterfaceError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
)


async def on_connection_failure(request: Request, exc: Exception) -> Response:
    if request.scope["type"] != "http":
        raise exc  # a socket's failure is its endpoint's (or the server's) to close, as before
    return await on_error(request, exc)


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        kind: on_connection_failure for kind in _CONNECTION_FAILURE_TYPES}
    handlers.update({ProblemError: on_problem, HTTPException: on_http_exception, Exception: on_error})
    return handlers
