"""What a peer sends, by message type: the y-protocol dispatch any connection type hands its frames to.

:meth:`Receiver.receive` takes one y-protocol message (y-websocket's frame; a protocol that wraps
messages, e.g. with a document name, passes what it wraps) from one peer of one room: sync step 1
(answered within the peer's budget), step 2 and update (applied through
:meth:`~collab.manager.RoomManager.client_update`, which holds the limits and poison checks),
awareness (:mod:`collab.awareness`), query-awareness, and query-saved (:mod:`collab.persistence`).
A malformed message is dropped and logged; the connection stays open. What a user's frames may
cost is charged here too (:meth:`Receiver.frame_cost` against the per-user
:class:`~collab.throttle.ReceiveBudget`), so every protocol is held to one budget. Depends on
:mod:`collab.room`, :mod:`collab.awareness`, :mod:`collab.persistence`, :mod:`collab.protocol`,
:mod:`collab.throttle`; the manager only through the one call above.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from collab import protocol as p
from collab.awareness import Awareness
from collab.persistence import Persistence
from collab.room import FULL_STATE, Peer, Room, check_state_vector, is_panic
from collab.throttle import AnswerBudget, ReceiveBudget

if TYPE_CHECKING:
    from collab.manager import RoomManager

log = logging.getLogger("scriptorium.collab")

# A frame's cost to its user's receive budget is at least the event-loop time it took, at this
# many budget bytes a second: with the default 8 MiB/s budget, one user's collab frames may take
# at most 1/CPU_SHARE_DIVISOR (a fifth) of this process's loop, sustained, whatever they hold.
CPU_SHARE_DIVISOR = 5


class Receiver:
    def __init__(self, rooms: RoomManager, awareness: Awareness, persistence: Persistence, *,
                 sync_burst: int, sync_per_second: float, receive_per_second: float,
                 receive_frame_cost: int) -> None:
        self.rooms = rooms
        self.awareness = awareness
        self.persistence = persistence
        self.sync_burst = sync_burst
        self.sync_per_second = sync_per_second
        self.receive_per_second = receive_per_second  # what one user may send (collab/throttle.py)
        self.receive_frame_cost = receive_frame_cost
        self.inbound: dict[str, list[Any]] = {}  # user id -> [ReceiveBudget, sockets]

    def budget(self) -> AnswerBudget:
        """A new socket's budget of answers that encode the whole document or room awareness."""
        return AnswerBudget(self.sync_burst, self.sync_per_second, time.monotonic())

    def receive(self, room: Room, peer: Peer, data: bytes) -> None:
        """Handle one message ``data`` (not empty) from ``peer``."""
        try:
            kind = data[0]
            if kind == p.MSG_SYNC:
                frame = p.parse_frame(data)
                if frame.sync == p.SYNC_STEP1:
                    check_state_vector(frame.payload)
                    self._answer_step1(room, peer, frame.payload)
                elif frame.sync in (p.SYNC_STEP2, p.SYNC_UPDATE):
                    if not peer.can_write or frame.payload == p.EMPTY_UPDATE:
                        return  # viewers are read-only: dropped, not closed
                    self.rooms.client_update(room, peer, frame.payload,
                                             data if frame.sync == p.SYNC_UPDATE else None)
            elif kind == p.MSG_AWARENESS:
                self.awareness.receive(room, peer, data)
            elif kind == p.MSG_QUERY_AWARENESS:
                self._answer_query_awareness(room, peer)
            elif kind == p.MSG_QUERY_SAVED:
                nonce, _ = p.read_var_uint(data, 1)
                self.persistence.ask_saved(peer, nonce)
        except Exception as exc:
            log.info("dropped a bad collab message: %s", exc, extra={"lesson_id": room.lesson_id})
        except BaseException as exc:
            # A panic outside the update path (which apply_checked guards and undoes) must not end
            # this socket's handler with a traceback: pycrdt raises it as a BaseException.
            if not is_panic(exc):
                raise
            log.info("dropped a collab message that made pycrdt panic: %s", exc,
                     extra={"lesson_id": room.lesson_id})

    def leave(self, peer: Peer) -> None:
        """A peer left: its deferred answer is moot."""
        if peer.deferred is not None:
            peer.deferred.cancel()
            peer.deferred = None

    # Answers that encode the whole document (or room awareness) come out of the socket's budget
    # (collab/throttle.py); beyond it, requests coalesce into one answer sent when it allows.

    def _answer_step1(self, room: Room, peer: Peer, state_vector: bytes) -> None:
        if peer.deferred is None and peer.budget.take(time.monotonic()):
            room.send_step2(peer, state_vector)
            return
        if peer.want_sync is None or peer.want_sync == state_vector:
            peer.want_sync = state_vector
        else:  # two different state vectors: the whole document answers both
            peer.want_sync = FULL_STATE
        self._answer_later(room, peer)

    def _answer_query_awareness(self, room: Room, peer: Peer) -> None:
        if peer.deferred is None and peer.budget.take(time.monotonic()):
            frame = room.awareness_frame()
            if frame is not None:
                peer.sender.push(frame)
            return
        peer.want_awareness = True
        self._answer_later(room, peer)

    def _answer_later(self, room: Room, peer: Peer) -> None:
        if peer.deferred is None:
            delay = peer.budget.wait(time.monotonic())
            peer.deferred = asyncio.get_running_loop().call_later(delay, self._answer_deferred, room, peer)

    def _answer_deferred(self, room: Room, peer: Peer) -> None:
        peer.deferred = None
        if peer.sender.closed:
            return
        now = time.monotonic()
        try:
            if peer.want_sync is not None and peer.budget.take(now):
                state_vector, peer.want_sync = peer.want_sync, None
                room.send_step2(peer, state_vector)
            if peer.want_awareness and peer.budget.take(now):
                peer.want_awareness = False
                frame = room.awareness_frame()
                if frame is not None:
                    peer.sender.push(frame)
        except Exception as exc:  # a malformed state vector: nothing to answer
            peer.want_sync = None
            log.info("dropped a bad collab message: %s", exc, extra={"lesson_id": room.lesson_id})
        if peer.want_sync is not None or peer.want_awareness:
            self._answer_later(room, peer)

    # --- what a user's frames cost ----------------------------------------------------------

    def user_budget(self, user_id: str) -> ReceiveBudget:
        """The receive budget shared by all of one user's collab sockets on this node (so that
        opening more sockets does not buy more of the loop); :meth:`release_budget` when done."""
        entry = self.inbound.get(user_id)
        if entry is None:
            entry = self.inbound[user_id] = [ReceiveBudget(
                self.receive_per_second, 2 * self.receive_per_second, self.receive_frame_cost,
                time.monotonic()), 0]
        entry[1] += 1
        budget: ReceiveBudget = entry[0]
        return budget

    def release_budget(self, user_id: str) -> None:
        entry = self.inbound.get(user_id)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del self.inbound[user_id]

    def frame_cost(self, data: bytes, spent: float) -> int:
        """A handled frame's charge to its user's receive budget: its bytes (see receive_cost), or
        the loop time it took, whichever is more (applying an update costs per struct, not per
        byte: 12,500 tiny map entries are ~260 KB and ~45 ms)."""
        return max(self.receive_cost(data), int(spent * CPU_SHARE_DIVISOR * self.receive_per_second))

    def receive_cost(self, data: bytes) -> int:
        """What a frame is charged to its socket's receive budget, in bytes: an awareness frame
        costs a frame per entry it claims (parsing is per entry, not per byte)."""
        if len(data) > 2 and data[0] == p.MSG_AWARENESS:
            try:
                _, start = p.read_var_uint(data, 1)
                entries = min(p.read_var_uint(data, start)[0], self.awareness.entries + 1)
            except Exception:
                entries = 1
            return max(len(data), entries * self.receive_frame_cost)
        return len(data)
