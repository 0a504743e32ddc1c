"""The auth hook that turns "a signed-in user did something" into activity days and streaks.

Cheap on the hot path: the (user, local date) pairs already recorded by this process are kept in
memory, so only a user's first request of a local day costs a write (and a second process or a
restart costs one ``INSERT … ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date

from server.auth import Principal
from server.gamification import service, streaks
from server.state import Services

log = logging.getLogger("scriptorium.activity")

MAX_REMEMBERED = 100_000


class ActivityTracker:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.recorded: dict[str, date] = {}

    async def __call__(self, principal: Principal) -> None:
        now = self.svc.clock.now()
        today = streaks.local_date(now, principal.timezone)
        if self.recorded.get(principal.clerk_id) == today:
            return
        try:
            async with self.svc.sessions.begin() as session:
                await service.record_activity(session, user_id=principal.clerk_id,
                                              timezone=principal.timezone, now=now)
        except Exception:
            # Activity is a side effect: never fail the user's request over it; retried next request.
            log.exception("recording activity failed", extra={"user_id": principal.clerk_id})
            return
        if len(self.recorded) >= MAX_REMEMBERED:
            self.recorded.clear()
        self.recorded[principal.clerk_id] = today


@asynccontextmanager
async def activity_component(svc: Services) -> AsyncIterator[None]:
    tracker = ActivityTracker(svc)
    svc.auth.hooks.append(tracker)
    try:
        yield
    finally:
        if tracker in svc.auth.hooks:
            svc.auth.hooks.remove(tracker)
