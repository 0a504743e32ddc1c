"""What the running app holds: one typed object built in the lifespan, no globals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from server.catalog.outline_cache import OutlineCache
from server.clock import Clock, SystemClock
from server.metrics import Metrics
from server.ratelimit import RateLimiter
from server.settings import Settings

# Only for the annotations: these modules build on this one (they read ``services(request)``).
if TYPE_CHECKING:
    from collab.manager import RoomManager
    from realtime.broker import Broker
    from realtime.hub import Hub
    from server.auth import Authenticator
    from server.outbox.drain import OutboxDrain


def _no_limit() -> RateLimiter:
    return RateLimiter(0, 1)  # per_minute 0: off (tests that build Services by hand)


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    auth: Authenticator
    metrics: Metrics = field(default_factory=Metrics)
    rate_limiter: RateLimiter = field(default_factory=_no_limit)
    restore_limiter: RateLimiter = field(default_factory=_no_limit)  # its own, tighter bucket (settings.restore_rate_*)
    # Filled in by the components as the app starts (server/ws/wiring.py, server/editing/live.py);
    # None before that, and in tests that build Services by hand.
    broker: Broker | None = None
    hub: Hub | None = None
    rooms: RoomManager | None = None
    outbox: OutboxDrain | None = None
    # Every "what time is it" of domain code (streak days, goal periods, FSRS due times).
    clock: Clock = field(default_factory=SystemClock)
    # Rendered outlines by course, checked against courses.outline_version (server/catalog/outline_cache.py).
    outline_cache: OutlineCache = field(default_factory=OutlineCache)


def services(conn: HTTPConnection) -> Services:
    found: Services = conn.state.services
    return found
