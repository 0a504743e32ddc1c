"""Redis as both libraries use it (``realtime``'s broker, ``collab``'s relay): one URL names a
single Redis or a Redis Cluster, and :class:`Subscriber` keeps a node subscribed to exactly the
channels its own clients use.

``REDIS_URL``:

- ``redis://host:port/db`` (``rediss://``, ``unix://``): one Redis; plain ``SUBSCRIBE`` and
  ``PUBLISH``.
- ``redis+cluster://host:port[,host:port…]`` (or ``REDIS_CLUSTER=1`` with a ``redis://`` URL of
  one seed node, the server's setting, turned into this form by :func:`as_cluster_url`) (``rediss+cluster://`` with TLS; user and password as
  in ``redis://``): a Redis Cluster (Redis 7+) reached through any of those seed nodes. Every key
  and channel of one live channel or lesson carries the same hash tag (``{course:<id>}``,
  ``{lesson:<id>}`` …), so they share a slot, and live traffic goes over sharded pub/sub
  (``SSUBSCRIBE`` / ``SPUBLISH``): a message travels only within the shard that owns its slot, and
  a node holds one subscriber connection per master it needs.

:func:`tagged` builds such a name. :class:`Subscriber` subscribes when a channel is first wanted
and unsubscribes when it is dropped; :meth:`Subscriber.ready` returns once the server confirmed
the subscription (from then on every message published to it arrives). Any connection error (a
restart, a failover, a slot that moved) tears every connection down, resubscribes everything on
the current topology and calls ``on_connected(first=False)``: what was published meanwhile is lost
on pub/sub, and the owner fills it in (the broker from its streams, the relay by resynchronising).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("scriptorium.redis")

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SUBSCRIBE_CHUNK = 200  # channels per (S)SUBSCRIBE command

OnMessage = Callable[[str, bytes], Awaitable[None] | None]  # (channel, payload)
OnConnected = Callable[[bool], Awaitable[None] | None]  # (first connection?)


def is_cluster(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def as_cluster_url(url: str) -> str:
    """``redis://[auth@]host:port[/0]`` as the ``redis+cluster://`` URL of that seed node (a
    cluster has database 0 only). A URL already in cluster form is returned as it is."""
    if is_cluster(url):
        return url
    scheme = url.split("://", 1)[0]
    if scheme.lower() not in ("redis", "rediss"):
        raise ValueError(f"a Redis Cluster is reached over redis:// or rediss://, not {scheme}://")
    parts = urlsplit(url)
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has database 0 only")
    return f"{scheme.lower()}+cluster://{parts.netloc}"


def tagged(prefix: str, kind: str, name: str) -> str:
    """``<prefix>:<kind>:{<name>}``: the braces make ``name`` the key's hash tag, so every key and
    channel of one name lands in one Redis Cluster slot (``name`` must hold no brace)."""
    return f"{prefix}:{kind}:{{{name}}}"


def cluster_options(url: str) -> dict[str, Any]:
    """``RedisCluster`` keyword arguments for a ``redis+cluster://`` URL."""
    scheme, rest = url.split("://", 1)
    parts = urlsplit(f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}")
    auth, _, hosts = parts.netloc.rpartition("@")
    username, _, password = auth.partition(":")
    nodes: list[ClusterNode] = []
    for host_port in hosts.split(","):
        host, _, port = host_port.strip().rpartition(":")
        if not host:
            host, port = port, "6379"
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    options: dict[str, Any] = {"startup_nodes": nodes}
    if username:
        options["username"] = unquote(username)
    if password:
        options["password"] = unquote(password)
    if parts.scheme == "rediss":
        options["ssl"] = True
    return options


