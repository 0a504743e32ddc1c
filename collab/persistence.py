"""Durability of the rooms: the batched update log, "saved" answers, materialisation, versions, compaction.

Updates applied on this node are queued (:meth:`Persistence.queue`) and appended to the store in
batches every ``flush_interval``; because they are committed in order, whether everything a socket
sent is saved is a comparison of two counters, and a "query saved" waits only for the batch that
holds its socket's last update. With a relay, an update goes to the other nodes only once it is
committed (persist before relay), and the flush then runs at once. The room's text is written into the lesson row (materialised)
and recorded as versions; the log is compacted into a snapshot past ``compact_threshold`` rows.

Those three writes to shared rows (and the final save at shutdown) are one node's duty per room
at a time, the holder of the room's lease (:class:`PgLeases`, with several nodes): every such write
carries the lease's fencing token and PostgreSQL checks it in the write's own transaction, so a
node paused past its lease (SIGSTOP, a stalled VM) writes nothing stale when it resumes; another
node with the room open takes the lease over once it lapses. A single node (no relay) takes no
lease (:class:`LocalLeases`). The update log itself is not leased: each node appends exactly the
updates its own clients sent (persist before relay), so each update is in the log once.
Depends on the :class:`~collab.store.Store` interface, :mod:`collab.room` and :mod:`collab.protocol`;
what runs when is the manager's (:mod:`collab.manager`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from collab import protocol as p
from collab.room import (
    MERGE_MAX_BYTES,
    MERGE_MAX_UPDATES,
    Peer,
    Room,
    merge_log,
    merged_frame,
    merged_or_none,
    within_limits,
)
from collab.store import Fence, LeaseStore, LessonGone, PendingUpdate, StaleLease, Store
from wire import grid
from wire.worker import WorkerProcess

log = logging.getLogger("scriptorium.collab")

FAILURE_SUMMARY_S = 30.0  # a failing flush logs one summary line this often


def _cause(exc: BaseException) -> str:
    """The innermost cause of a failure, in one line (``ConnectionRefusedError: ...``)."""
    while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return f"{type(exc).__name__}: {exc}"[:300]

FLUSH_BATCH = 5000  # updates per INSERT
# While "saved?" or the other nodes wait, a flush starts at once but at most this often
# (COLLAB_COMMIT_GAP_MS): the updates arriving meanwhile share the next commit. Each commit is a
# statement and a write to PostgreSQL's socket whatever it holds: at 5 ms a room of 500 updates/s
# paid ~200 of them a second (the largest single cost after the socket writes, bench/hocuspocus);
# at 20 ms, 50, for at most that much more delay of a "saved" answer and of the other nodes' copy.
COMMIT_GAP_S = 0.02
WORKER_IDLE_S = 120.0  # the collab worker process (merges) stops after this long without a call

UNFENCED = Fence("", 0)  # a single node's: its writes carry no token


class LocalLeases:
    """One node (no relay): it does every room's duties, and its writes carry no token."""

    async def hold(self, lesson_id: str) -> Fence | None:
        return UNFENCED

    def lost(self, lesson_id: str) -> None:
        pass

    async def release(self, lesson_id: str) -> None:
        pass

    async def release_all(self) -> None:
        pass

    async def renew_forever(self) -> None:
        await asyncio.Event().wait()


