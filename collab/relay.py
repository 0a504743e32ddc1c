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

A node alone on a lesson's channel does not publish its updates and awareness there
(:meth:`RedisRelay.others_listen`): most rooms are edited on one node, and each of their commits
would otherwise cost a publish, a read of it back on this node's own subscription, and an
immediate commit to PostgreSQL (persist before relay). Alone is learnt from what a publish
returns, the number of subscribers that received it: 1, this node, on a publish sent after the
last message another node sent on the channel, while this node's subscription was confirmed.
Any message of another node on the channel, or a publish that reached 2 or more, ends it; so does
this node's own subscription falling silent (its heartbeat, published every 2 s on the nodes'
channel, must come back to it: a half-open connection would otherwise leave the "1" to be another
node while this one hears nothing; such a subscription is then connected again, and the rooms
resynchronise). A room whose question goes out before its subscription is
confirmed asks again once it is (see :meth:`collab.cluster.Cluster.opened`). Nothing
is missed: a node that opens the room subscribes first and then publishes ``q`` (it always goes);
every node answers it from its live document, which holds every update it did not publish (see
:meth:`collab.cluster.Cluster.opened`), and publishes from then on. On a Redis Cluster a
sharded publish counts only the subscribers on the node it ran on, so there every node always
publishes.

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

from wire import grid
from wire.redis import Subscriber, connect, is_cluster, tagged

log = logging.getLogger("scriptorium.collab.relay")

KIND_UPDATE = b"u"
KIND_AWARENESS = b"a"
KIND_QUERY = b"q"
KIND_STATE = b"s"

Handler = Callable[[str, bytes, bytes, str], None]  # (lesson id, kind, payload, origin node)

HEARTBEAT_S = 2.0
# This node's subscription counts as alive while its own heartbeat came back within this long.
ECHO_FRESH_S = 3 * HEARTBEAT_S


