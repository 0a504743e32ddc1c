"""The y-websocket connection: ``WS /collab/lessons/{lesson_id}``, one document on one socket.

:func:`serve` is the ASGI body of one socket: the handshake (the lesson id, the server's
``authorize``, loading the room; a refusal is an accepted socket closed with its code), then the
receive loop, which hands each frame as is to the rooms' :class:`~collab.receiver.Receiver` and
charges it to its user's receive budget, yielding the loop between bursts. Frames to the client
go through a :class:`~collab.sender.Sender` (the room's :class:`~collab.room.Link` for this
protocol). Another protocol reusing the rooms (many documents over one socket) is a sibling of
this module: it implements a :class:`~collab.room.Link` per document and calls
:meth:`~collab.manager.RoomManager.admit`, :meth:`~collab.manager.RoomManager.join`,
``rooms.receiver.receive`` and :meth:`~collab.manager.RoomManager.leave` the same way.
Depends on :mod:`collab.manager` (its API), :mod:`collab.sender` and :mod:`wire.websocket`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from collab.access import Denied, Scope
from collab.manager import RoomManager
from collab.room import lesson_key
from collab.sender import Sender
from collab.store import LessonGone
from wire.websocket import CLOSE_INTERNAL, CLOSE_NOT_FOUND

log = logging.getLogger("scriptorium.collab")

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

FRAMES_PER_TURN = 64  # frames of one socket handled before the loop serves others
# After a frame that took longer than this, the socket lets the loop serve others before its next
# frame (its buffered frames are otherwise handled back to back, up to FRAMES_PER_TURN).
SLOW_FRAME_S = 0.01


class Pacing:
    """How one socket's receive loop yields: wait out its receive budget, else let other sockets
    (and requests) in every FRAMES_PER_TURN frames or after a slow one — receive() does not suspend
    while frames are buffered (one 256 KB read of 4-byte frames is 26,000 of them). Shared by the
    y-websocket and the Hocuspocus connections."""

    def __init__(self) -> None:
        self.handled = 0

    async def after(self, spent: float, wait: float) -> None:
        self.handled += 1
        if wait > 0:
            self.handled = 0
            await asyncio.sleep(wait)
        elif self.handled >= FRAMES_PER_TURN or spent > SLOW_FRAME_S:
            self.handled = 0
            await asyncio.sleep(0)


async def serve(rooms: RoomManager, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one ``WS /collab/lessons/{lesson_id}`` connection (an ASGI app body)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    try:
        lesson_id = lesson_key(str(scope.get("path_params", {}).get("lesson_id", "")))
    except ValueError:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_NOT_FOUND, "reason": "No such lesson."})
        return
    try:
        grant, room = await rooms.admit(scope, lesson_id)
    except Denied as denied:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": denied.code, "reason": denied.reason})
        return
    except LessonGone:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_NOT_FOUND})
        return
    except Exception:
        log.exception("opening a collab room failed", extra={"lesson_id": lesson_id})
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_INTERNAL})
        return
    await send({"type": "websocket.accept"})
    room, peer = await rooms.join(room, grant, Sender(send, max_queued=rooms.max_queued,
                                                      coalescer=rooms.coalescer))
    receiver = rooms.receiver
    user_id = grant.user_id
    inbound = receiver.user_budget(user_id)
    pacing = Pacing()
    try:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("bytes") or b""
                started = time.perf_counter()
                if data and not peer.sender.closed:  # closed: what is still buffered is moot
                    receiver.receive(room, peer, data)
                spent = time.perf_counter() - started
                await pacing.after(spent, inbound.spend(receiver.frame_cost(data, spent), time.monotonic()))
            elif kind == "websocket.disconnect":
                break
    finally:
        peer.sender.closed = True
        rooms.leave(room, peer)
        receiver.release_budget(user_id)
