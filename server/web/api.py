"""REST routes the web app needs beyond the product contract: its config and the caller's access."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from server.access import PUBLIC, CourseAccess, read_course
from server.http import json_response
from server.routing import Api, granted
from server.state import services
from server.web.schemas import AccessOut, ConfigOut

api = Api("web")


@api.get("/config", access=PUBLIC, response=ConfigOut)
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


@api.get("/courses/{id}/access", access=read_course("id"), response=AccessOut)
async def my_course_access(request: Request) -> Response:
    """The caller's role in a course (anonymous, member, learner, viewer, editor, author, admin)."""
    return json_response(access_payload(granted(request)))


@api.get("/lessons/{id}/access", access=read_course("id", via="lesson"), response=AccessOut)
async def my_lesson_access(request: Request) -> Response:
    """The caller's role in the course of a lesson, and that course's id."""
    return json_response(access_payload(granted(request)))
