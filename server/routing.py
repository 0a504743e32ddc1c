"""Declaring REST routes once: the Starlette route and its OpenAPI description together."""

from __future__ import annotations

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
            self.routes.append(Route(full, endpoint, methods=[method], name=f"{self.tag}.{endpoint.__name__}"))
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
