"""The ``/ws`` hub (§7): subscriptions, replay with ``since``, live fan-out, typing.

The hub knows nothing of courses or users' rights: the server passes ``authenticate`` (the
socket's user, or :class:`ConnectionDenied`) and ``authorize`` (a channel name as the client
wrote it → the internal channel, or :class:`ChannelDenied`).

Fan-out: the broker calls one listener per channel; it builds each event's frame once per
channel name as clients wrote it (text and encoded bytes) and, on uvicorn's sans-I/O protocol,
writes the same bytes straight to each subscriber's transport in one loop (no task, await or
ASGI message per subscriber). A socket that cannot take it now (replay in progress, frames
queued, another server) gets it through its outgoing queue, drained by one writer task per
connection.

Bounded per socket: every frame queued for it (events, and pong / subscribed / error answers,
whose echoes of client text are truncated) plus what its transport still holds counts toward
``max_queued_bytes``; past it the socket is closed with 4008 (and aborted if the close frame
cannot get out within ``CLOSE_WAIT_S``). Inbound frames go through a per-socket token bucket.

Depends on :mod:`realtime.broker`, starlette's WebSocket and :mod:`wire.websocket` (frame
encoding, the direct-transport check and the close codes it shares with ``collab``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.protocol import State

from realtime.broker import Broker, Event, Reset
from realtime.caps import Caps, LocalCaps
from wire import grid
from wire.websocket import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_TOO_BIG,
    CLOSE_TOO_MANY,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    TEXT,
    direct_protocol,
    encode_frame,
)

log = logging.getLogger("scriptorium.realtime.hub")
_OPEN = State.OPEN

REPLAY_PAGE = 500
CLOSE_WAIT_S = 10.0
RECHECK_BATCH = 2000  # (user, channel) pairs per policy call
RELEASE_CHECK_S = 5.0  # a re-check before delivery that takes longer fails open


class User(Protocol):
    @property
    def clerk_id(self) -> str: ...

    @property
    def name(self) -> str | None: ...


class ConnectionDenied(Exception):
    """The socket cannot be served: closed with ``code`` after it was accepted."""

    def __init__(self, code: int = CLOSE_UNAUTHORIZED, reason: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ChannelDenied(Exception):
    """A subscribe or typing refused with an ``error`` frame of ``code``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


Authenticate = Callable[[WebSocket], Awaitable[User]]
Authorize = Callable[[User, str], Awaitable[str]]
# (user, internal channel) pairs → the ones whose rights are gone, keyed (clerk_id, channel).
Recheck = Callable[[list[tuple[User, str]]], Awaitable[dict[tuple[str, str], ChannelDenied]]]


@dataclass
class HubLimits:
    max_subscriptions: int = 200
    max_inbound_bytes: int = 64 * 1024
    max_queued_bytes: int = 1024 * 1024
    typing_burst: float = 5.0
    typing_per_second: float = 1.0
    # Inbound frames per socket: a token bucket (a frame costs 1 token plus 1 per 16 KiB). Past
    # it a frame is dropped with ``error rate_limited`` and the socket is not read for as long as
    # the bucket needs to refill one token, so a spamming client costs at most ``frames_per_second``
    # parsed frames a second. 0 turns the limit off.
    frames_per_second: float = 30.0
    frame_burst: float = 300.0
    # Rights of open subscriptions are re-checked this often (§7: within 15 s).
    recheck_seconds: float = 5.0
    # Open sockets of one user (on this node, or across nodes with Redis: realtime.caps): every
    # other budget is per socket, so one account opening N sockets would multiply them. The next
    # one is accepted and closed 4429. 0: off.
    sockets_per_user: int = 16


FRAME_COST_BYTES = 16 * 1024
# Bytes counted per queued frame on top of its text (the queue entry and its tuple), so the
# 1 MiB bounds the memory a socket holds even with tiny frames (a pong is 15 bytes).
QUEUED_OVERHEAD = 64
ECHO_MAX = 200  # the longest client text an error echoes back (a channel name is at most this)


def _dumps(obj: dict[str, Any]) -> str:
    # ASCII: a lone surrogate a client sent (valid JSON, invalid UTF-8) goes back escaped
    # instead of failing to encode in the writer.
    return json.dumps(obj, separators=(",", ":"))


