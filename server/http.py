"""Small request/response helpers shared by every domain's HTTP handlers."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from server.errors import BadRequest, NotFound, PayloadTooLarge, ValidationFailed, field_error, validation
from server.state import services

M = TypeVar("M", bound=BaseModel)

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Deeper bodies are refused (422): nothing we accept nests past a handful of levels, and deep
# JSON would later break PostgreSQL's jsonb parser and our own json.loads of the stored value.
MAX_JSON_DEPTH = 64
# A cursor is a handful of scalars we made (timestamps, ids, names, small numbers).
MAX_CURSOR_CHARS = 2048
MAX_CURSOR_VALUES = 4
MAX_CURSOR_TEXT = 512
_CURSOR_INT = 2**31  # positions are int4: anything larger would overflow the bind parameter


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


# One encoder (json.dumps with options builds a new one per call: a third of a small dump's cost).
_ENCODER = json.JSONEncoder(default=_default, separators=(",", ":"), ensure_ascii=False)


def _flat(value: Any) -> str:
    return _ENCODER.encode(value)


def dumps(value: Any) -> bytes:
    """Serialise to compact UTF-8 JSON (UUIDs as strings, timestamps as RFC 3339 UTC).

    Any depth: the C encoder recurses and raises RecursionError at about 1,000 levels (a reply
    chain ~500 deep: every reply is a dict in a list), so such values take :func:`_dumps_deep`.
    """
    try:
        return _flat(value).encode()
    except RecursionError:
        out: list[str] = []
        for _ in _dumps_deep(value, out):
            pass
        return "".join(out).encode()


async def dumps_yielding(value: Any) -> bytes:
    """:func:`dumps` for values of unbounded size (a thread page's reply trees): encoded in steps
    of :data:`_STEP` containers, letting the event loop serve others between steps."""
    out: list[str] = []
    for _ in _dumps_deep(value, out):
        await asyncio.sleep(0)
    return "".join(out).encode()


class _Text(str):
    """JSON text already encoded, on :func:`_dumps_deep`'s stack."""


_NESTED = (dict, list, tuple)


_STEP = 100  # containers encoded between two yields of _dumps_deep (about 2 ms)


def _dumps_deep(value: Any, out: list[str]) -> Iterator[None]:
    """Append the JSON of ``value`` to ``out`` without recursion, yielding every :data:`_STEP`
    containers: containers go through an explicit stack, and every dict or list whose members
    are all scalars is encoded in one call of the C encoder (one C call per reply of a tree)."""
    stack: list[Any] = [value]
    steps = 0
    while stack:
        steps += 1
        if steps % _STEP == 0:
            yield
        item = stack.pop()
        if isinstance(item, _Text):
            out.append(item)
            continue
        if isinstance(item, dict):
            nested = [(k, v) for k, v in item.items() if isinstance(v, _NESTED)]
            if not nested:
                out.append(_flat(item))
                continue
            flat = _flat({k: v for k, v in item.items() if not isinstance(v, _NESTED)})
            stack.append(_Text("}"))
            for index in range(len(nested) - 1, -1, -1):
                key, child = nested[index]
                stack.append(child)
                comma = "," if index > 0 or flat != "{}" else ""
                stack.append(_Text(comma + _flat(str(key)) + ":"))
            out.append(flat[:-1])  # the scalar members first, then the nested ones
        elif isinstance(item, (list, tuple)):
            if not any(isinstance(v, _NESTED) for v in item):
                out.append(_flat(item))
                continue
            stack.append(_Text("]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(_Text(","))
            out.append("[")
        else:
            converted = item if isinstance(item, (str, int, float, bool)) or item is None else _default(item)
            if isinstance(converted, _NESTED):
                stack.append(converted)  # e.g. a set, now a list
            else:
                out.append(_flat(converted))


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSON:
    return JSON(content, status_code=status, headers=headers)


async def json_response_in_steps(content: Any, status: int = 200) -> Response:
    """Like :func:`json_response`, for payloads whose size no limit bounds (a thread page carries
    whole reply trees): encoded at any depth, in steps that never hold the event loop for long."""
    return Response(await dumps_yielding(content), status_code=status, media_type="application/json")


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
    # isascii: "²".isdigit() is true but int("²") raises; long digit runs are over the limit anyway.
    if declared and declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
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
    raw = await read_body(request, services(request).settings.body_max_bytes)
    return validate(model, parse_json_body(raw))


def parse_json_body(raw: bytes) -> Any:
    """A request body as JSON: 400 if it is not JSON (NaN and Infinity are not), 422 if nested too
    deeply, holding NUL, a number outside a 32-bit integer's range or over :data:`MAX_JSON_ITEMS` values.

    ``json.loads`` raises RecursionError (not a ValueError) from about 1,000 levels; below that,
    :func:`check_json_tree` keeps what we store to :data:`MAX_JSON_DEPTH` levels and free of NUL
    characters, which PostgreSQL refuses in text and jsonb.
    """
    if not raw.strip():
        return {}
    # json.loads holds the event loop (and the GIL) throughout: 1 MiB of "[]," took 190 ms.
    containers, values = _json_structure(raw)
    if values > MAX_JSON_ITEMS:
        raise validation("body", f"the body holds more than {MAX_JSON_ITEMS} JSON values")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant, parse_int=_bounded_int,
                          parse_float=_bounded_float)
    except _OutOfRange:
        raise validation("body", f"numbers must lie between -{MAX_JSON_NUMBER} and {MAX_JSON_NUMBER}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
    except RecursionError:
        raise _too_deep("body") from None
    # Cheap pre-checks on the raw text spare the walk for ordinary bodies.
    if containers > MAX_JSON_DEPTH or b"\\u0000" in raw:
        check_json_tree(data, "body")
    return data


# No request needs more (a lesson body is at most 200,000 characters; a quiz about 1,000 values).
MAX_JSON_ITEMS = 30_000
# A JSON string literal, or an unterminated one running to the end of the body. The match never
# fails once it has started (possessive loop, then a quote or the end), so the regex engine never
# retries from a later quote: linear, where '"(?:...)*"' alone was quadratic on '"\\"\\"\\"...'.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.S)


def _json_structure(raw: bytes) -> tuple[int, int]:
    """(containers, values) of a JSON text, roughly: ``[``/``{`` and those plus ``,``.

    Counted in the raw bytes first (C speed); only past the limit are strings taken out (a lesson
    body of "![" or a Markdown table is one value), at most ~30,000 of them (~6 ms), where
    json.loads of 1 MiB of "[]," took 190 ms.
    """
    containers = raw.count(b"[") + raw.count(b"{")
    if containers + raw.count(b",") <= MAX_JSON_ITEMS:
        return containers, containers + raw.count(b",")
    # Every string is a value: past the limit of them, no need to find them one by one (the
    # pattern below costs ~0.2 us a match; 350,000 tiny strings took 62 ms).
    strings = (raw.count(b'"') - raw.count(b'\\"')) // 2
    if strings > MAX_JSON_ITEMS:
        return containers, strings
    structure = _JSON_STRING.sub(b"", raw)
    containers = structure.count(b"[") + structure.count(b"{")
    return containers, containers + structure.count(b",")


# Request numbers fit a 32-bit integer column (positions, counts): a larger one would fail in the
# database as a 500.
MAX_JSON_NUMBER = 2**31 - 1


class _OutOfRange(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bounded_int(text: str) -> int:
    if len(text) > 11:  # also spares int() a 4,300-digit string
        raise _OutOfRange
    value = int(text)
    if not -MAX_JSON_NUMBER <= value <= MAX_JSON_NUMBER:
        raise _OutOfRange
    return value


def _bounded_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and -MAX_JSON_NUMBER <= value <= MAX_JSON_NUMBER):
        raise _OutOfRange
    return value


def _too_deep(loc: str) -> ValidationFailed:
    return ValidationFailed("The request has invalid fields.", errors=[
        field_error(loc, f"nested deeper than {MAX_JSON_DEPTH} levels", "too_deep")])


def check_json_tree(data: Any, loc: str) -> None:
    """422 if ``data`` nests deeper than :data:`MAX_JSON_DEPTH` or has a NUL in a string (iterative)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
            if any("\x00" in key for key in value):
                raise validation(loc, "text may not contain NUL characters")
        elif isinstance(value, list):
            children = value
        else:
            _check_scalar(value, loc)
            continue
        if depth > MAX_JSON_DEPTH:
            raise _too_deep(loc)
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            else:
                _check_scalar(child, loc)


def _check_scalar(value: Any, loc: str) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise validation(loc, "text may not contain NUL characters")


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


MAX_QUERY_TEXT = 200


def query_text(request: HTTPConnection, name: str, max_chars: int = MAX_QUERY_TEXT) -> str | None:
    """A text query parameter (stripped; None when empty), 422 over ``max_chars``: a search of
    30,000 words made PostgreSQL's websearch_to_tsquery exceed its stack depth (a 500)."""
    raw = (request.query_params.get(name) or "").strip()
    if len(raw) > max_chars:
        raise ValidationFailed("Invalid query.", errors=[field_error(f"query.{name}", f"at most {max_chars} characters")])
    return raw or None


def encode_cursor(values: Sequence[Any]) -> str:
    raw = dumps(list(values))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(request: HTTPConnection) -> list[Any] | None:
    """The ``cursor`` query parameter as the list of values it was made from, or None.

    Anyone can send any cursor: it must be a short list of scalars we could have made (text
    without NUL, integers within int4, finite floats, booleans, null), else 422. Callers still
    check each value's type (a UUID, a timestamp) and catch ``ValueError``.
    """
    raw = request.query_params.get("cursor")
    if not raw:
        return None
    try:
        if len(raw) > MAX_CURSOR_CHARS:
            raise ValueError("cursor too long")
        padded = raw + "=" * (-len(raw) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_CURSOR_VALUES:
            raise ValueError("cursor is not a short list")
        for value in values:
            _check_cursor_value(value)
        return values
    except (ValueError, RecursionError):  # binascii, JSON and Unicode errors are ValueErrors
        raise ValidationFailed("Invalid query.", errors=[field_error("query.cursor", "malformed cursor")]) from None


def _check_cursor_value(value: Any) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if len(value) > MAX_CURSOR_TEXT or "\x00" in value:
            raise ValueError("cursor text")
        value.encode("utf-8")  # a lone surrogate: UnicodeEncodeError, a ValueError
    elif isinstance(value, int):
        if not -_CURSOR_INT < value < _CURSOR_INT:
            raise ValueError("cursor integer out of range")
    elif isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= _CURSOR_INT:
            raise ValueError("cursor number out of range")
    else:
        raise ValueError("cursor value is not a scalar")


def cursor_key(cursor: list[Any], *parsers: Callable[[Any], Any]) -> tuple[Any, ...]:
    """A decoded cursor's values, one parser each (e.g. ``parse_datetime, cursor_uuid``); 422 if any fails."""
    try:
        if len(cursor) != len(parsers):
            raise ValueError("wrong number of cursor values")
        return tuple(parse(value) for parse, value in zip(parsers, cursor, strict=True))
    except (ValueError, TypeError):
        raise ValidationFailed("Invalid query.", errors=[field_error("query.cursor", "malformed cursor")]) from None


def cursor_uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise ValueError("not a UUID")
    return uuid.UUID(value)


def page(items: list[Any], limit: int, key: Any) -> dict[str, Any]:
    """Build ``{items, next_cursor}`` from ``limit + 1`` fetched rows; ``key(row)`` gives the cursor."""
    has_more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": encode_cursor(key(items[-1])) if has_more and items else None}


def parse_datetime(value: Any) -> dt.datetime:
    """An aware UTC timestamp from one we made; ``ValueError`` for anything else.

    A naive value is taken as UTC; one that falls outside years 1-9999 once in UTC (e.g.
    ``0001-01-01T00:00-23:59``) would overflow in the database driver, so it is refused here.
    """
    if isinstance(value, bool) or not isinstance(value, (str, dt.datetime)):
        raise ValueError("not a timestamp")
    parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("timestamp out of range") from None


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (UUIDs and timestamps as strings), e.g. for JSONB event data."""
    return json.loads(dumps(value))
