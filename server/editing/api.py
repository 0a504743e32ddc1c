"""REST: lesson version history and suggested edits (docs/API.md §5, §6). Each route names who may
call it (server/access.py); the router checks it before the handler runs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from server.access import (
    SIGNED_IN,
    SuggestionAccess,
    edit_course,
    member_of,
    suggester_of,
    suggester_or_team,
    suggestion_deciders,
)
from server.auth import require_user
from server.editing import service
from server.editing.schemas import (
    Decided,
    MySuggestionPage,
    Restored,
    Suggestion,
    SuggestionPage,
    VersionDetail,
    VersionPage,
)
from server.http import decode_cursor, json_response, page_limit, path_id, read_json
from server.routing import Api, granted
from server.state import services

api = Api("editing")


class ChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int = Field(ge=0)
    delete: int = Field(default=0, ge=0)
    insert: str = Field(default="", max_length=200_000)


class SuggestionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: Literal["title", "body"] = "body"
    changes: list[ChangeIn] = Field(min_length=1, max_length=200)
    base_version: str = Field(min_length=1, max_length=64)
    comment: str | None = Field(default=None, max_length=5000)

    @field_validator("base_version", mode="before")
    @classmethod
    def version_as_text(cls, value: object) -> object:
        # The version is an opaque string; accept a client that sends the number unquoted.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# --- versions ---------------------------------------------------------------------------------


@api.get("/lessons/{id}/versions", access=member_of("id", via="lesson"), response=VersionPage, query={"limit": "page size (≤ 100)", "cursor": "next_cursor"})
async def list_versions(request: Request) -> Response:
    """A lesson's versions, newest first: {id, created_at, contributors}."""
    lesson_id = path_id(request, "id")
    async with services(request).sessions() as session:
        return json_response(await service.list_versions(
            session, lesson_id, limit=page_limit(request), cursor=decode_cursor(request)))


@api.get("/lessons/{id}/versions/{vid}", access=member_of("id", via="lesson"), response=VersionDetail)
async def get_version(request: Request) -> Response:
    """One version with the title and body text it had."""
    lesson_id, version_id = path_id(request, "id"), path_id(request, "vid")
    async with services(request).sessions() as session:
        version = await service.get_version(session, lesson_id, version_id)
        return json_response(service.version_detail(version))


@api.post("/lessons/{id}/versions/{vid}/restore", response=Restored,
          access=edit_course("id", via="lesson", detail="Only the course's author, editors and admins restore versions."))
async def restore_version(request: Request) -> Response:
    """Restore a version as a new live change (the current text is saved as a version first)."""
    user = await require_user(request)
    lesson_id, version_id = path_id(request, "id"), path_id(request, "vid")
    svc = services(request)
    svc.restore_limiter.hit(user.clerk_id, "restore")
    return json_response(await service.restore_version(svc.sessions, svc.rooms, lesson_id, version_id, user))


# --- suggested edits ----------------------------------------------------------------------------


@api.post("/lessons/{id}/suggested-edits", access=member_of("id", via="lesson"), status=201, body=SuggestionIn,
          response=Suggestion)
async def create_suggestion(request: Request) -> Response:
    """Suggest changes (code-point indexes against the text of `base_version`)."""
    user = await require_user(request)
    lesson_id = path_id(request, "id")
    svc = services(request)
    body = await read_json(request, SuggestionIn)
    svc.rate_limiter.hit(user.clerk_id, "suggestion")
    created = await service.create_suggestion(
        svc.sessions, svc.rooms, lesson_id, user, granted(request), field=body.field,
        changes=[c.model_dump() for c in body.changes], base_version=body.base_version, comment=body.comment)
    return json_response(created, status=201)


@api.get("/lessons/{id}/suggested-edits", access=member_of("id", via="lesson"), response=SuggestionPage, query={"status": "open|accepted|rejected|withdrawn",
                                                 "limit": "page size (≤ 100)", "cursor": "next_cursor"})
async def list_suggestions(request: Request) -> Response:
    """Suggestions on a lesson, newest first (the course team sees all, others their own)."""
    user = await require_user(request)
    lesson_id = path_id(request, "id")
    async with services(request).sessions() as session:
        return json_response(await service.list_suggestions(
            session, lesson_id, user, granted(request), status=request.query_params.get("status") or None,
            limit=page_limit(request), cursor=decode_cursor(request)))


@api.get("/me/suggested-edits", access=SIGNED_IN, response=MySuggestionPage,
         query={"status": "open|accepted|rejected|withdrawn", "limit": "page size (≤ 100)", "cursor": "next_cursor"})
async def my_suggestions(request: Request) -> Response:
    """My suggestions across lessons, newest first, with the lesson's and course's titles."""
    user = await require_user(request)
    async with services(request).sessions() as session:
        return json_response(await service.my_suggestions(
            session, user, status=request.query_params.get("status") or None,
            limit=page_limit(request), cursor=decode_cursor(request)))


@api.get("/suggested-edits/{id}", access=suggester_or_team("id"), response=Suggestion)
async def get_suggestion(request: Request) -> Response:
    """One suggested edit (its suggester and the course team; 404 for anyone else)."""
    suggestion_id = path_id(request, "id")
    async with services(request).sessions() as session:
        return json_response(await service.get_suggestion(session, suggestion_id))


async def _decide(request: Request, decision: str) -> Response:
    user = await require_user(request)
    suggestion_id = path_id(request, "id")
    svc = services(request)
    grant: SuggestionAccess = granted(request)
    return json_response(await service.decide_suggestion(svc.sessions, svc.rooms, suggestion_id, user, grant.access,
                                                         decision))


@api.post("/suggested-edits/{id}/accept", access=suggestion_deciders("id"), response=Decided)
async def accept_suggestion(request: Request) -> Response:
    """Apply it to the live lesson as one change (409 with `current_text` if its text changed)."""
    return await _decide(request, "accept")


@api.post("/suggested-edits/{id}/reject", access=suggestion_deciders("id"), response=Decided)
async def reject_suggestion(request: Request) -> Response:
    """Reject it (author, editors, admins)."""
    return await _decide(request, "reject")


@api.post("/suggested-edits/{id}/withdraw", access=suggester_of("id"), response=Decided)
async def withdraw_suggestion(request: Request) -> Response:
    """Withdraw your own open suggestion."""
    return await _decide(request, "withdraw")
