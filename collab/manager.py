"""All rooms of this node and their API: :class:`RoomManager`.

The server builds one :class:`RoomManager` at startup with a :class:`~collab.store.Store`, an
``authorize`` and a ``recheck`` callable and (with Redis) a relay, and exposes it as
``services.rooms``. Other code changes documents only through :meth:`RoomManager.apply` and
friends, so every change is persisted, broadcast and relayed exactly like a client's.

The manager owns the rooms' lifecycle (load, unload), the maintenance loop (materialise, versions,
compaction, resync, unload) and the one path every change takes (:meth:`RoomManager.client_update`
for a client's, with its limits and poison checks; :meth:`RoomManager.apply` for the server's).
The rest is delegated, one job per module: access re-checks (:mod:`collab.access`), awareness
(:mod:`collab.awareness`), durability (:mod:`collab.persistence`), other nodes
(:mod:`collab.cluster`), message dispatch (:mod:`collab.receiver`); connections
(:mod:`collab.connection`) call :meth:`admit`, :meth:`join`, ``receiver.receive`` and
:meth:`leave`. Depends on those and on :mod:`collab.room`; never on a connection type.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from pycrdt import Doc, Map, Text, merge_updates

from collab import protocol as p
from collab.access import (
    AccessWatch,
    Authorize,
    Grant,
    Recheck,
    RecheckMany,
    Scope,
    recheck_room,
    recheck_rooms,
)
from collab.awareness import Awareness
from collab.cluster import Cluster
from collab.persistence import COMMIT_GAP_S, Leases, Persistence, PgLeases
from collab.receiver import Receiver
from collab.relay import KIND_UPDATE, Relay
from collab.room import (
    CHECKPOINT_FOLD_UPDATES,
    INLINE_MERGE_BYTES,
    TEXT_FIELDS,
    TEXT_LIMITS,
    Link,
    Peer,
    Room,
    TextTooLong,
    apply_new,
    check_update,
    deletes_only,
    lesson_key,
    merge_parts,
    prepare_log,
    replay,
    replay_skipping,
    seed_update,
    update_digest,
)
from collab.sender import Coalescer
from collab.store import LessonGone, PendingUpdate, Store
from collab.textdiff import apply_text
from wire import grid
from wire.websocket import CLOSE_STORAGE_UNAVAILABLE, CLOSE_TOO_LARGE

log = logging.getLogger("scriptorium.collab")

MAINTENANCE_S = 0.25  # each room's maintenance (materialise, versions, compaction, unload) this often
RECHECK_SLICES = 8  # the re-check round is spread over its interval in this many turns
# With access changes watched (``access_watch``), a full round runs when one is notified, and
# at least this often anyway (what a watch could miss: triggers disabled by a restore, a
# connection lost without notice until its next liveness check).
RECHECK_SAFETY_S = 60.0
CLOSE_SERVICE_RESTART = 1012  # a draining node: reconnect (to another node, or to this one restarted)

T = TypeVar("T")


def _replay_here(lesson_id: str, updates: list[bytes]) -> tuple[Doc[Any], bytes]:
    """A stored log's document and merged base, on this thread."""
    doc = replay(updates)
    if doc is None:  # a log poisoned before updates were checked (apply_checked)
        doc, updates = replay_skipping(lesson_id, updates)
    return doc, (merge_updates(*updates) if len(updates) > 1 else (updates[0] if updates else b""))


