"""Awareness (cursors, names) in a room: who owns which client id, and how much of it is fanned out.

A socket owns the awareness client ids it announced first, a bounded number of bounded states; a
frame it sends goes to the room's other peers and, through the relay, to other nodes, within a
per-socket token bucket (beyond it the newest entry per id waits for one coalesced send).
Local peers get a frame at once; the other nodes get the room's changes coalesced per tick
(``relay_tick``): one relay message per room per tick carrying the newest entry of each changed
client id, so 200 peers moving cursors cost a room at most 1 / ``relay_tick`` messages a second
per node, not one per keystroke per peer. Entries relayed from other nodes are tracked apart and expire with their node. Depends on
:mod:`collab.room` (the records live in the room), :mod:`collab.protocol`, :mod:`collab.throttle`
and the relay's kinds (:mod:`collab.relay`).
"""

from __future__ import annotations

import asyncio
import time

from collab import protocol as p
from collab.relay import KIND_AWARENESS, Relay
from collab.room import AwarenessRecord, Peer, Room
from collab.throttle import AnswerBudget

# A frame is an awareness update of the sender's own ids, or (y-websocket clients echo what
# they learn) of the room's; a frame of more entries than this is dropped without parsing it
# (a 2 MiB frame holds ~300,000 minimal entries, ~0.3 s of parsing). Frames from sockets are
# held to far fewer (:attr:`Awareness.entries`); this bounds the relay's.
MAX_AWARENESS_ENTRIES = 1024
# Entries a socket's frame may hold, beyond the ids it may own: y-websocket sends one (its own),
# a removal lists only its own ids. Parsing is ~2.3 us per entry in Python, so a frame of 1,024
# minimal entries (6 KB) cost 2.4 ms and passed the byte budget ~1,300 times a second.
AWARENESS_ENTRIES_CAP = 16
REMOTE_AWARENESS_TIMEOUT_S = 30.0
DEAD_NODE_S = 7.0  # no message or heartbeat from a node for this long: its cursors go


