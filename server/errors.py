"""One exception hierarchy for every failure, rendered as RFC 9457 problem details."""

from __future__ import annotations

from typing import Any


class ProblemError(Exception):
    """Base of every error a client may see. Subclasses fix ``status`` and ``title``."""

    status: int = 500
    title: str = "Internal Server Error"
    type_slug: str = "internal"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://scriptorium.dev/problems/{self.type_slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class BadRequest(ProblemError):
    status, title, type_slug = 400, "Bad Request", "bad-request"


class Unauthorized(ProblemError):
    status, title, type_slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class Forbidden(ProblemError):
    status, title, type_slug = 403, "Forbidden", "forbidden"


class NotFound(ProblemError):
    status, title, type_slug = 404, "Not Found", "not-found"


class MethodNotAllowed(ProblemError):
    status, title, type_slug = 405, "Method Not Allowed", "method-not-allowed"


class Conflict(ProblemError):
    status, title, type_slug = 409, "Conflict", "conflict"


class PayloadTooLarge(ProblemError):
    status, title, type_slug = 413, "Content Too Large", "payload-too-large"


class UnsupportedMediaType(ProblemError):
    status, title, type_slug = 415, "Unsupported Media Type", "unsupported-media-type"


class ValidationFailed(ProblemError):
    status, title, type_slug = 422, "Unprocessable Content", "validation"


class RateLimited(ProblemError):
    status, title, type_slug = 429, "Too Many Requests", "rate-limited"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail or "Too many requests; retry later.",
                         headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailable(ProblemError):
    status, title, type_slug = 503, "Service Unavailable", "unavailable"


def field_error(loc: str | list[str | int], msg: str, type_: str = "value_error") -> dict[str, Any]:
    """One entry of ``errors``: where (a dotted path), what went wrong, and its kind."""
    path = loc if isinstance(loc, str) else ".".join(str(p) for p in loc)
    return {"loc": path, "msg": msg, "type": type_}


def validation(loc: str | list[str | int], msg: str) -> ValidationFailed:
    return ValidationFailed("The request has invalid fields.", errors=[field_error(loc, msg)])
