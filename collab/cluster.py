"""The rooms across nodes: subscribing a room to its relay channel and taking in other nodes' traffic.

Each node relays what its own clients change (updates, awareness) to the other nodes' rooms of
the same lesson (:mod:`collab.relay`, Redis pub/sub). This module is the receiving side and the
bookkeeping: a room that opens subscribes and asks the others for what it lacks; relayed updates
are applied and passed to local peers (never persisted: their node did), relayed awareness goes
through :meth:`~collab.awareness.Awareness.on_remote`; after a Redis reconnect, and periodically,
rooms compare state vectors. Publishing a local change stays on the manager's hot path (one
``relay.publish``). Depends on :mod:`collab.relay`, :mod:`collab.room`, :mod:`collab.awareness`
and :mod:`collab.protocol`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from collab import protocol as p
from collab.awareness import Awareness
from collab.relay import KIND_AWARENESS, KIND_QUERY, KIND_STATE, KIND_UPDATE, Relay
from collab.room import Room


class Cluster:
    """This node's side of the relay; without one (a single node) every method is a no-op."""

    def __init__(self, relay: Relay | None, rooms: Mapping[str, Room], awareness: Awareness) -> None:
        self.relay = relay
        self.rooms = rooms  # the manager's, by lesson key
        self.awareness = awareness
        if relay is not None:
            relay.bind(self.on_relay, self.on_reconnect)

    async def opened(self, room: Room) -> None:
        """A room was loaded: follow its channel, and ask the other nodes for anything newer
        than what PostgreSQL gave us."""
        if self.relay is not None:
            self.relay.subscribe(room.lesson_id)
            await self.relay.subscribed(room.lesson_id, within=1.0)
            self.relay.publish(room.lesson_id, KIND_QUERY, room.doc.get_state())

    def closed(self, room: Room) -> None:
        if self.relay is not None:
            self.relay.unsubscribe(room.lesson_id)

    def resync(self, room: Room) -> None:
        """Tell the other nodes this room's state vector (they answer with what it lacks)."""
        if self.relay is not None:
            self.relay.publish(room.lesson_id, KIND_STATE, room.doc.get_state())

    def on_relay(self, lesson_id: str, kind: bytes, payload: bytes, origin: str) -> None:
        room = self.rooms.get(lesson_id)
        if room is None:
            return
        if kind == KIND_UPDATE:
            frame = p.parse_frame(payload)
            if frame.type != p.MSG_SYNC or frame.sync not in (p.SYNC_UPDATE, p.SYNC_STEP2):
                return
            room.doc.apply_update(frame.payload)
            room.remember(frame.payload)
            room.small = False
            room.broadcast(payload)
            room.dirty = True
            room.changed_at = time.monotonic()
        elif kind == KIND_AWARENESS:
            frame = p.parse_frame(payload)
            accepted = self.awareness.on_remote(room, frame.payload, origin)
            if accepted is None:
                room.broadcast(payload)
            elif accepted:
                room.broadcast(p.awareness_frame(p.encode_awareness(accepted)))
        elif kind in (KIND_QUERY, KIND_STATE):
            assert self.relay is not None
            missing = room.doc.get_update(payload)
            if missing != p.EMPTY_UPDATE:
                self.relay.publish(lesson_id, KIND_UPDATE, p.update_frame(missing))
            if kind == KIND_QUERY:
                self.relay.publish(lesson_id, KIND_STATE, room.doc.get_state())
                local = self.awareness.local_frame(room)
                if local is not None:
                    self.relay.publish(lesson_id, KIND_AWARENESS, local)

    def on_reconnect(self) -> None:
        """Redis came back: whatever was published meanwhile is lost, so resynchronise."""
        assert self.relay is not None
        for room in self.rooms.values():
            self.relay.publish(room.lesson_id, KIND_QUERY, room.doc.get_state())
