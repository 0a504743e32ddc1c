"""REST: /api/me, dev tokens, Clerk webhooks."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from svix.webhooks import Webhook, WebhookVerificationError

from server.access import PUBLIC, SIGNED_IN
from server.auth import Principal, require_user
from server.errors import BadRequest, Forbidden, ServiceUnavailable
from server.http import json_response, read_body, read_json
from server.routing import Api
from server.state import services
from server.users import service
from server.users.models import User
from server.users.schemas import DevTokenOut, MeOut, WebhookOutcome

api = Api("users")


def user_payload(user: User | Principal) -> dict[str, Any]:
    return {
        "id": str(user.id), "clerk_id": user.clerk_id, "email": user.email, "name": user.name,
        "image_url": user.image_url, "timezone": user.timezone, "role": user.role,
    }


class MePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)


class DevTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sub: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.:@-]+$")
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)


@api.get("/me", access=SIGNED_IN, response=MeOut)
async def get_me(request: Request) -> Response:
    """The signed-in user."""
    return json_response(user_payload(await require_user(request)))


@api.patch("/me", access=SIGNED_IN, body=MePatch, response=MeOut)
async def patch_me(request: Request) -> Response:
    """Change your name or time zone (IANA)."""
    me = await require_user(request)
    body = await read_json(request, MePatch)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    async with services(request).sessions.begin() as session:
        user = await service.update_profile(session, clerk_id=me.clerk_id, changes=changes)
        return json_response(user_payload(user))


@api.post("/dev/token", body=DevTokenRequest, access=PUBLIC, response=DevTokenOut)
async def dev_token(request: Request) -> Response:
    """Dev mode only: a signed token for any user id (refused when Clerk is configured)."""
    svc = services(request)
    if svc.settings.auth_mode != "dev":
        raise Forbidden("Dev tokens are only issued with AUTH_MODE=dev.")
    body = await read_json(request, DevTokenRequest)
    token, expires_at = svc.auth.issue_dev_token(body.sub, body.name, body.email)
    return json_response({"token": token, "expires_at": expires_at, "sub": body.sub})


# PUBLIC: Clerk proves itself by the Svix signature of the body, checked below.
@api.post("/webhooks/clerk", access=PUBLIC, response=WebhookOutcome)
async def clerk_webhook(request: Request) -> Response:
    """Clerk user.created / user.updated / user.deleted, Svix-signed."""
    svc = services(request)
    secret = svc.settings.clerk_webhook_secret
    if not secret:
        raise ServiceUnavailable("CLERK_WEBHOOK_SECRET is not configured.")
    raw = await read_body(request, svc.settings.body_max_bytes)
    headers = {k: request.headers.get(k, "") for k in ("svix-id", "svix-timestamp", "svix-signature")}
    try:
        Webhook(secret).verify(raw, headers)  # checks the signature and the 5-minute window
    except WebhookVerificationError as exc:
        raise BadRequest(f"Webhook signature check failed: {exc}") from None
    try:
        event = json.loads(raw)
        event_type, data = str(event["type"]), event["data"]
        if not isinstance(data, dict):
            raise TypeError("data is not an object")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise BadRequest(f"Malformed webhook payload: {exc}") from None
    async with svc.sessions.begin() as session:
        outcome = await service.apply_clerk_event(
            session, svix_id=headers["svix-id"], event_type=event_type, data=data
        )
    return json_response({"status": outcome})
