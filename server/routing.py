"""Declaring REST routes once: the Starlette route, who may call it, what it answers, and its
OpenAPI description, together.

Every route declares ``access=`` (required: a route cannot be registered without one). The wrapper
built here enforces it before the handler runs, in this order:

1. identity: ``access.auth`` — ``"user"`` answers 401 to a caller without a valid token;
   ``"optional"`` reads the caller if there is one; ``"none"`` never looks.
2. the named policy (``access.check``, from :mod:`server.access`): e.g. "editors of the course
   at ``{id}``". It raises 404 (hidden or unknown) or 403 (visible but not yours) and returns what
   it learned (a :class:`~server.access.CourseAccess`, or ``None``), which the handler reads with
   :func:`granted` instead of asking again.

Only then does the handler run, so a handler cannot forget a check, and the access table test
(tests/api/test_access_table.py) can list every route with its policy from ``Operation.access``.

Responses: ``response=`` names the pydantic model of the success body (omitted only for 204). It
is published in /openapi.json and, when the server runs with ``CHECK_RESPONSES=1`` (the test suite
always sets it), every JSON success body is validated against it: a body that does not match is
logged and answered 500, so a test that gets an undeclared shape fails where it happened.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from server.auth import Principal

Endpoint = Callable[[Request], Awaitable[Response]]
AuthNeed = Literal["none", "optional", "user"]
Check = Callable[[Request, "Principal | None"], Awaitable[Any]]
# A policy that reads the caller's ``users`` row in its own statement (see ``Access.fused``):
# given the request and the token's ``sub``, the row's PRINCIPAL_COLUMNS values (None when there
# is no such user) and the decision to apply to the Principal made of it; None to decline.
Decide = Callable[["Principal"], Any]
Fused = Callable[[Request, str], Awaitable["tuple[Sequence[Any] | None, Decide] | None"]]

logger = logging.getLogger("scriptorium.routing")


@dataclass(frozen=True)
class Access:
    """Who may call a route: an identity need and, optionally, a named policy check.

    Build them in :mod:`server.access` (``PUBLIC``, ``VISITOR``, ``SIGNED_IN``, ``edit_course(...)``),
    never inline in a handler.
    """

    name: str
    auth: AuthNeed
    check: Check | None = None
    # Optional, for a hot route: ``check`` and the caller's user lookup in one statement. Same
    # decision, same errors in the same order (401 before 404/403); whenever the fused read cannot
    # decide alone (a new user, claims to fill in, a malformed id), the usual path runs instead.
    fused: Fused | None = None


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    access: Access
    status: int = 200
    body: type[BaseModel] | None = None
    response: Any = None  # a pydantic model (or a type a TypeAdapter accepts); None only for 204
    query: dict[str, str] = field(default_factory=dict)
    multipart: bool = False
    also: tuple[int, ...] = ()  # other success statuses (e.g. 200 when a create updates instead)

    @property
    def auth(self) -> AuthNeed:
        return self.access.auth


def granted(request: Request) -> Any:
    """What the route's policy learned (e.g. the caller's :class:`~server.access.CourseAccess`)."""
    return request.state.granted


@functools.cache
def _adapter(model: Any) -> TypeAdapter[Any]:
    return TypeAdapter(model)


def _check_response(op: Operation, response: Response) -> Response:
    """Validate a JSON success body against the declared model (CHECK_RESPONSES=1 only)."""
    if op.response is None or response.status_code not in (op.status, *op.also):
        return response
    if not (response.media_type or "").startswith("application/json"):
        return response
    body = getattr(response, "body", None)
    if not isinstance(body, bytes | bytearray | memoryview):
        return response  # streamed: not checked here
    try:
        _adapter(op.response).validate_json(bytes(body), strict=False)
    except ValidationError as exc:
        if all("recursion limit" in str(e.get("msg", "")) for e in exc.errors()):
            # pydantic's JSON parser stops at ~200 levels; a reply tree may be deeper (§6 has no
            # depth limit): the shallow pages of the suite are checked, the deep ones only parse.
            return response
        logger.error("response schema mismatch: %s %s -> %s: %s", op.method, op.path, _name(op.response),
                     exc.errors(include_url=False)[:5])
        from server.errors import ProblemError

        raise ProblemError(f"{op.method} {op.path} answered a body that does not match {_name(op.response)}.") from None
    return response


def _name(model: Any) -> str:
    return getattr(model, "__name__", repr(model))


_WRITES = frozenset(("POST", "PUT", "PATCH", "DELETE"))


async def _fused_check(request: Request, access: Access) -> Any:
    """Identity and policy as ``guarded`` runs them, with the user's row read by the policy's own
    statement (one round trip and one pooled connection fewer)."""
    from server.auth import current_user, require_user
    from server.errors import Unauthorized
    from server.state import services

    assert access.fused is not None and access.check is not None
    auth = services(request).auth
    claims = await auth.claims_of(request, write=request.method in _WRITES)  # 401/403 as before
    if claims is None:
        if access.auth == "user":
            raise Unauthorized("Sign in to do this.")
        request.state.principal = None
        return await access.check(request, None)
    found = await access.fused(request, str(claims["sub"]))
    row, decide = found if found is not None else (None, None)
    if row is not None and decide is not None:
        principal = auth.known_principal(claims, row)  # 401 for a deleted user, as resolve_user
        if principal is not None:
            request.state.principal = principal
            await auth.signed_in(principal)
            return decide(principal)
    # A new user, claims to store, or a path the policy declined: the usual order.
    user = await require_user(request) if access.auth == "user" else await current_user(request)
    return await access.check(request, user)


def _wrap(endpoint: Endpoint, op: Operation) -> Endpoint:
    access = op.access

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        from server.auth import current_user, require_user  # server.auth imports the domain models
        from server.state import services

        if access.fused is not None:
            request.state.granted = await _fused_check(request, access)
        else:
            user: Principal | None = None
            if access.auth == "user":
                user = await require_user(request)  # memoised on the request: the handler's own call is free
            elif access.auth == "optional" and access.check is not None:
                user = await current_user(request)
            request.state.granted = await access.check(request, user) if access.check is not None else None
        response = await endpoint(request)
        if services(request).settings.check_responses:
            response = _check_response(op, response)
        return response

    return guarded


class Api:
    """A domain's routes: ``api = Api("forum")`` then ``@api.get("/forum/posts/{id}", access=...)``."""

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
        access: Access,
        status: int = 200,
        body: type[BaseModel] | None = None,
        response: Any = None,
        query: dict[str, str] | None = None,
        multipart: bool = False,
        also: tuple[int, ...] = (),
    ) -> Callable[[Endpoint], Endpoint]:
        if not isinstance(access, Access):
            raise TypeError(f"{method} {path}: access= must be an Access from server.access")

        def register(endpoint: Endpoint) -> Endpoint:
            full = self.prefix + path
            doc = (endpoint.__doc__ or endpoint.__name__.replace("_", " ")).strip().splitlines()[0]
            op = Operation(method, full, doc, self.tag, access, status, body, response, dict(query or {}),
                           multipart, also)
            self.operations.append(op)
            self.routes.append(Route(full, _wrap(endpoint, op), methods=[method],
                                     name=f"{self.tag}.{endpoint.__name__}"))
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
