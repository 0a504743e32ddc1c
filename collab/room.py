"""Live lesson rooms: one ``pycrdt.Doc`` per active lesson, its peers, awareness and durability.

The server builds one :class:`RoomManager` at startup with a :class:`~collab.store.Store`, an
``authorize`` and a ``recheck`` callable and (with Redis) a relay, and exposes it as
``services.rooms``. Other code changes documents only through :meth:`RoomManager.apply` and
friends, so every change is persisted, broadcast and relayed exactly like a client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pycrdt import Doc, Map, Text, merge_updates
from pycrdt import get_state as update_state_vector

from collab import protocol as p
from collab.relay import KIND_AWARENESS, KIND_QUERY, KIND_STATE, KIND_UPDATE, Relay
from collab.sender import Coalescer, Sender, wire_frame
from collab.store import LessonGone, PendingUpdate, Store
from collab.textdiff import apply_text

log = logging.getLogger("scriptorium.collab")

T = TypeVar("T")

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_SLOW = 4008
CLOSE_INTERNAL = 1011

TEXT_FIELDS = ("title", "body")
REMOTE_AWARENESS_TIMEOUT_S = 30.0
DEAD_NODE_S = 7.0  # no message or heartbeat from a node for this long: its cursors go

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Denied(Exception):
    """A connection is refused (or must go) with a WebSocket close code."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(reason or str(code))
        self.code = code
        self.reason = reason


@dataclass
class Grant:
    """Who is connected and whether they may write; ``subject`` is the server's own data."""

    user_id: str
    can_write: bool
    subject: Any = None


Authorize = Callable[[Scope, str], Awaitable[Grant]]  # (ASGI scope, lesson id) -> Grant | Denied
Recheck = Callable[[str, Grant], Awaitable[bool]]  # (lesson id, grant) -> can_write | Denied


def seed_update(title: str, body: str) -> bytes:
    """The first update of a lesson's document: its stored title and body."""
    doc: Doc[Any] = Doc()
    doc["title"] = Text(title)
    doc["body"] = Text(body)
    doc["meta"] = Map()
    return doc.get_update()


def check_update(update: bytes) -> None:
    """Raise :class:`~collab.protocol.ProtocolError` for an update that would break a document.

    yrs 0.28 applies some malformed updates without complaint (e.g. a 27-byte one holding a
    struct of length zero, found by tests/fuzz) and then panics in every ``get_update`` of the
    document: each joiner's sync answer, compaction and materialisation fail, and the update
    log replays the damage on every load. So a client's update is first applied to an empty
    document and encoded back (about 40 µs for a keystroke, 10 ms for 500 KB). pycrdt raises a
    Rust panic as ``PanicException``, which derives from BaseException.

    Before that, the update's first varuint (how many clients it holds structs of) must not
    exceed its length: yrs reserves room for that many up front, so a 15-byte update declaring
    3e8 clients cost 384 MB and 0.44 s before failing as truncated.
    """
    clients, _ = p.read_var_uint(update, 0)
    if clients > len(update):
        raise p.ProtocolError(f"update declares {clients} clients in {len(update)} bytes")
    scratch: Doc[Any] = Doc()
    try:
        scratch.apply_update(update)
        scratch.get_update()
    except Exception as exc:
        raise p.ProtocolError(f"malformed update: {exc}") from None
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        raise p.ProtocolError(f"update breaks the document: {exc}") from None


def check_state_vector(state_vector: bytes) -> None:
    """Raise :class:`~collab.protocol.ProtocolError` for a sync step 1 state vector that claims
    more clients than it has bytes: yrs reserves room for them all before reading one, so 9 bytes
    declaring 2.5e12 clients cost 1 GB and 1.3 s of event loop (found by tests/fuzz); any reader,
    viewers included, may send a step 1."""
    clients, _ = p.read_var_uint(state_vector, 0)
    if clients > len(state_vector):
        raise p.ProtocolError(f"state vector declares {clients} clients in {len(state_vector)} bytes")


def merge_log(updates: list[bytes]) -> tuple[bytes, bytes]:
    merged = merge_updates(*updates) if len(updates) > 1 else updates[0]
    return merged, update_state_vector(merged)


