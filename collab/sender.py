"""Writing frames to one connection without a task or an await per frame.

Fast path: when ``send`` is uvicorn's own WebSocket protocol (sans-I/O implementation, no
compression negotiated: :func:`wire.websocket.direct_protocol`), a server frame is unmasked, so
one encoded frame (:func:`wire.websocket.encode_frame`) is written straight to every writable
transport: encoded once per broadcast, no coroutine. Depends on :mod:`wire` only.

An ASGI ``send`` coroutine normally completes without suspending (the transport takes the
bytes); only when the transport is paused does it wait. A :class:`Sender` steps the coroutine
itself: the common case costs one ``coro.send(None)``, and a paused transport parks the
coroutine on its future while later frames queue up.

Every byte waiting for the client counts toward ``max_queued`` (16 MiB; over it the connection is
closed 4008 as too slow): frames gathered for this iteration's write, frames queued behind a paused
transport, and what the transport itself still buffers. Counting only the queue behind a paused
transport let one write of 2,000 sync step 1 frames from a client that never reads queue 2,000
whole-document answers (~0.5 GB) in a single iteration, before the transport could pause.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from wire import schedstat
from wire.websocket import CLOSE_TOO_SLOW, direct_protocol, encode_frame

log = logging.getLogger("scriptorium.collab")

ASGISend = Callable[[dict[str, Any]], Awaitable[None]]

_STATE_OPEN = 1  # websockets.protocol.State.OPEN
# A socket closed as too slow still holds what its transport buffers until the close frame gets
# through; a client that never reads never lets it, so the connection is dropped after this long.
ABORT_AFTER_S = 10.0
# How often the node's load is looked at, at most (Coalescer.hold).
LOAD_WINDOW_S = 0.25
# A paced node stops pacing when its load falls under this share of ``pace_above``.
UNPACE_BELOW = 0.6


def default_meter() -> tuple[float, float]:
    """(now, seconds the calling thread asked of a CPU so far): its time on one plus its time
    runnable but waiting for one (Linux schedstat); its CPU time where schedstat is missing."""
    stats = schedstat.read()
    if stats is None:
        return time.monotonic(), time.thread_time()
    return time.monotonic(), stats[0] + stats[1]


class Coalescer:
    """Flushes every sender that gathered frames: at the end of the loop iteration, but while the
    node is busy never sooner than ``interval`` seconds after the previous flush.

    A lone keystroke leaves at once (the last flush is long past); under load, the frames of the
    next ``interval`` gather and each socket gets them in one write. One ``send`` per socket per
    frame was the largest single cost of a busy room's fan-out (a syscall, which on loopback also
    runs the reader's TCP receive path): at 100 readers of 500 updates/s, an interval of 4 ms
    turns ~2 frames per socket into one write (30 % less CPU per delivery), for up to that much
    latency. ``interval`` 0 flushes once per loop iteration.

    The node pays that latency only while it is busy: from ``pace_above`` of one core, until its
    load falls under :data:`UNPACE_BELOW` of that (a node that paces asks for ~30 % less, so
    it keeps pacing while the load lasts). Load is what the event loop's thread asked of a CPU (its time on
    one plus its time runnable but waiting for one: :func:`default_meter`), so a node starved of
    CPU (a container's quota, a busy shared machine) counts as busy, and threads that do not hold
    up the loop do not. It is looked at when :meth:`hold` is asked, at most once per
    :data:`LOAD_WINDOW_S`: over the time since the last look (after an idle spell, that spell too).
    A node with CPU to spare spends it on latency, flushing every loop iteration (a room's updates
    of one iteration still leave merged); one near its limit merges, so how much a node can carry
    is what the interval makes it, not less. Without that, the interval cost every room its
    milliseconds even on an idle node (p50 4 ms against 1 for @hocuspocus/server, which writes at
    once).
    ``pace_above`` 0: always paced.

    :meth:`defer` runs a callback at the next flush, before the writes: a busy room sends the
    updates of the whole interval there as one merged frame (:meth:`collab.room.Room.flush_updates`),
    so its readers apply one update per interval instead of one per writer. :meth:`soon` runs one
    at the end of this loop iteration, whatever the interval, and writes then: a room that sent
    nothing for an interval has nothing to merge its update with, and holding it would only delay
    it (the node's pace is not a quiet room's: 50 documents of 5 updates/s each waited for the
    node's next write, one update per write, as if they were one busy room)."""

    def __init__(self, interval: float = 0.0, *, pace_above: float = 0.0,
                 meter: Callable[[], tuple[float, float]] | None = None) -> None:
        self._pending: list[Sender] = []
        self._before: list[Callable[[], None]] = []  # at the next flush
        self._now: list[Callable[[], None]] = []  # at the end of this loop iteration
        self._scheduled = False  # a paced flush (at the interval) is scheduled
        self._soon = False  # a flush at the end of this loop iteration is scheduled
        self.interval = interval
        self._last = -1e9  # loop time of the last flush
        self.pace_above = pace_above
        self._meter = meter or default_meter
        self._looked_at = -1e9  # loop time of the last look at the load
        self._window: tuple[float, float] | None = None  # the meter's reading at that look
        self.paced = pace_above <= 0 and interval > 0  # (a metric reads it)
        self.paced_seconds = 0.0  # time spent paced, up to the last look (a metric reads it)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, looked up once per loop: on Python 3.11 every
        ``asyncio.get_running_loop()`` is a getpid() system call, several per update."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
            if self._scheduled or self._soon:  # scheduled on a loop that is gone: again here
                self._scheduled = self._soon = False
                if self._now:
                    self._soon = True
                    loop.call_soon(self._flush_soon)
                if self._pending or self._before:
                    self._scheduled = True
                    loop.call_soon(self.flush)
        return loop

    def hold(self) -> float:
        """How long a busy room's updates and the node's writes wait now: ``interval`` while the
        node is busy (or always, ``pace_above`` 0), else 0. The load is looked at when this is
        asked, at most once per :data:`LOAD_WINDOW_S` (an idle node's next window spans its idle
        time)."""
        if self.pace_above > 0 and self.interval > 0:
            now = self.loop.time()
            if now - self._looked_at >= LOAD_WINDOW_S:
                self._looked_at = now
                at, busy = self._meter()
                if self._window is not None and at > self._window[0]:  # (the first look: a start)
                    elapsed = at - self._window[0]
                    if self.paced:
                        self.paced_seconds += elapsed
                    load = (busy - self._window[1]) / elapsed
                    if load >= self.pace_above:
                        self.paced = True
                    elif load < self.pace_above * UNPACE_BELOW:
                        self.paced = False
                self._window = (at, busy)
        return self.interval if self.paced else 0.0

    def add(self, sender: Sender) -> None:
        self._pending.append(sender)
        if not self._soon:  # (else it is written at the end of this iteration anyway)
            self._schedule()

    def defer(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at the next flush, before the senders write (its frames go out in
        that flush)."""
        self._before.append(callback)
        self._schedule()

    def soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at the end of this loop iteration and write what it pushed then (a
        flush that runs no :meth:`defer` callback: a busy room keeps its pace)."""
        self._now.append(callback)
        if not self._soon:
            self._soon = True
            self.loop.call_soon(self._flush_soon)

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop = self.loop
            hold = self.hold()
            due = self._last + hold
            if hold <= 0 or loop.time() >= due:
                loop.call_soon(self.flush)
            else:
                loop.call_at(due, self.flush)

    @staticmethod
    def _run(callbacks: list[Callable[[], None]]) -> None:
        for callback in callbacks:
            try:
                callback()
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # (a pycrdt panic is a BaseException)
                log.exception("collab flush callback failed")

    def flush(self) -> None:
        """The paced flush: every held callback, then the writes."""
        self._flush(paced=True)

    def _flush_soon(self) -> None:
        """The end-of-turn flush: only :meth:`soon`'s callbacks (a busy room keeps its pace), then
        the writes."""
        self._flush(paced=False)

    def _flush(self, *, paced: bool) -> None:
        try:
            if self.interval > 0:
                self._last = self.loop.time()
            while self._now or (paced and self._before):  # what they push joins this flush
                now, self._now = self._now, []
                self._run(now)
                if paced:
                    before, self._before = self._before, []
                    self._run(before)
        finally:
            # never left scheduled: that would stop every later write of this node
            if paced:
                self._scheduled = False
            else:
                self._soon = False
        self._write()

    def _write(self) -> None:
        pending, self._pending = self._pending, []
        for sender in pending:
            try:
                sender.flush_out()
            except Exception:
                log.exception("collab write failed")


class Sender:
    def __init__(self, send: ASGISend, *, max_queued: int = 16 * 1024 * 1024,
                 coalescer: Coalescer | None = None) -> None:
        self._send = send
        self._out: list[tuple[bytes, bytes]] = []
        self._coalescer = coalescer or Coalescer()
        self._out_bytes = 0  # encoded size of ``_out``
        self._queue: deque[dict[str, Any]] = deque()
        self._queued = 0
        self._buffered = 0  # the transport's write buffer when last looked at (direct path)
        self._busy = False
        self._max = max_queued
        self._proto = direct_protocol(send)
        self.closed = False
        self.failed = False
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting for the client: gathered, queued and (direct path) buffered."""
        return self._out_bytes + self._queued + self._buffer_size()

    @property
    def direct(self) -> bool:
        return self._proto is not None

    def push(self, frame: bytes, message: dict[str, Any] | None = None, wire: bytes | None = None) -> None:
        """Send ``frame`` now, or queue it behind frames waiting on a paused transport.

        ``message`` is the ASGI message and ``wire`` the encoded frame for ``frame`` when the
        caller shares them between peers. On the direct path, frames pushed during one event
        loop iteration leave in one write at its end (:class:`Coalescer`).
        """
        if self.closed:
            return
        if self._proto is not None and not self._busy:
            if not self._out:
                self._coalescer.add(self)
            if wire is None:
                wire = encode_frame(frame)
            self._out.append((frame, wire))
            self._out_bytes += len(wire)
            # Two additions and a comparison per frame; the transport is asked only near the limit.
            if self._out_bytes + self._queued + self._buffered > self._max:
                self._check_limit()
            return
        self._push_slow(frame, message)

    def _buffer_size(self) -> int:
        proto = self._proto
        if proto is None or proto.transport is None:
            return 0
        size: int = proto.transport.get_write_buffer_size()
        return size

    def _check_limit(self) -> None:
        """Close as too slow when more than ``max_queued`` bytes wait (the buffer looked at now)."""
        self._buffered = self._buffer_size()
        waiting = self._out_bytes + self._queued + self._buffered
        if waiting > self._max:
            log.warning("collab connection too slow, closing", extra={"queued": waiting})
            self.close(CLOSE_TOO_SLOW, drop=True)

    def _push_slow(self, frame: bytes, message: dict[str, Any] | None) -> None:
        if self.closed:  # e.g. closed as too slow by an earlier frame of the same flush
            return
        if message is None:
            message = {"type": "websocket.send", "bytes": frame}
        if not self._busy:
            self._run(message)
            return
        self._queue.append(message)
        self._queued += len(frame)
        if self._queued + self._buffered > self._max:
            self._check_limit()

    def flush_out(self) -> None:
        """Write the frames gathered this iteration: one write when the transport takes them."""
        out = self._out
        if not out:
            return
        self._out = []
        self._out_bytes = 0
        if self.closed:
            return
        proto = self._proto
        if (not self._busy and proto.writable.is_set() and not proto.close_sent
                and proto.conn.state == _STATE_OPEN):
            proto.transport.write(out[0][1] if len(out) == 1 else b"".join(wire for _, wire in out))
            self._buffered = proto.transport.get_write_buffer_size()
            return
        for frame, _ in out:  # paused or closing: the ASGI path queues (and bounds) them
            self._push_slow(frame, None)

    def close(self, code: int, reason: str = "", *, drop: bool = False) -> None:
        """Close the socket with ``code`` (once). Frames gathered this iteration are written
        first unless ``drop`` (too slow: nothing more is queued for it); queued ones are dropped."""
        if self.closed:
            return
        if drop:
            self._out = []
            self._out_bytes = 0
        else:
            self.flush_out()
        self.closed = True
        self._queue.clear()
        self._queued = 0
        message = {"type": "websocket.close", "code": code, "reason": reason}
        if self._busy:
            self._queue.append(message)
        else:
            self._run(message)
        if drop and self._proto is not None:
            asyncio.get_running_loop().call_later(ABORT_AFTER_S, self._abort)

    def _abort(self) -> None:
        proto = self._proto
        if proto is not None and not proto.disconnected and proto.transport is not None:
            log.info("collab connection did not take its close frame, dropping it")
            proto.transport.abort()

    # --- stepping the ASGI send coroutine ------------------------------------------------

    def _run(self, message: dict[str, Any]) -> None:
        self._busy = True
        self.idle.clear()
        coro: Coroutine[Any, Any, None] = self._send(message)  # type: ignore[assignment]
        self._step(coro)

    def _step(self, coro: Coroutine[Any, Any, None], _fut: Any = None) -> None:
        while True:
            try:
                yielded = coro.send(None)
            except StopIteration:
                pass
            except BaseException as exc:
                self._fail(exc)
                return
            else:
                # Suspended: resume when what it waits on is done, like a Task would.
                if yielded is None:
                    asyncio.get_running_loop().call_soon(self._step, coro)
                else:
                    yielded._asyncio_future_blocking = False
                    yielded.add_done_callback(functools.partial(self._step, coro))
                return
            if not self._queue:
                self._busy = False
                self.idle.set()
                return
            message = self._queue.popleft()
            if message["type"] == "websocket.send":
                self._queued -= len(message["bytes"])
            coro = self._send(message)  # type: ignore[assignment]

    def _fail(self, exc: BaseException) -> None:
        self.failed = True
        self.closed = True
        self._busy = False
        self._queue.clear()
        self._queued = 0
        self.idle.set()
        if not isinstance(exc, (OSError, RuntimeError)) and type(exc).__name__ != "ClientDisconnected":
            log.debug("collab send failed", exc_info=exc)
