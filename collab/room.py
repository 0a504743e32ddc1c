"""Live lesson rooms: one ``pycrdt.Doc`` per active lesson, its peers, awareness and durability.

The server builds one :class:`RoomManager` at startup with a :class:`~collab.store.Store`, an
``authorize`` and a ``recheck`` callable and (with Redis) a relay, and exposes it as
``services.rooms``. Other code changes documents only through :meth:`RoomManager.apply` and
friends, so every change is persisted, broadcast and relayed exactly like a client's.

Text limits (the REST ones): a client update after which ``title`` is over 200 characters or
``body`` over 200,000 (code points; and longer than before the update) is refused: it is not
relayed, persisted or answered to anyone, the room's document is rebuilt without it (from a
checkpoint and the updates applied since), and the socket that sent it is closed with 4413. A
stock client keeps the refused text and sends it again when it reconnects (refused again); it
must discard its document. Text over a limit (e.g. two nodes' concurrent edits that are each
within it) is never materialised into the lesson row.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pycrdt import Doc, Map, Text, merge_updates
from pycrdt import get_state as update_state_vector

from collab import protocol as p
from collab.relay import KIND_AWARENESS, KIND_QUERY, KIND_STATE, KIND_UPDATE, Relay
from collab.sender import Coalescer, Sender
from collab.store import LessonGone, PendingUpdate, Store
from collab.textdiff import apply_text
from collab.textsize import CharBounds
from collab.throttle import AnswerBudget, ReceiveBudget
from wire.websocket import (
    CLOSE_INTERNAL,
    CLOSE_NOT_FOUND,
    CLOSE_TOO_LARGE,
    encode_frame,
)

log = logging.getLogger("scriptorium.collab")

T = TypeVar("T")

TEXT_FIELDS = ("title", "body")
TEXT_LIMITS = (("title", 200), ("body", 200_000))  # characters, as REST (server/catalog)
# The whole document's stored history: a 200,000-character body (up to 800 KB of UTF-8) typed
# and rewritten many times over, plus meta, stays far below it; an attacker's growth stops here.
DOCUMENT_MAX_BYTES = 32 * 1024 * 1024
# The checkpoint a refused update is undone from folds in the updates applied since once they
# are this many (in the maintenance loop) or this large (at once).
CHECKPOINT_FOLD_UPDATES = 256
CHECKPOINT_FOLD_BYTES = 4 * 1024 * 1024
# Updates at least this large are remembered by digest (see update_digest), the last few per room.
SEEN_UPDATE_MIN_BYTES = 16 * 1024
SEEN_UPDATES_KEPT = 32
FRAMES_PER_TURN = 64  # frames of one socket handled before the loop serves others
# Updates up to this size are tried on an empty scratch document before the room's (see
# check_update); a keystroke is a few dozen bytes.
SCRATCH_CHECK_MAX_BYTES = 64 * 1024
# A frame's cost to its user's receive budget is at least the event-loop time it took, at this
# many budget bytes a second: with the default 8 MiB/s budget, one user's collab frames may take
# at most 1/CPU_SHARE_DIVISOR (a fifth) of this process's loop, sustained, whatever they hold.
CPU_SHARE_DIVISOR = 5
# After a frame that took longer than this, the socket lets the loop serve others before its next
# frame (its buffered frames are otherwise handled back to back, up to FRAMES_PER_TURN).
SLOW_FRAME_S = 0.01
# A frame is an awareness update of the sender's own ids, or (y-websocket clients echo what
# they learn) of the room's; a frame of more entries than this is dropped without parsing it
# (a 2 MiB frame holds ~300,000 minimal entries, ~0.3 s of parsing). Frames from sockets are
# held to far fewer (:attr:`RoomManager.awareness_entries`); this bounds the relay's.
MAX_AWARENESS_ENTRIES = 1024
# Entries a socket's frame may hold, beyond the ids it may own: y-websocket sends one (its own),
# a removal lists only its own ids. Parsing is ~2.3 us per entry in Python, so a frame of 1,024
# minimal entries (6 KB) cost 2.4 ms and passed the byte budget ~1,300 times a second.
AWARENESS_ENTRIES_CAP = 16
FULL_STATE = b"\x00"  # an empty state vector: "send me everything"
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


class TextTooLong(ValueError):
    """A server change would take a text field over its limit (it was undone)."""

    def __init__(self, field_name: str, limit: int) -> None:
        super().__init__(f"The lesson {field_name} may have at most {limit} characters.")
        self.field = field_name
        self.limit = limit


@dataclass
class Grant:
    """Who is connected and whether they may write; ``subject`` is the server's own data."""

    user_id: str
    can_write: bool
    subject: Any = None


