"""Redis broker: a Stream per channel for history, Pub/Sub for live fan-out across nodes, on one
Redis or on a Redis Cluster (``REDIS_URL``, see :mod:`wire.redis`).

Keys (all under ``prefix``, each with the channel as its hash tag, so one channel's keys share a
Cluster slot): ``<p>:ev:{<channel>}`` the stream (entry id ``<event id>-0``, fields ``e`` event
name, ``d`` data JSON, ``t`` created ms), ``<p>:last:{<channel>}`` the newest id. ``<p>:epoch`` is
one global key, present while Redis still holds what we wrote (gone after a restart without
persistence: the owner then restores history from PostgreSQL). Live events go to the channel
``<p>:live:{<channel>}`` (``PUBLISH``; ``SPUBLISH`` to the slot's shard on a cluster), published
by the same script that appends them.

Per-node interest: a node subscribes to the live channel of a channel only while it has local
listeners for it (the first ``subscribe`` subscribes and waits for Redis to confirm, the last
``unsubscribe`` unsubscribes), so its Redis traffic grows with what it serves. It keeps, per
channel, the last id it delivered: a gap (a reconnect, a failover, a lost message) is filled
from the stream and nothing is delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from realtime.broker import Broker, Event, HistoryPolicy, Listener, Listeners, Reset, now_ms, to_json
from wire.redis import Subscriber, connect, is_cluster, tagged

SUBSCRIBE_WITHIN_S = 5.0  # how long subscribe() waits for Redis to confirm a new subscription

log = logging.getLogger("scriptorium.realtime.redis")

# The history policy on one stream (realtime.broker.HistoryPolicy): never more than ``cap``
# entries; beyond ``keep``, the oldest entries older than ``maxage`` ms go, at most ``scan`` of
# them per call (a script runs alone in Redis, so it stays short). Entry field 6 is 't' (ms).
_TRIM = """
local function trim(s, now, keep, maxage, cap, scan)
  local len = redis.call('XLEN', s)
  if len > cap then
    redis.call('XTRIM', s, 'MAXLEN', cap)
    len = cap
  end
  if len > keep then
    -- the oldest entry alone first: nothing expired (the usual case) copies one entry, not scan
    local first = redis.call('XRANGE', s, '-', '+', 'COUNT', 1)
    if #first == 0 or tonumber(first[1][2][6]) > now - maxage then return end
    local old = redis.call('XRANGE', s, '-', '+', 'COUNT', math.min(len - keep, scan))
    local drop = 0
    for i = 1, #old do
      if tonumber(old[i][2][6]) <= now - maxage then drop = drop + 1 else break end
    end
    if drop > 0 then redis.call('XTRIM', s, 'MAXLEN', len - drop) end
  end
end
"""

# Idempotent append + trim + publish, atomically. Returns the id and whether it was appended.
_PUBLISH = _TRIM + """
local s, lastkey = KEYS[1], KEYS[2]
local last = tonumber(redis.call('GET', lastkey) or '0')
local id
if ARGV[1] == '' then
  id = last + 1
else
  id = tonumber(ARGV[1])
  if id <= last then return {id, 0} end
end
local now = tonumber(ARGV[4])
local ts = ARGV[10]
if ts == '' then ts = ARGV[4] end
redis.call('XADD', s, id .. '-0', 'e', ARGV[2], 'd', ARGV[3], 't', ts)
redis.call('SET', lastkey, id)
trim(s, now, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), 100)
if ARGV[9] == '1' then
  redis.call(ARGV[11], ARGV[8], id .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3])
end
return {id, 1}
"""

# Restore (a broker that lost its history): many events of one channel in one call, none fanned
# out. ARGV: now, keep, max age, cap, then (id, event, data, created_ms) per event, in id order;
# ids the stream already has are skipped (a retry, or a live publish that got there first). Then
# the history policy, as _PUBLISH applies it.
_RESTORE = _TRIM + """
local s, lastkey = KEYS[1], KEYS[2]
local last = tonumber(redis.call('GET', lastkey) or '0')
local now, keep, maxage, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local added = 0
for i = 5, #ARGV, 4 do
  local id = tonumber(ARGV[i])
  if id > last then
    redis.call('XADD', s, id .. '-0', 'e', ARGV[i + 1], 'd', ARGV[i + 2], 't', ARGV[i + 3])
    last = id
    added = added + 1
  end
end
if added > 0 then
  redis.call('SET', lastkey, last)
  trim(s, now, keep, maxage, cap, 1000)
