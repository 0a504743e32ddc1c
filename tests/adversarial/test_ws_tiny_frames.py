"""Floods of tiny WebSocket frames (issue 11, collab follow-up 3).

uvicorn's websockets-sansio protocol parsed every frame of one socket read before returning to
the event loop: a 256 KiB read of minimal frames held the loop for hundreds of milliseconds,
once per read, on ``/collab`` and ``/ws`` alike, before any of our budgets saw a frame.
Unsolicited pongs never reach the app at all, so nothing downstream throttles them. Now each
read is parsed in 4 KiB slices, at most ~2 ms per loop turn (server/websocket_protocol.py).
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.adversarial.probe import AttackWatch
from tests.adversarial.rawws import OP_CLOSE, OP_PING, RawSocket, client_frame
from tests.support import ServerProcess, dev_user
from tests.support.collab import make_lesson

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)

OP_PONG = 0xA
FLOOD_BYTES = 4 * 1024 * 1024
RSS_BOUND = 48 * 1024 * 1024  # the whole 4 MB flood, parsed: no per-frame memory is kept


def _flood(opcode: int, payload: bytes) -> bytes:
    frame = client_frame(payload, opcode)  # one mask for all: the parser's cost is the same
    return frame * (FLOOD_BYTES // len(frame))


async def _until_pong(sock: RawSocket, marker: bytes) -> None:
    """Read (and drop) what the server sends until its pong to our marker ping: by then every
    byte sent before the ping was parsed."""
    while True:
        opcode, payload = await sock.read_frame()
        if opcode == OP_PONG and payload == marker:
            return
        assert opcode != OP_CLOSE, f"closed with {int.from_bytes(payload[:2], 'big')}"


@pytest.mark.parametrize(("endpoint", "opcode", "payload"), [
    ("collab", OP_PONG, b""),
    ("ws", OP_PONG, b""),
])
async def test_a_flood_of_tiny_frames_does_not_hold_the_loop(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine,
        endpoint: str, opcode: int, payload: bytes) -> None:
    author = await dev_user(client, "Author")
    if endpoint == "collab":
        lesson = await make_lesson(db, author.clerk_id)
        path = f"/collab/lessons/{lesson.id}?token={author.token}"
    else:
        path = f"/ws?token={author.token}"
    flood = _flood(opcode, payload) + client_frame(b"end", OP_PING)
    sock = await RawSocket.open("127.0.0.1", server.port, path)
    started = asyncio.get_running_loop().time()
    async with AttackWatch(server) as watch:
        await sock.send_raw(flood)
        await asyncio.wait_for(_until_pong(sock, b"end"), 120)
    elapsed = asyncio.get_running_loop().time() - started
    print(f"\n{endpoint} {len(flood):,} bytes of {len(client_frame(payload, opcode))}-byte frames: "
          f"parsed in {elapsed:.1f} s, late loop wake-ups {watch.late_wakeups:.0f}, innocent median "
          f"{watch.during_median * 1000:.1f} ms (idle {watch.idle_median * 1000:.1f} ms), "
          f"RSS growth {watch.rss_growth / 2**20:.1f} MiB")
    watch.assert_unharmed()
    assert watch.rss_growth < RSS_BOUND
    sock.close()



ATTACKERS = 16
READ_BYTES = 256 * 1024  # one socket read (uvloop)
QUEUE_BOUND = 24 * 1024 * 1024  # all attackers together; unbounded parsing queued ~8 MB each


async def test_tiny_messages_wait_unparsed_while_the_app_throttles_the_socket(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    """Tiny binary messages reach the room, which takes 2,048 a second from one socket: what
    uvicorn parsed ahead of it waited as ~250 bytes per message. Parsing now waits while a
    socket has 64 messages queued, so the bytes wait instead (8 per frame, one read at most)."""
    author = await dev_user(client, "Author")
    lesson = await make_lesson(db, author.clerk_id)
    path = f"/collab/lessons/{lesson.id}?token={author.token}"
    socks = [await RawSocket.open("127.0.0.1", server.port, path) for _ in range(ATTACKERS)]
    flood = client_frame(b"\x63\x63", 0x2) * (READ_BYTES // 8)  # not a y-protocol kind: ignored
    peak = 0
    async with AttackWatch(server) as watch:
        base = watch.rss_before
        for sock in socks:
            await sock.send_raw(flood)
        # The server reads each socket at once (loopback); watch its memory while the room
        # works through the queued messages (~16 s each at 2,048 a second).
        loop = asyncio.get_running_loop()
        until = loop.time() + 4
        while loop.time() < until and peak < QUEUE_BOUND:
            peak = max(peak, await asyncio.to_thread(_rss_now, server) - base)
            await asyncio.sleep(0.1)
    print(f"\n{ATTACKERS} sockets x {len(flood):,} bytes of 8-byte frames: peak RSS growth "
          f"{peak / 2**20:.1f} MiB, late loop wake-ups {watch.late_wakeups:.0f}, innocent median "
          f"{watch.during_median * 1000:.1f} ms (idle {watch.idle_median * 1000:.1f} ms)")
    assert peak < QUEUE_BOUND
    watch.assert_unharmed()
    for sock in socks:
        sock.close()


def _rss_now(server: ServerProcess) -> int:
    from tests.adversarial.probe import server_rss

    return server_rss(server)

class _Transport(asyncio.Transport):
    """Takes writes; counts as reading unless paused. Reads still arrive while paused (as after
    uvicorn resumes reading on a close), to check they queue behind the waiting bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 1), "peername": ("127.0.0.1", 2)}.get(name, default)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0


async def test_paced_parsing_keeps_every_message_in_order() -> None:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from server.websocket_protocol import PacedWebSocketProtocol

    got: list[bytes] = []
    all_in = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            got.append(message["bytes"])
            if len(got) == 1 + len(payloads):
                all_in.set()

    config = Config(app=app, ws_max_size=2 * 1024 * 1024, lifespan="off", log_level="warning")
    config.load()
    state = ServerState()
    proto = PacedWebSocketProtocol(config=config, server_state=state, app_state={})
    transport = _Transport()
    proto.connection_made(transport)
    key = base64.b64encode(os.urandom(16)).decode()
    proto.data_received(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    big = client_frame(os.urandom(100_000))
    proto.data_received(big[:50_000])
    # A large frame goes to the parser in one step once its size is known (not 1 KiB slices).
    assert proto._payload_wanted() == len(big) - 50_000
    proto.data_received(big[50_000:])
    payloads = [os.urandom(n) for n in [1, 2, 3000, 70_000, 5] * 40] + [i.to_bytes(4, "big") for i in range(5000)]
    wire = b"".join(client_frame(p) for p in payloads)
    for start in range(0, len(wire), 100_000):  # reads of 100 KB, cutting frames anywhere
        proto.data_received(wire[start:start + 100_000])
    await asyncio.wait_for(all_in.wait(), 30)
    assert got[1:] == payloads and len(got[0]) == 100_000
    assert not proto.waiting and transport.reading
    proto.connection_lost(None)
    await asyncio.gather(*state.tasks)
