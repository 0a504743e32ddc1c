"""REST routes the web app needs beyond the product contract: its config and the caller's access."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from server.access import PUBLIC, VISITOR, CourseAccess, course_access, lesson_access
from server.auth import current_user
from server.http import json_response, path_id
from server.routing import Api
from server.state import services

api = Api("web")


@api.get("/config", access=PUBLIC)
async def web_config(request: Request) -> Response:
    """Public settings for the browser: the auth mode and Clerk's publishable key (never a secret)."""
    settings = services(request).settings
    key = settings.clerk_publishable_key if settings.auth_mode == "clerk" else None
    return json_response({"auth_mode": settings.auth_mode, "clerk_publishable_key": key})


def access_payload(access: CourseAccess) -> dict[str, Any]:
    return {
        "course_id": str(access.course_id),
        "role": access.role.name.lower(),
        "can_read": access.can_read,
        "can_edit": access.can_edit,
        "can_manage": access.can_manage,
        "can_see_drafts": access.can_see_drafts,
        "is_staff": access.is_staff,
    }


@api.get("/courses/{id}/access", access=VISITOR)
async def my_course_access(request: Request) -> Response:
    """The caller's role in a course (anonymous, member, learner, viewer, editor, author, admin)."""
    course_id = path_id(request)
    user = await current_user(request)
    async with services(request).sessions() as session:
        return json_response(access_payload(await course_access(session, course_id, user)))


@api.get("/lessons/{id}/access", access=VISITOR)
async def my_lesson_access(request: Request) -> Response:
    """The caller's role in the course of a lesson, and that course's id."""
    lesson_id = path_id(request)
    user = await current_user(request)
    async with services(request).sessions() as session:
        return json_response(access_payload(await lesson_access(session, lesson_id, user)))
