"""REST: languages, tags, courses, units, lessons, outline, collaborators (docs/API.md §4 Catalogue/Structure)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from server.access import (
    PUBLIC,
    SIGNED_IN,
    VISITOR,
    CourseAccess,
    OutlineAccess,
    edit_course,
    manage_course,
    read_course,
    read_outline,
)
from server.auth import current_user, require_user
from server.catalog import queries, service
from server.catalog.content import ContentType, prerender
from server.catalog.schemas import (
    CollaboratorOut,
    CollaboratorPage,
    CourseOut,
    CoursePage,
    LanguagePage,
    LessonList,
    LessonOut,
    OutlineOut,
    TagPage,
    UnitList,
    UnitOut,
)
from server.db import autocommit
from server.errors import validation
from server.http import (
    decode_cursor,
    json_response,
    no_content,
    page,
    page_limit,
    path_id,
    query_text,
    read_json,
)
from server.routing import Api, granted
from server.state import services

api = Api("catalog")

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=20_000)]
TagName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
Difficulty = Literal["beginner", "intermediate", "advanced"]
Position = Annotated[int, Field(ge=0)]
CollaboratorRole = Literal["editor", "viewer"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CourseCreate(_Body):
    title: Title
    description: Description | None = None
    difficulty: Difficulty | None = None
    language: str | None = None
    tags: Annotated[list[TagName], Field(max_length=20)] = []


class CoursePatch(_Body):
    title: Title | None = None
    description: Description | None = None
    difficulty: Difficulty | None = None
    language: str | None = None
    tags: Annotated[list[TagName], Field(max_length=20)] | None = None


class UnitCreate(_Body):
    title: Title
    description: Description | None = None
    position: Position | None = None


class UnitPatch(_Body):
    title: Title | None = None
    description: Description | None = None
    position: Position | None = None


class UnitOrder(_Body):
    unit_ids: list[uuid.UUID]


class LessonCreate(_Body):
    title: Title
    content_type: ContentType
    content: dict[str, Any] | None = None
    position: Position | None = None


class LessonPatch(_Body):
    title: Title | None = None
    content_type: ContentType | None = None
    content: dict[str, Any] | None = None
    position: Position | None = None
    unit_id: uuid.UUID | None = None


class LessonOrder(_Body):
    lesson_ids: list[uuid.UUID]


class CollaboratorAdd(_Body):
    clerk_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    role: CollaboratorRole = "editor"


class CollaboratorPatch(_Body):
    role: CollaboratorRole


@asynccontextmanager
async def reading(request: Request) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in autocommit for single-statement reads (no BEGIN/ROLLBACK round trips)."""
    async with autocommit(services(request).engine) as conn:
        yield conn


def raw_json(payload: str, status: int = 200) -> Response:
    """A response from JSON text PostgreSQL already built."""
    return Response(payload.encode(), status_code=status, media_type="application/json")


def changes_of(body: BaseModel, *, not_null: tuple[str, ...]) -> dict[str, Any]:
    """The fields a PATCH set; ``null`` is refused (422) for those that cannot be empty."""
    changes = body.model_dump(exclude_unset=True)
    for name in not_null:
        if name in changes and changes[name] is None:
            raise validation(name, "may not be null")
    return changes


# --- policies ----------------------------------------------------------------------------
# Checked by the router before the handler runs (server/routing.py); the handlers and
# server.catalog.service trust them. The 403 details are the ones these routes always answered.

READ = read_course("id")
READ_LESSON = read_course("id", via="lesson")
EDIT = edit_course("id")
EDIT_UNIT = edit_course("id", via="unit")
ADD_LESSON = edit_course("id", via="unit", detail="Only editors may add lessons.")
REORDER_LESSONS = edit_course("id", via="unit", detail="Only editors may reorder lessons.")
EDIT_LESSON = edit_course("id", via="lesson", detail="Only editors may change lessons.")
DELETE_LESSON = edit_course("id", via="lesson", detail="Only editors may delete lessons.")
DELETE = manage_course("id", detail="Only the author may delete a course.")
PUBLISH = manage_course("id", detail="Only the author may publish or unpublish a course.")
COLLABORATORS = manage_course("id", detail="Only the author manages collaborators.")


# --- languages and tags ------------------------------------------------------------------


