"""The rooms across nodes: subscribing a room to its relay channel and taking in other nodes' traffic.

Each node relays what its own clients change (updates, awareness) to the other nodes' rooms of
the same lesson (:mod:`collab.relay`, Redis pub/sub). This module is the receiving side and the
bookkeeping: a room that opens subscribes and asks the others for what it lacks; relayed updates
are applied and passed to local peers (never persisted: their node committed them before it
relayed them, see :meth:`~collab.persistence.Persistence.queue_relayed`), relayed awareness goes
through :meth:`~collab.awareness.Awareness.on_remote`; after a Redis reconnect, and periodically,
rooms compare state vectors. Publishing a local change stays on the manager's hot path (one
``relay.publish``). Depends on :mod:`collab.relay`, :mod:`collab.room`, :mod:`collab.awareness`
and :mod:`collab.protocol`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from collab import protocol as p
from collab.awareness import Awareness
from collab.relay import KIND_AWARENESS, KIND_QUERY, KIND_STATE, KIND_UPDATE, Relay
from collab.room import Room


class Cluster:
    """This node's side of the relay; without one (a single node) every method is a no-op."""

    def __init__(self, relay: Relay | None, rooms: Mapping[str, Room], awareness: Awareness,
                 after_commit: Callable[[str, Callable[[], None]], None] | None = None) -> None:
        self.relay = relay
        # run a callback once none of a lesson's updates of this node is uncommitted (the
        # manager's: Persistence.after_commit); without it, at once
        self.after_commit = after_commit or (lambda lesson_id, callback: callback())
        self.rooms = rooms  # the manager's, by lesson key
        self.awareness = awareness
        self._tasks: set[asyncio.Task[None]] = set()
        if relay is not None:
            relay.bind(self.on_relay, self.on_reconnect)

    async def opened(self, room: Room) -> None:
        """A room was loaded: follow its channel, and ask the other nodes for anything newer
        than what PostgreSQL gave us."""
        if self.relay is not None:
            self.relay.subscribe(room.lesson_id)
            if not await self.relay.subscribed(room.lesson_id, within=1.0):
                # Ask again once subscribed: answers sent before then reach nobody here, and a
                # node alone on the lesson would take its answer's count for being alone still
                # (see collab.relay), publishing nothing more to this node.
                task = asyncio.ensure_future(self._ask_when_subscribed(room))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self.relay.publish(room.lesson_id, KIND_QUERY, room.doc.get_state())

    async def _ask_when_subscribed(self, room: Room) -> None:
        assert self.relay is not None
        # (past this, Redis is away: the reconnect makes every room ask again)
        if await self.relay.subscribed(room.lesson_id, within=60.0) and self.rooms.get(room.lesson_id) is room:
            self.relay.publish(room.lesson_id, KIND_QUERY, room.doc.get_state())

    async def stop(self) -> None:
        """Cancel the questions still waiting for a subscription (the relay is going)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
            # The lease holder's versions and compactions cover other nodes' updates too
            # (see collab.persistence.PgLeases): a row in the shared log, a change since the version.
            room.changed_since_version = True
            room.log_rows += 1
        elif kind == KIND_AWARENESS:
            frame = p.parse_frame(payload)
            accepted = self.awareness.on_remote(room, frame.payload, origin)
            if accepted is None:
                room.broadcast(payload)
            elif accepted:
                room.broadcast(p.awareness_frame(p.encode_awareness(accepted)))
        elif kind in (KIND_QUERY, KIND_STATE):
            # Answered from the live document once this node's updates of the lesson are all
            # committed: persist before relay holds for catch-up answers too.
            self.after_commit(lesson_id, lambda: self._answer(room, kind, payload))

    def _answer(self, room: Room, kind: bytes, payload: bytes) -> None:
        """What the asking node lacks (and, to a query, this node's state vector and awareness)."""
        lesson_id = room.lesson_id
        if self.rooms.get(lesson_id) is not room:
            return  # unloaded meanwhile
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
