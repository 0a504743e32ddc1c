"""Refuse a NUL character in a request's path or query string (400 problem+json).

PostgreSQL cannot store or even compare text holding NUL: such a value in a query parameter or a
path segment (a clerk_id, a search term) otherwise reaches a bind parameter and fails as a 500.
Checked once here rather than at every place that reads a parameter.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import BadRequest


class RefuseNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_nul(scope):
            problem = BadRequest("The path or query holds a NUL character.")
            response = JSONResponse(problem.to_problem(), status_code=problem.status,
                                    media_type="application/problem+json")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _has_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    path: str = scope.get("path", "")
    return "\x00" in path or b"\x00" in query or b"%00" in query
