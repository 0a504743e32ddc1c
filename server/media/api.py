"""REST: lesson media (upload, external URL, list, delete) and serving ``/media/<name>``."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from server.access import edit_course, edit_media, member_of
from server.auth import require_user
from server.catalog.models import Lesson
from server.errors import NotFound, PayloadTooLarge, UnsupportedMediaType
from server.http import decode_cursor, json_response, no_content, page, page_limit, path_id, read_json
from server.media import service
from server.media.models import Media
from server.media.schemas import CourseMediaOut, MediaOut
from server.routing import Api
from server.schemas import Page
from server.state import services

api = Api("media")


class MediaUrlBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=8, max_length=2000)]

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http or https URL")
        return value


@api.post("/lessons/{id}/media", status=201, body=MediaUrlBody, multipart=True, response=MediaOut,
          access=edit_course("id", via="lesson", detail="Only the course's editors can add media."))
async def add_media(request: Request) -> Response:
    """Upload a file (multipart field ``file``) or link an external ``{url}`` (editors)."""
    lesson_id = path_id(request)
    user = await require_user(request)
    svc = services(request)
    quota = svc.settings.media_quota_bytes
    used = 0
    if quota:
        async with svc.sessions() as session:
            used = await service.used_bytes(session, user.clerk_id)
    content_type = request.headers.get("content-type", "")
    media_kind = content_type.split(";")[0].strip().lower()
    if media_kind == "application/json":
        body = await read_json(request, MediaUrlBody)
        media_type, mime = service.external_kind(body.url)
        media = Media(lesson_id=lesson_id, media_type=media_type, url=body.url, mime_type=mime,
                      user_id=user.clerk_id)
        async with svc.sessions.begin() as session:
            session.add(media)
            await session.flush()
            await session.refresh(media)
        return json_response(service.media_payload(media), 201)
    if media_kind != "multipart/form-data":
        raise UnsupportedMediaType("Send multipart/form-data with a 'file' field, or JSON {\"url\": ...}.")
    max_bytes = svc.settings.media_max_bytes
    if quota:
        if used >= quota:
            raise service.over_quota(quota, used)
        max_bytes = min(max_bytes, quota - used)  # streaming stops where the quota ends
    try:
        stored = await service.store_upload(
            content_type, request.headers.get("content-length"), request.stream(),
            media_dir=svc.settings.media_dir, max_bytes=max_bytes)
    except PayloadTooLarge:
        if max_bytes < svc.settings.media_max_bytes:
            raise service.over_quota(quota, used, max_bytes + 1) from None
        raise
    try:
        async with svc.sessions.begin() as session:
            # The lesson may have gone while the file streamed in (the rights were checked before).
            if (await session.execute(select(Lesson.id).where(Lesson.id == lesson_id))).first() is None:
                raise NotFound("No such lesson.")
            if quota:
                used = await service.used_bytes(session, user.clerk_id, lock=True)
                if used + stored.size > quota:
                    raise service.over_quota(quota, used, stored.size)
            media = Media(lesson_id=lesson_id, media_type=stored.kind.media_type,
                          url=f"/media/{stored.path.name}", mime_type=stored.kind.mime,
                          size_bytes=stored.size, storage_path=stored.path.name, user_id=user.clerk_id)
            session.add(media)
            await session.flush()
            await session.refresh(media)
    except BaseException:
        service.remove_files(svc.settings.media_dir, [stored.path.name])
        raise
    return json_response(service.media_payload(media), 201)


@api.get("/lessons/{id}/media", access=member_of("id", via="lesson"), response=Page[MediaOut])
async def list_media(request: Request) -> Response:
    """Media of a lesson, oldest first."""
    lesson_id = path_id(request)
    async with services(request).sessions() as session:
        found = (await session.execute(
            select(Media).where(Media.lesson_id == lesson_id).order_by(Media.created_at, Media.id)
        )).scalars()
        items = [service.media_payload(m) for m in found]
    return json_response({"items": items, "next_cursor": None})


@api.get("/courses/{id}/media", response=Page[CourseMediaOut],
         access=edit_course("id", detail="Only the course's editors can see its media library."),
         query={"limit": "page size (1-100)", "cursor": "from next_cursor"})
async def course_media(request: Request) -> Response:
    """The course's media library, newest first: each item with its lesson and the lessons whose
    body references it (editors)."""
    course_id = path_id(request)
    limit, after = page_limit(request), decode_cursor(request)
    async with services(request).sessions() as session:
        items = await service.course_media(session, course_id, limit=limit, after=after)
    result = page(items, limit, lambda item: item["_cursor"])
    for item in result["items"]:
        item.pop("_cursor")
    return json_response(result)


@api.delete("/media/{id}", access=edit_media("id"), status=204)
async def delete_media(request: Request) -> Response:
    """Remove a media item and its stored file (editors)."""
    media_id = path_id(request)
    svc = services(request)
    async with svc.sessions.begin() as session:
        media = await session.get(Media, media_id, with_for_update=True)
        if media is None:
            raise NotFound("No such media.")
        name = media.storage_path
        await session.delete(media)
    if name:
        service.remove_files(svc.settings.media_dir, [name])
    return no_content()


async def serve_media(request: Request) -> Response:
    """A stored file with its content type; never sniffed by browsers, non-inline types downloaded."""
    name = str(request.path_params.get("name", ""))
    kind = service.kind_of_name(name)
    media_dir = services(request).settings.media_dir
    path = media_dir / name
    if kind is None or not path.is_file():
        raise NotFound("No such file.")
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox",
               "Cache-Control": "public, max-age=31536000, immutable"}
    disposition = "inline" if kind.inline else "attachment"
    return FileResponse(path, media_type=kind.mime, headers=headers, filename=name,
                        content_disposition_type=disposition)


def media_routes() -> list[BaseRoute]:
    return [Route("/media/{name}", serve_media, methods=["GET", "HEAD"])]