Authorize = Callable[[Scope, str], Awaitable[Grant]]  # (ASGI scope, lesson id) -> Grant | Denied
Recheck = Callable[[str, Grant], Awaitable[bool]]  # (lesson id, grant) -> can_write | Denied


def lesson_key(lesson_id: str) -> str:
    """The one spelling of a lesson id that names its room: lowercase hyphenated. Upper case, no
    hyphens, ``{…}`` and ``urn:uuid:`` spellings used to open separate documents of one lesson
    that overwrote each other's text. Raises ValueError for what is not a UUID."""
    return str(uuid.UUID(lesson_id))


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
    if len(update) > SCRATCH_CHECK_MAX_BYTES:
        # Large updates skip the scratch document: applying one costs ~2 us a struct (a 2 MiB
        # update of 110,000 map keys: ~200 ms, on top of the room's own apply), and the room's
        # apply_checked() catches every known poison anyway (this check only spares a rebuild).
        return
    scratch: Doc[Any] = Doc()
    try:
        scratch.apply_update(update)
        scratch.get_update()
    except Exception as exc:
        raise p.ProtocolError(f"malformed update: {exc}") from None
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise p.ProtocolError(f"update breaks the document: {exc}") from None


def update_digest(update: bytes) -> bytes | None:
    """A digest by which a re-sent copy of a large update is recognised before any pycrdt work
    (blake2b: ~1 ms per MiB against 120 ms to check it on a scratch document); None for small
    updates, which are cheap to check again."""
    if len(update) < SEEN_UPDATE_MIN_BYTES:
        return None
    return hashlib.blake2b(update, digest_size=16).digest()


def deletes_only(update: bytes) -> bool:
    """An update with no structs (its first varuint, the count of clients with structs, is 0)."""
    return p.read_var_uint(update, 0)[0] == 0


def is_panic(exc: BaseException) -> bool:
    """pycrdt raises a Rust panic as ``PanicException``, a BaseException it does not export."""
    return type(exc).__name__ == "PanicException"


def apply_checked(doc: Doc[Any], update: bytes) -> bool:
    """Apply ``update`` to ``doc``; False when that failed or left ``doc`` poisoned (then ``doc``
    must be rebuilt without it).

    Updates that each pass :func:`check_update` can, applied in turn to one document, leave it so
    that every ``get_update`` panics in yrs 0.28 (store.rs, found by tests/fuzz): no joiner could
    sync, and the logged updates broke the lesson on every load. Encoding just what the update
    added (the delta from the state before it) walks the blocks it touched and reliably panics in
    that state; it costs ~15 µs per keystroke on a 50 KB body (apply alone: ~5 µs)."""
    state = doc.get_state()
    try:
        doc.apply_update(update)
        doc.get_update(state)
    except Exception:
        return False
    except BaseException as exc:
        if not is_panic(exc):
            raise
        return False
    return True


def check_state_vector(state_vector: bytes) -> None:
    """Raise :class:`~collab.protocol.ProtocolError` for a sync step 1 state vector that claims
    more clients than it has bytes: yrs reserves room for them all before reading one, so 9 bytes
    declaring 2.5e12 clients cost 1 GB and 1.3 s of event loop (found by tests/fuzz); any reader,
    viewers included, may send a step 1."""
    clients, _ = p.read_var_uint(state_vector, 0)
    if clients > len(state_vector):
        raise p.ProtocolError(f"state vector declares {clients} clients in {len(state_vector)} bytes")


