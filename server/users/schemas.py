"""Response models of /api/me, /api/dev/token and the Clerk webhook."""

from __future__ import annotations

import uuid
from typing import Literal

from server.schemas import Out


class MeOut(Out):
    id: uuid.UUID
    clerk_id: str
    email: str | None
    name: str | None
    image_url: str | None
    timezone: str  # IANA
    role: Literal["member", "admin"]


class DevTokenOut(Out):
    token: str
    expires_at: int  # Unix seconds
    sub: str


class WebhookOutcome(Out):
    """What the delivery did (server/users/service.py ``apply_clerk_event``)."""

    status: Literal["applied", "anonymised", "deleted", "stale", "ignored", "duplicate"]