def _echo(value: str) -> str:
    """Client text quoted in a ``detail``: bounded, so an answer is never bigger than ~1 KB."""
    return repr(value[:ECHO_MAX]) + ("…" if len(value) > ECHO_MAX else "")


def event_frame(channel: str, event: Event) -> str:
    """The ``event`` frame text; ``data_json`` is inserted as is (serialised once upstream)."""
    head = f'{{"type":"event","channel":{json.dumps(channel)},'
    if event.id is not None:
        head += f'"id":{event.id},'
    return f'{head}"event":{json.dumps(event.event)},"data":{event.data_json}}}'


def encode_text(text: str) -> bytes:
    """One unmasked text frame (server → client frames are never masked, so the same bytes go
    to every subscriber)."""
    return encode_frame(text.encode(), TEXT)


class DirectWriter:
    """Writes encoded frames straight to the socket's transport, when the ASGI server is
    uvicorn's sans-I/O WebSocket protocol (found through the ``asgi_send`` the server put in the
    scope state). Any other server: ``None``, and every frame goes through ASGI."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.transport = protocol.transport

    @classmethod
    def for_socket(cls, ws: WebSocket) -> DirectWriter | None:
        protocol = direct_protocol(ws.scope.get("state", {}).get("asgi_send"))
        if protocol is None:
            return None
        return cls(protocol)

    def usable(self) -> bool:
        protocol = self.protocol
        return (not protocol.close_sent and protocol.conn.state is State.OPEN
                and not self.transport.is_closing())

    def write(self, frame: bytes) -> int:
        """Write; the bytes now waiting in the transport's buffer."""
        self.transport.write(frame)
        size: int = self.transport.get_write_buffer_size()
        return size


@dataclass(eq=False)
class Subscription:
    conn: Connection
    external: str  # as the client wrote it (user:me)
    internal: str  # user:<clerk_id>
    cursor: int = 0  # newest id sent (or known to the client)
    replaying: bool = True  # live items wait in ``buffer`` until replay is done
    buffer: list[tuple[int | None, str, int]] = field(default_factory=list)  # (id, frame, size)
    active: bool = True
    serial: int = 0  # attach order: a held event goes only to subscriptions older than it


@dataclass(eq=False)
class _Replay:
    sub: Subscription
    since: int
    upto: int


