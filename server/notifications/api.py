"""REST: the signed-in user's notifications (§4, §8)."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from server.access import SIGNED_IN, own_notification
from server.auth import require_user
from server.errors import validation
from server.http import decode_cursor, encode_cursor, json_response, page_limit, parse_datetime, path_id
from server.notifications import service
from server.notifications.schemas import NotificationOut, NotificationReadOut, ReadAllOut, UnreadCountOut
from server.routing import Api
from server.schemas import Page
from server.state import services

api = Api("notifications")


@api.get("/notifications", access=SIGNED_IN, response=Page[NotificationOut],
         query={"unread": "true: only unread ones", "limit": "Page size (1–100)",
                "cursor": "next_cursor of the previous page"})
async def list_notifications(request: Request) -> Response:
    """Your notifications, newest first."""
    me = await require_user(request)
    unread_raw = request.query_params.get("unread", "").lower()
    if unread_raw not in ("", "true", "false", "1", "0"):
        raise validation("query.unread", "must be true or false")
    limit, cursor = page_limit(request), decode_cursor(request)
    after = None
    if cursor is not None:
        try:
            created_at, last_id = cursor
            after = (parse_datetime(created_at), uuid.UUID(str(last_id)))
        except (ValueError, TypeError):
            raise validation("query.cursor", "malformed cursor") from None
    async with services(request).sessions() as session:
        items, next_key = await service.list_notifications(
            session, user_id=me.clerk_id, unread_only=unread_raw in ("true", "1"), limit=limit, after=after
        )
    return json_response({"items": items, "next_cursor": encode_cursor(next_key) if next_key else None})


@api.get("/notifications/unread-count", access=SIGNED_IN, response=UnreadCountOut)
async def unread_count(request: Request) -> Response:
    """How many of your notifications are unread."""
    me = await require_user(request)
    async with services(request).sessions() as session:
        count = await service.unread_count(session, me.clerk_id)
    return json_response({"unread_count": count})


@api.post("/notifications/read-all", access=SIGNED_IN, response=ReadAllOut)
async def read_all(request: Request) -> Response:
    """Mark every notification that exists now as read (pushes ``notification.read``)."""
    me = await require_user(request)
    async with services(request).sessions.begin() as session:
        result = await service.mark_all_read(session, user_id=me.clerk_id)
    return json_response(result)


@api.post("/notifications/{id}/read", access=own_notification("id"), response=NotificationReadOut)
async def read_one(request: Request) -> Response:
    """Mark one notification read (pushes ``notification.read`` to your other tabs)."""
    notification_id = path_id(request)
    me = await require_user(request)
    async with services(request).sessions.begin() as session:
        result = await service.mark_read(session, user_id=me.clerk_id, notification_id=notification_id)
    return json_response(result)
