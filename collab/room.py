"""One live lesson document and the peers connected to it: the :class:`Room`, and what may go in it.

A room holds the ``pycrdt.Doc`` of one lesson, the peers (sockets, of any protocol) that edit it,
its awareness records and the checkpoint a refused update is undone from; it broadcasts frames to
its peers and answers a sync step 1. The checks that keep a document sound (malformed and
poisoning updates, state vectors, stored logs) and its limits are here too. Nothing in this
module awaits: loading, persistence, relaying and dispatch are the manager's
(:mod:`collab.manager`) and its parts'. Depends on :mod:`collab.protocol`, :mod:`collab.access`
(the grant), :mod:`collab.sender` (the node's write pace), :mod:`collab.textsize`, :mod:`collab.throttle`
and :mod:`wire.websocket`.

A peer reaches its client through a :class:`Link` (the y-websocket :class:`~collab.sender.Sender`,
or another protocol's connection): frames are y-protocol messages, the link encodes them for its
socket.

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
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pycrdt import Doc, Map, Text, merge_updates
from pycrdt import get_state as update_state_vector
from pycrdt._pycrdt import Doc as RawDoc  # the Rust document pycrdt's Doc wraps (see _in_raw)

from collab import protocol as p
from collab.access import Grant
from collab.sender import Coalescer
from collab.textsize import CharBounds
from collab.throttle import AnswerBudget
from wire.websocket import encode_frame

log = logging.getLogger("scriptorium.collab")

TEXT_FIELDS = ("title", "body")
TEXT_LIMITS = (("title", 200), ("body", 200_000))  # characters, as REST (server/catalog)
# The whole document's stored history: a 200,000-character body (up to 800 KB of UTF-8) typed
# and rewritten many times over, plus meta, stays far below it; an attacker's growth stops here.
DOCUMENT_MAX_BYTES = 32 * 1024 * 1024
# The checkpoint a refused update is undone from folds in the updates applied since once they
# are this many (in the maintenance loop) or this large (at once).
CHECKPOINT_FOLD_UPDATES = 256
CHECKPOINT_FOLD_BYTES = 4 * 1024 * 1024
# yrs spends about a microsecond per struct to apply, merge or encode, keeping the GIL all along
# (a 2 MiB update of 110,000 map keys: ~125 ms to apply). Merges of a document's history (the
# fold above, loading a room, compaction) of more than this many bytes run in the manager's worker
# process (wire/worker.py) instead of in place: up to it, ~15 ms at worst.
INLINE_MERGE_BYTES = 256 * 1024
# A fold in the worker waits for one update per this many bytes of the base (or a tail half the
# base's size): a rebuild then applies at most that many updates one by one (~10 us each: ~80 ms
# at the 32 MiB cap, against ~2 s for the base itself), and each merge of the base is spread
# over that many updates.
FOLD_BASE_PER_UPDATE = 4096
# Updates at least this large are remembered by digest (see update_digest), the last few per room.
SEEN_UPDATE_MIN_BYTES = 16 * 1024
SEEN_UPDATES_KEPT = 32
# Updates up to this size are tried on an empty scratch document before the room's (see
# check_update); a keystroke is a few dozen bytes.
SCRATCH_CHECK_MAX_BYTES = 64 * 1024
FULL_STATE = b"\x00"  # an empty state vector: "send me everything"
# Client updates applied until the node's next write leave as one merged update (as
# @hocuspocus/server 4 does): one frame per peer instead of one per update. A merge stops at this
# many bytes, so a merged frame stays well under a client's frame limit (y-websocket has none,
# `websockets` 1 MiB), and at this many updates: merging is not linear in their number (one
# struct update per fresh client id is the worst case), and no client's budget pays for it.
MERGE_MAX_BYTES = 256 * 1024
MERGE_MAX_UPDATES = 128


class TextTooLong(ValueError):
    """A server change would take a text field over its limit (it was undone)."""

    def __init__(self, field_name: str, limit: int) -> None:
        super().__init__(f"The lesson {field_name} may have at most {limit} characters.")
        self.field = field_name
        self.limit = limit


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
    scratch = RawDoc(None, None, None)
    try:
        _in_raw(scratch, lambda txn: scratch.apply_update(txn, update))
        _in_raw(scratch, lambda txn: scratch.get_update(txn, FULL_STATE))
    except Exception as exc:
        raise p.ProtocolError(f"malformed update: {exc}") from None
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise p.ProtocolError(f"update breaks the document: {exc}") from None


def merged_frame(items: Sequence[tuple[bytes, bytes]]) -> bytes:
    """One update frame for several (frame, update) pairs: the frame as it came for one, the
    merged update for several (a merged update is a valid one for every Yjs client)."""
    if len(items) == 1:
        return items[0][0]
    return p.update_frame(merge_updates(*(update for _, update in items)))


def merged_or_none(updates: Sequence[bytes]) -> bytes | None:
    """``updates`` merged into one, or None when pycrdt fails (or panics) merging them: callers
    then keep them apart."""
    try:
        return merge_updates(*updates)
    except BaseException as exc:
        if not is_panic(exc) and not isinstance(exc, Exception):
            raise
        return None


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


def _in_raw(raw: Any, step: Callable[[Any], object]) -> None:
    """``step(txn)`` in a transaction of the Rust document ``raw``, committed and dropped as
    pycrdt's own ``with doc.transaction()`` does (commit even after an error, then drop): the
    same calls without pycrdt's Python wrappers, which cost more than the work for a keystroke
    (a ``Doc()`` ~5.7 µs against ~0.4 µs for the Rust one alone)."""
    txn = raw.create_transaction()
    try:
        step(txn)
    finally:
        try:
            txn.commit()
        finally:
            txn.drop()


def apply_new(doc: Doc[Any], update: bytes) -> bool | None:
    """Apply ``update`` to ``doc``: True when it changed the document's state vector, False when
    every struct in it was known already, None when applying failed or left ``doc`` poisoned
    (then ``doc`` must be rebuilt without it).

    Updates that each pass :func:`check_update` can, applied in turn to one document, leave it so
    that every ``get_update`` panics in yrs 0.28 (store.rs, found by tests/fuzz): no joiner could
    sync, and the logged updates broke the lesson on every load. Encoding just what the update
    added (the delta from the state before it), after the commit, walks the blocks it touched and
    reliably panics in that state. Two transactions (the apply, committed through pycrdt's own so
    that the document's observers see it; then the encode and the new state vector), each on the
    Rust document directly: ~6 µs per keystroke on a 50 KB body, where five pycrdt calls cost ~20."""
    raw = doc._doc
    try:
        with doc.transaction() as txn:
            t = txn._txn
            assert t is not None  # set on entering the transaction
            before = raw.get_state(t)
            raw.apply_update(t, update)
        with doc.transaction() as txn:
            t = txn._txn
            assert t is not None
            raw.get_update(t, before)
            after = raw.get_state(t)
    except Exception:
        return None
    except BaseException as exc:
        if not is_panic(exc):
            raise
        return None
    return bool(after != before)


def apply_checked(doc: Doc[Any], update: bytes) -> bool:
    """Apply ``update`` to ``doc``; False when that failed or left ``doc`` poisoned (then ``doc``
    must be rebuilt without it): :func:`apply_new`."""
    return apply_new(doc, update) is not None


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
    if replay(updates) is None:
        _, updates = replay_skipping("(compaction)", updates)
    merged = merge_updates(*updates) if len(updates) > 1 else updates[0]
    return merged, update_state_vector(merged)


def merge_parts(base: bytes, tail: list[bytes]) -> bytes:
    """``base`` (may be empty) merged with ``tail`` (not empty): a room's fold; also run in the
    worker process."""
    return merge_updates(base, *tail) if base else merge_updates(*tail)


def prepare_log(updates: list[bytes]) -> tuple[bytes, list[int] | None]:
    """For loading a room in the worker process: the stored log merged, and which of its updates
    to apply (their indexes; None: all). A log poisoned before updates were checked is merged
    and applied without the updates that poison it (:func:`replay_skipping`)."""
    kept: list[int] | None = None
    if replay(updates) is None:
        _, kept = _replay_skipping(updates)
        updates = [updates[index] for index in kept]
    if not updates:
        return b"", kept
    return (merge_updates(*updates) if len(updates) > 1 else updates[0]), kept


def replay(updates: list[bytes]) -> Doc[Any] | None:
    """The document of a stored log, or None when the log breaks it (then see
    :func:`replay_skipping`). One full encode checks the whole log (~1 ms per 100 KB)."""
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


def replay_skipping(lesson_id: str, updates: list[bytes]) -> tuple[Doc[Any], list[bytes]]:
    """The document of a poisoned log without the updates that poison it, and the updates kept.
    Each skipped update is logged once per load; compaction then merges only the kept ones."""
    doc, kept = _replay_skipping(updates)
    kept_set = set(kept)
    for index in range(len(updates)):
        if index not in kept_set:
            log.warning("skipped stored update %d that breaks the document", index, extra={"lesson_id": lesson_id})
    return doc, [updates[index] for index in kept]


def _replay_skipping(updates: list[bytes]) -> tuple[Doc[Any], list[int]]:
    """:func:`replay_skipping`, with the indexes of the updates kept."""
    doc: Doc[Any] = Doc()
    kept: list[int] = []
    for index, update in enumerate(updates):
        if apply_checked(doc, update):
            kept.append(index)
            continue
        rebuilt = replay([updates[i] for i in kept])
        assert rebuilt is not None  # every kept update applied cleanly in turn
        doc = rebuilt
    return doc, kept


class Link(Protocol):
    """What a room needs of one peer's connection: the seam a second protocol implements.

    ``frame`` is a y-protocol message (sync step 1/2, update, awareness, saved: see
    :mod:`collab.protocol`). On a broadcast every peer is pushed the same ``frame`` with the ASGI
    ``message`` and the encoded WebSocket frame ``wire`` shared between peers (y-websocket sends
    them as they are; a protocol that frames messages differently ignores them). ``close`` ends
    the connection with a WebSocket close code (:mod:`wire.websocket`); after it ``closed`` is
    true and pushes are dropped."""

    closed: bool

    def push(self, frame: bytes, message: dict[str, Any] | None = None, wire: bytes | None = None) -> None: ...

    def close(self, code: int, reason: str = "") -> None: ...


def within_limits(title: str, body: str) -> bool:
    limits = dict(TEXT_LIMITS)
    return len(title) <= limits["title"] and len(body) <= limits["body"]


class Peer:
    """One connection in one room: its ``sender`` (a :class:`Link`), grant (identity; ``can_write``
    is the read-only flag, updated by the access re-check), answer budgets and awareness ids."""

    __slots__ = ("awareness_budget", "awareness_ids", "awareness_later", "awareness_pending", "budget",
                 "can_write", "deferred", "grant", "sender", "want_awareness", "want_sync")

    def __init__(self, grant: Grant, sender: Link, budget: AnswerBudget,
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
    """Who a client id's awareness state is from: a local peer, or (``peer`` None) another node."""

    entry: p.AwarenessEntry
    peer: Peer | None  # None: a client on another node
    seen: float
    node: str | None = None  # the other node, for remote clients


@dataclass
class Room:
    """The live document of one lesson and the peers connected to it on this node."""

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
    # A fold of ``tail`` into ``base`` is under way in the worker process (see ``folds``).
    folding: bool = False
    # Starts a fold in the background (the manager's); None (a room on its own): fold at once.
    folds: Callable[[Room], None] | None = None
    fold_retry_bytes: int = 0  # after a failed fold: the tail's size the next one waits for
    unload_at: float | None = None
    emptied: bool = False
    # Digests of the last large updates applied or found to change nothing (see update_digest).
    seen_updates: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    materialised: tuple[str, str] | None = None  # title and body this room last materialised
    # Client updates applied and not yet sent: (frame, update, the peer it came from).
    pending: list[tuple[bytes, bytes, Peer | None]] = field(default_factory=list)
    pending_bytes: int = 0
    # The node's writes (the manager's Coalescer): a room that sent updates within its interval
    # sends the next ones at the node's next write, merged; one that did not, at the end of the
    # loop turn. None (a room on its own): at the end of the loop turn.
    writes: Coalescer | None = None
    sent_at: float = -1e9  # loop time of the last flush_updates (with ``writes``)

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
            self.fold_soon()

    def fold_soon(self) -> None:
        """Fold ``tail`` into ``base`` (called past CHECKPOINT_FOLD_UPDATES or _BYTES of tail): at
        once when the two are small or without ``folds``; else in the background (the document
        stays ``base`` plus ``tail`` meanwhile; updates only append) once the tail is also large
        against the base (see FOLD_BASE_PER_UPDATE; a merge of a large base for a few updates
        would keep the shared worker busy) and past a failed fold's mark."""
        if not self.tail or self.folding:
            return
        if self.folds is None or len(self.base) + self.tail_bytes <= INLINE_MERGE_BYTES:
            self.fold()
            return
        due = (self.tail_bytes >= max(CHECKPOINT_FOLD_BYTES, len(self.base) // 2)
               or len(self.tail) >= max(CHECKPOINT_FOLD_UPDATES, len(self.base) // FOLD_BASE_PER_UPDATE))
        if due and self.tail_bytes >= self.fold_retry_bytes:
            self.folds(self)

    def fold(self) -> None:
        """Merge ``tail`` into ``base`` now (merging keeps updates still waiting on a dependency)."""
        if self.tail:
            self.folded(self.base, len(self.tail), merge_parts(self.base, self.tail))

    def folded(self, base: bytes, count: int, merged: bytes) -> bool:
        """``merged`` is ``base`` merged with the first ``count`` updates of ``tail``: make it the
        base, unless ``base`` is no longer the room's (False)."""
        if self.base is not base or len(self.tail) < count:
            return False
        self.base = merged
        self.tail_bytes -= sum(len(update) for update in self.tail[:count])
        del self.tail[:count]
        return True

    def rebuild(self) -> None:
        """Replace ``doc`` by ``base`` + ``tail``: the document without an update applied since."""
        doc: Doc[Any] = Doc()
        if self.base:
            doc.apply_update(self.base)
        for update in self.tail:
            doc.apply_update(update)
        self.release_bounds()
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

    def broadcast_update(self, frame: bytes, update: bytes, origin: Peer | None) -> None:
        """Send an applied update to every local peer but ``origin``: at the end of the loop turn
        when the room sent none within the node's write interval (0 while the node is not busy:
        :meth:`collab.sender.Coalescer.hold`), else when the node's writes next go out
        (:attr:`writes`); the updates held until then leave merged, one frame per peer."""
        if not self.peers:
            return
        if self.pending and (self.pending_bytes + len(update) > MERGE_MAX_BYTES
                             or len(self.pending) >= MERGE_MAX_UPDATES):
            self.flush_updates()
        if not self.pending:
            writes = self.writes
            if writes is None:
                asyncio.get_running_loop().call_soon(self.flush_updates)
            elif writes.loop.time() - self.sent_at < writes.hold():
                writes.defer(self.flush_updates)  # busy: merged with the interval's others
            else:
                writes.soon(self.flush_updates)  # nothing to merge with: no wait
        self.pending.append((frame, update, origin))
        self.pending_bytes += len(update)

    def flush_updates(self) -> None:
        """Send the updates :meth:`broadcast_update` holds (a no-op when there are none).

        One update, or several of one peer, go to every peer but the one they came from. Those of
        several peers go to every peer as one merged update, their senders included, as
        @hocuspocus/server 4 does: a client applying its own update again changes nothing (Yjs
        skips what it has), and one frame per peer costs each client one apply where per-sender
        copies cost one per other writer. Should the merge fail (a pycrdt panic), they go one by
        one, as they came."""
        pending = self.pending
        if not pending:
            return
        self.pending, self.pending_bytes = [], 0
        if self.writes is not None:
            self.sent_at = self.writes.loop.time()
        origin = pending[0][2]
        if len(pending) == 1:
            self._send_all(pending[0][0], origin)
            return
        if any(other is not origin for _, _, other in pending):
            origin = None
        merged = merged_or_none([update for _, update, _ in pending])
        if merged is None:
            log.warning("collab updates did not merge: sent one by one",
                        extra={"lesson_id": self.lesson_id, "updates": len(pending)})
            for frame, _, sender in pending:
                self._send_all(frame, sender)
            return
        self._send_all(p.update_frame(merged), origin)

    def broadcast(self, frame: bytes, exclude: Peer | None = None) -> None:
        """Write one encoded frame to every local peer (same bytes, same ASGI message), after the
        updates this turn holds (the order peers see is the order things happened)."""
        if not self.peers:
            return
        if self.pending:
            self.flush_updates()
        self._send_all(frame, exclude)

    def _send_all(self, frame: bytes, exclude: Peer | None) -> None:
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

    # --- text limits (TEXT_LIMITS, DOCUMENT_MAX_BYTES) ------------------------------------

    def bounds(self) -> CharBounds:
        bounds = self.char_bounds
        if bounds is None or bounds.doc is not self.doc:  # first needed, or the doc was rebuilt
            self.release_bounds()
            bounds = CharBounds(self.doc, {name: self.text(name) for name, _ in TEXT_LIMITS})
            self.char_bounds = bounds
        return bounds

    def release_bounds(self) -> None:
        """Drop the text observers of :meth:`bounds` (their cycle through Rust would keep the
        document alive for ever): when the document is rebuilt and when the room is unloaded."""
        if self.char_bounds is not None:
            self.char_bounds.close()
            self.char_bounds = None

    def text_sizes(self) -> list[tuple[int, int]]:
        """Per limited field, bounds of its length in characters before an update (O(1)):
        pycrdt's length is in UTF-8 bytes, and :class:`CharBounds` follows the Text events."""
        bounds = self.bounds()
        sizes = []
        for name, limit in TEXT_LIMITS:
            text = self.text(name)
            low, high = bounds.get(name, text)
            if high > limit and low != high:  # maybe over: counted, then followed exactly
                low = high = bounds.exact(name, text)
            sizes.append((low, high))
        return sizes

    def over_limit(self, before: list[tuple[int, int]] | None) -> str | None:
        """The field an update just applied took over its limit and lengthened, if any.
        ``before``: the bounds before it (:meth:`text_sizes`); None when ``self.small``.
        The common case costs two O(1) lengths in one transaction (~3 us); a long multibyte
        text costs O(update), and a count (O(n)) only when the bounds straddle the limit."""
        with self.doc.transaction() as txn:  # the Rust lengths in one transaction (len() opens one each)
            lengths = [self.text(name).integrated.len(txn._txn) for name, _ in TEXT_LIMITS]
        self.small = all(length <= limit for length, (_, limit) in zip(lengths, TEXT_LIMITS, strict=True))
        if self.small:
            return None
        bounds = self.bounds()
        for index, (name, limit) in enumerate(TEXT_LIMITS):
            if lengths[index] <= limit:
                continue
            text = self.text(name)
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

    def document_over(self, update: bytes) -> str | None:
        """"document" when an update just applied takes the document past DOCUMENT_MAX_BYTES
        (TEXT_LIMITS bound only title and body: a writer could grow ``meta`` or other roots
        forever, and with them every version row and joiner's step 2). Other root types are
        allowed: stock Yjs clients and the shared load harness (a Map "ts") use their own, and
        the cap bounds them all. The size is that of the room's stored history (``base`` + ``tail``,
        which the document's encoding never exceeds by much): O(1), no encode."""
        if len(self.base) + self.tail_bytes + len(update) > DOCUMENT_MAX_BYTES:
            return "document"
        return None