end
return added
"""
# What one restore call carries at most: Redis runs a script alone, so a call stays short.
RESTORE_EVENTS_PER_CALL = 200
RESTORE_BYTES_PER_CALL = 1 << 20

_RAISE_LAST = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > last then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


def _entry_id(raw: str) -> int:
    return int(raw.split("-", 1)[0])


class RedisBroker(Broker):
    """History in Redis Streams, live events over Pub/Sub; see the module docstring."""

    def __init__(self, url: str, prefix: str = "scriptorium", policy: HistoryPolicy | None = None) -> None:
        self.policy = policy or HistoryPolicy()
        self.prefix = prefix
        self.url = url
        self.cluster = is_cluster(url)
        self._publish_command = "SPUBLISH" if self.cluster else "PUBLISH"
        if self.cluster:
            # RedisCluster: a pool per master, MOVED/ASK followed, topology refreshed on errors
            # (a failover); the outbox drain retries what fails meanwhile.
            self.redis: Any = connect(url, decode_responses=True, socket_connect_timeout=2,
                                      socket_timeout=5, max_connections=64)
        else:
            # No hidden retries: errors surface, and the listener resynchronises itself. A bounded
            # pool that makes callers wait for a connection: a reconnect storm of 1,000 sockets
            # queues its reads instead of failing with "Too many connections".
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=64, timeout=10, socket_timeout=5, decode_responses=True,
                socket_connect_timeout=2, retry=Retry(NoBackoff(), 0), health_check_interval=0)
            self.redis = aioredis.Redis(connection_pool=pool)
        self._publish = self.redis.register_script(_PUBLISH)
        self._raise_last = self.redis.register_script(_RAISE_LAST)
        self._restore = self.redis.register_script(_RESTORE)
        self._listeners = Listeners()
        self._cursor: dict[str, int] = {}
        self._opening: dict[str, asyncio.Future[None]] = {}
        self._missed: set[str] = set()  # live messages that came while the cursor was being read
        self.subscriber = Subscriber(url, self._on_message, self._on_connected, name="broker")
        self.on_reconnect: Callable[[], None] | None = None
        self._ready = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.subscriber.connected

    # keys ------------------------------------------------------------------------------

    def _stream(self, channel: str) -> str:
        return tagged(self.prefix, "ev", channel)

    def _last(self, channel: str) -> str:
        return tagged(self.prefix, "last", channel)

    def _live(self, channel: str) -> str:
        return tagged(self.prefix, "live", channel)

    @property
    def _epoch(self) -> str:
        return f"{self.prefix}:epoch"

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self.cluster:
            # Learn the topology before the first commands: redis-py initialises a cluster client
            # lazily, and concurrent first commands race with that (a connection reset under one
            # of them). Unreachable now: the first command retries it.
            with contextlib.suppress(Exception):
                await self.redis.initialize()
        await self.subscriber.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 5)

    async def close(self) -> None:
        await self.subscriber.stop()
        for opening in self._opening.values():
            opening.cancel()
        if self.cluster:
            await self.redis.aclose()
        else:
            await self.redis.aclose(close_connection_pool=True)

    # writing ----------------------------------------------------------------------------

    async def _append(self, channel: str, event: str, data_json: str, id: int | None,
                      *, fan_out: bool, created_ms: int | None = None) -> int:
        policy = self.policy
        result = await self._publish(
            keys=[self._stream(channel), self._last(channel)],
            args=["" if id is None else id, event, data_json, now_ms(), policy.keep,
                  int(policy.max_age_s * 1000), policy.cap, self._live(channel),
                  "1" if fan_out else "0", "" if created_ms is None else created_ms, self._publish_command],
        )
        return int(result[0])

    async def publish(self, channel: str, event: str, data: dict[str, Any] | str, *,
                      id: int | None = None) -> int:
        return await self._append(channel, event, to_json(data), id, fan_out=True)

    async def signal(self, channel: str, event: str, data: dict[str, Any]) -> None:
        payload = f"-\n{event}\n{to_json(data)}"
        if self.cluster:
            await self.redis.spublish(self._live(channel), payload)
        else:
            await self.redis.publish(self._live(channel), payload)

    async def restore(self, channel: str, events: list[tuple[int, str, str, int]], last_id: int) -> None:
        """A call per ``RESTORE_EVENTS_PER_CALL`` events or ``RESTORE_BYTES_PER_CALL`` bytes
        (a round trip per event made a restart of Redis under a long history take minutes)."""
        keys = [self._stream(channel), self._last(channel)]
        policy = self.policy
        head: list[str | int] = [now_ms(), policy.keep, int(policy.max_age_s * 1000), policy.cap]
        args, size = list(head), 0
        for id, event, data_json, created_ms in events:
            args += [id, event, data_json, created_ms]
            size += len(data_json) + len(event)
            if len(args) >= len(head) + 4 * RESTORE_EVENTS_PER_CALL or size >= RESTORE_BYTES_PER_CALL:
                await self._restore(keys=keys, args=args)
                args, size = list(head), 0
        if len(args) > len(head):
            await self._restore(keys=keys, args=args)
        await self._raise_last(keys=[self._last(channel)], args=[last_id])

    async def needs_restore(self) -> bool:
        return not await self.redis.exists(self._epoch)

    async def mark_restored(self) -> None:
        await self.redis.set(self._epoch, str(now_ms()))

    # reading ----------------------------------------------------------------------------

    async def last_id(self, channel: str) -> int:
        raw = await self.redis.get(self._last(channel))
        return int(raw) if raw else 0

    async def _range(self, channel: str, after: int, upto: int | None, limit: int | None) -> list[Event]:
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrange(
            self._stream(channel), min=f"{after + 1}-0", max="+" if upto is None else f"{upto}-0", count=limit)
        return [Event(channel, _entry_id(raw_id), fields["e"], fields["d"]) for raw_id, fields in entries]

    async def read_since(self, channel: str, since: int, *, limit: int | None = None) -> list[Event] | Reset:
        last = await self.last_id(channel)
        if since >= last:
            return []
        events = await self._range(channel, since, None, limit)
        if not events or events[0].id != since + 1:
            return Reset(channel, last)
        return events

    async def ping(self) -> None:
        await self.redis.ping()

    # live ---------------------------------------------------------------------------------

    async def subscribe(self, channel: str, listener: Listener) -> None:
        if self._listeners.add(channel, listener):
            self._opening[channel] = asyncio.ensure_future(self._open(channel))
        opening = self._opening.get(channel)
        if opening is None:
            return
        try:
            await asyncio.shield(opening)
        except BaseException:
            await self.unsubscribe(channel, listener)
            raise

    async def _open(self, channel: str) -> None:
        """The first local listener of ``channel``: subscribe, wait until Redis confirms, then
        take the channel's last id as the cursor. Every event published after the confirmation
        arrives live; one whose message came while the last id was being read (and was dropped)
        is filled from the stream."""
        me = asyncio.current_task()
        live = self._live(channel)
        try:
            self.subscriber.want(live)
            if not await self.subscriber.ready(live, SUBSCRIBE_WITHIN_S):
                raise RedisConnectionError(f"redis did not confirm the subscription to {channel}")
            cursor = await self.last_id(channel)
            if channel in self._listeners.by_channel and channel not in self._cursor:
                self._cursor[channel] = cursor
                if channel in self._missed:
                    self._missed.discard(channel)
                    await self._fill(channel, None)
        finally:
            if self._opening.get(channel) is me:
                del self._opening[channel]

    async def unsubscribe(self, channel: str, listener: Listener) -> None:
        if self._listeners.remove(channel, listener):
            self._cursor.pop(channel, None)
            self._missed.discard(channel)
            self.subscriber.drop(self._live(channel))

    async def _fill(self, channel: str, newest: Event | None) -> None:
        """Deliver the stream's events after the channel's cursor, up to ``newest`` (a live
        message that arrived after a gap) or to the end of the stream."""
        cursor = self._cursor.get(channel)
        if cursor is None:
            return
        upto = newest.id if newest is not None else None
        events = await self._range(channel, cursor, upto, None)
        cursor = self._cursor.get(channel)  # another fill may have delivered meanwhile
        if cursor is None:  # unsubscribed meanwhile
            return
        if newest is not None and (not events or events[-1].id != newest.id):
            events.append(newest)
        events = [event for event in events if event.id is not None and event.id > cursor]
        if events and events[0].id != cursor + 1:
            # The events in between are no longer kept: the readers must refetch.
            self._listeners.deliver(channel, Reset(channel, events[-1].id or 0))
        for event in events:
            assert event.id is not None
            if event.id > self._cursor.get(channel, event.id):
                self._cursor[channel] = event.id
                self._listeners.deliver(channel, event)

    async def _on_message(self, live: str, raw: bytes) -> None:
        channel = live[len(self.prefix) + 7:-1]  # "<prefix>:live:{" channel "}"
        cursor = self._cursor.get(channel)
        if cursor is None:
            if channel in self._opening:
                self._missed.add(channel)
            return
        head, event_name, data_json = raw.decode().split("\n", 2)
        if head == "-":
            self._listeners.deliver(channel, Event(channel, None, event_name, data_json))
            return
        id = int(head)
        if id <= cursor:
            return
        event = Event(channel, id, event_name, data_json)
        if id == cursor + 1:
            self._cursor[channel] = id
            self._listeners.deliver(channel, event)
            return
        await self._fill(channel, event)

    async def _on_connected(self, first: bool) -> None:
        self._ready.set()
        if first:
            return
        log.info("redis listener reconnected; catching up")
        # A failure here (a shard still failing over) ends this connection too: the subscriber
        # reconnects and the catch-up runs again.
        for channel in list(self._cursor):
            await self._fill(channel, None)
        if self.on_reconnect is not None:
            self.on_reconnect()