class BoundedRedisCluster(AsyncRedisCluster):
    """``RedisCluster`` whose commands wait for one of ``max_connections`` instead of failing.

    redis-py's cluster client keeps a pool of ``max_connections`` per master and raises
    ``MaxConnectionsError`` at once when a command finds it empty: 300 /ws clients subscribing
    together (a reconnect storm) each read their channel's last id, and the ones past 64 were
    closed 1011. On one Redis a ``BlockingConnectionPool`` makes callers wait; this does the same
    here (commands, and the scripts registered on the client, all go through
    ``execute_command``; pipelines hold one connection per master for their whole batch)."""

    def __init__(self, *, max_connections: int = 64, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self._bound = asyncio.Semaphore(max_connections)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._bound:
            return await super().execute_command(*args, **kwargs)


def connect(url: str, **options: Any) -> Any:
    """A client for ``url``: ``redis.asyncio.Redis`` or, for a cluster URL, a ``RedisCluster``
    (which routes each command to the master of its key's slot and follows failovers) whose
    commands wait for a free connection (:class:`BoundedRedisCluster`)."""
    if is_cluster(url):
        options.pop("connection_pool", None)
        options.pop("health_check_interval", None)
        return BoundedRedisCluster(**cluster_options(url), **options)
    return aioredis.Redis.from_url(url, **options)


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if inspect.isawaitable(result):
        await result


class _Lost(Exception):
    """A shard said a subscription ended that we did not end (its slot moved)."""


class Subscriber:
    """Keeps pub/sub subscriptions to exactly the wanted channels, on one Redis (``SUBSCRIBE``)
    or on the masters of a Redis Cluster (``SSUBSCRIBE``, one connection per master); see the
    module docstring. ``on_message`` is called in order per channel, from one reader task per
    connection."""

    def __init__(self, url: str, on_message: OnMessage, on_connected: OnConnected | None = None,
                 *, name: str = "subscriber") -> None:
        self.url = url
        self.sharded = is_cluster(url)
        self.name = name
        self._on_message = on_message
        self._on_connected = on_connected
        self._wanted: set[str] = set()
        self._sent: dict[str, str] = {}  # channel -> the connection it is subscribed on
        self._replies: dict[str, int] = {}  # channel -> (un)subscribe replies still due
        self._confirmed: set[str] = set()
        self._waiters: dict[str, asyncio.Event] = {}
        self._conns: dict[str, Any] = {}  # connection key -> PubSub
        self._clients: list[Any] = []
        self._readers: list[asyncio.Task[None]] = []
        self._cluster: Any = None
        self._changed = asyncio.Event()
        self._settled = asyncio.Event()
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        # what this node's subscriber connections received: messages, and their bytes as RESP2
        # puts them on the wire (the per-node interest figures, bench/results/scale-interest.md)
        self.messages_in = 0
        self.bytes_in = 0

    # --- API ----------------------------------------------------------------------------

    def want(self, channel: str) -> None:
        self._wanted.add(channel)
        self._changed.set()

    def drop(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._changed.set()

    @property
    def channels(self) -> frozenset[str]:
        """The channels this node is subscribed to now (confirmed by the server)."""
        return frozenset(self._confirmed)

    def fail(self, reason: BaseException) -> None:
        """Drop the connections and connect again, as after a lost one (``on_connected(False)``
        follows): for a subscription its owner knows to be deaf (a half-open connection looks
        connected and hears nothing)."""
        if self._failure is None:
            self._failure = reason
        self._failed.set()

    def confirmed(self, channel: str) -> bool:
        """Whether ``channel``'s subscription is confirmed by the server now."""
        return channel in self._confirmed

    async def ready(self, channel: str, within: float) -> bool:
        """Wait (bounded) until ``channel``'s subscription is confirmed by the server."""
        if channel in self._confirmed:
            return True
        event = self._waiters.setdefault(channel, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), within)
        return channel in self._confirmed

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"redis-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._teardown()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                await self._cluster.aclose()
            self._cluster = None

    # --- connections ------------------------------------------------------------------------

    def _client_options(self) -> dict[str, Any]:
        # No hidden retries: redis-py would reconnect and resubscribe on its own, and what was
        # published meanwhile would be lost without anyone noticing. Errors end the generation.
        return dict(socket_connect_timeout=2, socket_keepalive=True, health_check_interval=0,
                    retry=Retry(NoBackoff(), 0))

    async def _open(self) -> None:
        """Connections for this generation: the one Redis, or (cluster) the current topology."""
        if not self.sharded:
            client = aioredis.Redis.from_url(self.url, **self._client_options())
            self._clients.append(client)
            pubsub = client.pubsub()
            await pubsub.connect()  # type: ignore[no-untyped-call]
            self._add_conn("main", pubsub)
            return
        if self._cluster is None:
            self._cluster = AsyncRedisCluster(**cluster_options(self.url), socket_connect_timeout=2)
        await self._cluster.initialize()
        # a failover or a slot move since the last generation: learn the topology again
        await self._cluster.nodes_manager.initialize()

    def _add_conn(self, key: str, pubsub: Any) -> None:
        self._conns[key] = pubsub
        self._readers.append(asyncio.create_task(self._read(key, pubsub), name=f"redis-{self.name}-{key}"))

    async def _conn_for(self, channel: str) -> tuple[str, Any]:
        if not self.sharded:
            return "main", self._conns["main"]
        node = self._cluster.get_node_from_key(channel)
        key = f"{node.host}:{node.port}"
        found = self._conns.get(key)
        if found is None:
            options = {k: v for k, v in self._cluster.nodes_manager.connection_kwargs.items()
                       if k in ("username", "password", "ssl", "ssl_cert_reqs", "ssl_ca_certs")}
            client = aioredis.Redis(host=node.host, port=node.port, **options, **self._client_options())
            self._clients.append(client)
            found = client.pubsub()
            await found.connect()  # type: ignore[no-untyped-call]
            self._add_conn(key, found)
        return key, found

    async def _teardown(self) -> None:
        for task in self._readers:
            task.cancel()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for pubsub in self._conns.values():
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        for client in self._clients:
            with contextlib.suppress(Exception):
                await client.aclose()
        self._readers, self._conns, self._clients = [], {}, []
        self._sent.clear()
        self._replies.clear()
        self._confirmed.clear()

    # --- loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        first = True
        backoff = 0.05
        while True:
            try:
                self._failure = None
                self._failed.clear()
                await self._open()
                self._changed.clear()
                await self._sync()
                await self._until(self._settled, 10.0)
                self.connected = True
                backoff = 0.05
                if not first:
                    log.info("redis %s resubscribed %d channels", self.name, len(self._confirmed))
                if self._on_connected is not None:
                    await _maybe_await(self._on_connected(first))
                first = False
                while True:
                    await self._until(self._changed, None)
                    self._changed.clear()
                    await self._sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # a client call turned our cancellation into its own error: stop anyway
                    raise asyncio.CancelledError from exc
                if self.connected or first:
                    log.warning("redis %s lost its connection: %s", self.name, type(exc).__name__,
                                extra={"error": str(exc)})
                self.connected = False
                first = False
                await self._teardown()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _until(self, event: asyncio.Event, within: float | None) -> None:
        """Wait for ``event``; raise a reader's failure as soon as there is one."""
        if self._failure is not None:
            raise self._failure
        waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._failed.wait())]
        try:
            done, _ = await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self._failure is not None:
            raise self._failure
        if not done:
            raise TimeoutError(f"redis {self.name}: subscriptions not confirmed")

    def _expect(self, channel: str) -> None:
        self._replies[channel] = self._replies.get(channel, 0) + 1
        self._settled.clear()

    async def _sync(self) -> None:
        """Send (S)SUBSCRIBE for wanted channels not subscribed, (S)UNSUBSCRIBE for the others.
        Replies are counted before each command is sent (the reader may see them before the send
        returns); a channel is confirmed when its last reply arrived and it is still wanted."""
        add = [channel for channel in self._wanted if channel not in self._sent]
        remove = [channel for channel in self._sent if channel not in self._wanted]
        if not add and not remove and not self._replies:
            self._settled.set()
        dropping: dict[tuple[str, int], list[str]] = {}
        for channel in remove:
            key = self._sent.pop(channel)
            self._confirmed.discard(channel)
            dropping.setdefault((key, self._slot(channel)), []).append(channel)
        for (key, _slot), channels in dropping.items():
            pubsub = self._conns.get(key)
            if pubsub is None:
                continue
            for chunk in _chunks(channels):
                for channel in chunk:
                    self._expect(channel)
                if self.sharded:
                    await pubsub.sunsubscribe(*chunk)  # one slot per command (CROSSSLOT otherwise)
                else:
                    await pubsub.unsubscribe(*chunk)
        adding: dict[tuple[str, int], list[str]] = {}
        for channel in add:
            key, _ = await self._conn_for(channel)
            adding.setdefault((key, self._slot(channel)), []).append(channel)
        for (key, _slot), channels in adding.items():
            pubsub = self._conns[key]
            for chunk in _chunks(channels):
                for channel in chunk:
                    self._sent[channel] = key
                    self._expect(channel)
                if self.sharded:
                    await pubsub.ssubscribe(*chunk)
                else:
                    await pubsub.subscribe(*chunk)

    def _slot(self, channel: str) -> int:
        return int(self._cluster.keyslot(channel)) if self.sharded else 0

    async def _read(self, key: str, pubsub: Any) -> None:
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind = message["type"]
                raw_channel = message["channel"]
                channel = raw_channel.decode() if isinstance(raw_channel, bytes) else str(raw_channel)
                if kind in ("message", "smessage"):
                    data = message["data"]
                    self.messages_in += 1
                    self.bytes_in += _resp_size(kind, len(raw_channel), len(data))
                    await _maybe_await(self._on_message(channel, data))
                elif kind in ("subscribe", "ssubscribe", "unsubscribe", "sunsubscribe"):
                    self._on_reply(key, kind, channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._failure is None:
                self._failure = exc
            self._failed.set()

    def _on_reply(self, key: str, kind: str, channel: str) -> None:
        due = self._replies.get(channel, 0)
        if due == 0:
            if kind == "sunsubscribe" and self._sent.get(channel) == key:
                # the shard ended it: the slot moved (failover, resharding)
                raise _Lost(f"shard {key} dropped {channel}")
            return
        if due == 1:
            del self._replies[channel]
            if self._sent.get(channel) == key and channel in self._wanted:
                self._confirmed.add(channel)
                waiter = self._waiters.pop(channel, None)
                if waiter is not None:
                    waiter.set()
        else:
            self._replies[channel] = due - 1
        if not self._replies:
            self._settled.set()


def _resp_size(kind: str, channel: int, data: int) -> int:
    """Bytes of a RESP2 push ``*3 $kind $channel $data`` on the wire."""
    def bulk(n: int) -> int:
        return 1 + len(str(n)) + 2 + n + 2
    return 4 + bulk(len(kind)) + bulk(channel) + bulk(data)


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i:i + SUBSCRIBE_CHUNK] for i in range(0, len(items), SUBSCRIBE_CHUNK)]


