"""The live-events hub wired into the app (§7): broker, outbox drain and ``/ws`` hub for the app's
lifetime, and the ``/ws`` route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from realtime.broker import Broker, HistoryPolicy
from realtime.hub import Hub, HubLimits
from realtime.memory_broker import MemoryBroker
from realtime.redis_broker import RedisBroker
from server.limits import make_caps
from server.outbox.drain import OutboxDrain
from server.settings import Settings
from server.state import Services, services
from server.ws.cache import TtlCache
from server.ws.policy import ACCESS_CACHE_S, held_channel, make_authenticate, make_authorize, make_recheck


def make_broker(settings: Settings) -> Broker:
    policy = HistoryPolicy(keep=settings.event_history, max_age_s=settings.event_history_seconds)
    if settings.redis_url:
        return RedisBroker(settings.redis_url, settings.redis_prefix, policy)
    return MemoryBroker(policy)


@asynccontextmanager
async def component(svc: Services) -> AsyncIterator[None]:
    """Broker, outbox drain and hub for the app's lifetime."""
    broker = make_broker(svc.settings)
    await broker.start()
    drain = OutboxDrain(svc.engine, broker, svc.settings)
    if isinstance(broker, RedisBroker):
        broker.on_reconnect = drain.kick
    settings = svc.settings
    limits = HubLimits(frames_per_second=settings.ws_frames_per_second, frame_burst=settings.ws_frame_burst,
                       recheck_seconds=settings.ws_recheck_seconds,
                       sockets_per_user=settings.ws_sockets_per_user)
    granted = TtlCache(ACCESS_CACHE_S)
    hub = Hub(broker, make_authenticate(svc), make_authorize(svc, granted), limits,
              recheck=make_recheck(svc, granted), held=held_channel,
              caps=make_caps(settings, "ws", settings.ws_sockets_per_user),
              on_slow_close=svc.metrics.slow_closes.labels("ws").inc)
    svc.broker, svc.outbox, svc.hub = broker, drain, hub
    svc.metrics.websockets.labels("ws").set_function(lambda: hub.connection_count)
    hub.start()
    await drain.start()
    try:
        yield
    finally:
        await hub.close_all()
        await hub.caps.close()
        await drain.stop()
        await broker.close()


async def ws_endpoint(ws: WebSocket) -> None:
    hub = services(ws).hub
    assert hub is not None, "the live component starts with the app"
    await hub.serve(ws)


def routes() -> list[BaseRoute]:
    return [WebSocketRoute("/ws", ws_endpoint)]
