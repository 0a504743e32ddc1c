"""Query-saved frames cannot grow the server while a flush is pending (issue 11 review, item 5).

Each 1-byte query-saved frame sent while the update log had unsaved updates appended a waiter,
kept until the flush succeeded (forever while the database is down) and kept after the socket
left. Now a socket has at most one waiting query, its newest, and it is dropped when it leaves.
"""

from __future__ import annotations

import time
from typing import Any

from pycrdt import Doc

from collab import protocol as p
from collab.access import Grant
from collab.manager import RoomManager
from collab.room import Peer, Room
from collab.sender import Sender
from collab.throttle import AnswerBudget


async def _refuse(*_: Any) -> Any:
    raise AssertionError("not used")


async def _send(_: dict[str, Any]) -> None:
    return None


async def test_a_socket_has_one_pending_saved_query() -> None:
    rooms = RoomManager(store=None, authorize=_refuse, recheck=_refuse)  # type: ignore[arg-type]
    rooms._stopping = True  # no background work for the emptied room
    room = Room(lesson_id="00000000-0000-0000-0000-000000000001", doc=Doc())
    peer = Peer(Grant("user", True), Sender(_send), AnswerBudget(1, 1.0, time.monotonic()))
    room.peers.append(peer)
    rooms.persistence.enqueued = 1  # an update waits for its flush (the database is down, say)
    for nonce in range(10_000):
        rooms.receiver.receive(room, peer, p.query_saved_frame(nonce))
    print(f"\n10,000 query-saved frames during a pending flush: {len(rooms.persistence.saved_waiters)} waiter(s)")
    assert len(rooms.persistence.saved_waiters) == 1
    rooms.leave(room, peer)
    assert not rooms.persistence.saved_waiters