@api.get("/languages", access=PUBLIC, response=LanguagePage)
async def list_languages(request: Request) -> Response:
    """Languages a course can be written in."""
    async with services(request).sessions() as session:
        items = await queries.list_languages(session)
    return json_response({"items": items, "next_cursor": None})


@api.get("/tags", access=PUBLIC, response=TagPage, query={"cursor": "string", "limit": "integer"})
async def list_tags(request: Request) -> Response:
    """Tags in use, by name."""
    limit = page_limit(request)
    cursor = decode_cursor(request)
    async with services(request).sessions() as session:
        items = await queries.list_tags(session, limit=limit, after=str(cursor[0]) if cursor else None)
    return json_response(page(items, limit, lambda t: [t["name"]]))


# --- courses -----------------------------------------------------------------------------


@api.get("/courses", access=VISITOR, response=CoursePage,
         query={"q": "string", "tag": "string", "language": "string", "difficulty": "string",
                "author": "string", "cursor": "string", "limit": "integer"})
async def list_courses(request: Request) -> Response:
    """The catalogue: published courses (and the drafts you may see), searchable and filtered."""
    user = await current_user(request)
    params = request.query_params
    difficulty = params.get("difficulty") or None
    if difficulty is not None and difficulty not in queries.DIFFICULTIES:
        raise validation("query.difficulty", f"must be one of {', '.join(queries.DIFFICULTIES)}")
    limit = page_limit(request)
    cursor = decode_cursor(request)
    async with reading(request) as conn:
        result = await queries.list_courses(
            conn, user=user, limit=limit, cursor=cursor, q=query_text(request, "q"),
            tag=query_text(request, "tag"), language=query_text(request, "language"),
            difficulty=difficulty, author=query_text(request, "author"),
        )
    return raw_json(result)


@api.post("/courses", access=SIGNED_IN, status=201, body=CourseCreate, response=CourseOut)
async def create_course(request: Request) -> Response:
    """Create a draft course; you are its author."""
    me = await require_user(request)
    body = await read_json(request, CourseCreate)
    async with services(request).sessions.begin() as session:
        course_id = await service.create_course(
            session, author=me, title=body.title, description=body.description, difficulty=body.difficulty,
            language=body.language, tags=body.tags,
        )
        payload = await queries.course_text(session, course_id)
    return raw_json(payload, 201)


@api.get("/courses/{id}", access=READ, response=CourseOut)
async def get_course(request: Request) -> Response:
    """One course."""
    course_id = path_id(request, "id")
    async with reading(request) as conn:
        payload = await queries.course_text(conn, course_id)
    return raw_json(payload)


@api.patch("/courses/{id}", access=EDIT, body=CoursePatch, response=CourseOut)
async def patch_course(request: Request) -> Response:
    """Change a course's title, description, difficulty, language or tags (editors and up)."""
    course_id = path_id(request, "id")
    body = await read_json(request, CoursePatch)
    changes = changes_of(body, not_null=("title",))
    async with services(request).sessions.begin() as session:
        await service.update_course(session, course_id, changes)
        payload = await queries.course_text(session, course_id)
    return raw_json(payload)


@api.delete("/courses/{id}", access=DELETE, status=204)
async def delete_course(request: Request) -> Response:
    """Delete a course and everything in it (author and admins)."""
    course_id = path_id(request, "id")
    svc = services(request)
    async with svc.sessions.begin() as session:
        paths = await service.delete_course(session, course_id)
    service.remove_media_files(svc.settings.media_dir, paths)
    return no_content()


async def _publish(request: Request, published: bool) -> Response:
    course_id = path_id(request, "id")
    async with services(request).sessions.begin() as session:
        await service.set_published(session, course_id, published)
        payload = await queries.course_text(session, course_id)
    return raw_json(payload)


@api.post("/courses/{id}/publish", access=PUBLISH, response=CourseOut)
async def publish_course(request: Request) -> Response:
    """Publish (409 when the course has no lesson)."""
    return await _publish(request, True)


@api.post("/courses/{id}/unpublish", access=PUBLISH, response=CourseOut)
async def unpublish_course(request: Request) -> Response:
    """Back to draft."""
    return await _publish(request, False)