class Connection:
    """One socket: an outgoing queue drained by one writer task."""

    def __init__(self, hub: Hub, ws: WebSocket, user: User) -> None:
        self.hub = hub
        self.ws = ws
        self.user = user
        self.subs: dict[str, Subscription] = {}
        self.queue: deque[tuple[str, int] | _Replay] = deque()  # (frame, size) or a replay
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.close_code: int | None = None
        self.direct = DirectWriter.for_socket(ws)
        if self.direct is not None:
            self._protocol = self.direct.protocol
            self._write = self.direct.transport.write
            self._backlog = self.direct.transport.get_write_buffer_size
            self._closing = self.direct.transport.is_closing
        self._max_backlog = hub.limits.max_queued_bytes
        self.busy = False  # the writer task is sending: direct writes would overtake it

    # queueing (called synchronously from listeners and the reader) ---------------------

    def send(self, frame: str) -> None:
        """Queue a control frame (pong, subscribed, error, reset). It counts toward the backlog
        like a live event (§7): a client that sends and never reads is closed with 4008 instead
        of growing the server."""
        self.send_live(frame, len(frame) + QUEUED_OVERHEAD)

    def send_live(self, frame: str, size: int) -> None:
        """Queue ``frame`` (``size`` bytes on the wire, about) behind what is already queued."""
        if self.close_code is not None:
            return
        self.queued_bytes += size
        if self.over_limit():
            self.kill(CLOSE_TOO_SLOW)
            return
        self.queue.append((frame, size))
        self.wake.set()

    def over_limit(self) -> bool:
        """Queued frames plus what the transport still holds (frames written straight to it, or
        sent through ASGI but not yet taken by the kernel) exceed ``max_queued_bytes``."""
        backlog = self.queued_bytes
        if self.direct is not None:
            backlog += self._backlog()
        return backlog > self._max_backlog

    def deliver(self, sub: Subscription, item: Event, frame: str, encoded: bytes) -> None:
        if item.id is not None:
            if item.id <= sub.cursor:
                return
        size = len(encoded) + QUEUED_OVERHEAD
        if sub.replaying:
            self.queued_bytes += size
            sub.buffer.append((item.id, frame, size))
            if self.over_limit():
                self.kill(CLOSE_TOO_SLOW)
            return
        if item.id is not None:
            sub.cursor = item.id
        if self.direct is not None and not self.busy and not self.queue and self.close_code is None:
            # The fast path: no task switch, no per-peer encoding, two C calls; the transport's
            # buffer is this reader's backlog.
            if (self._protocol.close_sent or self._protocol.conn.state is not State.OPEN
                    or self._closing()):
                return
            self._write(encoded)
            if self.queued_bytes + self._backlog() > self._max_backlog:
                self.kill(CLOSE_TOO_SLOW)
            return
        self.send_live(frame, size)

    def kill(self, code: int) -> None:
        if self.close_code is None:
            if code == CLOSE_TOO_SLOW:  # as collab's sender logs it (an operator sees slow readers)
                log.warning("/ws connection too slow, closing", extra={"queued": self.queued_bytes})
                if self.hub.on_slow_close is not None:
                    self.hub.on_slow_close()
            self.close_code = code
            self.queue.clear()
            self.wake.set()

    # the writer ---------------------------------------------------------------------------

    async def write_forever(self) -> None:
        ws = self.ws
        while True:
            self.busy = False
            await self.wake.wait()
            self.wake.clear()
            self.busy = True
            while self.queue and self.close_code is None:
                item = self.queue.popleft()
                if isinstance(item, tuple):
                    frame, size = item
                    await ws.send_text(frame)
                    self.queued_bytes -= size
                else:
                    await self._replay(item)
            if self.close_code is not None:
                await self.close(self.close_code)
                return

    async def close(self, code: int) -> None:
        """Send a close frame; a peer that reads nothing never lets it out (the send waits for
        the transport to drain), so after ``CLOSE_WAIT_S`` the connection is aborted."""
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self.ws.close(code)
        except TimeoutError:
            if self.direct is not None:
                self.direct.transport.abort()
        except Exception:
            log.debug("closing a /ws socket failed", exc_info=True)

    async def _replay(self, job: _Replay) -> None:
        sub = job.sub
        cursor = job.since
        while cursor < job.upto and sub.active:
            page = await self.hub.broker.read_since(sub.internal, cursor, limit=REPLAY_PAGE)
            if isinstance(page, Reset):
                await self.ws.send_text(_dumps({"type": "reset", "channel": sub.external}))
                cursor = job.upto
                break
            if not page:
                break
            for event in page:
                assert event.id is not None
                if event.id > job.upto:
                    break
                await self.ws.send_text(event_frame(sub.external, event))
                cursor = event.id
        sub.cursor = max(sub.cursor, cursor, job.upto)
        self._go_live(sub)

    def drop_buffer(self, sub: Subscription) -> None:
        """Forget the live events buffered for ``sub`` during its replay."""
        for _, _, size in sub.buffer:
            self.queued_bytes -= size
        sub.buffer = []

    def _go_live(self, sub: Subscription) -> None:
        """Flush what arrived during the replay (without duplicates), then switch to live."""
        if not sub.active:  # unsubscribed or refused meanwhile
            self.drop_buffer(sub)
            return
        buffered, sub.buffer, sub.replaying = sub.buffer, [], False
        for id, frame, size in buffered:
            self.queued_bytes -= size
            if id is not None and id <= sub.cursor:
                continue
            if id is not None:
                sub.cursor = id
            self.send_live(frame, size)


