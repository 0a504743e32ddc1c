"""Lesson ``content`` JSONB, validated per ``content_type``; ``html`` is always rendered here."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
)

from server.errors import ValidationFailed
from server.http import validation_errors
from server.markdown import render

ContentType = Literal["video", "text", "audio", "exercise"]
CONTENT_TYPES: tuple[str, ...] = ("video", "text", "audio", "exercise")

Body = Annotated[StrictStr, Field(max_length=200_000)]
Duration = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]


class _Content(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: Body = ""


class TextContent(_Content):
    pass


class VideoContent(_Content):
    video_url: AnyHttpUrl | None = None
    media_id: uuid.UUID | None = None
    duration_s: Duration | None = None


class AudioContent(_Content):
    audio_url: AnyHttpUrl | None = None
    media_id: uuid.UUID | None = None
    duration_s: Duration | None = None


class ExerciseContent(_Content):
    instructions: Annotated[StrictStr, Field(max_length=50_000)] = ""


MODELS: dict[str, type[_Content]] = {
    "text": TextContent, "video": VideoContent, "audio": AudioContent, "exercise": ExerciseContent,
}


def validate_content(content_type: str, raw: Any, *, loc: str = "content") -> dict[str, Any]:
    """The stored form of ``raw`` for ``content_type`` (422 per field); a client's ``html`` is dropped."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValidationFailed("The request has invalid fields.",
                               errors=[{"loc": loc, "msg": "must be an object", "type": "dict_type"}])
    data = {k: v for k, v in raw.items() if k != "html" and v is not None}
    try:
        model = MODELS[content_type].model_validate(data)
    except ValidationError as exc:
        errors = validation_errors(exc)
        for error in errors:
            error["loc"] = f"{loc}.{error['loc']}"
        raise ValidationFailed("The request has invalid fields.", errors=errors) from None
    stored = model.model_dump(mode="json", exclude_none=True)
    stored["body"] = model.body
    return stored


Prerendered = tuple[str, str]  # (body, its html)


async def prerender(raw: Any, owner: str) -> Prerendered | None:
    """A request's content ``body`` rendered before the write's transaction opens (a long text
    waits for the render worker without holding a pooled connection); None without one."""
    body = raw.get("body") if isinstance(raw, dict) else None
    return (body, await render(body, owner)) if isinstance(body, str) else None


async def with_html(stored: dict[str, Any], prerendered: Prerendered | None = None) -> dict[str, Any]:
    """``stored`` with ``html`` rendered from its ``body``: HTML is rendered on write (§3)."""
    body = stored.get("body") or ""
    stored["html"] = prerendered[1] if prerendered and prerendered[0] == body else await render(body)
    return stored


async def render_content(stored: dict[str, Any]) -> dict[str, Any]:
    """The API form of stored content: everything stored, with the ``html`` stored on write
    (rows written before that are rendered here, in the worker when long)."""
    body = stored.get("body") or ""
    html = stored.get("html")
    return {**stored, "body": body, "html": html if isinstance(html, str) else await render(body)}