class Peer:
    __slots__ = ("awareness_ids", "can_write", "grant", "sender")

    def __init__(self, grant: Grant, sender: Sender) -> None:
        self.grant = grant
        self.can_write = grant.can_write
        self.sender = sender
        self.awareness_ids: dict[int, int] = {}  # client id -> last clock


@dataclass
class AwarenessRecord:
    entry: p.AwarenessEntry
    peer: Peer | None  # None: a client on another node
    seen: float
    node: str | None = None  # the other node, for remote clients


@dataclass
class Room:
    lesson_id: str
    doc: Doc[Any]
    peers: list[Peer] = field(default_factory=list)
    awareness: dict[int, AwarenessRecord] = field(default_factory=dict)
    log_rows: int = 0
    dirty: bool = False  # text may differ from the lesson row
    changed_at: float = 0.0
    materialised_at: float = 0.0
    changed_since_version: bool = False
    contributors: set[str] = field(default_factory=set)
    last_version_at: float = field(default_factory=time.monotonic)
    compacting: bool = False
    unload_at: float | None = None
    emptied: bool = False

    def text(self, name: str) -> Text:
        found: Text = self.doc.get(name, type=Text)
        return found

    def texts(self) -> tuple[str, str]:
        """Title and body as they are stored: a NUL, valid in a Y.Text but refused by PostgreSQL
        text and jsonb, reads as U+FFFD (else materialising and versions failed on every try)."""
        return (str(self.text("title")).replace("\x00", "\ufffd"),
                str(self.text("body")).replace("\x00", "\ufffd"))

    def broadcast(self, frame: bytes, exclude: Peer | None = None) -> None:
        """Write one encoded frame to every local peer (same bytes, same ASGI message)."""
        if not self.peers:
            return
        message = {"type": "websocket.send", "bytes": frame}
        wire = wire_frame(frame)
        for peer in self.peers:
            if peer is not exclude:
                peer.sender.push(frame, message, wire)

    def awareness_frame(self) -> bytes | None:
        entries = [rec.entry for rec in self.awareness.values() if not rec.entry.removed]
        if not entries:
            return None
        return p.awareness_frame(p.encode_awareness(entries))


