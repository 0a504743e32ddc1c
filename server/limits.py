"""Which connection caps a node uses: cluster-wide through Redis when it is configured
(:class:`realtime.caps.RedisCaps`), else this node's own (:class:`realtime.caps.LocalCaps`)."""

from __future__ import annotations

import uuid

from realtime.caps import Caps, LocalCaps, RedisCaps
from server.settings import Settings


def make_caps(settings: Settings, kind: str, cap: int) -> Caps:
    """Open sockets of one ``kind`` (``ws``, ``collab``) per user, at most ``cap`` (0: off)."""
    if settings.redis_url and cap:
        # The member names this process (NODE_ID may be shared by the workers of one node).
        return RedisCaps(cap, url=settings.redis_url, prefix=settings.redis_prefix, kind=kind,
                         node_id=f"{settings.node_id}:{uuid.uuid4().hex[:8]}",
                         ttl=settings.connection_cap_ttl_seconds)
    return LocalCaps(cap)