@api.get("/courses/{id}/outline", access=read_outline("id"), response=OutlineOut)
async def course_outline(request: Request) -> Response:
    """The course with its units and lessons in order, and your status per lesson when enrolled."""
    found: OutlineAccess = granted(request)
    cache = services(request).outline_cache
    if not found.access.enrolled:
        cached = cache.get(found.access.course_id, found.outline_version)
        if cached is not None:  # the policy's statement was the only one: no connection needed here
            return Response(cached, media_type="application/json")
    user = await current_user(request)  # memoised by the router's check: free
    async with reading(request) as conn:
        payload = await queries.outline_bytes(conn, found, user, cache)
    return Response(payload, media_type="application/json")


# --- units -------------------------------------------------------------------------------


@api.post("/courses/{id}/units", access=EDIT, status=201, body=UnitCreate, response=UnitOut)
async def create_unit(request: Request) -> Response:
    """Add a unit (last unless ``position`` is given)."""
    course_id = path_id(request, "id")
    body = await read_json(request, UnitCreate)
    async with services(request).sessions.begin() as session:
        unit = await service.create_unit(session, course_id, title=body.title, description=body.description,
                                         position=body.position)
        payload = queries.unit_payload(unit)
    return json_response(payload, 201)


@api.patch("/units/{id}", access=EDIT_UNIT, body=UnitPatch, response=UnitOut)
async def patch_unit(request: Request) -> Response:
    """Rename a unit or move it (``position``)."""
    unit_id = path_id(request, "id")
    body = await read_json(request, UnitPatch)
    changes = changes_of(body, not_null=("title",))
    async with services(request).sessions.begin() as session:
        unit = await service.update_unit(session, unit_id, changes)
        payload = queries.unit_payload(unit)
    return json_response(payload)


@api.delete("/units/{id}", access=EDIT_UNIT, status=204)
async def delete_unit(request: Request) -> Response:
    """Delete a unit and its lessons."""
    unit_id = path_id(request, "id")
    svc = services(request)
    async with svc.sessions.begin() as session:
        paths = await service.delete_unit(session, unit_id)
    service.remove_media_files(svc.settings.media_dir, paths)
    return no_content()


@api.post("/courses/{id}/reorder", access=EDIT, body=UnitOrder, response=UnitList)
async def reorder_units(request: Request) -> Response:
    """Set the order of all units of a course (the full list of unit ids)."""
    course_id = path_id(request, "id")
    body = await read_json(request, UnitOrder)
    async with services(request).sessions.begin() as session:
        units = await service.reorder_units(session, course_id, body.unit_ids)
        payload = [queries.unit_payload(u) for u in units]
    return json_response({"items": payload})


# --- lessons -----------------------------------------------------------------------------


@api.post("/units/{id}/lessons", access=ADD_LESSON, status=201, body=LessonCreate, response=LessonOut)
async def create_lesson(request: Request) -> Response:
    """Add a lesson to a unit (last unless ``position`` is given)."""
    me = await require_user(request)
    unit_id = path_id(request, "id")
    access: CourseAccess = granted(request)
    body = await read_json(request, LessonCreate)
    prerendered = await prerender(body.content, me.clerk_id)
    async with services(request).sessions.begin() as session:
        lesson = await service.create_lesson(session, unit_id, title=body.title, content_type=body.content_type,
                                             content=body.content, position=body.position, prerendered=prerendered)
        payload = await queries.lesson_payload(lesson, access.course_id)
    return json_response(payload, 201)


@api.get("/lessons/{id}", access=READ_LESSON, response=LessonOut)
async def get_lesson(request: Request) -> Response:
    """A lesson with its content (Markdown ``body`` and sanitised ``html``) and ``version``."""
    lesson_id = path_id(request, "id")
    async with reading(request) as conn:
        payload = await queries.read_lesson(conn, lesson_id)
    return json_response(payload)