class Hub:
    """Serves ``/ws`` sockets over one broker."""

    def __init__(self, broker: Broker, authenticate: Authenticate, authorize: Authorize,
                 limits: HubLimits | None = None, *, recheck: Recheck | None = None,
                 held: Callable[[str], bool] | None = None, caps: Caps | None = None,
                 on_slow_close: Callable[[], None] | None = None) -> None:
        self.broker = broker
        # Called when a socket is closed as too slow (4008): the server counts them in a metric.
        self.on_slow_close = on_slow_close
        self.authenticate = authenticate
        self.authorize = authorize
        self.limits = limits or HubLimits()
        self.recheck = recheck
        # Channels whose events wait for a rights re-check of their subscribers before delivery.
        self.held = held
        self._held: dict[str, list[tuple[Event | Reset, int]]] = {}  # (item, newest serial then)
        self._serial = 0
        self._release_task: asyncio.Task[None] | None = None
        self._recheck_task: asyncio.Task[None] | None = None
        # open sockets per user (sockets_per_user): this node's, or the cluster's (realtime.caps)
        self.caps: Caps = caps if caps is not None else LocalCaps(self.limits.sockets_per_user)
        self._subs: dict[str, set[Subscription]] = {}
        # Per channel, its distinct readers: clerk_id -> [a User of theirs, their subscriptions].
        # A re-check asks about each (user, channel) once; keeping the set as subscriptions come
        # and go makes that O(users), not O(sockets), before each burst of a held channel.
        self._readers: dict[str, dict[str, list[Any]]] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._connections: set[Connection] = set()
        self._listeners_by_channel: dict[str, Callable[[Event | Reset], None]] = {}
        # Typing rate limit per user (this node): a token bucket of (tokens, updated at).
        self._typing_buckets: dict[str, tuple[float, float]] = {}

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # fan-out ------------------------------------------------------------------------------

    def _listener(self, channel: str) -> Callable[[Event | Reset], None]:
        if self.recheck is not None and self.held is not None and self.held(channel):
            def hold(item: Event | Reset) -> None:
                self._hold(channel, item)

            return hold

        def on_item(item: Event | Reset) -> None:
            self._fan_out(channel, item)

        return on_item

    def _fan_out(self, channel: str, item: Event | Reset, upto: int | None = None) -> None:
        """Deliver ``item`` to the channel's subscriptions (attached by serial ``upto``)."""
        subs = self._subs.get(channel)
        if not subs:
            return
        if isinstance(item, Reset):
            if upto is not None:
                subs = {sub for sub in subs if sub.serial <= upto}
            for sub in subs:
                sub.conn.send(_dumps({"type": "reset", "channel": sub.external}))
                sub.cursor = max(sub.cursor, item.last_id)
            return
        sender = None
        item_id = item.id
        if item_id is None:  # typing: to the others only
            sender = item.data.get("user_id")
        frames: dict[str, tuple[str, bytes]] = {}
        external, text, encoded = "", "", b""
        newest = upto if upto is not None else self._serial  # attached after the hold: not theirs
        for sub in subs:
            if sub.serial > newest:
                continue
            conn = sub.conn
            if sender is not None and conn.user.clerk_id == sender:
                continue
            if sub.external != external:  # one name per channel, nearly always: built once
                external = sub.external
                found = frames.get(external)
                if found is None:
                    found_text = event_frame(external, item)
                    found = frames[external] = (found_text, encode_text(found_text))
                text, encoded = found
            if item_id is not None and item_id <= sub.cursor:
                continue
            if (conn.direct is None or sub.replaying or conn.busy or conn.queue
                    or conn.close_code is not None):
                conn.deliver(sub, item, text, encoded)
                continue
            # Connection.deliver's fast path, inlined: the hub's own work per delivery went from
            # ~5,400 to ~3,100 instructions (callgrind, bench/fanout_scriptorium/micro.py); the
            # rest of a delivery's cost is the kernel's send, which Socket.IO pays alike.
            if item_id is not None:
                sub.cursor = item_id
            protocol = conn._protocol
            if protocol.close_sent or protocol.conn.state is not _OPEN or conn._closing():
                continue
            conn._write(encoded)
            if conn.queued_bytes + conn._backlog() > conn._max_backlog:
                conn.kill(CLOSE_TOO_SLOW)

    # rights re-check ----------------------------------------------------------------------
    #
    # Two paths end a subscription whose rights are gone (§7): a sweep of every subscription
    # every ``recheck_seconds`` (quiet channels), and, for ``held`` channels, a check of the
    # channel's subscribers before each burst of its events is delivered, so an event written
    # after a course was unpublished never reaches a reader who lost it. Both ask the policy
    # once per (user, channel) for a batch, not once per socket.

    def start(self) -> None:
        """Start the periodic re-check (call once the event loop runs)."""
        if self.recheck is not None and self._recheck_task is None:
            self._recheck_task = asyncio.create_task(self._recheck_forever(), name="ws-recheck")

    async def _recheck_forever(self) -> None:
        while True:
            await grid.sleep(self.limits.recheck_seconds)
            try:
                await self._recheck_channels(list(self._subs))
            except Exception:
                log.warning("/ws rights re-check failed; retrying at the next sweep", exc_info=True)

    async def _recheck_channels(self, channels: list[str]) -> None:
        """Re-check each (user, channel) subscribed on this node among ``channels``; end the
        subscriptions the policy now refuses with an ``error`` for their channel."""
        assert self.recheck is not None
        items: list[tuple[User, str]] = []
        counted = 0
        for channel in channels:
            readers = self._readers.get(channel)
            if readers:
                items += [(entry[0], channel) for entry in readers.values()]
                counted += len(readers)
                if counted > RECHECK_BATCH:  # a sweep of many channels: let the loop breathe
                    counted = 0
                    await asyncio.sleep(0)
        for start in range(0, len(items), RECHECK_BATCH):
            denied = await self.recheck(items[start:start + RECHECK_BATCH])
            by_channel: dict[str, dict[str, ChannelDenied]] = {}
            for (clerk_id, channel), reason in denied.items():
                by_channel.setdefault(channel, {})[clerk_id] = reason
            for channel, reasons in by_channel.items():
                await self._end(channel, reasons)

    async def _end(self, channel: str, reasons: dict[str, ChannelDenied]) -> None:
        """End the channel's subscriptions of the users in ``reasons`` (one pass)."""
        ended = [sub for sub in self._subs.get(channel, ()) if sub.conn.user.clerk_id in reasons]
        for sub in ended:
            conn = sub.conn
            if conn.subs.get(sub.external) is sub:
                del conn.subs[sub.external]
            conn.drop_buffer(sub)  # events buffered during a replay are not delivered either
            reason = reasons[conn.user.clerk_id]
            self._error(conn, sub.external, reason.code, reason.detail)
            sub.active = False
        for sub in ended:
            await self._detach(sub)

    def _hold(self, channel: str, item: Event | Reset) -> None:
        self._held.setdefault(channel, []).append((item, self._serial))
        if self._release_task is None or self._release_task.done():
            self._release_task = asyncio.create_task(self._release_held(), name="ws-release")

    async def _release_held(self) -> None:
        """Deliver held events, channel by channel in order, each burst after one re-check of
        its channels' subscribers (events arriving meanwhile wait for the next one)."""
        while self._held:
            batch, self._held = self._held, {}
            try:
                async with asyncio.timeout(RELEASE_CHECK_S):
                    await self._recheck_channels(list(batch))
            except Exception:
                # Fail open: the policy is unreachable (the database is down); the sweep ends
                # lost subscriptions once it is back.
                log.warning("/ws re-check before delivery failed; delivering", exc_info=True)
            for channel, items in batch.items():
                for item, upto in items:
                    self._fan_out(channel, item, upto)

    async def _attach(self, sub: Subscription) -> None:
        """Add ``sub`` to its channel; the first local subscriber subscribes at the broker and
        the others wait for that (and retry if it failed or the channel emptied meanwhile)."""
        channel = sub.internal
        self._serial += 1
        sub.serial = self._serial
        while True:
            ready = self._ready.get(channel)
            if ready is None:
                ready = self._ready[channel] = asyncio.get_running_loop().create_future()
                self._subs[channel] = {sub}
                self._count_reader(channel, sub, 1)
                self._listeners_by_channel[channel] = listener = self._listener(channel)
                try:
                    await self.broker.subscribe(channel, listener)
                except BaseException:
                    if self._ready.get(channel) is ready:
                        self._subs.pop(channel, None)
                        self._readers.pop(channel, None)
                        self._ready.pop(channel, None)
                        self._listeners_by_channel.pop(channel, None)
                    ready.set_result(None)  # the waiters retry
                    raise
                ready.set_result(None)
                if self._ready.get(channel) is not ready:  # emptied while subscribing
                    await self.broker.unsubscribe(channel, listener)
                return
            if not ready.done():
                await asyncio.shield(ready)
            subs = self._subs.get(channel)
            if self._ready.get(channel) is ready and subs is not None:
                if sub not in subs:
                    subs.add(sub)
                    self._count_reader(channel, sub, 1)
                return

    def _count_reader(self, channel: str, sub: Subscription, delta: int) -> None:
        """Keep ``_readers`` in step with ``_subs`` (``sub`` added: +1, removed: -1)."""
        readers = self._readers.setdefault(channel, {})
        user = sub.conn.user
        entry = readers.get(user.clerk_id)
        if entry is None:
            if delta > 0:
                readers[user.clerk_id] = [user, delta]
        elif entry[1] + delta <= 0:
            del readers[user.clerk_id]
        else:
            entry[1] += delta

    async def _detach(self, sub: Subscription) -> None:
        sub.active = False
        channel = sub.internal
        subs = self._subs.get(channel)
        if subs is None:
            return
        if sub in subs:
            subs.discard(sub)
            self._count_reader(channel, sub, -1)
        if not subs:
            del self._subs[channel]
            self._readers.pop(channel, None)
            self._ready.pop(channel, None)
            listener = self._listeners_by_channel.pop(channel, None)
            if listener is not None:
                with contextlib.suppress(Exception):
                    await self.broker.unsubscribe(channel, listener)

    # a socket ---------------------------------------------------------------------------

    async def serve(self, ws: WebSocket) -> None:
        """Serve one ``/ws`` socket until it closes."""
        await ws.accept()
        try:
            user = await self.authenticate(ws)
        except ConnectionDenied as denied:
            await ws.close(denied.code, denied.reason[:120])
            return
        handle = await self.caps.take(user.clerk_id)
        if handle is None:
            await ws.close(CLOSE_TOO_MANY, "Too many connections.")
            return
        conn = Connection(self, ws, user)
        self._connections.add(conn)
        writer = asyncio.create_task(conn.write_forever(), name="ws-writer")
        reader = asyncio.create_task(self._read_forever(conn), name="ws-reader")
        try:
            await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            for task in (reader, writer):
                with contextlib.suppress(BaseException):
                    await task
            self._connections.discard(conn)
            await self.caps.release(user.clerk_id, handle)
            for sub in list(conn.subs.values()):
                await self._detach(sub)
            conn.subs.clear()
            if ws.application_state != WebSocketState.DISCONNECTED:
                await conn.close(conn.close_code or 1000)

    async def close_all(self) -> None:
        for task in (self._recheck_task, self._release_task):
            if task is not None:
                task.cancel()
        for conn in list(self._connections):
            conn.kill(CLOSE_GOING_AWAY)

    async def _read_forever(self, conn: Connection) -> None:
        limits = self.limits
        limit = limits.max_inbound_bytes
        rate, burst = limits.frames_per_second, limits.frame_burst
        tokens, at = burst, time.monotonic()
        while conn.close_code is None:
            message = await conn.ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            text = message.get("text")
            size = len(text) if text is not None else len(message.get("bytes") or b"")
            if size > limit or (text is not None and size > limit // 4 and len(text.encode()) > limit):
                conn.kill(CLOSE_TOO_BIG)
                return
            if rate > 0:
                now = time.monotonic()
                tokens = min(burst, tokens + (now - at) * rate)
                at = now
                cost = 1 + size // FRAME_COST_BYTES
                if tokens < cost:
                    # Dropped unparsed; the socket is not read until the bucket could pay for
                    # it, so a flood costs one error per frame at ``rate`` at most.
                    self._error(conn, None, "rate_limited", "Too many frames; slow down.")
                    await asyncio.sleep((cost - tokens) / rate)
                    continue
                tokens -= cost
            if text is None:
                self._error(conn, None, "bad_request", "Frames must be JSON text.")
                continue
            try:
                frame = json.loads(text)
            except Exception:  # ValueError, RecursionError (deep nesting), MemoryError
                self._error(conn, None, "bad_request", "The frame is not valid JSON.")
                continue
            if not isinstance(frame, dict):
                self._error(conn, None, "bad_request", "A frame is a JSON object with a 'type'.")
                continue
            try:
                await self._handle(conn, frame)
            except ChannelDenied as denied:
                self._error(conn, _channel_of(frame), denied.code, denied.detail)
            except Exception:
                log.exception("broker unavailable while serving a frame")
                conn.kill(CLOSE_INTERNAL)
                return

    def _error(self, conn: Connection, channel: str | None, code: str, detail: str) -> None:
        frame: dict[str, Any] = {"type": "error"}
        if channel is not None:
            frame["channel"] = channel
        frame.update(code=code, detail=detail)
        conn.send(_dumps(frame))

    async def _handle(self, conn: Connection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "ping":
            conn.send('{"type":"pong"}')
            return
        if kind not in ("subscribe", "unsubscribe", "typing"):
            shown = _echo(kind) if isinstance(kind, str) else "missing or not a string"
            raise ChannelDenied("bad_request", f"Unknown frame type ({shown}).")
        channel = _channel_of(frame)
        if channel is None:
            raise ChannelDenied("bad_request", "'channel' must be a channel name.")
        if kind == "subscribe":
            await self._subscribe(conn, channel, frame.get("since"))
        elif kind == "unsubscribe":
            sub = conn.subs.pop(channel, None)
            if sub is not None:
                await self._detach(sub)
        else:
            await self._typing(conn, channel)

    async def _subscribe(self, conn: Connection, channel: str, since_raw: Any) -> None:
        since = _parse_since(since_raw)
        old = conn.subs.pop(channel, None)
        if old is not None:
            await self._detach(old)
        if len(conn.subs) >= self.limits.max_subscriptions:
            raise ChannelDenied("bad_request",
                                f"At most {self.limits.max_subscriptions} subscriptions per connection.")
        internal = await self.authorize(conn.user, channel)
        sub = Subscription(conn, channel, internal)
        await self._attach(sub)
        try:
            last = await self.broker.last_id(internal)
        except BaseException:
            await self._detach(sub)
            raise
        if since is not None and since > last:
            await self._detach(sub)
            raise ChannelDenied("bad_request", f"'since' {since} is ahead of the channel (last id {last}).")
        if not sub.active:  # a re-check ended it meanwhile (and sent its error): no "subscribed"
            return
        if conn.close_code is not None:
            await self._detach(sub)
            return
        conn.subs[channel] = sub
        conn.send(_dumps({"type": "subscribed", "channel": channel, "last_id": last}))
        if since is not None and since < last:
            sub.cursor = since
            conn.queue.append(_Replay(sub, since, last))
            conn.wake.set()
        else:
            sub.cursor = last
            conn._go_live(sub)

    async def _typing(self, conn: Connection, channel: str) -> None:
        if not channel.startswith("thread:"):
            raise ChannelDenied("bad_request", "Typing is only sent to thread:<post_id> channels.")
        sub = conn.subs.get(channel)
        internal = sub.internal if sub is not None else await self.authorize(conn.user, channel)
        now = time.monotonic()
        limits = self.limits
        if len(self._typing_buckets) > 10_000:
            self._typing_buckets.clear()
        tokens, at = self._typing_buckets.get(conn.user.clerk_id, (limits.typing_burst, now))
        tokens = min(limits.typing_burst, tokens + (now - at) * limits.typing_per_second)
        if tokens < 1:
            self._typing_buckets[conn.user.clerk_id] = (tokens, now)
            raise ChannelDenied("rate_limited", "Too many typing events; slow down.")
        self._typing_buckets[conn.user.clerk_id] = (tokens - 1, now)
        await self.broker.signal(internal, "typing", {"user_id": conn.user.clerk_id, "name": conn.user.name})


def _channel_of(frame: dict[str, Any]) -> str | None:
    """The frame's ``channel`` when it can be a channel name (and so be echoed back)."""
    channel = frame.get("channel")
    if not isinstance(channel, str) or not channel or len(channel) > ECHO_MAX:
        return None
    return channel


def _parse_since(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise ChannelDenied("bad_request", "'since' must be an event id of this channel.")
    if isinstance(raw, int) and raw >= 0:
        return raw
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 19:
        return int(raw)
    raise ChannelDenied("bad_request", "'since' must be an event id of this channel.")