class Relay(Protocol):
    node_id: str

    def bind(self, handler: Handler, on_reconnect: Callable[[], None]) -> None: ...

    def last_seen(self, node_id: str) -> float: ...

    def subscribe(self, lesson_id: str) -> None: ...

    def unsubscribe(self, lesson_id: str) -> None: ...

    def publish(self, lesson_id: str, kind: bytes, payload: bytes) -> None: ...

    def others_listen(self, lesson_id: str) -> bool: ...

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
        self._outbox: deque[tuple[str, bytes, str | None]] = deque()  # (channel, message, lesson)
        # lessons no other node listens on (see the module docstring), and, per subscribed
        # lesson, when another node's message on its channel last came or this node subscribed
        # (time.monotonic())
        self._alone: set[str] = set()
        self._heard: dict[str, float] = {}
        self.updates_published = 0  # update messages published (a metric)
        self._echo_at = -1e9  # when this node's own heartbeat last came back (time.monotonic())
        self._published_at = -1e9  # when a batch was last published
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
        # (a publish's count tells about the channel only if it left after this)
        self._heard[lesson_id] = time.monotonic()
        self._alone.discard(lesson_id)

    def unsubscribe(self, lesson_id: str) -> None:
        self.subscriber.drop(self.channel(lesson_id))
        self._alone.discard(lesson_id)
        self._heard.pop(lesson_id, None)

    def alone_count(self) -> int:
        """How many open rooms no other node listens to (a metric)."""
        return len(self._alone) if self._hears_itself() else 0

    def others_listen(self, lesson_id: str) -> bool:
        """Whether another node may listen on ``lesson_id``'s channel: its updates and awareness
        are published only then (see the module docstring)."""
        return lesson_id not in self._alone or not self._hears_itself()

    def _hears_itself(self) -> bool:
        return time.monotonic() - self._echo_at < ECHO_FRESH_S

    async def subscribed(self, lesson_id: str, within: float) -> bool:
        """Wait until the channel of ``lesson_id`` is subscribed (bounded)."""
        return await self.subscriber.ready(self.channel(lesson_id), within)

    def publish(self, lesson_id: str, kind: bytes, payload: bytes) -> None:
        """Queue a message; a single task sends queued messages in pipelines."""
        self._outbox.append((self.channel(lesson_id), self._origin + kind + payload, lesson_id))
        if kind == KIND_UPDATE:
            self.updates_published += 1
        if len(self._outbox) > 100_000:  # Redis is away for long: keep the newest
            self._outbox.popleft()
        self._outbox_ready.set()

    async def start(self) -> None:
        self.subscriber.want(self._control)
        await self.subscriber.start()
        self._tasks = [asyncio.create_task(self._publish_loop(), name="collab-relay-publish"),
                       asyncio.create_task(self._heartbeat(), name="collab-relay-heartbeat")]

    async def _heartbeat(self) -> None:
        """Tell the other nodes this one is alive: they drop a dead node's cursors quickly. The
        heartbeat also comes back to this node: when it stops while publishing works, the
        subscription is deaf (a half-open connection) and is connected again."""
        watched = time.monotonic()
        while True:
            self._outbox.append((self._control, self._origin + b"h", None))
            self._outbox_ready.set()
            await grid.sleep(HEARTBEAT_S)
            watched = self._watch(time.monotonic(), watched)

    def _watch(self, now: float, watched: float) -> float:
        """Reconnect a subscription that stopped hearing this node's heartbeat though publishing
        works (the rooms then resynchronise); the new start of the watch."""
        silent = now - max(self._echo_at, watched) > ECHO_FRESH_S
        if silent and self.subscriber.connected and now - self._published_at < ECHO_FRESH_S:
            log.warning("collab relay hears nothing, not even its own heartbeat: reconnecting it")
            self.subscriber.fail(TimeoutError("own heartbeat did not come back"))
            return now
        return watched

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
                        for channel, message, _ in batch:
                            if self.cluster:
                                pipe.spublish(channel, message)
                            else:
                                pipe.publish(channel, message)
                        # (whether this node listened on each channel as the batch left)
                        alive = self._hears_itself()
                        ours = [alive and self.subscriber.confirmed(channel) for channel, _, _ in batch]
                        sent = time.monotonic()
                        # Lost if Redis (or one shard) is away: rooms resynchronise below.
                        received = await pipe.execute()
                        self._published_at = time.monotonic()
                        if not self.cluster:
                            self._counted(batch, ours, received, sent)
                        if _cancelling():  # (a cancellation the client swallowed)
                            raise asyncio.CancelledError
                        backoff = 0.1
                        if lost:
                            # (the subscriber reconnects too when the shard it listens on
                            # failed; this covers a batch lost on a shard it does not use)
                            lost = False
                            self._reconnected()
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

    def _counted(self, batch: list[tuple[str, bytes, str | None]], ours: list[bool], received: list[Any],
                 sent: float) -> None:
        """Learn from each publish's count of receivers which lessons this node is alone on."""
        for (_, _, lesson), listening, count in zip(batch, ours, received, strict=True):
            if lesson is None or not isinstance(count, int):
                continue
            if count >= 2:
                self._alone.discard(lesson)
            elif count == 1 and listening:
                since = self._heard.get(lesson)  # None: the room closed meanwhile
                if since is not None and sent > since:
                    self._alone.add(lesson)

    def _connected(self, first: bool) -> None:
        if not first:
            log.info("collab relay reconnected")
            self._reconnected()

    def _reconnected(self) -> None:
        """Publish everything again until counts say otherwise (subscriptions were lost and
        renewed, maybe by other nodes too), and let the rooms resynchronise."""
        now = time.monotonic()
        self._alone.clear()
        for lesson in self._heard:
            self._heard[lesson] = now
        self._on_reconnect()

    def _dispatch(self, channel: str, data: bytes) -> None:
        if data.startswith(self._origin):
            if channel == self._control:
                self._echo_at = time.monotonic()  # this node's subscription is alive
            return
        newline = data.find(b"\n")
        if newline < 0 or newline + 1 >= len(data):  # (a heartbeat is "<node>\nh")
            return
        origin = data[:newline].decode(errors="replace")
        self._seen[origin] = time.monotonic()
        if channel == self._control:
            return
        lesson = channel[self._lesson_at:-1]
        # another node is on this lesson: publish to it from now on (it asked, or will ask, for
        # what it lacks)
        if lesson in self._heard:
            self._heard[lesson] = time.monotonic()
            self._alone.discard(lesson)
        kind = data[newline + 1:newline + 2]
        try:
            self._handler(lesson, kind, data[newline + 2:], origin)
        except Exception:
            log.exception("collab relay message failed", extra={"lesson_id": lesson})


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


AsyncCallback = Callable[[], Awaitable[None]]