class RoomManager:
    """All rooms of this node. Connections: :meth:`admit`, :meth:`join`, ``receiver.receive``,
    :meth:`leave`. The server: :meth:`apply`, :meth:`read`, :meth:`texts`, :meth:`edit_text`,
    :meth:`record_version`, :meth:`materialise`, :meth:`flush`."""

    def __init__(self, store: Store, authorize: Authorize, recheck: Recheck, relay: Relay | None = None,
                 *, flush_interval: float = 0.05, materialise_delay: float = 1.0,
                 version_interval: float = 60.0, unload_after: float = 60.0,
                 recheck_interval: float = 2.0, compact_threshold: int = 500,
                 max_queued: int = 16 * 1024 * 1024, sync_burst: int = 8, sync_per_second: float = 2.0,
                 awareness_ids: int = 4, awareness_state_bytes: int = 8 * 1024,
                 receive_per_second: float = 8 * 1024 * 1024, receive_frame_cost: int = 4096,
                 awareness_burst: int = 20, awareness_per_second: float = 10.0,
                 awareness_relay_tick: float = 0.05, max_unsaved: int = 8 * 1024 * 1024,
                 leases: Leases | None = None,
                 recheck_many: RecheckMany | None = None, write_interval: float = 0.0,
                 write_pace_above: float = 0.0, commit_gap: float = COMMIT_GAP_S,
                 access_watch: AccessWatch | None = None) -> None:
        self.store = store
        self.updates_applied = 0  # document updates applied on this node (a metric reads it)
        self.authorize = authorize
        self.recheck = recheck
        self.recheck_many = recheck_many  # the re-check of every room, in batches (else per user)
        self.relay = relay
        self.materialise_delay = materialise_delay
        self.version_interval = version_interval
        self.unload_after = unload_after
        self.recheck_interval = recheck_interval
        self.max_queued = max_queued  # bytes waiting for one client before it is closed 4008
        # bytes of a room's updates not yet committed (the database unreachable) past which its
        # writers are closed 4503: held in memory, never dropped, but not without bound
        self.max_unsaved = max_unsaved
        self.rooms: dict[str, Room] = {}
        self._opening: dict[str, asyncio.Future[Room]] = {}  # rooms being loaded (Task)
        self.persistence = Persistence(store, flush_interval=flush_interval,
                                       compact_threshold=compact_threshold, commit_gap=commit_gap)
        # Merges of a whole document's history (folds, loads, compaction: collab.room's
        # INLINE_MERGE_BYTES), off the event loop and its GIL: the persistence's worker process.
        self.worker = self.persistence.worker
        self.persistence.on_failure = self._check_unsaved
        self.persistence.on_rows_merged = self._rows_merged
        if leases is not None:  # several nodes: PgLeases (see collab.persistence)
            self.persistence.leases = leases
            if isinstance(leases, PgLeases):
                leases.on_takeover = self._catch_up
        if relay is not None:
            self.persistence.on_relay = lambda lesson_id, frame: relay.publish(lesson_id, KIND_UPDATE, frame)
        self.awareness = Awareness(relay, ids=awareness_ids, state_bytes=awareness_state_bytes,
                                   burst=awareness_burst, per_second=awareness_per_second,
                                   relay_tick=awareness_relay_tick)
        self.receiver = Receiver(self, self.awareness, self.persistence, sync_burst=sync_burst,
                                 sync_per_second=sync_per_second, receive_per_second=receive_per_second,
                                 receive_frame_cost=receive_frame_cost)
        self.cluster = Cluster(relay, self.rooms, self.awareness, self.persistence.after_commit)
        # one per node: every sender's frames leave together, at most once per write_interval
        # while the node is busy (from write_pace_above of a core; 0: always)
        self.coalescer = Coalescer(write_interval, pace_above=write_pace_above)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        # access_watch(changed) runs for the node's life and calls changed(True) when a fact of
        # the access decision may have changed (and once it listens), changed(False) when it
        # stops listening. Unwatched, every room is re-checked every round.
        self.access_watch = access_watch
        self.access_watched = False
        self._recheck_left = 0  # slices still to re-check in the round a change started
        self._recheck_full_at = 0.0  # loop time of the last full round's start
        self.recheck_ticks = 0  # slices the re-check loop went through (re-checked or not)
        self.access_epoch = 0  # access changes notified so far

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.relay is not None:
            await self.relay.start()
        self._tasks = [
            asyncio.create_task(self.persistence.flush_forever(), name="collab-flush"),
            asyncio.create_task(self._maintenance_loop(), name="collab-maintenance"),
            asyncio.create_task(self._recheck_loop(), name="collab-recheck"),
            asyncio.create_task(self.persistence.leases.renew_forever(), name="collab-leases"),
        ]
        if self.access_watch is not None:
            watch = asyncio.create_task(self.access_watch(self.access_changed), name="collab-access-watch")
            # should it ever end, every round re-checks every room again
            watch.add_done_callback(lambda _task: self.access_changed(False))
            self._tasks.append(watch)

    def access_changed(self, watched: bool = True) -> None:
        """A fact of the access decision may have changed: every room is re-checked over the
        next round (each within ``recheck_interval`` from the next slice). ``watched`` False: the
        watch stopped listening, so every round re-checks every room until it listens again."""
        self.access_watched = watched
        self.access_epoch += 1
        self._recheck_left = RECHECK_SLICES

    async def drain(self, *, rounds: int = 10) -> None:
        """A node going down (SIGTERM): every room's log flushed and its text materialised, THEN
        every local client closed with 1012 (service restart) so it reconnects elsewhere. The close
        follows the last check without a suspension point in between: everything received from a
        client before it sees 1012 is committed then. Nothing is read from a closed socket; the
        versions and the final save of the rooms follow in :meth:`stop`."""
        for _ in range(rounds):
            try:
                await self.flush()
                for room in list(self.rooms.values()):
                    try:
                        await self.persistence.materialise(room)
                    except LessonGone:
                        log.info("collab room's lesson is gone", extra={"lesson_id": room.lesson_id})
            except Exception:  # the clients still go: they resend their unsaved edits on reconnect
                log.exception("collab drain could not save everything", extra={
                    "pending": len(self.persistence.pending)})
                break
            if not self.persistence.pending and not any(room.dirty for room in self.rooms.values()):
                break
        self._stopping = True  # leaving peers no longer save their rooms one by one: stop() does
        for room in list(self.rooms.values()):
            for peer in list(room.peers):
                peer.sender.close(CLOSE_SERVICE_RESTART, "Service restart")

    async def stop(self) -> None:
        """Final flush, materialisation and versions of every room, then stop the loops. Clients
        still connected (no :meth:`drain` before) are closed 1012 after that final save."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in list(self._background):
            try:
                await asyncio.wait_for(task, 5)
            except asyncio.CancelledError:
                pass
            except Exception:  # the tasks log their own failures; this is the wait's
                log.exception("collab background task did not finish at shutdown",
                              extra={"task": task.get_name()})
        await self.persistence.final(list(self.rooms.values()))
        self.worker.stop()
        for room in list(self.rooms.values()):
            for peer in list(room.peers):
                peer.sender.close(CLOSE_SERVICE_RESTART, "Service restart")
        self.awareness.flush_relay()  # the last removals, before the relay goes
        await self.cluster.stop()
        if self.relay is not None:
            await self.relay.stop()

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def flush(self) -> None:
        """Write every pending update to the log now (one INSERT per batch)."""
        await self.persistence.flush()

    # --- opening and unloading rooms -----------------------------------------------------

    async def open(self, lesson_id: str) -> Room:
        """The live room of a lesson, loaded (and seeded once) from the store when needed."""
        lesson_id = lesson_key(lesson_id)
        room = self.rooms.get(lesson_id)
        if room is not None:
            return room
        opening = self._opening.get(lesson_id)
        if opening is None:
            opening = self._opening[lesson_id] = asyncio.ensure_future(self._open(lesson_id))
            opening.add_done_callback(lambda task: task.cancelled() or task.exception())  # its callers' to see
        return await asyncio.shield(opening)

    async def _open(self, lesson_id: str) -> Room:
        """Load and register a room: a task of the manager's, awaited (shielded) by everyone who
        asked for it, so that one caller giving up (a socket closed mid-open) fails no other."""
        try:
            room = await self._load(lesson_id)
        finally:
            self._opening.pop(lesson_id, None)
        self.rooms[lesson_id] = room
        room.unload_at = time.monotonic() + self.unload_after
        await self.cluster.opened(room)
        return room

    async def _load(self, lesson_id: str) -> Room:
        await self.flush()  # what an unloaded room of this lesson still had pending
        loaded = await self.store.load(lesson_id, seed_update)
        updates = loaded.updates
        if sum(len(update) for update in updates) <= INLINE_MERGE_BYTES:
            doc, base = _replay_here(lesson_id, updates)
        else:
            try:
                doc, base = await self._replay_large(lesson_id, updates)
            except (BrokenProcessPool, OSError):  # no worker process to be had: load it here
                log.exception("collab worker unavailable: room loaded on the event loop",
                              extra={"lesson_id": lesson_id})
                doc, base = _replay_here(lesson_id, updates)
        room = Room(lesson_id, doc, log_rows=loaded.log_rows, writes=self.coalescer, folds=self._fold_soon)
        room.base = base
        for name in TEXT_FIELDS:
            room.text(name)
        room.doc.get("meta", type=Map)
        if loaded.stored_text is not None and room.texts() == loaded.stored_text:
            room.materialised = loaded.stored_text  # the row holds this text already
        now = time.monotonic()
        room.materialised_at = now
        return room

    async def _replay_large(self, lesson_id: str, updates: list[bytes]) -> tuple[Doc[Any], bytes]:
        """A large stored log's document and merged base: the merge and the poison check in the
        worker process, then the updates applied here one at a time, the loop free in between
        (each costs what it cost when it came; the first may be a snapshot of the whole log)."""
        base, kept = await self.worker.run(prepare_log, updates)
        if kept is not None:
            log.warning("skipped %d stored update(s) that break the document", len(updates) - len(kept),
                        extra={"lesson_id": lesson_id})
            updates = [updates[index] for index in kept]
        doc: Doc[Any] = Doc()
        for update in updates:
            await asyncio.sleep(0)
            doc.apply_update(update)
        return doc, base

    def _fold_soon(self, room: Room) -> None:
        room.folding = True
        self._spawn(self._fold(room), f"collab-fold-{room.lesson_id}")

    async def _fold(self, room: Room) -> None:
        """Fold ``room``'s tail into its base in the worker process (see Room.fold_soon)."""
        base, tail = room.base, room.tail[:]
        try:
            merged = await self.worker.run(merge_parts, base, tail)
        except Exception:  # the tail stays; the next fold waits for it to double
            log.exception("collab checkpoint fold failed", extra={"lesson_id": room.lesson_id})
            room.fold_retry_bytes = 2 * room.tail_bytes
            return
        finally:
            room.folding = False
        if room.folded(base, len(tail), merged):
            room.fold_retry_bytes = 0

    async def _catch_up(self, lesson_id: str) -> None:
        """This node took over a room's lease from another node: apply the stored log to the live
        document (the old holder may have committed updates it never relayed, being killed right
        after the commit), and pass what was missing to local peers. Applied only (it is in the log)."""
        room = self.rooms.get(lesson_id)
        if room is None:
            return
        loaded = await self.store.load(lesson_id, seed_update)
        if self.rooms.get(lesson_id) is not room:
            return
        # The old holder wrote the lesson row last, maybe a text this room never had or wrote:
        # compare with the row again at the next materialisation (soon: the room is dirty).
        room.materialised = None
        room.dirty = True
        before = room.doc.get_state()
        changed_any = False
        for update in loaded.updates:
            # A row at a time, the loop free in between (a taken-over room's log may be large).
            await asyncio.sleep(0)
            if self.rooms.get(lesson_id) is not room:
                return
            changed = apply_new(room.doc, update)
            if changed is None:
                log.warning("collab catch-up skipped a stored update", extra={"lesson_id": lesson_id})
                room.rebuild()  # base + tail: the rows applied before it were remembered
            elif changed:
                room.remember(update)
                changed_any = True
        if not changed_any:
            return
        missing = room.doc.get_update(before)
        log.info("collab room caught up from the stored log", extra={"lesson_id": lesson_id})
        room.small = False
        room.broadcast(p.update_frame(missing))
        room.dirty = True
        room.changed_since_version = True

    async def _unload(self, room: Room) -> None:
        await self.flush()
        if room.peers or self.rooms.get(room.lesson_id) is not room:
            return
        del self.rooms[room.lesson_id]
        self.cluster.closed(room)
        try:
            await self.persistence.close_room(room)
        finally:
            room.release_bounds()
            await self.persistence.release(room)
        log.debug("room unloaded", extra={"lesson_id": room.lesson_id})

    async def _emptied(self, room: Room) -> None:
        """The last local client left: flush, materialise, record a version."""
        try:
            await self.flush()
            await self.persistence.close_room(room)
        except LessonGone:
            log.info("collab room's lesson is gone", extra={"lesson_id": room.lesson_id})
        except Exception:
            log.exception("closing room failed", extra={"lesson_id": room.lesson_id})

    # --- connections ----------------------------------------------------------------------

    async def admit(self, scope: Scope, lesson_id: str) -> tuple[Grant, Room]:
        """Who the connection is (the server's ``authorize``) and the loaded room of
        ``lesson_id`` (a :func:`~collab.room.lesson_key`). Raises
        :class:`~collab.access.Denied` (close with its code) or
        :class:`~collab.store.LessonGone` (close 4404)."""
        epoch = self.access_epoch
        grant = await self.authorize(scope, lesson_id)
        grant.epoch = epoch
        return grant, await self.open(lesson_id)

    async def join(self, room: Room, grant: Grant, sender: Link) -> tuple[Room, Peer]:
        """Add a peer reached through ``sender`` to ``room`` (opened again if it was unloaded
        since :meth:`admit`): it is sent sync step 1 and the room's awareness. The room it
        joined, and the peer to pass to ``receiver.receive`` and :meth:`leave`."""
        while self.rooms.get(room.lesson_id) is not room:  # unloaded meanwhile: open it again
            room = await self.open(room.lesson_id)
        peer = Peer(grant, sender, self.receiver.budget(), self.awareness.budget())
        room.peers.append(peer)
        if grant.epoch != self.access_epoch:
            # access changed since its decision was asked for, maybe after the round that
            # followed the change looked at this room: another round, with this peer in it
            self._recheck_left = RECHECK_SLICES
        room.unload_at = None
        room.emptied = False
        peer.sender.push(p.step1_frame(room.doc.get_state()))
        frame = room.awareness_frame()
        if frame is not None:
            peer.sender.push(frame)
        return room, peer

    def leave(self, room: Room, peer: Peer) -> None:
        """A peer's connection ended: its awareness goes, and an emptied room is saved."""
        with contextlib.suppress(ValueError):
            room.peers.remove(peer)
        self.receiver.leave(peer)
        self.persistence.forget(peer)
        self.awareness.leave(room, peer)
        if not room.peers and not self._stopping:
            room.unload_at = time.monotonic() + self.unload_after
            room.emptied = True
            self._spawn(self._emptied(room), f"collab-emptied-{room.lesson_id}")

    # --- changes --------------------------------------------------------------------------

    def client_update(self, room: Room, peer: Peer, update: bytes, frame: bytes | None) -> None:
        """Apply a writer's update (not empty) to ``room``: broadcast, relay, persist; or drop it
        (a copy, a malformed or poisoning one) or refuse it (over a limit: its sender is closed
        4413). ``frame``: the update frame as received, sent on unchanged (None: encoded here).
        Raises :class:`~collab.protocol.ProtocolError` for a malformed update.

        While the room's unsaved updates are over ``max_unsaved`` (its log cannot be written), an
        update is not applied and the room's writers are closed 4503: they keep their edits."""
        if self.persistence.held_over(room.lesson_id, self.max_unsaved):
            self._storage_unavailable(room)
            return
        digest = update_digest(update)
        if digest is not None and digest in room.seen_updates:
            return  # a copy of an update already applied: changes nothing
        check_update(update)
        before = None if room.small else room.text_sizes()
        changed = apply_new(room.doc, update)
        if changed is None:
            self._drop_poison(room, peer)
            return
        if not changed and not deletes_only(update):
            # Every struct was known already: re-sent, it would cost a 2 MiB row,
            # broadcast and relay per copy. (A delete-only update never moves the
            # state vector, so it is kept.)
            room.note_seen(digest)
            return
        room.note_seen(digest)
        over = room.over_limit(before) or room.document_over(update)
        if over is not None:
            self._refuse(room, peer, over)
            return
        out = frame if frame is not None else p.update_frame(update)
        self._changed(room, out, update, peer.grant.user_id, exclude=peer)
        if self.persistence.held_over(room.lesson_id, self.max_unsaved):
            self._storage_unavailable(room)

    def _check_unsaved(self) -> None:
        """After a failed flush: rooms holding more than ``max_unsaved`` close their writers."""
        for room in list(self.rooms.values()):
            if self.persistence.held_over(room.lesson_id, self.max_unsaved):
                self._storage_unavailable(room)

    def _rows_merged(self, lesson_id: str, n: int) -> None:
        """``n`` of the lesson's committed updates share rows of the log (see
        :func:`collab.persistence.log_rows`): its room's count of rows was that many over."""
        room = self.rooms.get(lesson_id)
        if room is not None:
            room.log_rows = max(0, room.log_rows - n)

    def _storage_unavailable(self, room: Room) -> None:
        """The room's log cannot keep up (the database is unreachable) and its unsaved updates are
        over ``max_unsaved``: close its writers 4503. What they sent so far stays queued and is
        written when the database returns; a client keeps its later edits and sends them when it
        reconnects (y-websocket's sync). Readers stay."""
        writers = [peer for peer in room.peers if peer.can_write and not peer.sender.closed]
        if not writers:
            return
        log.warning("collab room's unsaved updates over %d bytes: closing its writers 4503",
                    self.max_unsaved, extra={"lesson_id": room.lesson_id, "writers": len(writers),
                                             "unsaved": self.persistence.unsaved(room.lesson_id)})
        for peer in writers:
            peer.sender.close(CLOSE_STORAGE_UNAVAILABLE,
                              "Storage unavailable: keep your edits and reconnect.")

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

    def _changed(self, room: Room, frame: bytes, update: bytes, actor: str | None,
                 exclude: Peer | None = None) -> None:
        """A change made on this node: broadcast, relay, persist (this node only)."""
        room.remember(update)
        room.broadcast_update(frame, update, exclude)
        self.updates_applied += 1
        if self.relay is not None and self.relay.others_listen(room.lesson_id):
            # Persist before relay: the other nodes get it once it is committed (within about
            # one commit: the flush runs at once), so whatever a peer on another node has seen
            # survives this node's kill -9. Local peers get it at once, as in the y-websocket
            # server: they share this node's fate. This also closes the window where a client's
            # update reaching this node after the same update came from another node over
            # Redis is skipped as a copy: that node committed it before relaying it, so this
            # node's "saved" covers it.
            self.persistence.queue_relayed(PendingUpdate(room.lesson_id, update, actor, mergeable=False), frame)
        else:
            # One node, or no other node on this lesson's channel (see collab.relay): a node
            # that opens the room later asks for what it lacks, and this live document answers.
            self.persistence.queue(PendingUpdate(room.lesson_id, update, actor))
        room.log_rows += 1
        now = time.monotonic()
        if not room.dirty:
            room.dirty = True
        room.changed_at = now
        room.changed_since_version = True
        if actor:
            room.contributors.add(actor)

    # --- background work -----------------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        tick = 0
        while True:
            await grid.sleep(MAINTENANCE_S)  # (a rest after each pass, however long it took)
            tick += 1
            await self._maintain_all(resync=(tick % 60 == 0))

    async def _maintain_all(self, *, resync: bool) -> None:
        # A function of its own: a loop variable left in the loop's frame would keep the last
        # room unloaded (and its document) alive until another room came.
        now = time.monotonic()
        for room in list(self.rooms.values()):
            try:
                await self._maintain(room, now, resync=resync)
            except LessonGone:  # deleted under the room: the access re-check closes its sockets
                log.info("collab room's lesson is gone", extra={"lesson_id": room.lesson_id})
            except Exception:
                log.exception("collab room maintenance failed", extra={"lesson_id": room.lesson_id})

    async def _maintain(self, room: Room, now: float, *, resync: bool) -> None:
        self.awareness.expire_remote(room, now)
        persistence = self.persistence
        if room.dirty and now - room.materialised_at >= self.materialise_delay:
            await persistence.materialise(room)
        if room.changed_since_version and now - room.last_version_at >= self.version_interval:
            await persistence.flush()
            await persistence.record_version(room, "periodic")
        if len(room.tail) >= CHECKPOINT_FOLD_UPDATES:
            room.fold_soon()
        if room.log_rows >= persistence.compact_threshold and not room.compacting:
            room.compacting = True
            self._spawn(persistence.compact(room), f"collab-compact-{room.lesson_id}")
        if resync and room.peers and self.relay is not None:
            self.cluster.resync(room)
        if not room.peers and room.unload_at is not None and now >= room.unload_at:
            room.unload_at = None
            await self._unload(room)

    async def _recheck_loop(self) -> None:
        """Every room's users re-checked once per ``recheck_interval``, a slice of the rooms at a
        time (:data:`RECHECK_SLICES` per interval, each room in one slice by its lesson): a node's
        thousands of (room, user) pairs at once held its event loop for milliseconds every 2 s,
        which a 50-document load saw as its slowest 1 % of deliveries (p99 7-8 ms; 5-6 without
        the re-check).

        With ``access_watch`` listening, a round runs only after a change is notified (each
        room within ``recheck_interval`` of the next slice; a change mid-round starts a new
        round) and at least every :data:`RECHECK_SAFETY_S`: 2,500 (room, user) pairs re-checked
        every 2 s for nothing were ~half of an idle node's CPU."""
        loop = asyncio.get_running_loop()
        tick = self.recheck_interval / RECHECK_SLICES
        turn = 0
        while True:
            # on fixed times (multiples of the tick, with the node's other timers: wire/grid.py):
            # a slow statement delays its own slice, not every later one
            await grid.tick(tick)
            turn = (turn + 1) % RECHECK_SLICES
            self.recheck_ticks += 1
            if self.access_watched:
                # watched: a round only after a change (or the safety interval); a change
                # notified mid-round starts a new one, so every room is re-checked after it
                if self._recheck_left == 0 and loop.time() - self._recheck_full_at >= RECHECK_SAFETY_S:
                    self._recheck_left = RECHECK_SLICES
                if self._recheck_left == 0:
                    continue
                if self._recheck_left == RECHECK_SLICES:
                    self._recheck_full_at = loop.time()
                self._recheck_left -= 1
            rooms = [room for room in self.rooms.values()
                     if room.peers and hash(room.lesson_id) % RECHECK_SLICES == turn]
            if self.recheck_many is not None:
                if not await recheck_rooms(rooms, self.recheck_many) and self.access_watched:
                    self._recheck_left = RECHECK_SLICES  # a failed batch: the round again
                continue
            for room in rooms:
                if room.peers:
                    await recheck_room(room, self.recheck)

    # --- the room API for the rest of the server ------------------------------------------


    async def apply(self, lesson_id: str, change: Callable[[Doc[Any]], T], *, actor: str | None,
                    enforce_limits: bool = False) -> T:
        """Run ``change(doc)`` on the live document of ``lesson_id`` in ONE transaction (opening
        the room if needed), then persist, broadcast and relay the resulting update like a
        client's. ``actor`` is the clerk id credited in the log and version contributors.
        Returns once the update is committed to the log (with everything queued before it), so
        the caller may answer or commit its own rows: see :meth:`Persistence.flush_now`. A failed
        commit raises after the change was applied and broadcast; it stays queued and is retried.

        With ``enforce_limits``, a change that takes a text field over its limit (as a client's
        update would be refused) is undone and :class:`TextTooLong` raised. A change that raises
        is undone too (pycrdt commits what it did before the exception)."""
        room = await self.open(lesson_id)
        before = None if room.small or not enforce_limits else room.text_sizes()
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
        over = room.over_limit(before) if enforce_limits and updates else None
        if over is not None:
            room.rebuild()
            raise TextTooLong(over, dict(TEXT_LIMITS)[over])
        room.small = room.small and enforce_limits
        for update in updates:
            self._changed(room, p.update_frame(update), update, actor)
        if not room.peers and room.unload_at is None:
            room.unload_at = time.monotonic() + self.unload_after
        # Committed before the caller answers: a 2xx of a REST write means the change is in the
        # log (a kill -9 right after it lost it: the room reloaded without it, and its close
        # rewrote the lesson row back). Also when it changed nothing: the text it was judged
        # against (clients' updates still queued) is then committed too. Clients' updates keep
        # the batched path.
        await self.persistence.flush_now()
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
                await self.persistence.materialise(room, duty=False)
        return changed

    async def record_version(self, lesson_id: str, reason: str) -> str | None:
        """Record the current text (and state) as a version now; returns the version id (None:
        this node's lease was lost under the write)."""
        room = await self.open(lesson_id)
        await self.flush()
        return await self.persistence.record_version(room, reason, duty=False)

    async def materialise(self, lesson_id: str) -> None:
        """Write the live text into the lesson row now (no-op when the room is not loaded)."""
        room = self.rooms.get(lesson_key(lesson_id))
        if room is not None:
            await self.persistence.materialise(room, duty=False)

    def peer_count(self) -> int:
        """Clients connected to this node's rooms."""
        return sum(len(room.peers) for room in self.rooms.values())

    def connected(self, lesson_id: str) -> int:
        """How many clients of this node are in the lesson's room."""
        room = self.rooms.get(lesson_key(lesson_id))
        return len(room.peers) if room else 0
