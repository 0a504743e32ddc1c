"""Server-to-client WebSocket frames, the direct-transport check and the close codes.

Both socket endpoints (``collab``: ``/collab/lessons/{id}``, ``realtime``: ``/ws``) write frames
they encoded once straight to uvicorn's transport when they can: server frames are never masked,
so one encoding serves every recipient. This module is what both need for that, and the close
codes they share; it depends on nothing but the standard library (uvicorn is recognised by
name), so ``collab`` and ``realtime`` import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Close codes (docs/API.md §5 and §7 for the 44xx ones).
CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_TOO_BIG = 1009  # an inbound frame over the endpoint's limit
CLOSE_INTERNAL = 1011  # the server failed (or its broker is unavailable)
CLOSE_TOO_SLOW = 4008  # the client reads too slowly: too much waits for it
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_LARGE = 4413  # a collab update would take a text field over its limit
CLOSE_TOO_MANY = 4429  # too many sockets of one user ("a 429 for sockets")
# a collab room's unsaved updates (the database unreachable) passed COLLAB_UNSAVED_MAX_BYTES:
# its writers are closed; clients keep their edits and send them when they reconnect
CLOSE_STORAGE_UNAVAILABLE = 4503

BINARY = 0x82  # FIN + binary opcode: the first byte of a whole binary frame
TEXT = 0x81  # FIN + text opcode


def encode_frame(payload: bytes, first: int = BINARY) -> bytes:
    """One unmasked, final WebSocket frame carrying ``payload`` (binary unless ``first`` is
    :data:`TEXT`). Called once per broadcast, not per recipient."""
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big") + payload
    return bytes((first, 127)) + size.to_bytes(8, "big") + payload


def direct_protocol(send: Callable[..., Any] | None) -> Any:
    """uvicorn's sans-I/O WebSocket protocol whose bound ``asgi_send`` is ``send``, when encoded
    frames may be written straight to its transport; else None (any other server, a wrapped
    ``send``, or a negotiated extension such as permessage-deflate, under which frames would
    differ per connection). Recognised by class name (subclasses count: the server paces parsing
    in one, server/websocket_protocol.py), so neither ``collab`` nor ``realtime`` imports uvicorn."""
    proto = getattr(send, "__self__", None)
    if proto is None or not any(cls.__name__ == "WebSocketsSansIOProtocol" for cls in type(proto).__mro__):
        return None
    conn = getattr(proto, "conn", None)
    if conn is None or getattr(proto, "transport", None) is None or getattr(proto, "writable", None) is None:
        return None
    if getattr(conn, "extensions", None):
        return None
    if not hasattr(proto, "close_sent"):
        return None
    return proto