def merge_log(updates: list[bytes]) -> tuple[bytes, bytes]:
    """Compaction's merge. A log poisoned before updates were checked is merged without the
    updates that poison it (else the snapshot itself would be poisoned, and skipped whole)."""
    if _replay(updates) is None:
        _, updates = _replay_skipping("(compaction)", updates)
    merged = merge_updates(*updates) if len(updates) > 1 else updates[0]
    return merged, update_state_vector(merged)


def _replay(updates: list[bytes]) -> Doc[Any] | None:
    """The document of a stored log, or None when the log breaks it (then see
    :func:`_replay_skipping`). One full encode checks the whole log (~1 ms per 100 KB)."""
    doc: Doc[Any] = Doc()
    try:
        for update in updates:
            doc.apply_update(update)
        doc.get_update()
    except Exception:
        return None
    except BaseException as exc:
        if not is_panic(exc):
            raise
        return None
    return doc


def _replay_skipping(lesson_id: str, updates: list[bytes]) -> tuple[Doc[Any], list[bytes]]:
    """The document of a poisoned log without the updates that poison it, and the updates kept.
    Each skipped update is logged once per load; compaction then merges only the kept ones."""
    doc: Doc[Any] = Doc()
    kept: list[bytes] = []
    for index, update in enumerate(updates):
        if apply_checked(doc, update):
            kept.append(update)
            continue
        log.warning("skipped stored update %d that breaks the document", index, extra={"lesson_id": lesson_id})
        rebuilt = _replay(kept)
        assert rebuilt is not None  # every kept update applied cleanly in turn
        doc = rebuilt
    return doc, kept


