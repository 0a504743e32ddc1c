"""Relaying room traffic between nodes through Redis pub/sub, one channel per lesson.

A node subscribes to a lesson's channel ``<prefix>:collab:{lesson:<id>}`` while it has the room
open and unsubscribes when the room closes, so it receives only the lessons its clients edit. On
a Redis Cluster (``REDIS_URL=redis+cluster://…``, see :mod:`wire.redis`) the channel's hash tag
``{lesson:<id>}`` picks its shard, and the relay uses sharded pub/sub (``SSUBSCRIBE`` /
``SPUBLISH``); node heartbeats go to ``<prefix>:collab:{nodes}``.

Every message is ``<node id>\\n<kind><payload>``; a node ignores its own. Kinds:
``u`` a y-websocket update frame, ``a`` an awareness frame, ``q`` "here is my state vector,
send me what I lack and tell me yours" (sent when a room opens and after a reconnect), ``s`` a
state vector answered by the missing part only.

Depends on nothing in ``collab``; :mod:`wire.redis` for the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from wire.redis import Subscriber, connect, is_cluster, tagged

log = logging.getLogger("scriptorium.collab.relay")

KIND_UPDATE = b"u"
KIND_AWARENESS = b"a"
KIND_QUERY = b"q"
KIND_STATE = b"s"

Handler = Callable[[str, bytes, bytes, str], None]  # (lesson id, kind, payload, origin node)

HEARTBEAT_S = 2.0


class Relay(Protocol):
    node_id: str

    def bind(self, handler: Handler, on_reconnect: Callable[[], None]) -> None: ...

    def last_seen(self, node_id: str) -> float: ...

    def subscribe(self, lesson_id: str) -> None: ...

    def unsubscribe(self, lesson_id: str) -> None: ...

    def publish(self, lesson_id: str, kind: bytes, payload: bytes) -> None: ...

    async def subscribed(self, lesson_id: str, within: float) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class RedisRelay:
    """Pub/sub relay that survives a Redis restart or a Cluster failover: it reconnects,
    resubscribes, and tells the room manager so rooms resynchronise (what was published meanwhile
    is gone)."""

    def __init__(self, url: str, prefix: str, node_id: str,
                 connect: Callable[[str], Any] | None = None) -> None:
        self.url = url
        self.prefix = prefix
        self.cluster = is_cluster(url)
        self.node_id = node_id
        self._origin = node_id.encode() + b"\n"
        self._connect = connect
        self._handler: Handler = lambda lesson, kind, payload, origin: None
        self._seen: dict[str, float] = {}
        self._on_reconnect: Callable[[], None] = lambda: None
        self._control = tagged(prefix, "collab", "nodes")
        self._lesson_at = len(tagged(prefix, "collab", "lesson:")) - 1  # where the id starts
        self.subscriber = Subscriber(url, self._dispatch, self._connected, name="collab-relay")
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._outbox_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> bool:
        return self.subscriber.connected

    def bind(self, handler: Handler, on_reconnect: Callable[[], None]) -> None:
        self._handler = handler
        self._on_reconnect = on_reconnect

    def last_seen(self, node_id: str) -> float:
        """When a message (or heartbeat) of ``node_id`` last arrived (monotonic; 0 if never)."""
        return self._seen.get(node_id, 0.0)

    def channel(self, lesson_id: str) -> str:
        return tagged(self.prefix, "collab", f"lesson:{lesson_id}")

    def _client(self) -> Any:
        if self._connect is not None:
            return self._connect(self.url)
        return connect(self.url, socket_connect_timeout=2, socket_keepalive=True, health_check_interval=10)

    # --- API ----------------------------------------------------------------------------

    def subscribe(self, lesson_id: str) -> None:
        self.subscriber.want(self.channel(lesson_id))

    def unsubscribe(self, lesson_id: str) -> None:
        self.subscriber.drop(self.channel(lesson_id))

    async def subscribed(self, lesson_id: str, within: float) -> bool:
        """Wait until the channel of ``lesson_id`` is subscribed (bounded)."""
        return await self.subscriber.ready(self.channel(lesson_id), within)

    def publish(self, lesson_id: str, kind: bytes, payload: bytes) -> None:
        """Queue a message; a single task sends queued messages in pipelines."""
        self._outbox.append((self.channel(lesson_id), self._origin + kind + payload))
        if len(self._outbox) > 100_000:  # Redis is away for long: keep the newest
            self._outbox.popleft()
        self._outbox_ready.set()

    async def start(self) -> None:
        self.subscriber.want(self._control)
        await self.subscriber.start()
        self._tasks = [asyncio.create_task(self._publish_loop(), name="collab-relay-publish"),
                       asyncio.create_task(self._heartbeat(), name="collab-relay-heartbeat")]

    async def _heartbeat(self) -> None:
        """Tell the other nodes this one is alive: they drop a dead node's cursors quickly."""
        while True:
            self._outbox.append((self._control, self._origin + b"h"))
            self._outbox_ready.set()
            await asyncio.sleep(HEARTBEAT_S)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.subscriber.stop()

    # --- loops --------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        backoff = 0.1
        lost = False  # a batch failed: once publishing works again, rooms resynchronise
        while True:
            client = self._client()
            try:
                if self.cluster:
                    await client.initialize()  # (see RedisBroker.start)
                while True:
                    await self._outbox_ready.wait()
                    self._outbox_ready.clear()
                    while self._outbox:
                        batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), 500))]
                        # (a cluster pipeline sends each SPUBLISH to its channel's shard)
                        pipe = client.pipeline(transaction=False)
                        for channel, message in batch:
                            if self.cluster:
                                pipe.spublish(channel, message)
                            else:
                                pipe.publish(channel, message)
                        # Lost if Redis (or one shard) is away: rooms resynchronise below.
                        await pipe.execute()
                        if _cancelling():  # (a cancellation the client swallowed)
                            raise asyncio.CancelledError
                        backoff = 0.1
                        if lost:
                            # (the subscriber reconnects too when the shard it listens on
                            # failed; this covers a batch lost on a shard it does not use)
                            lost = False
                            self._on_reconnect()
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await client.aclose()
                raise
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await client.aclose()
                if _cancelling():  # a client call turned our cancellation into its own error
                    raise asyncio.CancelledError from exc
                log.warning("collab relay publish failed: %s", type(exc).__name__)
                lost = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _connected(self, first: bool) -> None:
        if not first:
            log.info("collab relay reconnected")
            self._on_reconnect()

    def _dispatch(self, channel: str, data: bytes) -> None:
        if data.startswith(self._origin):
            return
        newline = data.find(b"\n")
        if newline < 0 or newline + 1 >= len(data):  # (a heartbeat is "<node>\nh")
            return
        origin = data[:newline].decode(errors="replace")
        self._seen[origin] = time.monotonic()
        if channel == self._control:
            return
        lesson = channel[self._lesson_at:-1]
        kind = data[newline + 1:newline + 2]
        try:
            self._handler(lesson, kind, data[newline + 2:], origin)
        except Exception:
            log.exception("collab relay message failed", extra={"lesson_id": lesson})


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


AsyncCallback = Callable[[], Awaitable[None]]
