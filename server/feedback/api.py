"""REST: course feedback and its upvotes."""

from __future__ import annotations

from typing import Annotated, cast

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.requests import Request
from starlette.responses import Response

from server.access import CourseAccess, read_course, review_course, upvote_feedback
from server.auth import current_user, require_user
from server.errors import validation
from server.feedback import service
from server.feedback.schemas import FeedbackOut, UpvoteOut
from server.http import decode_cursor, json_response, page, page_limit, path_id, read_json
from server.routing import Api, granted
from server.schemas import Page
from server.state import services

api = Api("feedback")


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Annotated[StrictInt, Field(ge=1, le=5)]
    comment: Annotated[str, Field(max_length=10_000)] | None = None


@api.get("/courses/{id}/feedback", access=read_course("id"), response=Page[FeedbackOut],
         query={"sort": "upvotes (default) or recent", "limit": "page size", "cursor": "from next_cursor"})
async def list_feedback(request: Request) -> Response:
    """Reviews of a course, most upvoted or most recent first."""
    course_id = path_id(request)
    sort = request.query_params.get("sort") or "upvotes"
    if sort not in ("upvotes", "recent"):
        raise validation("query.sort", "must be 'upvotes' or 'recent'")
    typed_sort = cast(service.Sort, sort)
    limit, after = page_limit(request), decode_cursor(request)
    user = await current_user(request)
    async with services(request).sessions() as session:
        items = await service.list_feedback(session, course_id=course_id, me=user.clerk_id if user else None,
                                            sort=typed_sort, limit=limit, after=after)
    return json_response(page(items, limit, lambda item: service.cursor_of(item, typed_sort)))


@api.post("/courses/{id}/feedback", access=review_course("id"), status=201, also=(200,), body=FeedbackBody,
          response=FeedbackOut)
async def submit_feedback(request: Request) -> Response:
    """Review a course you are enrolled in (a second POST updates your review: 200)."""
    course_id = path_id(request)
    user = await require_user(request)
    access: CourseAccess = granted(request)
    async with services(request).sessions.begin() as session:
        body = await read_json(request, FeedbackBody)
        item, created = await service.submit(
            session, course_id=course_id, author_id=access.author_id, user_id=user.clerk_id,
            user_name=user.name, rating=body.rating, comment=body.comment)
    return json_response(item, 201 if created else 200)


async def _upvote(request: Request, on: bool) -> Response:
    feedback_id = path_id(request)
    user = await require_user(request)
    async with services(request).sessions.begin() as session:
        result = await service.set_upvote(session, feedback_id=feedback_id, user_id=user.clerk_id, on=on)
    return json_response(result)


@api.put("/feedback/{id}/upvote", access=upvote_feedback("id"), response=UpvoteOut)
async def upvote(request: Request) -> Response:
    """Upvote someone's review (idempotent)."""
    return await _upvote(request, True)


@api.delete("/feedback/{id}/upvote", access=upvote_feedback("id"), response=UpvoteOut)
async def remove_upvote(request: Request) -> Response:
    """Take back an upvote (idempotent)."""
    return await _upvote(request, False)