class PgLeases:
    """Per-room leases in the store (``collab_leases``), one clock (PostgreSQL's) for every node.

    A room's lease is asked for only when the room has a duty to do (its text changed, a version or
    a compaction is due) and kept while the room is open: renewed for all held rooms in ONE
    statement every ``ttl / 3``, released when the room unloads or the node stops. A node that is
    refused waits until the holder's lease would end before asking again; if the holder died, it
    takes over then (the token grows by one). Locally a lease counts as held only until
    ``ttl * HELD_FRACTION`` after the request that granted or renewed it was sent, so a node that
    was paused past it asks again (and is refused) before writing; the token checked in the
    write's transaction covers a pause between that check and the write."""

    HELD_FRACTION = 0.75

    def __init__(self, store: LeaseStore, node: str, ttl: float) -> None:
        self.store = store
        self.node = node
        self.ttl = ttl
        # Run before the first write under a lease taken from another node (the manager's): that
        # node may have committed updates it never relayed (killed right after the commit), and
        # its successor's text must not miss them.
        self.on_takeover: Callable[[str], Awaitable[None]] | None = None
        self.held: dict[str, tuple[int, float]] = {}  # lesson id -> (token, held until, monotonic)
        self.retry_at: dict[str, float] = {}  # lesson id -> when to ask again (monotonic)

    async def hold(self, lesson_id: str) -> Fence | None:
        """This node's fence for ``lesson_id``'s duties, or None while another node holds it."""
        now = time.monotonic()
        held = self.held.get(lesson_id)
        if held is not None:
            if now < held[1]:
                return Fence(self.node, held[0])
            del self.held[lesson_id]  # lapsed here (paused? the renewals failing?): ask again
        if now < self.retry_at.get(lesson_id, 0.0):
            return None
        answer = await self.store.acquire_lease(lesson_id, self.node, self.ttl)
        if answer.token is None:
            self.retry_at[lesson_id] = time.monotonic() + min(max(answer.remaining, 0.05), self.ttl)
            return None
        self.retry_at.pop(lesson_id, None)
        if self.held.get(lesson_id, (None,))[0] != answer.token:
            log.info("collab lease taken", extra={"lesson_id": lesson_id, "token": answer.token,
                                                  "previous": answer.previous})
        if answer.previous not in (None, self.node) and self.on_takeover is not None:
            await self.on_takeover(lesson_id)
        self.held[lesson_id] = (answer.token, now + self.ttl * self.HELD_FRACTION)
        return Fence(self.node, answer.token)

    def lost(self, lesson_id: str) -> None:
        """A fenced write found the lease gone: forget it (asked again at the next duty)."""
        self.held.pop(lesson_id, None)

    async def release(self, lesson_id: str) -> None:
        self.retry_at.pop(lesson_id, None)
        held = self.held.pop(lesson_id, None)
        if held is not None:
            await self.store.release_lease(lesson_id, Fence(self.node, held[0]))

    async def release_all(self) -> None:
        for lesson_id in list(self.held):
            try:
                await self.release(lesson_id)
            except Exception:  # it lapses by itself within ttl
                log.exception("collab lease release failed", extra={"lesson_id": lesson_id})

    async def renew_forever(self) -> None:
        while True:
            await grid.sleep(self.ttl / 3)
            if not self.held:
                continue
            sent = time.monotonic()
            asked = {lesson: token for lesson, (token, _) in self.held.items()}
            try:
                renewed = await self.store.renew_leases(self.node, asked, self.ttl)
            except Exception:
                log.exception("collab lease renewal failed")  # they lapse locally in time
                continue
            for lesson, token in asked.items():
                if self.held.get(lesson, (None,))[0] != token:
                    continue  # released or re-taken meanwhile
                if lesson in renewed:
                    self.held[lesson] = (token, sent + self.ttl * self.HELD_FRACTION)
                else:
                    log.warning("collab lease lost", extra={"lesson_id": lesson, "token": token})
                    del self.held[lesson]


Leases = LocalLeases | PgLeases


def _publish_run(relay: Callable[[str, bytes], None] | None, lesson_id: str, run: list[tuple[bytes, bytes]]) -> None:
    """Relay one lesson's committed updates as one frame."""
    if relay is not None and run:
        relay(lesson_id, merged_frame(run))


