"""uvicorn's websockets-sansio protocol, parsing what one socket sent a bounded slice at a time.

uvicorn's ``data_received`` parses every frame of one socket read before it returns: a 256 KiB
read of tiny frames (6-8 bytes each, ~4.5 us per frame in the parser, more with uvicorn's
per-frame handling) held the event loop 150-400 ms, once per read, on ``/collab`` and ``/ws``
alike, before any of our code (budgets, limits) saw a frame. Here a read is fed to the parser
in slices of ``SLICE_BYTES`` until ``TURN_SECONDS`` of one loop turn are spent; the rest waits
for a ``call_soon`` continuation with the socket's reading paused, so other sockets, timers and
the loop-lag watcher run in between. Parsing also waits while the app has ``QUEUED_MESSAGES``
of the socket's messages still to take. Bytes are parsed in the order they arrived. Per socket,
at most what two reads brought in (512 KiB with uvloop's 256 KiB reads) waits unparsed, and
about ``QUEUED_MESSAGES`` plus one slice's messages wait for the app. Once the app has closed
the socket the cap is lifted (uvicorn drops messages then): a peer that stopped reading because
its sends were blocked must have its bytes read to get to our close frame.

Large frames are cheap per byte (a 1 MB frame parses in ~1 ms), so an honest client's big
update still goes through within a few loop turns; reads of at most ``SLICE_BYTES`` (every
keystroke-sized update) take uvicorn's own path unchanged, at no extra cost.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, cast

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from wire import grid

SLICE_BYTES = 1024  # at most ~170 minimal frames: under 1 ms of parsing
TURN_SECONDS = 0.0005  # parsing one socket's bytes stops after this much of a loop turn
# Parsing also waits while the app has this many of the socket's messages still to take: a
# 256 KiB read of 8-byte frames is 32,000 queued messages (~8 MB) otherwise, held for seconds
# by an app that throttles the socket (collab: 2,048 frames a second).
QUEUED_MESSAGES = 64
# uvicorn writes a pong for every ping straight to the transport, and pings queue nothing for
# the app, so a peer that pings and never reads grew the write buffer without bound (RSS
# 32 MB -> 437 MB in 24 s). Once a pong leaves more than this waiting to be sent, reading stops
# until the transport has drained (resume_writing). It is the /ws backlog (§7), so the app's
# own limits (1 MiB /ws, 16 MiB collab: close 4008) still decide about frames the app sends;
# only pongs, which the app never sees, are held back here.
PONG_BACKLOG_BYTES = 1024 * 1024


class PacedWebSocketProtocol(WebSocketsSansIOProtocol):
    """:class:`WebSocketsSansIOProtocol` with the parsing of each read bounded per loop turn."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting: deque[memoryview] = deque()  # read, not yet parsed, in arrival order
        self.paced_pause = False  # reading paused here (uvicorn's own pause is ``read_paused``)
        self.continuation: asyncio.Handle | None = None
        self.stalled = False  # parsing waits for the app to take queued messages
        self.write_pause = False  # reading paused: the peer does not read the pongs to its pings

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.write_pause:
            return
        self.write_pause = False
        # Only if no other pause holds: uvicorn's (the app has messages to take) or ours (bytes
        # wait to be parsed; the continuation resumes reading when they are).
        if (not self.read_paused and not self.paced_pause and not self.waiting
                and not self.disconnected and not self.transport.is_closing()):
            self.transport.resume_reading()

    def schedule_ping(self) -> None:
        # uvicorn's keepalive ping timer (0.54), on the node's timer grid (wire/grid.py): every
        # socket's ping shares a wake-up with the node's other periodic timers
        assert self.ping_interval is not None
        # (uvicorn only cancels it: a grid timer does that too)
        self.ping_timer = cast(Any, grid.call_later(max(0.0, self.ping_interval - self.last_ping_rtt),
                                                   self.send_keepalive_ping))

    def handle_ping(self) -> None:
        super().handle_ping()
        # Past the high-water mark, so the transport calls resume_writing once it has drained.
        if (self.transport.get_write_buffer_size() > PONG_BACKLOG_BYTES and not self.write_pause
                and not self.transport.is_closing()):
            self.write_pause = True
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        if self.waiting:
            # Still parsing an earlier read (reading was resumed meanwhile, e.g. by a close):
            # queue behind it, in order, and stop reading again.
            self.waiting.append(memoryview(data))
            self._pause()
            return
        if len(data) <= SLICE_BYTES:  # the common case: no copies, no bookkeeping
            super().data_received(data)
            return
        self.waiting.append(memoryview(data))
        self._parse_some()

    def _pause(self) -> None:
        if not self.transport.is_closing():
            self.paced_pause = True
            self.transport.pause_reading()

    def _parse_some(self) -> None:
        """Feed waiting bytes to the parser for up to ``TURN_SECONDS``; schedule the rest."""
        self.continuation = None
        deadline = time.perf_counter() + TURN_SECONDS
        waiting = self.waiting
        while waiting:
            if self.disconnected or self.transport.is_closing() or self.conn.parser_exc is not None:
                waiting.clear()  # nothing more will be read from this socket
                return
            head = waiting[0]
            size = max(SLICE_BYTES, self._payload_wanted())
            if len(head) > size:
                waiting[0] = head[size:]
                head = head[:size]
            else:
                waiting.popleft()
            super().data_received(bytes(head))
            if waiting and self.queue.qsize() >= QUEUED_MESSAGES and not self.close_sent:
                self._pause()
                self.stalled = True  # receive() goes on once the app has taken most of them
                return
            if waiting and time.perf_counter() >= deadline:
                self._pause()
                self.continuation = self.loop.call_soon(self._parse_some)
                return
        if self.paced_pause:
            self.paced_pause = False
            if (not self.read_paused and not self.write_pause and not self.disconnected
                    and not self.transport.is_closing()):
                self.transport.resume_reading()  # unless the app has messages still to take

    def _payload_wanted(self) -> int:
        """How many more bytes the parser waits for to finish the frame it is in (0: unknown).

        Feeding exactly that much completes one frame at most, however it was cut, so a large
        frame goes in one step instead of 1 KiB slices (a 2 MiB message: ~0.7 ms of CPU, not ~4).
        Read from the parser's suspended ``read_exact(n)`` (websockets' sans-I/O parser); when
        that is not there to read, slicing is merely slower."""
        generator: Any = getattr(self.conn, "parser", None)
        while getattr(generator, "gi_yieldfrom", None) is not None:
            generator = generator.gi_yieldfrom
        frame = getattr(generator, "gi_frame", None)
        if frame is None or frame.f_code.co_name != "read_exact":  # e.g. read_line's own ``n``
            return 0
        wanted = frame.f_locals.get("n")
        if not isinstance(wanted, int):
            return 0
        return max(0, wanted - len(self.conn.reader.buffer))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.continuation is not None:
            self.continuation.cancel()
            self.continuation = None
        self.waiting.clear()
        super().connection_lost(exc)

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if self.stalled and self.close_sent:
            # The app closed and takes no more messages (uvicorn drops them now): parse on, so
            # the peer's close reply is read and a peer blocked sending can read our close.
            self.stalled = False
            self.continuation = self.loop.call_soon(self._parse_some)

    async def receive(self) -> ASGIReceiveEvent:
        # uvicorn resumes reading once the app has taken every queued message; not while bytes
        # already read still wait to be parsed (that would let them pile up). Stalled parsing
        # goes on once the app has taken half of what it waited on.
        message = await self.queue.get()
        if self.stalled and self.queue.qsize() <= QUEUED_MESSAGES // 2:
            self.stalled = False
            self.continuation = self.loop.call_soon(self._parse_some)
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            if not self.waiting and not self.write_pause:
                self.transport.resume_reading()
        return message
