"""Redis broker: a Stream per channel for history, Pub/Sub for live fan-out across nodes.

Keys (all under ``prefix``): ``<p>:ev:<channel>`` the stream (entry id ``<event id>-0``, fields
``e`` event name, ``d`` data JSON, ``t`` created ms), ``<p>:last:<channel>`` the newest id,
``<p>:epoch`` present while Redis still holds what we wrote (gone after a restart without
persistence: the owner then restores history from PostgreSQL). Live events go to the Pub/Sub
channel ``<p>:live:<channel>``; each node listens with one pattern subscription and keeps, per
channel it has listeners for, the last id it delivered, so a gap (a reconnect, a lost message)
is filled from the stream and nothing is delivered twice.
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
from redis.exceptions import RedisError

from realtime.broker import Broker, Event, HistoryPolicy, Listener, Listeners, Reset, now_ms, to_json

log = logging.getLogger("scriptorium.realtime.redis")

# Idempotent append + trim + publish, atomically. Returns the id and whether it was appended.
_PUBLISH = """
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
local keep, maxage, cap = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local len = redis.call('XLEN', s)
if len > cap then
  redis.call('XTRIM', s, 'MAXLEN', cap)
  len = cap
end
if len > keep then
  local n = len - keep
  if n > 100 then n = 100 end
  local old = redis.call('XRANGE', s, '-', '+', 'COUNT', n)
  local drop = 0
  for i = 1, #old do
    if tonumber(old[i][2][6]) <= now - maxage then drop = drop + 1 else break end
  end
  if drop > 0 then redis.call('XTRIM', s, 'MAXLEN', len - drop) end
end
if ARGV[9] == '1' then
  redis.call('PUBLISH', ARGV[8], id .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3])
end
return {id, 1}
"""

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
        # No hidden retries: errors surface, and the listener loop resynchronises itself.
        options: dict[str, Any] = dict(decode_responses=True, socket_connect_timeout=2,
                                       retry=Retry(NoBackoff(), 0), health_check_interval=0)
        # A bounded pool that makes callers wait for a connection: a reconnect storm of 1,000
        # sockets queues its reads instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=10,
                                                        socket_timeout=5, **options)
        self.redis = aioredis.Redis(connection_pool=pool)
        self._listen_client = aioredis.Redis.from_url(url, **options)
        self._publish = self.redis.register_script(_PUBLISH)
        self._raise_last = self.redis.register_script(_RAISE_LAST)
        self._listeners = Listeners()
        self._cursor: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._live_prefix = f"{prefix}:live:"
        self.on_reconnect: Callable[[], None] | None = None
        self.connected = False

    # keys ------------------------------------------------------------------------------

    def _stream(self, channel: str) -> str:
        return f"{self.prefix}:ev:{channel}"

    def _last(self, channel: str) -> str:
        return f"{self.prefix}:last:{channel}"

    @property
    def _epoch(self) -> str:
        return f"{self.prefix}:epoch"

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="redis-broker-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._listen_client.aclose()
        await self.redis.aclose(close_connection_pool=True)

    # writing ----------------------------------------------------------------------------

    async def _append(self, channel: str, event: str, data_json: str, id: int | None,
                      *, fan_out: bool, created_ms: int | None = None) -> int:
        policy = self.policy
        result = await self._publish(
            keys=[self._stream(channel), self._last(channel)],
            args=["" if id is None else id, event, data_json, now_ms(), policy.keep,
                  int(policy.max_age_s * 1000), policy.cap, self._live_prefix + channel,
                  "1" if fan_out else "0", "" if created_ms is None else created_ms],
        )
        return int(result[0])

    async def publish(self, channel: str, event: str, data: dict[str, Any] | str, *,
                      id: int | None = None) -> int:
        return await self._append(channel, event, to_json(data), id, fan_out=True)

    async def signal(self, channel: str, event: str, data: dict[str, Any]) -> None:
        await self.redis.publish(self._live_prefix + channel, f"-\n{event}\n{to_json(data)}")

    async def restore(self, channel: str, events: list[tuple[int, str, str, int]], last_id: int) -> None:
        for id, event, data_json, created_ms in events:
            await self._append(channel, event, data_json, id, fan_out=False, created_ms=created_ms)
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
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrange(  # type: ignore[assignment]
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
            # Everything up to the current last id is history; live starts after it. A message
            # for an older id still in flight is then dropped as already known.
            self._cursor[channel] = await self.last_id(channel)

    async def unsubscribe(self, channel: str, listener: Listener) -> None:
        if self._listeners.remove(channel, listener):
            self._cursor.pop(channel, None)

    async def _fill(self, channel: str, newest: Event | None) -> None:
        """Deliver the stream's events after the channel's cursor, up to ``newest`` (a live
        message that arrived after a gap) or to the end of the stream."""
        cursor = self._cursor.get(channel)
        if cursor is None:
            return
        upto = newest.id if newest is not None else None
        events = await self._range(channel, cursor, upto, None)
        if channel not in self._cursor:  # unsubscribed meanwhile
            return
        if newest is not None and (not events or events[-1].id != newest.id):
            events.append(newest)
        if events and events[0].id != cursor + 1:
            # The events in between are no longer kept: the readers must refetch.
            self._listeners.deliver(channel, Reset(channel, events[-1].id or 0))
        for event in events:
            assert event.id is not None
            if event.id > self._cursor.get(channel, event.id):
                self._cursor[channel] = event.id
                self._listeners.deliver(channel, event)

    async def _on_message(self, raw_channel: str, payload: str) -> None:
        channel = raw_channel[len(self._live_prefix):]
        cursor = self._cursor.get(channel)
        if cursor is None:
            return
        head, event_name, data_json = payload.split("\n", 2)
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

    async def _listen_forever(self) -> None:
        backoff = 0.05
        first = True
        while True:
            pubsub = self._listen_client.pubsub()
            try:
                await pubsub.psubscribe(self._live_prefix + "*")
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    kind = message["type"]
                    if kind == "psubscribe":
                        self.connected = True
                        backoff = 0.05
                        if not first:
                            log.info("redis listener reconnected; catching up")
                            for channel in list(self._cursor):
                                await self._fill(channel, None)
                            if self.on_reconnect is not None:
                                self.on_reconnect()
                        first = False
                        self._ready.set()
                    elif kind == "pmessage":
                        await self._on_message(message["channel"], message["data"])
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                raise
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.warning("redis listener lost its connection", extra={"error": str(exc)})
                self.connected = False
                first = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
