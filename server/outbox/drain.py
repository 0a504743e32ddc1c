"""The outbox drain: turns committed ``event_outbox`` rows into broker events, exactly once and in
order per channel:

1. One node drains: the one whose drain connection holds a PostgreSQL advisory lock (it keeps it
   for the life of that session; another node takes over when the session ends). Pending rows get
   their channel event id (``seq``) from ``event_channels`` in one statement that commits before
   anything is published, so the id of an event never changes, whatever fails later.
2. Each row is published with its id; the broker's append is idempotent per id (a Lua script on
   Redis), so a retry after a crash or a Redis outage never duplicates.
3. Rows are marked published. Until then they stay pending: writes keep returning 2xx while
   Redis is down, and their events go out, in order, once it is back.

The drain wakes on ``NOTIFY event_outbox`` (a trigger fires it at each commit that inserted
rows, on any node), on Redis reconnects, and every ``SWEEP_S`` as a safety net. When the broker
has lost its history (a fresh in-process broker, Redis restarted without persistence), the
drain first puts back the retained history from the outbox rows (the last ``event_history`` per
channel). Published rows older than ``event_history_seconds`` are pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from realtime.broker import Broker
from server.db import libpq_dsn
from server.settings import Settings

log = logging.getLogger("scriptorium.live")

DRAIN_LOCK = 0x5C21_0E0B  # pg advisory lock key of the outbox drain
SWEEP_S = 1.0
BATCH = 500
# One statement (its own transaction): a batch of pending rows, oldest first, where the fresh
# ones get the next ids of their channels from event_channels. Rows that already have an id (a
# drain that stopped before marking them) keep it and go out again (the broker ignores ids it has).
_TAKE_BATCH = """
WITH batch AS (
    SELECT id, channel, event, data, seq FROM event_outbox
    WHERE published_at IS NULL ORDER BY seq NULLS LAST, id LIMIT $1
), fresh AS (
    SELECT id, channel, row_number() OVER (PARTITION BY channel ORDER BY id) AS k
    FROM batch WHERE seq IS NULL
), counts AS (
    SELECT channel, count(*) AS n FROM fresh GROUP BY channel
), reserved AS (
    INSERT INTO event_channels AS ec (channel, last_id)
    SELECT channel, n FROM counts ORDER BY channel
    ON CONFLICT (channel) DO UPDATE SET last_id = ec.last_id + EXCLUDED.last_id
    RETURNING channel, last_id
), numbered AS (
    SELECT f.id, r.last_id - c.n + f.k AS seq
    FROM fresh f JOIN counts c USING (channel) JOIN reserved r USING (channel)
), assigned AS (
    UPDATE event_outbox o SET seq = n.seq FROM numbered n WHERE o.id = n.id RETURNING o.id, o.seq
)
SELECT b.id, b.channel, b.event, b.data::text AS data, coalesce(a.seq, b.seq) AS seq
FROM batch b LEFT JOIN assigned a USING (id)
ORDER BY b.channel, 5
"""
PRUNE_EVERY_S = 600.0
RESTORE_PAGE = 500  # channels read per statement when restoring a broker's history


class OutboxDrain:
    """Publishes committed outbox rows to the broker (see the module docstring).

    One dedicated asyncpg connection LISTENs and, on the node that holds the advisory lock (the
    leader, for as long as that connection lives), drains: one statement takes a batch of
    pending rows and gives the fresh ones their channel ids (autocommit: the ids are durable when
    it returns), the events are published, one statement marks them. Other nodes try to take the
    lock on each wake-up, so a dead leader's session (and lock) is replaced within a sweep.
    """

    def __init__(self, engine: AsyncEngine, broker: Broker, settings: Settings) -> None:
        self.engine = engine
        self.broker = broker
        self.settings = settings
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._leader = False
        self._pruned_at = 0.0

    def kick(self) -> None:
        """Drain soon (safe to call from any callback on the loop)."""
        self._wake.set()

    async def start(self) -> None:
        with contextlib.suppress(Exception):
            await self.drain_once()  # history back before the first socket (when leader)
        self._task = asyncio.create_task(self._run(), name="outbox-drain")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._leader = False  # a new session holds no lock
        assert self.settings.database_url
        dsn = libpq_dsn(self.settings.database_url)
        # named, so pg_stat_activity shows which node (and process) drains
        conn = await asyncpg.connect(dsn, server_settings={
            "application_name": f"scriptorium-drain node={self.settings.node_id} pid={os.getpid()}"})
        await conn.add_listener("event_outbox", lambda *_: self.kick())
        self._conn = conn
        return conn

    async def _disconnect(self) -> None:
        conn, self._conn, self._leader = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SWEEP_S)
            self._wake.clear()
            try:
                await self.drain_once()
                backoff = 0.1
                if self._leader:
                    await self._maybe_prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox drain failed; retrying", extra={"error": f"{type(exc).__name__}: {exc}"})
                if isinstance(exc, (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)):
                    await self._disconnect()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                self._wake.set()

    async def drain_once(self) -> bool:
        """Publish everything pending; False when another node is the drainer."""
        conn = await self._connection()
        if not self._leader:
            self._leader = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", DRAIN_LOCK))
            if not self._leader:
                return False
        if await self.broker.needs_restore():
            await self._restore()
            await self.broker.mark_restored()
        while True:
            rows = await conn.fetch(_TAKE_BATCH, BATCH)
            for row in rows:  # ids are durable now; per channel in id order
                await self.broker.publish(row["channel"], row["event"], row["data"], id=row["seq"])
            if rows:
                await conn.execute("UPDATE event_outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                                   [row["id"] for row in rows])
            if len(rows) < BATCH:
                return True

    async def _restore(self) -> None:
        """Put the retained history back into a broker that lost it: channel by channel (pages of
        ``RESTORE_PAGE`` channels, one statement for a channel's newest ``event_history`` rows), so
        memory holds one channel's history at a time however many channels there are."""
        started, channels, events, after = time.monotonic(), 0, 0, ""
        async with self.engine.connect() as conn:
            while True:
                # The newest id each channel had published: pending ids must still go out after it.
                page = (await conn.execute(text(
                    "SELECT c.channel, COALESCE((SELECT min(o.seq) - 1 FROM event_outbox o"
                    " WHERE o.channel = c.channel AND o.published_at IS NULL AND o.seq IS NOT NULL),"
                    " c.last_id) AS last_id FROM event_channels c WHERE c.channel > :after"
                    " ORDER BY c.channel LIMIT :n"
                ), {"after": after, "n": RESTORE_PAGE})).all()
                for channel, last_id in page:
                    rows = (await conn.execute(text(
                        "SELECT seq, event, data::text AS data,"
                        " (extract(epoch FROM created_at) * 1000)::bigint AS ms FROM event_outbox"
                        " WHERE channel = :channel AND seq IS NOT NULL AND published_at IS NOT NULL"
                        " ORDER BY seq DESC LIMIT :keep"
                    ), {"channel": channel, "keep": self.settings.event_history})).all()
                    await self.broker.restore(
                        channel, [(row.seq, row.event, row.data, row.ms) for row in reversed(rows)], int(last_id))
                    channels, events = channels + 1, events + len(rows)
                await conn.commit()  # no transaction (and its locks) held across pages
                if len(page) < RESTORE_PAGE:
                    break
                after = page[-1].channel
        log.info("restored live history", extra={
            "channels": channels, "events": events, "ms": round((time.monotonic() - started) * 1000)})

    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        async with self.engine.begin() as conn:
            await conn.execute(text(
                "DELETE FROM event_outbox WHERE published_at IS NOT NULL "
                "AND published_at < now() - make_interval(secs => :s)"
            ), {"s": self.settings.event_history_seconds})