@api.patch("/lessons/{id}", access=EDIT_LESSON, body=LessonPatch, response=LessonOut)
async def patch_lesson(request: Request) -> Response:
    """Change a lesson (title, content, type, position, unit); text edits go through a live room if open."""
    me = await require_user(request)
    lesson_id = path_id(request, "id")
    body = await read_json(request, LessonPatch)
    changes = changes_of(body, not_null=("title", "content_type"))
    outline_fields = {"title", "content_type", "position", "unit_id"} & changes.keys()
    svc = services(request)
    if "content" in changes or "content_type" in changes:
        async with svc.sessions() as session:
            lesson, _ = await service.get_lesson(session, lesson_id)
            # Validate everything before any part of the change is applied.
            service.merged_content(lesson, changes.get("content_type"), changes.get("content"))
    if svc.rooms is not None:
        text_edit: dict[str, Any] = {}
        if "title" in changes:
            text_edit["title"] = changes["title"]
        content = dict(changes.get("content") or {})
        if "body" in content and content["body"] is not None:
            text_edit["body"] = content["body"]
        if text_edit:
            handled = await svc.rooms.edit_text(str(lesson_id), text_edit, actor=me.clerk_id)
            if handled is not False:
                # The room applies (and persists) the text; the rest goes to the row directly.
                changes.pop("title", None)
                content.pop("body", None)
                if "content" in changes:
                    changes["content"] = content
    prerendered = await prerender(changes.get("content"), me.clerk_id)
    async with svc.sessions.begin() as session:
        if changes:
            await service.update_lesson(session, lesson_id, changes, prerendered)
        lesson, course_id = await service.get_lesson(session, lesson_id)
        payload = await queries.lesson_payload(lesson, course_id)
        if outline_fields:  # what the outline shows changed: tell its viewers (§7 outline.updated)
            renamed = "title" in outline_fields
            await service.outline_changed(session, course_id, lesson_id=lesson_id if renamed else None,
                                          title=body.title if renamed else None)
    return json_response(payload)


@api.delete("/lessons/{id}", access=DELETE_LESSON, status=204)
async def delete_lesson(request: Request) -> Response:
    """Delete a lesson (its uploaded media files go too)."""
    lesson_id = path_id(request, "id")
    svc = services(request)
    async with svc.sessions.begin() as session:
        paths = await service.delete_lesson(session, lesson_id)
    service.remove_media_files(svc.settings.media_dir, paths)
    return no_content()


@api.post("/units/{id}/reorder", access=REORDER_LESSONS, body=LessonOrder, response=LessonList)
async def reorder_lessons(request: Request) -> Response:
    """Set the order of all lessons of a unit (the full list of lesson ids)."""
    unit_id = path_id(request, "id")
    body = await read_json(request, LessonOrder)
    async with services(request).sessions.begin() as session:
        lessons = await service.reorder_lessons(session, unit_id, body.lesson_ids)
        items = [{"id": lesson.id, "title": lesson.title, "content_type": lesson.content_type,
                  "position": lesson.position} for lesson in lessons]
    return json_response({"items": items})


# --- collaborators (the author and admins) -----------------------------------------------


@api.get("/courses/{id}/collaborators", access=COLLABORATORS, response=CollaboratorPage)
async def list_collaborators(request: Request) -> Response:
    """Collaborators of a course (author and admins)."""
    course_id = path_id(request, "id")
    async with services(request).sessions() as session:
        items = await queries.list_collaborators(session, course_id)
    return json_response({"items": items, "next_cursor": None})


@api.post("/courses/{id}/collaborators", access=COLLABORATORS, status=201, body=CollaboratorAdd,
          response=CollaboratorOut)
async def add_collaborator(request: Request) -> Response:
    """Add an editor or viewer (the user must exist); they are notified."""
    me = await require_user(request)
    course_id = path_id(request, "id")
    body = await read_json(request, CollaboratorAdd)
    async with services(request).sessions.begin() as session:
        payload = await service.add_collaborator(session, course_id, clerk_id=body.clerk_id, role=body.role,
                                                 actor=me)
    return json_response(payload, 201)


@api.patch("/courses/{id}/collaborators/{clerk_id}", access=COLLABORATORS, body=CollaboratorPatch,
           response=CollaboratorOut)
async def patch_collaborator(request: Request) -> Response:
    """Change a collaborator's role."""
    course_id = path_id(request, "id")
    body = await read_json(request, CollaboratorPatch)
    async with services(request).sessions.begin() as session:
        payload = await service.change_collaborator(session, course_id, request.path_params["clerk_id"],
                                                    body.role)
    return json_response(payload)


@api.delete("/courses/{id}/collaborators/{clerk_id}", access=COLLABORATORS, status=204)
async def remove_collaborator(request: Request) -> Response:
    """Remove a collaborator."""
    course_id = path_id(request, "id")
    async with services(request).sessions.begin() as session:
        await service.remove_collaborator(session, course_id, request.path_params["clerk_id"])
    return no_content()