class Awareness:
    """The awareness rules of every room of this node (settings: see :class:`~collab.manager.RoomManager`)."""

    def __init__(self, relay: Relay | None, *, ids: int, state_bytes: int, burst: int,
                 per_second: float, relay_tick: float = 0.05) -> None:
        self.relay = relay
        self.relay_tick = relay_tick  # seconds: other nodes get a room's changes once per tick
        # lesson id -> client id -> the newest entry not relayed yet
        self._outgoing: dict[str, dict[int, p.AwarenessEntry]] = {}
        self._relay_later: asyncio.TimerHandle | None = None
        self.relayed = 0  # awareness messages published (one per room per tick at most)
        self.ids = ids  # awareness client ids one socket may own
        self.state_bytes = state_bytes  # the largest state kept (UTF-8 bytes)
        self.burst = burst  # awareness frames one socket fans out at once
        self.per_second = per_second  # ... and then per second (coalesced)
        # a socket's frame of more entries is dropped unread (an echo of others' ids is moot)
        self.entries = min(AWARENESS_ENTRIES_CAP, max(1, 2 * ids))

    def budget(self) -> AnswerBudget:
        """A new socket's awareness token bucket."""
        return AnswerBudget(self.burst, self.per_second, time.monotonic())

    def receive(self, room: Room, peer: Peer, data: bytes) -> None:
        """An awareness frame from a local peer (raises on a malformed one: dropped by the caller)."""
        _, start = p.read_var_uint(data, 1)  # the payload's length; then its entry count
        if p.read_var_uint(data, start)[0] > self.entries:
            return  # dropped unread (and uncopied)
        frame = p.parse_frame(data)
        accepted = self.claim(room, frame.payload, peer)
        if accepted is not None and not accepted:
            return
        if peer.awareness_later is None and peer.awareness_budget.take(time.monotonic()):
            if accepted is None:
                self.fan_out(room, peer, data, p.parse_awareness(frame.payload) if self.relay else [])
            else:
                self.fan_out(room, peer, p.awareness_frame(p.encode_awareness(accepted)), accepted)
            return
        for entry in p.parse_awareness(frame.payload) if accepted is None else accepted:
            peer.awareness_pending[entry.client_id] = entry  # the newest wins
        if peer.awareness_later is None:
            delay = peer.awareness_budget.wait(time.monotonic())
            peer.awareness_later = asyncio.get_running_loop().call_later(delay, self.deferred, room, peer)

    def fan_out(self, room: Room, peer: Peer, frame: bytes, entries: list[p.AwarenessEntry]) -> None:
        """``frame`` (of ``entries``) to the room's other peers now, and to other nodes at the tick."""
        room.broadcast(frame, exclude=peer)
        if self.relay is not None:
            self._relay(room.lesson_id, entries)

    def _relay(self, lesson_id: str, entries: list[p.AwarenessEntry]) -> None:
        pending = self._outgoing.setdefault(lesson_id, {})
        for entry in entries:
            queued = pending.get(entry.client_id)
            if queued is None or entry.clock >= queued.clock:
                pending[entry.client_id] = entry
        if self._relay_later is None:
            self._relay_later = asyncio.get_running_loop().call_later(self.relay_tick, self.flush_relay)

    def flush_relay(self) -> None:
        """Publish each room's coalesced changes: one message per room (within the entry cap)."""
        if self._relay_later is not None:
            self._relay_later.cancel()
            self._relay_later = None
        outgoing, self._outgoing = self._outgoing, {}
        if self.relay is None:
            return
        for lesson_id, pending in outgoing.items():
            if not self.relay.others_listen(lesson_id):
                continue  # a node that opens the room later asks, and is sent the local states
            entries = list(pending.values())
            for start in range(0, len(entries), MAX_AWARENESS_ENTRIES):
                chunk = entries[start:start + MAX_AWARENESS_ENTRIES]
                self.relay.publish(lesson_id, KIND_AWARENESS, p.awareness_frame(p.encode_awareness(chunk)))
                self.relayed += 1

    def deferred(self, room: Room, peer: Peer) -> None:
        """Send the newest of the awareness a socket sent over its budget, as one frame."""
        peer.awareness_later = None
        if peer.sender.closed or not peer.awareness_pending:
            return
        peer.awareness_budget.take(time.monotonic())
        entries = list(peer.awareness_pending.values())
        peer.awareness_pending.clear()
        self.fan_out(room, peer, p.awareness_frame(p.encode_awareness(entries)), entries)

    def state_too_big(self, entry: p.AwarenessEntry) -> bool:
        limit = self.state_bytes
        size = len(entry.state)  # characters: at most 4 bytes each
        return size > limit or (size * 4 > limit and len(entry.state.encode("utf-8")) > limit)

    def claim(self, room: Room, update: bytes, peer: Peer) -> list[p.AwarenessEntry] | None:
        """Apply a local socket's awareness update under its ownership rules; returns the
        entries to relay, or None when every entry was accepted (the frame goes on unchanged).

        A socket owns the ids it announced first, at most ``ids`` of them (one for
        y-websocket's own clients), each state at most ``state_bytes``. Entries for ids
        another user's socket (or another node) owns are dropped: clients echo states they learn
        about, and nobody may move someone else's cursor. The same user reconnecting takes its
        id over from its old socket. Dropped entries are not relayed; the socket stays open."""
        if p.awareness_count(update) > MAX_AWARENESS_ENTRIES:
            return []
        entries = p.parse_awareness(update)
        accepted: list[p.AwarenessEntry] = []
        now = time.monotonic()
        for entry in entries:
            record = room.awareness.get(entry.client_id)
            if record is None:
                if (entry.removed or len(peer.awareness_ids) >= self.ids
                        or self.state_too_big(entry)):
                    continue
                room.awareness[entry.client_id] = AwarenessRecord(entry, peer, now)
                peer.awareness_ids[entry.client_id] = entry.clock
                accepted.append(entry)
                continue
            owner = record.peer
            if owner is not peer:
                if (owner is None or owner.grant.user_id != peer.grant.user_id
                        or entry.clock < record.entry.clock or len(peer.awareness_ids) >= self.ids):
                    continue
                owner.awareness_ids.pop(entry.client_id, None)  # the same user's new socket
                record.peer = peer
                peer.awareness_ids[entry.client_id] = record.entry.clock
            if entry.clock < record.entry.clock:
                continue  # stale
            if entry.removed:
                del room.awareness[entry.client_id]
                peer.awareness_ids.pop(entry.client_id, None)
            elif self.state_too_big(entry):
                continue
            else:
                record.entry = entry
                record.seen = now
                peer.awareness_ids[entry.client_id] = entry.clock
            accepted.append(entry)
        return None if len(accepted) == len(entries) else accepted

    def on_remote(self, room: Room, update: bytes, node: str) -> list[p.AwarenessEntry] | None:
        """Track the awareness of clients on another node (which applied the rules of
        :meth:`claim` to its own sockets). Ids a local socket owns stay its own.
        Returns the entries to pass on to local sockets, or None when all of them are."""
        if p.awareness_count(update) > MAX_AWARENESS_ENTRIES:
            return []
        now = time.monotonic()
        entries = p.parse_awareness(update)
        accepted = []
        for entry in entries:
            record = room.awareness.get(entry.client_id)
            if record is not None and (record.peer is not None or entry.clock < record.entry.clock):
                continue  # a local socket's, or stale: not passed on either
            accepted.append(entry)
            if entry.removed:
                if record is not None:
                    del room.awareness[entry.client_id]
                continue
            if record is None:
                room.awareness[entry.client_id] = AwarenessRecord(entry, None, now, node)
            else:
                record.entry = entry
                record.seen = now
                record.node = node
        return None if len(accepted) == len(entries) else accepted

    def leave(self, room: Room, peer: Peer) -> None:
        """A peer left: what it still had waiting is dropped, its ids are removed for everyone."""
        if peer.awareness_later is not None:  # its removal below supersedes what waits
            peer.awareness_later.cancel()
            peer.awareness_later = None
        peer.awareness_pending.clear()
        if peer.awareness_ids:
            gone = []
            for client_id in peer.awareness_ids:
                record = room.awareness.get(client_id)
                if record is not None and record.peer is peer:
                    del room.awareness[client_id]
                    gone.append(p.AwarenessEntry(client_id, record.entry.clock + 1, "null"))
            if gone:
                room.broadcast(p.awareness_frame(p.encode_awareness(gone)))
                if self.relay is not None:
                    self._relay(room.lesson_id, gone)

    def expire_remote(self, room: Room, now: float) -> None:
        """Remove other nodes' clients not heard of for a while, or whose node went quiet."""
        relay = self.relay
        stale = [cid for cid, rec in room.awareness.items()
                 if rec.peer is None and (now - rec.seen > REMOTE_AWARENESS_TIMEOUT_S or (
                     relay is not None and rec.node is not None
                     and now - relay.last_seen(rec.node) > DEAD_NODE_S))]
        if stale:
            gone = [p.AwarenessEntry(cid, room.awareness.pop(cid).entry.clock + 1, "null") for cid in stale]
            room.broadcast(p.awareness_frame(p.encode_awareness(gone)))

    def local_frame(self, room: Room) -> bytes | None:
        """This node's clients' awareness, for a node that asked (relay query)."""
        local = [rec.entry for rec in room.awareness.values() if rec.peer is not None]
        return p.awareness_frame(p.encode_awareness(local)) if local else None
