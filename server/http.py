"""Small request/response helpers shared by every domain's HTTP handlers."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from server.errors import BadRequest, NotFound, PayloadTooLarge, ValidationFailed, field_error

M = TypeVar("M", bound=BaseModel)

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Serialise to compact UTF-8 JSON (UUIDs as strings, timestamps as RFC 3339 UTC)."""
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False).encode()


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSON:
    return JSON(content, status_code=status, headers=headers)


def no_content() -> Response:
    return Response(status_code=204)


def path_id(conn: HTTPConnection, name: str = "id") -> uuid.UUID:
    """A UUID path parameter; anything that is not a UUID is a 404 (never a 422)."""
    raw = conn.path_params.get(name)
    try:
        return uuid.UUID(str(raw))
    except (ValueError, TypeError):
        raise NotFound(f"No such {name.removesuffix('_id') or 'resource'}.") from None


def parse_uuid(raw: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except (ValueError, TypeError):
        return None


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is over {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is over {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [field_error([str(p) for p in e["loc"]] or ["body"], e["msg"], e["type"]) for e in exc.errors()]


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed("The request has invalid fields.", errors=validation_errors(exc)) from None


async def read_json(request: Request, model: type[M]) -> M:
    """Parse and validate a JSON body: 413 over the limit, 400 if not JSON, 422 per field."""
    from server.state import services

    raw = await read_body(request, services(request).settings.body_max_bytes)
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"The body is not valid JSON: {exc}") from None
    return validate(model, data)


# --- keyset pagination -------------------------------------------------------------


def page_limit(request: HTTPConnection) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed("Invalid query.", errors=[field_error("query.limit", "must be an integer")]) from None
    if not 1 <= value <= MAX_LIMIT:
        raise ValidationFailed(
            "Invalid query.", errors=[field_error("query.limit", f"must be between 1 and {MAX_LIMIT}")]
        )
    return value


def encode_cursor(values: Sequence[Any]) -> str:
    raw = dumps(list(values))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(request: HTTPConnection) -> list[Any] | None:
    """The ``cursor`` query parameter as the list of values it was made from, or None."""
    raw = request.query_params.get("cursor")
    if not raw:
        return None
    try:
        padded = raw + "=" * (-len(raw) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list):
            raise ValueError("cursor is not a list")
        return values
    except (ValueError, json.JSONDecodeError):
        raise ValidationFailed("Invalid query.", errors=[field_error("query.cursor", "malformed cursor")]) from None


def page(items: list[Any], limit: int, key: Any) -> dict[str, Any]:
    """Build ``{items, next_cursor}`` from ``limit + 1`` fetched rows; ``key(row)`` gives the cursor."""
    has_more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": encode_cursor(key(items[-1])) if has_more and items else None}


def parse_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (UUIDs and timestamps as strings), e.g. for JSONB event data."""
    return json.loads(dumps(value))
