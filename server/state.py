"""What the running app holds: one typed object built in the lifespan, no globals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from server.catalog.outline_cache import OutlineCache
from server.clock import Clock, SystemClock
from server.settings import Settings

if TYPE_CHECKING:
    from server.auth import Authenticator


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    auth: Authenticator
    metrics: Any = None
    rate_limiter: Any = None
    restore_limiter: Any = None  # its own, tighter bucket (settings.restore_rate_*)
    # Filled in by the realtime and collab wiring (see server/app.py).
    broker: Any = None
    hub: Any = None
    rooms: Any = None
    outbox: Any = None
    background: list[Any] = field(default_factory=list)
    # Every "what time is it" of domain code (streak days, goal periods, FSRS due times).
    clock: Clock = field(default_factory=SystemClock)
    # Rendered outlines by course, checked against courses.outline_version (server/catalog/outline_cache.py).
    outline_cache: OutlineCache = field(default_factory=OutlineCache)


def services(conn: HTTPConnection) -> Services:
    found: Services = conn.state.services
    return found