class Peer:
    __slots__ = ("awareness_budget", "awareness_ids", "awareness_later", "awareness_pending", "budget",
                 "can_write", "deferred", "grant", "sender", "want_awareness", "want_sync")

    def __init__(self, grant: Grant, sender: Sender, budget: AnswerBudget,
                 awareness_budget: AnswerBudget | None = None) -> None:
        self.grant = grant
        self.can_write = grant.can_write
        self.sender = sender
        self.awareness_ids: dict[int, int] = {}  # client id -> last clock
        self.budget = budget  # answers to sync step 1 and query-awareness
        self.want_sync: bytes | None = None  # state vector of a step 1 waiting for the budget
        self.want_awareness = False  # a query-awareness waiting for the budget
        self.deferred: asyncio.TimerHandle | None = None
        # awareness this socket sends is fanned out to every peer and node: a token bucket, and
        # beyond it the newest entry per client id waits for a deferred send (coalesced)
        self.awareness_budget = awareness_budget or AnswerBudget(20, 10.0, time.monotonic())
        self.awareness_pending: dict[int, p.AwarenessEntry] = {}
        self.awareness_later: asyncio.TimerHandle | None = None


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
    # ``doc`` is ``base`` plus ``tail`` applied in order: what a refused update is undone from
    # (a CRDT update cannot be taken back out of a document).
    base: bytes = b""
    tail: list[bytes] = field(default_factory=list)
    tail_bytes: int = 0
    # Every limited text field was within its limit in UTF-8 bytes when last measured and nothing
    # changed the document unmeasured since: then no field can be over its character limit.
    small: bool = False
    texts_cache: dict[str, Text] = field(default_factory=dict)
    char_bounds: CharBounds | None = None  # of ``doc``'s limited fields (collab/textsize.py)
    # The answer to a step 1 with an empty state vector (every fresh client's), frame and wire
    # bytes, until the document changes: joiners and repeated requests share one encode.
    full_sync: tuple[bytes, bytes] | None = None
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
    # Digests of the last large updates applied or found to change nothing (see update_digest).
    seen_updates: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    materialised: tuple[str, str] | None = None  # title and body this room last materialised

    def note_seen(self, digest: bytes | None) -> None:
        if digest is None:
            return
        self.seen_updates[digest] = None
        self.seen_updates.move_to_end(digest)
        while len(self.seen_updates) > SEEN_UPDATES_KEPT:
            self.seen_updates.popitem(last=False)

    def text(self, name: str) -> Text:
        found = self.texts_cache.get(name)
        if found is None:  # doc.get costs ~3 us, more than a length
            found = self.texts_cache[name] = self.doc.get(name, type=Text)
        return found

    def remember(self, update: bytes) -> None:
        """Note an update applied to ``doc`` (see ``base``)."""
        self.full_sync = None
        self.tail.append(update)
        self.tail_bytes += len(update)
        if self.tail_bytes > CHECKPOINT_FOLD_BYTES:
            self.fold()

    def fold(self) -> None:
        """Merge ``tail`` into ``base`` (merging keeps updates still waiting on a dependency)."""
        if self.tail:
            self.base = merge_updates(self.base, *self.tail) if self.base else merge_updates(*self.tail)
            self.tail = []
            self.tail_bytes = 0

    def rebuild(self) -> None:
        """Replace ``doc`` by ``base`` + ``tail``: the document without an update applied since."""
        doc: Doc[Any] = Doc()
        if self.base:
            doc.apply_update(self.base)
        for update in self.tail:
            doc.apply_update(update)
        self.doc = doc
        self.full_sync = None
        self.texts_cache.clear()
        self.small = False
        for name in TEXT_FIELDS:
            self.text(name)
        doc.get("meta", type=Map)

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
        wire = encode_frame(frame)
        for peer in self.peers:
            if peer is not exclude:
                peer.sender.push(frame, message, wire)

    def send_step2(self, peer: Peer, state_vector: bytes) -> None:
        """Answer a sync step 1: what ``state_vector`` lacks (the whole document is cached)."""
        if state_vector != FULL_STATE:
            peer.sender.push(p.step2_frame(self.doc.get_update(state_vector)))
            return
        if self.full_sync is None:
            frame = p.step2_frame(self.doc.get_update(state_vector))
            self.full_sync = (frame, encode_frame(frame))
        frame, wire = self.full_sync
        peer.sender.push(frame, None, wire)

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
                 max_queued: int = 16 * 1024 * 1024, sync_burst: int = 8, sync_per_second: float = 2.0,
                 awareness_ids: int = 4, awareness_state_bytes: int = 8 * 1024,
                 receive_per_second: float = 8 * 1024 * 1024, receive_frame_cost: int = 4096,
                 awareness_burst: int = 20, awareness_per_second: float = 10.0,
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
        self.sync_burst = sync_burst
        self.sync_per_second = sync_per_second
        self.awareness_ids = awareness_ids  # awareness client ids one socket may own
        self.awareness_state_bytes = awareness_state_bytes  # the largest state kept (UTF-8 bytes)
        # a socket's frame of more entries is dropped unread (an echo of others' ids is moot)
        self.awareness_burst = awareness_burst  # awareness frames one socket fans out at once
        self.awareness_per_second = awareness_per_second  # ... and then per second (coalesced)
        self.awareness_entries = min(AWARENESS_ENTRIES_CAP, max(1, 2 * awareness_ids))
        self.receive_per_second = receive_per_second  # what one socket may send (collab/throttle.py)
        self.receive_frame_cost = receive_frame_cost
        self._inbound: dict[str, list[Any]] = {}  # user id -> [ReceiveBudget, sockets]
        self.rooms: dict[str, Room] = {}
        self._opening: dict[str, asyncio.Future[Room]] = {}
        self._pending: list[PendingUpdate] = []
        self._pending_ready = asyncio.Event()
        # updates are queued and committed in order, so "saved?" is a comparison of two counters
        self._enqueued = 0  # updates ever queued for the log
        self._persisted = 0  # of those, committed
        # peer -> (queued count, nonce): only a socket's newest query waits (answering it tells
        # the client that everything it sent before is saved too), so the map is one per socket
        self._saved_waiters: dict[Peer, tuple[int, int]] = {}
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
        lesson_id = lesson_key(lesson_id)
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
        updates = loaded.updates
        doc = _replay(updates)
        if doc is None:  # a log poisoned before updates were checked (apply_checked)
            doc, updates = _replay_skipping(lesson_id, updates)
        room = Room(lesson_id, doc, log_rows=loaded.log_rows)
        if updates:
            room.base = merge_updates(*updates) if len(updates) > 1 else updates[0]
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
        except LessonGone:
            log.info("collab room's lesson is gone", extra={"lesson_id": room.lesson_id})
        except Exception:
            log.exception("closing room failed", extra={"lesson_id": room.lesson_id})

    # --- the WebSocket endpoint ----------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
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
        peer = Peer(grant, Sender(send, max_queued=self.max_queued, coalescer=self._coalescer),
                    AnswerBudget(self.sync_burst, self.sync_per_second, time.monotonic()),
                    AnswerBudget(self.awareness_burst, self.awareness_per_second, time.monotonic()))
        self._join(room, peer)
        user_id = grant.user_id
        inbound = self._user_budget(user_id)
        handled = 0
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    data = message.get("bytes") or b""
                    started = time.perf_counter()
                    if data and not peer.sender.closed:  # closed: what is still buffered is moot
                        self._on_frame(room, peer, data)
                    spent = time.perf_counter() - started
                    handled += 1
                    wait = inbound.spend(self._frame_cost(data, spent), time.monotonic())
                    if wait > 0:
                        handled = 0
                        await asyncio.sleep(wait)
                    elif handled >= FRAMES_PER_TURN or spent > SLOW_FRAME_S:
                        # receive() does not suspend while frames are buffered: one 256 KB read
                        # of 4-byte frames is 26,000 of them. Let other sockets (and requests) in.
                        handled = 0
                        await asyncio.sleep(0)
                elif kind == "websocket.disconnect":
                    break
        finally:
            peer.sender.closed = True
            self._leave(room, peer)
            self._release_budget(user_id)

    def _user_budget(self, user_id: str) -> ReceiveBudget:
        """The receive budget shared by all of one user's collab sockets on this node (so that
        opening more sockets does not buy more of the loop)."""
        entry = self._inbound.get(user_id)
        if entry is None:
            entry = self._inbound[user_id] = [ReceiveBudget(
                self.receive_per_second, 2 * self.receive_per_second, self.receive_frame_cost,
                time.monotonic()), 0]
        entry[1] += 1
        budget: ReceiveBudget = entry[0]
        return budget

    def _release_budget(self, user_id: str) -> None:
        entry = self._inbound.get(user_id)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del self._inbound[user_id]

    def _frame_cost(self, data: bytes, spent: float) -> int:
        """A handled frame's charge to its user's receive budget: its bytes (see _receive_cost), or
        the loop time it took, whichever is more (applying an update costs per struct, not per
        byte: 12,500 tiny map entries are ~260 KB and ~45 ms)."""
        return max(self._receive_cost(data), int(spent * CPU_SHARE_DIVISOR * self.receive_per_second))

    def _receive_cost(self, data: bytes) -> int:
        """What a frame is charged to its socket's receive budget, in bytes: an awareness frame
        costs a frame per entry it claims (parsing is per entry, not per byte)."""
        if len(data) > 2 and data[0] == p.MSG_AWARENESS:
            try:
                _, start = p.read_var_uint(data, 1)
                entries = min(p.read_var_uint(data, start)[0], self.awareness_entries + 1)
            except Exception:
                entries = 1
            return max(len(data), entries * self.receive_frame_cost)
        return len(data)

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
        if peer.deferred is not None:
            peer.deferred.cancel()
            peer.deferred = None
        if peer.awareness_later is not None:  # its removal below supersedes what waits
            peer.awareness_later.cancel()
            peer.awareness_later = None
        peer.awareness_pending.clear()
        self._saved_waiters.pop(peer, None)
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
                    self._answer_step1(room, peer, frame.payload)
                elif frame.sync in (p.SYNC_STEP2, p.SYNC_UPDATE):
                    if not peer.can_write or frame.payload == p.EMPTY_UPDATE:
                        return  # viewers are read-only: dropped, not closed
                    digest = update_digest(frame.payload)
                    if digest is not None and digest in room.seen_updates:
                        return  # a copy of an update already applied: changes nothing
                    check_update(frame.payload)
                    before = None if room.small else self._text_sizes(room)
                    state = room.doc.get_state()
                    if not apply_checked(room.doc, frame.payload):
                        self._drop_poison(room, peer)
                        return
                    if room.doc.get_state() == state and not deletes_only(frame.payload):
                        # Every struct was known already: re-sent, it would cost a 2 MiB row,
                        # broadcast and relay per copy. (A delete-only update never moves the
                        # state vector, so it is kept.)
                        room.note_seen(digest)
                        return
                    room.note_seen(digest)
                    over = self._over_limit(room, before) or self._document_over(room, frame.payload)
                    if over is not None:
                        self._refuse(room, peer, over)
                        return
                    out = data if frame.sync == p.SYNC_UPDATE else p.update_frame(frame.payload)
                    self._changed(room, out, frame.payload, peer.grant.user_id, exclude=peer)
            elif kind == p.MSG_AWARENESS:
                _, start = p.read_var_uint(data, 1)  # the payload's length; then its entry count
                if p.read_var_uint(data, start)[0] > self.awareness_entries:
                    return  # dropped unread (and uncopied)
                frame = p.parse_frame(data)
                accepted = self._claim_awareness(room, frame.payload, peer)
                if accepted is not None and not accepted:
                    return
                if peer.awareness_later is None and peer.awareness_budget.take(time.monotonic()):
                    out = data if accepted is None else p.awareness_frame(p.encode_awareness(accepted))
                    self._fan_out_awareness(room, peer, out)
                    return
                for entry in p.parse_awareness(frame.payload) if accepted is None else accepted:
                    peer.awareness_pending[entry.client_id] = entry  # the newest wins
                if peer.awareness_later is None:
                    delay = peer.awareness_budget.wait(time.monotonic())
                    peer.awareness_later = asyncio.get_running_loop().call_later(
                        delay, self._awareness_deferred, room, peer)
            elif kind == p.MSG_QUERY_AWARENESS:
                self._answer_query_awareness(room, peer)
            elif kind == p.MSG_QUERY_SAVED:
                nonce, _ = p.read_var_uint(data, 1)
                if self._persisted >= self._enqueued:
                    peer.sender.push(p.saved_frame(nonce))
                else:  # answered when the batch holding this socket's last update commits
                    self._saved_waiters[peer] = (self._enqueued, nonce)
        except Exception as exc:
            log.info("dropped a bad collab message: %s", exc, extra={"lesson_id": room.lesson_id})
        except BaseException as exc:
            # A panic outside the update path (which apply_checked guards and undoes) must not end
            # this socket's handler with a traceback: pycrdt raises it as a BaseException.
            if not is_panic(exc):
                raise
            log.info("dropped a collab message that made pycrdt panic: %s", exc,
                     extra={"lesson_id": room.lesson_id})

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

    def _fan_out_awareness(self, room: Room, peer: Peer, frame: bytes) -> None:
        room.broadcast(frame, exclude=peer)
        if self.relay is not None:
            self.relay.publish(room.lesson_id, KIND_AWARENESS, frame)

    def _awareness_deferred(self, room: Room, peer: Peer) -> None:
        """Send the newest of the awareness a socket sent over its budget, as one frame."""
        peer.awareness_later = None
        if peer.sender.closed or not peer.awareness_pending:
            return
        peer.awareness_budget.take(time.monotonic())
        entries = list(peer.awareness_pending.values())
        peer.awareness_pending.clear()
        self._fan_out_awareness(room, peer, p.awareness_frame(p.encode_awareness(entries)))

    def _state_too_big(self, entry: p.AwarenessEntry) -> bool:
        limit = self.awareness_state_bytes
        size = len(entry.state)  # characters: at most 4 bytes each
        return size > limit or (size * 4 > limit and len(entry.state.encode("utf-8")) > limit)

    def _claim_awareness(self, room: Room, update: bytes, peer: Peer) -> list[p.AwarenessEntry] | None:
        """Apply a local socket's awareness update under its ownership rules; returns the
        entries to relay, or None when every entry was accepted (the frame goes on unchanged).

        A socket owns the ids it announced first, at most ``awareness_ids`` of them (one for
        y-websocket's own clients), each state at most ``awareness_state_bytes``. Entries for ids
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
                if (entry.removed or len(peer.awareness_ids) >= self.awareness_ids
                        or self._state_too_big(entry)):
                    continue
                room.awareness[entry.client_id] = AwarenessRecord(entry, peer, now)
                peer.awareness_ids[entry.client_id] = entry.clock
                accepted.append(entry)
                continue
            owner = record.peer
            if owner is not peer:
                if (owner is None or owner.grant.user_id != peer.grant.user_id
                        or entry.clock < record.entry.clock or len(peer.awareness_ids) >= self.awareness_ids):
                    continue
                owner.awareness_ids.pop(entry.client_id, None)  # the same user's new socket
                record.peer = peer
                peer.awareness_ids[entry.client_id] = record.entry.clock
            if entry.clock < record.entry.clock:
                continue  # stale
            if entry.removed:
                del room.awareness[entry.client_id]
                peer.awareness_ids.pop(entry.client_id, None)
            elif self._state_too_big(entry):
                continue
            else:
                record.entry = entry
                record.seen = now
                peer.awareness_ids[entry.client_id] = entry.clock
            accepted.append(entry)
        return None if len(accepted) == len(entries) else accepted

    def _on_remote_awareness(self, room: Room, update: bytes, node: str) -> list[p.AwarenessEntry] | None:
        """Track the awareness of clients on another node (which applied the rules of
        :meth:`_claim_awareness` to its own sockets). Ids a local socket owns stay its own.
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

    # --- text limits ---------------------------------------------------------------------

    def _char_bounds(self, room: Room) -> CharBounds:
        bounds = room.char_bounds
        if bounds is None or bounds.doc is not room.doc:  # first needed, or the doc was rebuilt
            bounds = CharBounds(room.doc, {name: room.text(name) for name, _ in TEXT_LIMITS})
            room.char_bounds = bounds
        return bounds

    def _text_sizes(self, room: Room) -> list[tuple[int, int]]:
        """Per limited field, bounds of its length in characters before an update (O(1)):
        pycrdt's length is in UTF-8 bytes, and :class:`CharBounds` follows the Text events."""
        bounds = self._char_bounds(room)
        sizes = []
        for name, limit in TEXT_LIMITS:
            text = room.text(name)
            low, high = bounds.get(name, text)
            if high > limit and low != high:  # maybe over: counted, then followed exactly
                low = high = bounds.exact(name, text)
            sizes.append((low, high))
        return sizes

    def _over_limit(self, room: Room, before: list[tuple[int, int]] | None) -> str | None:
        """The field an update just applied took over its limit and lengthened, if any.
        ``before``: the bounds before it (:meth:`_text_sizes`); None when ``room.small``.
        The common case costs two O(1) lengths in one transaction (~3 us); a long multibyte
        text costs O(update), and a count (O(n)) only when the bounds straddle the limit."""
        with room.doc.transaction():
            lengths = [len(room.text(name)) for name, _ in TEXT_LIMITS]
        room.small = all(length <= limit for length, (_, limit) in zip(lengths, TEXT_LIMITS, strict=True))
        if room.small:
            return None
        bounds = self._char_bounds(room)
        for index, (name, limit) in enumerate(TEXT_LIMITS):
            if lengths[index] <= limit:
                continue
            text = room.text(name)
            low, high = bounds.get(name, text)
            if high <= limit:
                continue
            size = low if low == high else bounds.exact(name, text)
            if size <= limit:
                continue
            # Over: refused only if it surely grew (an over-limit text may still be shortened).
            was = before[index][1] if before is not None else 0
            if size > was:
                return name
        return None

    def _document_over(self, room: Room, update: bytes) -> str | None:
        """"document" when an update just applied takes the document past DOCUMENT_MAX_BYTES
        (TEXT_LIMITS bound only title and body: a writer could grow ``meta`` or other roots
        forever, and with them every version row and joiner's step 2). Other root types are
        allowed: stock Yjs clients and the shared load harness (a Map "ts") use their own, and
        the cap bounds them all. The size is that of the room's stored history (``base`` + ``tail``,
        which the document's encoding never exceeds by much): O(1), no encode."""
        if len(room.base) + room.tail_bytes + len(update) > DOCUMENT_MAX_BYTES:
            return "document"
        return None

    def _refuse(self, room: Room, peer: Peer, name: str) -> None:
        """Undo the update just applied (rebuild the document without it) and close its sender."""
        log.warning("collab update refused: %s over its limit", name,
                    extra={"lesson_id": room.lesson_id, "user_id": peer.grant.user_id})
        room.rebuild()
        peer.sender.close(CLOSE_TOO_LARGE, f"The lesson {name} is over its limit.")

    def _drop_poison(self, room: Room, peer: Peer) -> None:
        """An update failed to apply or poisoned the document (see :func:`apply_checked`): rebuild
        the document without it. Dropped like any malformed message, the socket stays open (a
        stock client never sends one; the next sync step 1 resynchronises an honest one)."""
        log.warning("dropped a collab update that breaks the document",
                    extra={"lesson_id": room.lesson_id, "user_id": peer.grant.user_id})
        room.rebuild()

    def _within_limits(self, title: str, body: str) -> bool:
        limits = dict(TEXT_LIMITS)
        return len(title) <= limits["title"] and len(body) <= limits["body"]

    def _changed(self, room: Room, frame: bytes, update: bytes, actor: str | None,
                 exclude: Peer | None = None) -> None:
        """A change made on this node: broadcast, relay, persist (this node only)."""
        room.remember(update)
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
            room.remember(frame.payload)
            room.small = False
            room.broadcast(payload)
            room.dirty = True
            room.changed_at = time.monotonic()
        elif kind == KIND_AWARENESS:
            frame = p.parse_frame(payload)
            accepted = self._on_remote_awareness(room, frame.payload, origin)
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
        waiting = {}
        for peer, (queued, nonce) in self._saved_waiters.items():
            if queued <= self._persisted:
                if not peer.sender.closed:
                    peer.sender.push(p.saved_frame(nonce))
            else:
                waiting[peer] = (queued, nonce)
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
                except LessonGone:  # deleted under the room: the access re-check closes its sockets
                    log.info("collab room's lesson is gone", extra={"lesson_id": room.lesson_id})
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
        if len(room.tail) >= CHECKPOINT_FOLD_UPDATES:
            room.fold()
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
        if room.materialised == (title, body):
            return  # nothing changed since this room last wrote it: no query, no render
        if not self._within_limits(title, body):  # e.g. concurrent edits of two nodes
            log.warning("collab text over its limit, not materialised", extra={"lesson_id": room.lesson_id})
            return
        await self.store.materialise(room.lesson_id, title, body)
        room.materialised = (title, body)

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

    async def apply(self, lesson_id: str, change: Callable[[Doc[Any]], T], *, actor: str | None,
                    enforce_limits: bool = False) -> T:
        """Run ``change(doc)`` on the live document of ``lesson_id`` in ONE transaction (opening
        the room if needed), then persist, broadcast and relay the resulting update like a
        client's. ``actor`` is the clerk id credited in the log and version contributors.

        With ``enforce_limits``, a change that takes a text field over its limit (as a client's
        update would be refused) is undone and :class:`TextTooLong` raised. A change that raises
        is undone too (pycrdt commits what it did before the exception)."""
        room = await self.open(lesson_id)
        before = None if room.small or not enforce_limits else self._text_sizes(room)
        updates: list[bytes] = []
        doc = room.doc
        subscription = doc.observe(lambda event: updates.append(event.update))
        try:
            with doc.transaction(origin="server"):
                result = change(doc)
        except BaseException:
            doc.unobserve(subscription)
            if updates:
                room.rebuild()
            raise
        doc.unobserve(subscription)
        over = self._over_limit(room, before) if enforce_limits and updates else None
        if over is not None:
            room.rebuild()
            raise TextTooLong(over, dict(TEXT_LIMITS)[over])
        room.small = room.small and enforce_limits
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

        # REST validates each field first, so the limits hold here; checked anyway (cheap).
        changed = await self.apply(lesson_id, change, actor=actor, enforce_limits=True)
        if changed:
            room = self.rooms.get(lesson_key(lesson_id))
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
        room = self.rooms.get(lesson_key(lesson_id))
        if room is not None:
            await self._materialise(room)

    def peer_count(self) -> int:
        """Clients connected to this node's rooms."""
        return sum(len(room.peers) for room in self.rooms.values())

    def connected(self, lesson_id: str) -> int:
        """How many clients of this node are in the lesson's room."""
        room = self.rooms.get(lesson_key(lesson_id))
        return len(room.peers) if room else 0
