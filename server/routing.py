"""Declaring REST routes once: the Starlette route and its OpenAPI description together.

The declared ``auth`` is enforced here, not only documented: a route that needs a user (the
default) answers 401 to a caller without a token before its handler runs, so a handler that reads
the caller with ``current_user`` cannot serve anonymous callers by accident. Only routes declared
``auth="optional"`` or ``"none"`` are reachable without a token (§2's public catalogue).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

Endpoint = Callable[[Request], Awaitable[Response]]
AuthNeed = Literal["none", "optional", "user"]


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    status: int = 200
    body: type[BaseModel] | None = None
    auth: AuthNeed = "user"
    query: dict[str, str] = field(default_factory=dict)
    multipart: bool = False
    also: tuple[int, ...] = ()  # other success statuses (e.g. 200 when a create updates instead)


def _signed_in_only(endpoint: Endpoint) -> Endpoint:
    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        from server.auth import require_user  # server.auth imports the domain models

        await require_user(request)  # memoised on the request: the handler's own call is free
        return await endpoint(request)

    return guarded


class Api:
    """A domain's routes: ``api = Api("forum")`` then ``@api.get("/forum/posts/{id}")``."""

    prefix = "/api"

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.routes: list[BaseRoute] = []
        self.operations: list[Operation] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        body: type[BaseModel] | None = None,
        auth: AuthNeed = "user",
        query: dict[str, str] | None = None,
        multipart: bool = False,
        also: tuple[int, ...] = (),
    ) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            full = self.prefix + path
            doc = (endpoint.__doc__ or endpoint.__name__.replace("_", " ")).strip().splitlines()[0]
            self.operations.append(
                Operation(method, full, doc, self.tag, status, body, auth, dict(query or {}), multipart, also)
            )
            handler = _signed_in_only(endpoint) if auth == "user" else endpoint
            self.routes.append(Route(full, handler, methods=[method], name=f"{self.tag}.{endpoint.__name__}"))
            return endpoint

        return register

    def get(self, path: str, **kw: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("DELETE", path, **kw)
