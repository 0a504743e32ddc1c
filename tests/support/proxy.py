"""A TCP proxy for fault tests (asyncio, in the test's own loop): between clients and servers, or
between servers and Redis, it can stall (stop forwarding, keep every socket open: a blackhole),
cut (abort every connection), delay (each chunk forwarded ``delay`` seconds after it arrived,
never reordered) and throttle what goes toward the client to ``rate`` bytes per second.

Upstreams are tried in turn from a round-robin start, skipping one that refuses the connection
(failover to a live node). ``rcvbuf`` sets SO_RCVBUF of the proxy's upstream sockets: this
machine autotunes loopback receive buffers up to 32 MiB, which would hide a slow reader from the
server for a long time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

CHUNK = 64 * 1024


class Proxy:
    def __init__(self, upstreams: list[int] | Callable[[], list[int]], *, rcvbuf: int | None = None) -> None:
        self._upstreams = upstreams
        self.rcvbuf = rcvbuf
        self.delay = 0.0  # seconds added to every chunk, both ways
        self.rate: float | None = None  # bytes/s toward the client (None: as fast as it goes)
        self.down = asyncio.Event()  # set: upstream -> client flows
        self.up = asyncio.Event()  # set: client -> upstream flows
        self.down.set()
        self.up.set()
        self.port = 0
        self.connections = 0  # accepted so far
        self._next = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stall(self, *, down: bool = True, up: bool = True) -> None:
        """Stop forwarding (the given directions); sockets stay open, new ones are accepted."""
        if down:
            self.down.clear()
        if up:
            self.up.clear()

    def resume(self) -> None:
        self.down.set()
        self.up.set()

    def cut(self) -> None:
        """Abort every open connection (both ends see a reset)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        ports = self._upstreams() if callable(self._upstreams) else self._upstreams
        start, self._next = self._next, self._next + 1
        for i in range(len(ports)):
            port = ports[(start + i) % len(ports)]
            sock = socket.socket()
            if self.rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            return await asyncio.open_connection(sock=sock)
        return None

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(cwriter)
        upstream = await self._connect()
        if upstream is None:
            cwriter.transport.abort()
            return
        ureader, uwriter = upstream
        self._writers.add(uwriter)
        pumps = [asyncio.create_task(self._pump(creader, uwriter, self.up, throttled=False)),
                 asyncio.create_task(self._pump(ureader, cwriter, self.down, throttled=True))]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for writer in (cwriter, uwriter):  # one side ended: end the other (a cut stays a cut)
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
        for task in pumps:
            task.cancel()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event,
                    *, throttled: bool) -> None:
        try:
            while True:
                await flowing.wait()  # a stalled direction is not even read: backpressure builds
                rate = self.rate if throttled else None
                data = await reader.read(max(1, int(rate // 20)) if rate else CHUNK)
                if not data:
                    return
                arrived = time.monotonic()
                await flowing.wait()
                if self.delay:
                    await asyncio.sleep(max(0.0, arrived + self.delay - time.monotonic()))
                writer.write(data)
                await writer.drain()
                if rate:
                    await asyncio.sleep(len(data) / rate)
        except (ConnectionError, OSError):
            return
