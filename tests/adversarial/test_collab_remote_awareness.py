"""Awareness from another node is passed on as filtered (issue 11 review, item 4; §5).

A node skipped the entries of a relayed awareness frame for ids one of its own sockets owns,
then broadcast the original frame anyway: its local peers saw the spoofed cursor. Now only the
accepted entries reach local sockets, re-encoded, as on the socket path.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pycrdt import Doc

from collab import protocol as p
from collab.access import Grant
from collab.manager import RoomManager
from collab.relay import KIND_AWARENESS
from collab.room import AwarenessRecord, Peer, Room
from collab.sender import Sender
from collab.throttle import AnswerBudget


async def _refuse(*_: Any) -> Any:
    raise AssertionError("not used")


async def _send(_: dict[str, Any]) -> None:
    return None


async def test_a_relayed_frame_cannot_move_a_local_sockets_cursor() -> None:
    rooms = RoomManager(store=None, authorize=_refuse, recheck=_refuse)  # type: ignore[arg-type]
    room = Room(lesson_id="00000000-0000-0000-0000-000000000001", doc=Doc())
    rooms.rooms[room.lesson_id] = room
    local = Peer(Grant("victim", True), Sender(_send), AnswerBudget(1, 1.0, time.monotonic()))
    mine = p.AwarenessEntry(7, 5, json.dumps({"user": "victim"}))
    room.awareness[7] = AwarenessRecord(mine, local, time.monotonic())
    sent: list[bytes] = []
    room.broadcast = lambda frame, exclude=None: sent.append(frame)  # type: ignore[method-assign]

    spoof = p.AwarenessEntry(7, 99, json.dumps({"user": "spoofed"}))
    theirs = p.AwarenessEntry(8, 1, json.dumps({"user": "remote"}))
    rooms.cluster.on_relay(room.lesson_id, KIND_AWARENESS, p.awareness_frame(p.encode_awareness([spoof, theirs])),
                    "node-b")
    passed = [entry for frame in sent for entry in p.parse_awareness(p.parse_frame(frame).payload)]
    print(f"\nlocal sockets were sent {[(e.client_id, e.state) for e in passed]}")
    assert [e.client_id for e in passed] == [8]
    assert room.awareness[7].entry == mine

    rooms.cluster.on_relay(room.lesson_id, KIND_AWARENESS, p.awareness_frame(p.encode_awareness([spoof])), "node-b")
    assert len(sent) == 1  # nothing accepted: nothing sent
