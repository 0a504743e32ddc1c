"""Users: profile changes, Clerk webhooks, admin grants."""

from __future__ import annotations

import zoneinfo
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.errors import NotFound, validation
from server.users.models import User, WebhookDelivery


def valid_timezone(name: str) -> bool:
    if not name or name != name.strip():
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


async def get_user(session: AsyncSession, clerk_id: str) -> User:
    user = (await session.execute(select(User).where(User.clerk_id == clerk_id))).scalar_one_or_none()
    if user is None:
        raise NotFound("No such user.")
    return user


async def update_profile(session: AsyncSession, *, clerk_id: str, changes: dict[str, Any]) -> User:
    if "timezone" in changes and not valid_timezone(changes["timezone"]):
        raise validation("timezone", "unknown IANA time zone")
    user = await get_user(session, clerk_id)
    for key, value in changes.items():
        setattr(user, key, value)
    await session.flush()
    await session.refresh(user)
    return user


async def grant_admin(session: AsyncSession, *, clerk_id: str) -> bool:
    """Make ``clerk_id`` an admin (creating the user row if needed). True if it changed."""
    await session.execute(insert(User).values(clerk_id=clerk_id).on_conflict_do_nothing())
    result = await session.execute(
        update(User).where(User.clerk_id == clerk_id, User.role != "admin").values(role="admin")
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def clerk_user_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Map Clerk's user object to our columns (§2)."""
    email = None
    primary = data.get("primary_email_address_id")
    for entry in data.get("email_addresses") or []:
        if isinstance(entry, dict) and entry.get("id") == primary:
            email = entry.get("email_address")
    name = " ".join(p for p in (data.get("first_name") or "", data.get("last_name") or "") if p).strip()
    if not name:
        name = (data.get("username") or "").strip()
    return {"email": email or None, "name": name or None, "image_url": data.get("image_url") or None}


async def apply_clerk_event(session: AsyncSession, *, svix_id: str, event_type: str,
                            data: dict[str, Any]) -> str:
    """Apply one webhook delivery once. Returns what happened (for the response and logs)."""
    first = await session.execute(
        insert(WebhookDelivery).values(svix_id=svix_id, event_type=event_type)
        .on_conflict_do_nothing().returning(WebhookDelivery.id)
    )
    if first.first() is None:
        return "duplicate"
    clerk_id = data.get("id")
    if not isinstance(clerk_id, str) or not clerk_id:
        return "ignored"
    if event_type == "user.deleted":
        # A tombstone even for a user we never saw: a late ``user.created`` must not create them.
        await session.execute(insert(User).values(clerk_id=clerk_id).on_conflict_do_nothing())
        await session.execute(
            update(User).where(User.clerk_id == clerk_id)
            .values(email=None, name=None, image_url=None, deleted_at=func.coalesce(User.deleted_at, func.now()))
        )
        return "anonymised"
    if event_type not in ("user.created", "user.updated"):
        return "ignored"
    fields = clerk_user_fields(data)
    stamp = data.get("updated_at")
    stamp = int(stamp) if isinstance(stamp, (int, float)) else None
    await session.execute(insert(User).values(clerk_id=clerk_id).on_conflict_do_nothing())
    user = (await session.execute(
        select(User).where(User.clerk_id == clerk_id).with_for_update()
    )).scalar_one()
    if user.deleted_at is not None:
        return "deleted"  # deleted is final, whatever the delivery's updated_at
    if stamp is not None and user.clerk_updated_at is not None and stamp < user.clerk_updated_at:
        return "stale"
    if fields["email"]:
        taken = await session.execute(
            select(User.clerk_id).where(User.email == fields["email"], User.clerk_id != clerk_id)
        )
        if taken.first() is not None:
            fields["email"] = user.email
    for key, value in fields.items():
        setattr(user, key, value)
    if stamp is not None:
        user.clerk_updated_at = stamp
    return "applied"