def log_rows(batch: list[PendingUpdate]) -> list[PendingUpdate]:
    """The rows ``batch`` is written as: each run of a lesson's consecutive updates by one writer
    merged into one row (up to MERGE_MAX_BYTES and MERGE_MAX_UPDATES each), where they came.

    A busy room's log then grows by a row per writer per flush instead of one per keystroke: fewer
    rows to insert, compact and replay, and the same document (a merged update is the updates).
    Runs end where another writer's update of that lesson comes, so every row still follows the
    rows it may depend on, and each row keeps its writer. A run that does not merge (a pycrdt
    panic) stays as its updates. Updates not ``mergeable`` (a lesson other nodes also write) keep a
    row each."""
    runs: list[list[PendingUpdate]] = []
    sizes: list[int] = []
    open_run: dict[str, int] = {}  # lesson id -> index in runs of its last run
    for item in batch:
        index = open_run.get(item.lesson_id)
        if index is not None:
            run = runs[index]
            if (item.mergeable and run[0].mergeable and run[0].actor == item.actor and len(run) < MERGE_MAX_UPDATES
                    and sizes[index] + len(item.update) <= MERGE_MAX_BYTES):
                run.append(item)
                sizes[index] += len(item.update)
                continue
        open_run[item.lesson_id] = len(runs)
        runs.append([item])
        sizes.append(len(item.update))
    if len(runs) == len(batch):
        return batch
    rows: list[PendingUpdate] = []
    for run in runs:
        if len(run) == 1:
            rows.append(run[0])
            continue
        merged = merged_or_none([item.update for item in run])
        if merged is None:
            log.warning("collab updates did not merge for the log: written one by one",
                        extra={"lesson_id": run[0].lesson_id, "updates": len(run)})
            rows.extend(run)
            continue
        rows.append(PendingUpdate(run[0].lesson_id, merged, run[0].actor))
    return rows


