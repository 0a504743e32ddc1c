"""Relaying room traffic between nodes through Redis pub/sub, one channel per lesson.

Every message is ``<node id>\\n<kind><payload>``; a node ignores its own. Kinds:
``u`` a y-websocket update frame, ``a`` an awareness frame, ``q`` "here is my state vector,
send me what I lack and tell me yours" (sent when a room opens and after a reconnect), ``s`` a
state vector answered by the missing part only.

Depends on nothing in ``collab`` (redis, imported when the relay connects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

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
    """Pub/sub relay that survives a Redis restart: it reconnects, resubscribes, and tells the
    room manager so rooms resynchronise (what was published meanwhile is gone)."""

    def __init__(self, url: str, prefix: str, node_id: str,
                 connect: Callable[[str], Any] | None = None) -> None:
        self.url = url
        self.prefix = f"{prefix}:collab:"
        self.node_id = node_id
        self._origin = node_id.encode() + b"\n"
        self._connect = connect
        self._handler: Handler = lambda lesson, kind, payload, origin: None
        self._seen: dict[str, float] = {}
        self._on_reconnect: Callable[[], None] = lambda: None
        self._wanted: set[str] = set()
        self._active: set[str] = set()
        self._changed = asyncio.Event()
        self._outbox: deque[tuple[bytes, bytes]] = deque()
        self._outbox_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed_events: dict[str, asyncio.Event] = {}
        self.connected = False

    def bind(self, handler: Handler, on_reconnect: Callable[[], None]) -> None:
        self._handler = handler
        self._on_reconnect = on_reconnect

    def last_seen(self, node_id: str) -> float:
        """When a message (or heartbeat) of ``node_id`` last arrived (monotonic; 0 if never)."""
        return self._seen.get(node_id, 0.0)

    def _client(self) -> Any:
        if self._connect is not None:
            return self._connect(self.url)
        import redis.asyncio as aioredis

        return aioredis.Redis.from_url(self.url, socket_connect_timeout=2, socket_keepalive=True,
                                       health_check_interval=10)

    # --- API ----------------------------------------------------------------------------

    def subscribe(self, lesson_id: str) -> None:
        self._wanted.add(lesson_id)
        self._changed.set()

    def unsubscribe(self, lesson_id: str) -> None:
        self._wanted.discard(lesson_id)
        self._subscribed_events.pop(lesson_id, None)
        self._changed.set()

    async def subscribed(self, lesson_id: str, within: float) -> bool:
        """Wait until the channel of ``lesson_id`` is subscribed (bounded)."""
        if lesson_id in self._active:
            return True
        event = self._subscribed_events.setdefault(lesson_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), within)
        return lesson_id in self._active

    def publish(self, lesson_id: str, kind: bytes, payload: bytes) -> None:
        """Queue a message; a single task sends queued messages in pipelines."""
        self._outbox.append(((self.prefix + lesson_id).encode(), self._origin + kind + payload))
        if len(self._outbox) > 100_000:  # Redis is away for long: keep the newest
            self._outbox.popleft()
        self._outbox_ready.set()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen(), name="collab-relay-listen"),
                       asyncio.create_task(self._publish_loop(), name="collab-relay-publish"),
                       asyncio.create_task(self._heartbeat(), name="collab-relay-heartbeat")]

    async def _heartbeat(self) -> None:
        """Tell the other nodes this one is alive: they drop a dead node's cursors quickly."""
        control = (self.prefix + "_nodes").encode()
        while True:
            self._outbox.append((control, self._origin + b"h"))
            self._outbox_ready.set()
            await asyncio.sleep(HEARTBEAT_S)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- loops --------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        backoff = 0.1
        while True:
            client = self._client()
            try:
                while True:
                    await self._outbox_ready.wait()
                    self._outbox_ready.clear()
                    while self._outbox:
                        batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), 500))]
                        pipe = client.pipeline(transaction=False)
                        for channel, message in batch:
                            pipe.publish(channel, message)
                        try:
                            await pipe.execute()
                        except Exception:
                            # Lost while Redis is away: rooms resynchronise after the reconnect.
                            raise
                        backoff = 0.1
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await client.aclose()
                raise
            except Exception as exc:
                log.warning("collab relay publish failed: %s", type(exc).__name__)
                with contextlib.suppress(Exception):
                    await client.aclose()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _listen(self) -> None:
        control = (self.prefix + "_nodes").encode()
        first = True
        backoff = 0.1
        while True:
            client = self._client()
            pubsub = client.pubsub()
            self._active.clear()
            try:
                await pubsub.subscribe(control)
                self._changed.set()  # (re)subscribe every room's channel
                await self._sync_subscriptions(pubsub)
                self.connected = True
                if not first:
                    log.info("collab relay reconnected")
                    self._on_reconnect()
                first = False
                backoff = 0.1
                while True:
                    await self._sync_subscriptions(pubsub)
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                    while message is not None:
                        self._dispatch(message)
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
                raise
            except Exception as exc:
                self.connected = False
                log.warning("collab relay lost Redis: %s", type(exc).__name__)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _sync_subscriptions(self, pubsub: Any) -> None:
        if not self._changed.is_set():
            return
        self._changed.clear()
        add = self._wanted - self._active
        remove = self._active - self._wanted
        if add:
            await pubsub.subscribe(*[(self.prefix + lesson).encode() for lesson in add])
            self._active |= add
            for lesson in add:
                event = self._subscribed_events.pop(lesson, None)
                if event is not None:
                    event.set()
        if remove:
            await pubsub.unsubscribe(*[(self.prefix + lesson).encode() for lesson in remove])
            self._active -= remove

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        data: bytes = message["data"]
        if data.startswith(self._origin):
            return
        newline = data.find(b"\n")
        if newline < 0 or newline + 1 >= len(data):  # (a heartbeat is "<node>\nh")
            return
        origin = data[:newline].decode(errors="replace")
        self._seen[origin] = time.monotonic()
        channel: bytes = message["channel"]
        lesson = channel.decode()[len(self.prefix):]
        if lesson == "_nodes":
            return
        kind = data[newline + 1:newline + 2]
        try:
            self._handler(lesson, kind, data[newline + 2:], origin)
        except Exception:
            log.exception("collab relay message failed", extra={"lesson_id": lesson})


AsyncCallback = Callable[[], Awaitable[None]]