class RoomManager:
    """All rooms of this node. Public API: :meth:`handle` (the WebSocket endpoint),
    :meth:`apply`, :meth:`read`, :meth:`edit_text`, :meth:`record_version`, :meth:`flush`."""

    def __init__(self, store: Store, authorize: Authorize, recheck: Recheck, relay: Relay | None = None,
                 *, flush_interval: float = 0.05, materialise_delay: float = 1.0,
                 version_interval: float = 60.0, unload_after: float = 60.0,
                 recheck_interval: float = 2.0, compact_threshold: int = 500,
                 max_queued: int = 16 * 1024 * 1024,
                 on_update: Callable[[], None] | None = None) -> None:
        self.store = store
        self.on_update = on_update  # called once per document update applied (metrics)
        self.authorize = authorize
        self.recheck = recheck
        self.relay = relay
        self.flush_interval = flush_interval
        self.materialise_delay = materialise_delay
        self.version_interval = version_interval
        self.unload_after = unload_after
        self.recheck_interval = recheck_interval
        self.compact_threshold = compact_threshold
        self.max_queued = max_queued
        self.rooms: dict[str, Room] = {}
        self._opening: dict[str, asyncio.Future[Room]] = {}
        self._pending: list[PendingUpdate] = []
        self._pending_ready = asyncio.Event()
        # updates are queued and committed in order, so "saved?" is a comparison of two counters
        self._enqueued = 0  # updates ever queued for the log
        self._persisted = 0  # of those, committed
        self._saved_waiters: list[tuple[int, Peer, int]] = []  # (queued count, peer, nonce)
        self._flush_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._coalescer = Coalescer()
        if relay is not None:
            relay.bind(self._on_relay, self._on_relay_reconnect)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.relay is not None:
            await self.relay.start()
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="collab-flush"),
            asyncio.create_task(self._maintenance_loop(), name="collab-maintenance"),
            asyncio.create_task(self._recheck_loop(), name="collab-recheck"),
        ]

    async def stop(self) -> None:
        """Final flush, materialisation and versions of every room, then stop the loops."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in list(self._background):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
        with contextlib.suppress(Exception):
            await self.flush()
        for room in list(self.rooms.values()):
            with contextlib.suppress(Exception):
                await self._materialise(room)
                if room.changed_since_version:
                    await self._record_version(room, "close")
        if self.relay is not None:
            await self.relay.stop()

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- opening and unloading rooms -----------------------------------------------------

    async def open(self, lesson_id: str) -> Room:
        """The live room of a lesson, loaded (and seeded once) from the store when needed."""
        room = self.rooms.get(lesson_id)
        if room is not None:
            return room
        opening = self._opening.get(lesson_id)
        if opening is not None:
            return await asyncio.shield(opening)
        future: asyncio.Future[Room] = asyncio.get_running_loop().create_future()
        self._opening[lesson_id] = future
        try:
            room = await self._load(lesson_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self._opening.pop(lesson_id, None)
        self.rooms[lesson_id] = room
        future.set_result(room)
        room.unload_at = time.monotonic() + self.unload_after
        if self.relay is not None:
            self.relay.subscribe(lesson_id)
            await self.relay.subscribed(lesson_id, within=1.0)
            # Ask the other nodes for anything newer than what PostgreSQL gave us.
            self.relay.publish(lesson_id, KIND_QUERY, room.doc.get_state())
        return room

    async def _load(self, lesson_id: str) -> Room:
        await self.flush()  # what an unloaded room of this lesson still had pending
        loaded = await self.store.load(lesson_id, seed_update)
        doc: Doc[Any] = Doc()
        for update in loaded.updates:
            doc.apply_update(update)
        room = Room(lesson_id, doc, log_rows=loaded.log_rows)
        for name in TEXT_FIELDS:
            room.text(name)
        room.doc.get("meta", type=Map)
        now = time.monotonic()
        room.materialised_at = now
        return room

    async def _unload(self, room: Room) -> None:
        await self.flush()
        if room.peers or self.rooms.get(room.lesson_id) is not room:
            return
        del self.rooms[room.lesson_id]
        if self.relay is not None:
            self.relay.unsubscribe(room.lesson_id)
        await self._materialise(room)
        if room.changed_since_version:
            await self._record_version(room, "close")
        log.debug("room unloaded", extra={"lesson_id": room.lesson_id})

    async def _emptied(self, room: Room) -> None:
        """The last local client left: flush, materialise, record a version."""
        try:
            await self.flush()
            await self._materialise(room)
            if room.changed_since_version and not room.peers:
                await self._record_version(room, "close")
        except Exception:
            log.exception("closing room failed", extra={"lesson_id": room.lesson_id})

    # --- the WebSocket endpoint ----------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ``WS /collab/lessons/{lesson_id}`` connection (an ASGI app body)."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        lesson_id = str(scope.get("path_params", {}).get("lesson_id", ""))
        try:
            grant = await self.authorize(scope, lesson_id)
            room = await self.open(lesson_id)
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
        while self.rooms.get(lesson_id) is not room:  # unloaded meanwhile: open it again
            room = await self.open(lesson_id)
        peer = Peer(grant, Sender(send, max_queued=self.max_queued, coalescer=self._coalescer))
        self._join(room, peer)
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    data = message.get("bytes")
                    if data:
                        self._on_frame(room, peer, data)
                elif kind == "websocket.disconnect":
                    break
        finally:
            peer.sender.closed = True
            self._leave(room, peer)

    def _join(self, room: Room, peer: Peer) -> None:
        room.peers.append(peer)
        room.unload_at = None
        room.emptied = False
        peer.sender.push(p.step1_frame(room.doc.get_state()))
        frame = room.awareness_frame()
        if frame is not None:
            peer.sender.push(frame)

    def _leave(self, room: Room, peer: Peer) -> None:
        with contextlib.suppress(ValueError):
            room.peers.remove(peer)
        if peer.awareness_ids:
            gone = []
            for client_id in peer.awareness_ids:
                record = room.awareness.get(client_id)
                if record is not None and record.peer is peer:
                    del room.awareness[client_id]
                    gone.append(p.AwarenessEntry(client_id, record.entry.clock + 1, "null"))
            if gone:
                frame = p.awareness_frame(p.encode_awareness(gone))
                room.broadcast(frame)
                if self.relay is not None:
                    self.relay.publish(room.lesson_id, KIND_AWARENESS, frame)
        if not room.peers and not self._stopping:
            room.unload_at = time.monotonic() + self.unload_after
            room.emptied = True
            self._spawn(self._emptied(room), f"collab-emptied-{room.lesson_id}")

    # --- messages from clients -----------------------------------------------------------

    def _on_frame(self, room: Room, peer: Peer, data: bytes) -> None:
        try:
            kind = data[0]
            if kind == p.MSG_SYNC:
                frame = p.parse_frame(data)
                if frame.sync == p.SYNC_STEP1:
                    check_state_vector(frame.payload)
                    peer.sender.push(p.step2_frame(room.doc.get_update(frame.payload)))
                elif frame.sync in (p.SYNC_STEP2, p.SYNC_UPDATE):
                    if not peer.can_write or frame.payload == p.EMPTY_UPDATE:
                        return  # viewers are read-only: dropped, not closed
                    check_update(frame.payload)
                    room.doc.apply_update(frame.payload)
                    out = data if frame.sync == p.SYNC_UPDATE else p.update_frame(frame.payload)
                    self._changed(room, out, frame.payload, peer.grant.user_id, exclude=peer)
            elif kind == p.MSG_AWARENESS:
                frame = p.parse_frame(data)
                self._on_awareness(room, frame.payload, peer)
                room.broadcast(data, exclude=peer)
                if self.relay is not None:
                    self.relay.publish(room.lesson_id, KIND_AWARENESS, data)
            elif kind == p.MSG_QUERY_AWARENESS:
                awareness = room.awareness_frame()
                if awareness is not None:
                    peer.sender.push(awareness)
            elif kind == p.MSG_QUERY_SAVED:
                nonce, _ = p.read_var_uint(data, 1)
                if self._persisted >= self._enqueued:
                    peer.sender.push(p.saved_frame(nonce))
                else:  # answered when the batch holding this socket's last update commits
                    self._saved_waiters.append((self._enqueued, peer, nonce))
        except Exception as exc:
            log.info("dropped a bad collab message: %s", exc, extra={"lesson_id": room.lesson_id})
        except BaseException as exc:
            # Two updates that each apply alone can make yrs panic when applied in turn (found by
            # tests/fuzz); the document stays usable. pycrdt raises the panic as PanicException, a
            # BaseException, which would otherwise end this socket's handler with a traceback.
            if type(exc).__name__ != "PanicException":
                raise
            log.info("dropped a collab message that made pycrdt panic: %s", exc,
                     extra={"lesson_id": room.lesson_id})

    def _on_awareness(self, room: Room, update: bytes, peer: Peer | None, node: str | None = None) -> None:
        """Track who controls which awareness client. Clients (y-websocket) echo the states of
        others they learn about, so only a client id seen for the first time is owned by the
        peer that sent it (as the Node reference server does)."""
        now = time.monotonic()
        for entry in p.parse_awareness(update):
            record = room.awareness.get(entry.client_id)
            if record is not None and entry.clock < record.entry.clock:
                continue  # stale
            if entry.removed:
                if record is not None:
                    del room.awareness[entry.client_id]
                    if record.peer is not None:
                        record.peer.awareness_ids.pop(entry.client_id, None)
                continue
            if record is None:
                room.awareness[entry.client_id] = AwarenessRecord(entry, peer, now, node)
                if peer is not None:
                    peer.awareness_ids[entry.client_id] = entry.clock
            else:
                record.entry = entry
                record.seen = now
                if record.peer is not None:
                    record.peer.awareness_ids[entry.client_id] = entry.clock

    def _changed(self, room: Room, frame: bytes, update: bytes, actor: str | None,
                 exclude: Peer | None = None) -> None:
        """A change made on this node: broadcast, relay, persist (this node only)."""
        room.broadcast(frame, exclude)
        if self.relay is not None:
            self.relay.publish(room.lesson_id, KIND_UPDATE, frame)
        if self.on_update is not None:
            self.on_update()
        self._pending.append(PendingUpdate(room.lesson_id, update, actor))
        self._enqueued += 1
        self._pending_ready.set()
        room.log_rows += 1
        now = time.monotonic()
        if not room.dirty:
            room.dirty = True
        room.changed_at = now
        room.changed_since_version = True
        if actor:
            room.contributors.add(actor)

    # --- messages from other nodes -------------------------------------------------------

    def _on_relay(self, lesson_id: str, kind: bytes, payload: bytes, origin: str) -> None:
        room = self.rooms.get(lesson_id)
        if room is None:
            return
        if kind == KIND_UPDATE:
            frame = p.parse_frame(payload)
            if frame.type != p.MSG_SYNC or frame.sync not in (p.SYNC_UPDATE, p.SYNC_STEP2):
                return
            room.doc.apply_update(frame.payload)
            room.broadcast(payload)
            room.dirty = True
            room.changed_at = time.monotonic()
        elif kind == KIND_AWARENESS:
            frame = p.parse_frame(payload)
            self._on_awareness(room, frame.payload, None, origin)
            room.broadcast(payload)
        elif kind in (KIND_QUERY, KIND_STATE):
            assert self.relay is not None
            missing = room.doc.get_update(payload)
            if missing != p.EMPTY_UPDATE:
                self.relay.publish(lesson_id, KIND_UPDATE, p.update_frame(missing))
            if kind == KIND_QUERY:
                self.relay.publish(lesson_id, KIND_STATE, room.doc.get_state())
                local = [rec.entry for rec in room.awareness.values() if rec.peer is not None]
                if local:
                    self.relay.publish(lesson_id, KIND_AWARENESS,
                                       p.awareness_frame(p.encode_awareness(local)))

    def _on_relay_reconnect(self) -> None:
        """Redis came back: whatever was published meanwhile is lost, so resynchronise."""
        assert self.relay is not None
        for room in self.rooms.values():
            self.relay.publish(room.lesson_id, KIND_QUERY, room.doc.get_state())

    # --- background work -----------------------------------------------------------------

    async def flush(self) -> None:
        """Write every pending update to the log now (one INSERT per batch)."""
        async with self._flush_lock:
            while self._pending:
                batch, self._pending = self._pending[:5000], self._pending[5000:]
                try:
                    await self.store.append(batch)
                except BaseException:
                    self._pending[:0] = batch  # keep them: retried by the next flush
                    raise
                self._persisted += len(batch)
                if self._saved_waiters:
                    self._answer_saved()

    def _answer_saved(self) -> None:
        waiting = []
        for entry in self._saved_waiters:
            queued, peer, nonce = entry
            if queued <= self._persisted:
                if not peer.sender.closed:
                    peer.sender.push(p.saved_frame(nonce))
            else:
                waiting.append(entry)
        self._saved_waiters = waiting

    async def _flush_loop(self) -> None:
        while True:
            await self._pending_ready.wait()
            await asyncio.sleep(self.flush_interval)
            self._pending_ready.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("collab flush failed; retrying")
                self._pending_ready.set()
                await asyncio.sleep(0.5)

    async def _maintenance_loop(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(0.25)
            tick += 1
            now = time.monotonic()
            for room in list(self.rooms.values()):
                try:
                    await self._maintain(room, now, resync=(tick % 60 == 0))
                except Exception:
                    log.exception("collab room maintenance failed", extra={"lesson_id": room.lesson_id})

    async def _maintain(self, room: Room, now: float, *, resync: bool) -> None:
        relay = self.relay
        stale = [cid for cid, rec in room.awareness.items()
                 if rec.peer is None and (now - rec.seen > REMOTE_AWARENESS_TIMEOUT_S or (
                     relay is not None and rec.node is not None
                     and now - relay.last_seen(rec.node) > DEAD_NODE_S))]
        if stale:
            gone = [p.AwarenessEntry(cid, room.awareness.pop(cid).entry.clock + 1, "null") for cid in stale]
            room.broadcast(p.awareness_frame(p.encode_awareness(gone)))
        if room.dirty and now - room.materialised_at >= self.materialise_delay:
            await self._materialise(room)
        if room.changed_since_version and now - room.last_version_at >= self.version_interval:
            await self.flush()
            await self._record_version(room, "periodic")
        if room.log_rows >= self.compact_threshold and not room.compacting:
            room.compacting = True
            self._spawn(self._compact(room), f"collab-compact-{room.lesson_id}")
        if resync and room.peers and self.relay is not None:
            self.relay.publish(room.lesson_id, KIND_STATE, room.doc.get_state())
        if not room.peers and room.unload_at is not None and now >= room.unload_at:
            room.unload_at = None
            await self._unload(room)

    async def _materialise(self, room: Room) -> None:
        room.dirty = False
        room.materialised_at = time.monotonic()
        title, body = room.texts()
        await self.store.materialise(room.lesson_id, title, body)

    async def _record_version(self, room: Room, reason: str) -> str:
        title, body = room.texts()
        contributors = sorted(room.contributors)
        room.contributors.clear()
        room.changed_since_version = False
        room.last_version_at = time.monotonic()
        return await self.store.record_version(room.lesson_id, title=title, body=body,
                                               state=room.doc.get_update(), contributors=contributors,
                                               reason=reason)

    async def _compact(self, room: Room) -> None:
        try:
            await self.flush()
            merged = await self.store.compact(room.lesson_id, merge_log)
            room.log_rows = max(0, room.log_rows - merged)
        except Exception:
            log.exception("collab compaction failed", extra={"lesson_id": room.lesson_id})
        finally:
            room.compacting = False

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_interval)
            for room in list(self.rooms.values()):
                if room.peers:
                    await self._recheck_room(room)

    async def _recheck_room(self, room: Room) -> None:
        by_user: dict[str, list[Peer]] = {}
        for peer in room.peers:
            by_user.setdefault(peer.grant.user_id, []).append(peer)
        for peers in by_user.values():
            try:
                can_write = await self.recheck(room.lesson_id, peers[0].grant)
            except Denied as denied:
                for peer in peers:
                    peer.sender.close(denied.code, denied.reason)
                continue
            except Exception:
                log.warning("collab access re-check failed", exc_info=True)
                continue
            for peer in peers:
                peer.can_write = can_write

    # --- the room API for the rest of the server ------------------------------------------

    async def apply(self, lesson_id: str, change: Callable[[Doc[Any]], T], *, actor: str | None) -> T:
        """Run ``change(doc)`` on the live document of ``lesson_id`` in ONE transaction (opening
        the room if needed), then persist, broadcast and relay the resulting update like a
        client's. ``actor`` is the clerk id credited in the log and version contributors."""
        room = await self.open(lesson_id)
        updates: list[bytes] = []
        subscription = room.doc.observe(lambda event: updates.append(event.update))
        try:
            with room.doc.transaction(origin="server"):
                result = change(room.doc)
        finally:
            room.doc.unobserve(subscription)
        for update in updates:
            self._changed(room, p.update_frame(update), update, actor)
        if not room.peers and room.unload_at is None:
            room.unload_at = time.monotonic() + self.unload_after
        return result

    async def read(self, lesson_id: str, fn: Callable[[Doc[Any]], T]) -> T:
        """``fn(doc)`` on the live document (opening the room if needed)."""
        room = await self.open(lesson_id)
        with room.doc.transaction():
            return fn(room.doc)

    async def texts(self, lesson_id: str) -> dict[str, str]:
        """The live ``title`` and ``body``."""
        room = await self.open(lesson_id)
        title, body = room.texts()
        return {"title": title, "body": body}

    async def edit_text(self, lesson_id: str, fields: Mapping[str, str], *, actor: str | None) -> bool:
        """Turn ``title``/``body`` into the given strings with the minimal CRDT edit (a REST PATCH
        during live editing is neither lost nor blanks the document). Returns whether it changed."""
        unknown = set(fields) - set(TEXT_FIELDS)
        if unknown:
            raise ValueError(f"not text fields: {sorted(unknown)}")

        def change(doc: Doc[Any]) -> bool:
            changed = False
            for name, value in fields.items():
                changed = apply_text(doc.get(name, type=Text), value) or changed
            return changed

        changed = await self.apply(lesson_id, change, actor=actor)
        if changed:
            room = self.rooms.get(lesson_id)
            if room is not None:
                await self._materialise(room)
        return changed

    async def record_version(self, lesson_id: str, reason: str) -> str:
        """Record the current text (and state) as a version now; returns the version id."""
        room = await self.open(lesson_id)
        await self.flush()
        return await self._record_version(room, reason)

    async def materialise(self, lesson_id: str) -> None:
        """Write the live text into the lesson row now (no-op when the room is not loaded)."""
        room = self.rooms.get(lesson_id)
        if room is not None:
            await self._materialise(room)

    def peer_count(self) -> int:
        """Clients connected to this node's rooms."""
        return sum(len(room.peers) for room in self.rooms.values())

    def connected(self, lesson_id: str) -> int:
        """How many clients of this node are in the lesson's room."""
        room = self.rooms.get(lesson_id)
        return len(room.peers) if room else 0