class Persistence:
    def __init__(self, store: Store, *, flush_interval: float, compact_threshold: int,
                 commit_gap: float = COMMIT_GAP_S) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.commit_gap = commit_gap
        self.compact_threshold = compact_threshold
        self.pending: list[PendingUpdate] = []
        self.ready = asyncio.Event()
        # updates are queued and committed in order, so "saved?" is a comparison of two counters
        self.enqueued = 0  # updates ever queued for the log
        self.persisted = 0  # of those, committed
        # peer -> (queued count, nonce): only a socket's newest query waits (answering it tells
        # the client that everything it sent before is saved too), so the map is one per socket
        self.saved_waiters: dict[Peer, tuple[int, int]] = {}
        # lesson id -> bytes of its queued updates not committed yet (a failing flush keeps them
        # and retries; the manager bounds this per room, see RoomManager.max_unsaved)
        self.unsaved_bytes: dict[str, int] = {}
        self.failing = False  # the last write to the log failed (and none succeeded since)
        self.on_failure: Callable[[], None] | None = None  # after each failed flush (the manager's)
        # (lesson id, n): n of its committed updates went into rows they share (see log_rows);
        # the manager counts a room's log rows from its updates and takes these off
        self.on_rows_merged: Callable[[str, int], None] | None = None
        # Persist before relay: an update goes to the OTHER nodes only once the batch holding it
        # is committed, so an update a peer on another node has seen survives this node's kill -9
        # (queued here as (its place in the log's order, lesson id, frame); published by
        # ``on_relay`` after the commit). While some wait, the flush runs at once (group commit:
        # each flush waits for the previous one) instead of after ``flush_interval``.
        self.to_relay: list[tuple[int, str, bytes, bytes]] = []  # (place, lesson, frame, update)
        self.on_relay: Callable[[str, bytes], None] | None = None
        self._urgent = asyncio.Event()
        # (lesson id, callback) run once nothing of that lesson is left uncommitted: another
        # node's catch-up is answered from the live document only then (see Cluster.on_relay)
        self._after_commit: list[tuple[str, Callable[[], None]]] = []
        self._lock = asyncio.Lock()
        self._flushed_at = 0.0  # when the background flush last started (time.monotonic())
        self.leases: Leases = LocalLeases()  # the manager's choice
        # Compaction merges in a process of its own (the manager's folds and loads share it): yrs
        # keeps the GIL for a whole merge, so a worker thread held the loop as long as the merge
        # ran (wire/worker.py).
        self.worker = WorkerProcess("collab", idle_s=WORKER_IDLE_S)
        self._compaction = asyncio.Lock()

    async def _fence(self, lesson_id: str, *, duty: bool) -> tuple[bool, dict[str, Fence]]:
        """Whether to write ``lesson_id``'s shared rows now, and the fence to pass the store.

        A duty (maintenance, closing, the final save) is written by the lease holder only. A
        request's own write (a REST edit's materialisation, a version asked for) is fenced when
        this node holds the lease and written unfenced otherwise: the holder writes its newer text
        over it at its next materialisation."""
        fence = await self.leases.hold(lesson_id)
        if fence is UNFENCED:
            return True, {}
        if fence is None:
            return not duty, {}
        return True, {"fence": fence}

    def _stale(self, lesson_id: str, what: str) -> None:
        log.info("collab lease lost before a fenced write: %s not written", what,
                 extra={"lesson_id": lesson_id})
        self.leases.lost(lesson_id)

    def queue(self, update: PendingUpdate) -> None:
        """Queue an applied update for the next batch."""
        self.pending.append(update)
        self.enqueued += 1
        self.unsaved_bytes[update.lesson_id] = self.unsaved(update.lesson_id) + len(update.update)
        self.ready.set()

    def queue_relayed(self, update: PendingUpdate, frame: bytes) -> None:
        """Queue an applied update, and its frame for the other nodes once it is committed."""
        self.queue(update)
        self.to_relay.append((self.enqueued, update.lesson_id, frame, update.update))
        self._urgent.set()

    def _relay_committed(self) -> None:
        """Publish every committed update, in order: a lesson's updates committed together go
        as one merged update (up to MERGE_MAX_BYTES each), one Redis message instead of one per
        keystroke, on this node and on every node that receives it."""
        relay, persisted = self.on_relay, self.persisted
        done = 0
        runs: dict[str, list[tuple[bytes, bytes]]] = {}  # lesson id -> [(frame, update)]
        sizes: dict[str, int] = {}
        for index, lesson_id, frame, update in self.to_relay:
            if index > persisted:
                break
            done += 1
            run = runs.get(lesson_id)
            if run is None:
                runs[lesson_id] = [(frame, update)]
                sizes[lesson_id] = len(update)
                continue
            if sizes[lesson_id] + len(update) > MERGE_MAX_BYTES:
                _publish_run(relay, lesson_id, run)
                run.clear()
                sizes[lesson_id] = 0
            run.append((frame, update))
            sizes[lesson_id] += len(update)
        del self.to_relay[:done]
        for lesson_id, run in runs.items():
            _publish_run(relay, lesson_id, run)

    def after_commit(self, lesson_id: str, callback: Callable[[], None]) -> None:
        """Run ``callback`` now if none of ``lesson_id``'s queued updates is uncommitted, else
        once they are (the flush then runs at once)."""
        if not self.unsaved(lesson_id):
            callback()
            return
        self._after_commit.append((lesson_id, callback))
        self._urgent.set()
        self.ready.set()

    def _run_after_commit(self) -> None:
        waiting = []
        for lesson_id, callback in self._after_commit:
            if self.unsaved(lesson_id):
                waiting.append((lesson_id, callback))
                continue
            try:
                callback()
            except Exception:
                log.exception("collab after-commit callback failed", extra={"lesson_id": lesson_id})
        self._after_commit = waiting

    def unsaved(self, lesson_id: str) -> int:
        """Bytes of ``lesson_id``'s updates queued and not committed yet."""
        return self.unsaved_bytes.get(lesson_id, 0)

    def held_over(self, lesson_id: str, limit: int) -> bool:
        """Whether the log is failing and ``lesson_id`` holds more than ``limit`` unsaved bytes
        (a big update while the log is written normally is saved within a flush interval)."""
        return self.failing and self.unsaved(lesson_id) > limit

    def _rows_merged(self, batch: list[PendingUpdate], rows: list[PendingUpdate]) -> None:
        assert self.on_rows_merged is not None
        fewer: dict[str, int] = {}
        for item in batch:
            fewer[item.lesson_id] = fewer.get(item.lesson_id, 0) + 1
        for row in rows:
            fewer[row.lesson_id] -= 1
        for lesson_id, n in fewer.items():
            if n:
                self.on_rows_merged(lesson_id, n)

    def _committed(self, batch: list[PendingUpdate]) -> None:
        for update in batch:
            left = self.unsaved(update.lesson_id) - len(update.update)
            if left > 0:
                self.unsaved_bytes[update.lesson_id] = left
            else:
                self.unsaved_bytes.pop(update.lesson_id, None)

    # --- "saved" acknowledgements ---------------------------------------------------------

    def ask_saved(self, peer: Peer, nonce: int) -> None:
        """A peer asks whether all it sent is saved: answered now, or when its batch commits."""
        if self.persisted >= self.enqueued:
            peer.sender.push(p.saved_frame(nonce))
        else:  # answered when the batch holding this socket's last update commits
            self.saved_waiters[peer] = (self.enqueued, nonce)

    def forget(self, peer: Peer) -> None:
        self.saved_waiters.pop(peer, None)

    def _answer_saved(self) -> None:
        waiting = {}
        for peer, (queued, nonce) in self.saved_waiters.items():
            if queued <= self.persisted:
                if not peer.sender.closed:
                    peer.sender.push(p.saved_frame(nonce))
            else:
                waiting[peer] = (queued, nonce)
        self.saved_waiters = waiting

    # --- the log ---------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write every pending update to the log now (one INSERT per batch)."""
        async with self._lock:
            while self.pending:
                batch, self.pending = self.pending[:FLUSH_BATCH], self.pending[FLUSH_BATCH:]
                try:
                    rows = log_rows(batch)
                    await self.store.append(rows)
                except BaseException:
                    self.pending[:0] = batch  # keep them: retried by the next flush
                    self.failing = True
                    raise
                self.failing = False
                self.persisted += len(batch)
                self._committed(batch)
                if rows is not batch and self.on_rows_merged is not None:
                    self._rows_merged(batch, rows)
                if self.to_relay:
                    self._relay_committed()
                if self._after_commit:
                    self._run_after_commit()
                if self.saved_waiters:
                    self._answer_saved()

    async def flush_now(self) -> None:
        """Commit every update queued so far before returning (the server's own changes: a REST
        write answers 2xx only once its live update is in the log, like a "saved" answer). On a
        failure the updates stay queued for the background flush, and the error is raised."""
        mark = self.enqueued
        try:
            await self.flush()
        except BaseException:
            self.ready.set()  # the background flush retries them
            raise
        assert self.persisted >= mark  # flush() returns only once nothing is pending

    async def flush_forever(self) -> None:
        # An outage fails every retry (twice a second): the first failure is logged with its
        # traceback, then one line per FAILURE_SUMMARY_S while it lasts, and one when it ends.
        failures, first_failed, summarised = 0, 0.0, 0.0
        while True:
            await self.ready.wait()
            if not self._urgent.is_set():  # nothing for other nodes waits: batch for an interval
                # ending on the node's timer grid (wire/grid.py), in a wake-up the node makes
                # anyway: a node edited steadily ended a batch interval every 50-100 ms
                with contextlib.suppress(TimeoutError):
                    wait = self.flush_interval
                    if wait > 0:
                        wait = grid.after(wait, min(grid.GRID_S, wait)) - asyncio.get_running_loop().time()
                    await asyncio.wait_for(self._urgent.wait(), wait)
            # Something waits ("saved?", the other nodes): flush now, but at most one flush
            # starts per ``commit_gap``, so a steady stream of edits is committed in groups instead
            # of one transaction per update (each costs a pool checkout, a statement, a commit).
            gap = self._flushed_at + self.commit_gap - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
            self._flushed_at = time.monotonic()
            self.ready.clear()
            self._urgent.clear()
            try:
                await self.flush()
            except Exception as exc:
                now = time.monotonic()
                if failures == 0:
                    first_failed = summarised = now
                    log.exception("collab flush failed; retrying every 0.5 s (%s)", _cause(exc))
                elif now - summarised >= FAILURE_SUMMARY_S:
                    summarised = now
                    log.warning("collab flush still failing after %d retries in %.0f s, %d update(s) "
                                "unsaved (%s)", failures, now - first_failed, len(self.pending), _cause(exc))
                failures += 1
                if self.on_failure is not None:
                    self.on_failure()
                self.ready.set()
                await asyncio.sleep(0.5)
            else:
                if failures:
                    log.warning("collab flush recovered after %d failed attempt(s) in %.0f s",
                                failures, time.monotonic() - first_failed)
                    failures = 0

    async def merge(self, updates: list[bytes]) -> tuple[bytes, bytes]:
        """:func:`merge_log` in the worker process."""
        return await self.worker.run(merge_log, updates)

    async def compact(self, room: Room) -> None:
        """Merge the room's stored log into a snapshot (run as a background task)."""
        try:
            await self.flush()
            allowed, fence = await self._fence(room.lesson_id, duty=True)
            if not allowed:  # the lease holder compacts (counting from here again: a takeover)
                room.log_rows = 0
                return
            # One compaction at a time: their merges queue in one worker process anyway, and each
            # holds a transaction and a pool connection while it waits (a restart's rooms, all
            # past the threshold at once, would take the pool from the log's flushes).
            async with self._compaction:
                merged = await self.store.compact(room.lesson_id, self.merge, **fence)
            room.log_rows = max(0, room.log_rows - merged)
        except StaleLease:
            self._stale(room.lesson_id, "compaction")
        except Exception:
            log.exception("collab compaction failed", extra={"lesson_id": room.lesson_id})
        finally:
            room.compacting = False

    # --- the lesson row and versions ------------------------------------------------------

    async def materialise(self, room: Room, *, duty: bool = True) -> None:
        """The room's text into the lesson row (when it changed since this room wrote it). A
        ``duty`` only by the lease holder; a room that is not stays dirty, to take over if the
        holder goes."""
        room.materialised_at = time.monotonic()
        title, body = room.texts()
        if room.materialised == (title, body):
            room.dirty = False
            return  # nothing changed since this room last wrote it: no query, no render
        if not within_limits(title, body):  # e.g. concurrent edits of two nodes
            room.dirty = False
            log.warning("collab text over its limit, not materialised", extra={"lesson_id": room.lesson_id})
            return
        allowed, fence = await self._fence(room.lesson_id, duty=duty)
        if not allowed:
            return
        room.dirty = False
        title, body = room.texts()  # again: a takeover's catch-up may have changed it
        if not within_limits(title, body):
            return
        try:
            await self.store.materialise(room.lesson_id, title, body, **fence)
        except StaleLease:
            room.dirty = True
            self._stale(room.lesson_id, "lesson text")
            return
        room.materialised = (title, body)

    async def record_version(self, room: Room, reason: str, *, duty: bool = True) -> str | None:
        """Record the room's text and state as a version; its id, or None when another node's
        lease makes it that node's duty (or the lease was lost)."""
        allowed, fence = await self._fence(room.lesson_id, duty=duty)
        if not allowed:
            return None
        title, body = room.texts()
        contributors = sorted(room.contributors)
        changed = room.changed_since_version
        room.contributors.clear()
        room.changed_since_version = False
        room.last_version_at = time.monotonic()
        try:
            return await self.store.record_version(room.lesson_id, title=title, body=body,
                                                   state=room.doc.get_update(), contributors=contributors,
                                                   reason=reason, **fence)
        except StaleLease:
            room.contributors.update(contributors)
            room.changed_since_version = changed
            self._stale(room.lesson_id, "version")
            return None

    async def close_room(self, room: Room) -> None:
        """A room is closing (unloaded, or emptied): its text into the lesson row, and a version
        when it changed since the last one (the caller flushed the log)."""
        await self.materialise(room)
        if room.changed_since_version and not room.peers:
            await self.record_version(room, "close")

    async def release(self, room: Room) -> None:
        """The room unloaded: its lease goes (another node with the room open takes it at once)."""
        try:
            await self.leases.release(room.lesson_id)
        except Exception:  # it lapses by itself
            log.exception("collab lease release failed", extra={"lesson_id": room.lesson_id})

    async def final(self, rooms: Iterable[Room]) -> None:
        """At shutdown: the last flush, then every room closed. Nothing is swallowed: an update,
        text or version that could not be saved is logged with what it concerned."""
        try:
            await self.flush()
        except Exception:
            log.exception("collab final flush failed: %d update(s) not saved", len(self.pending),
                          extra={"lesson_ids": sorted({u.lesson_id for u in self.pending})})
        for room in rooms:
            try:
                await self.materialise(room)
                if room.changed_since_version:
                    await self.record_version(room, "close")
            except LessonGone:
                log.info("collab room's lesson is gone", extra={"lesson_id": room.lesson_id})
            except Exception:
                log.exception("collab final save of a room failed", extra={"lesson_id": room.lesson_id})
        await self.leases.release_all()
