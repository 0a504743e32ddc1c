"""Errors as RFC 9457 problem+json (docs/API.md §1): the app's exception handlers.

Domain code raises :class:`server.errors.ProblemError`; Starlette's own 404/405 and anything
unexpected are answered in the same shape (the latter logged, never shown to the client).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.errors import ProblemError

log = logging.getLogger("scriptorium.app")


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


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    return {ProblemError: on_problem, HTTPException: on_http_exception, Exception: on_error}
