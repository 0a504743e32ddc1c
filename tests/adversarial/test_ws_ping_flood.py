"""A flood of real WebSocket pings from a client that never reads (issue 11, fixa item 1).

uvicorn answers each ping by writing a pong straight to the transport; pings queue nothing for
the app, so reading was never paused and the app-level send limits never looked: the pongs
piled up in the write buffer without bound (RSS 32 MB -> 437 MB in 24 s; here +43 MiB for the
48 MiB flood, all of it accepted). Now a pong that leaves over 1 MiB unsent stops reading until
the transport drains (server/websocket_protocol.py), so the pings wait in the peer's own send
buffer: per socket at most ~1 MiB of pongs plus one read's worth and 512 KiB unparsed.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.adversarial.probe import AttackWatch
from tests.adversarial.rawws import OP_PING, RawSocket, client_frame
from tests.support import ServerProcess, dev_user
from tests.support.collab import make_lesson

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)

FLOOD_BYTES = 48 * 1024 * 1024  # ~370,000 pings of 125 bytes: ~47 MB of pongs if all answered
CHUNK = 1024 * 1024
RSS_BOUND = 16 * 1024 * 1024  # one socket; the unbounded server grew by hundreds of MB here


@pytest.mark.parametrize("endpoint", ["collab", "ws"])
async def test_a_ping_flood_from_a_socket_that_never_reads_is_bounded(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine, endpoint: str) -> None:
    author = await dev_user(client, "Author")
    if endpoint == "collab":
        lesson = await make_lesson(db, author.clerk_id)
        path = f"/collab/lessons/{lesson.id}?token={author.token}"
    else:
        path = f"/ws?token={author.token}"
    sock = await RawSocket.open("127.0.0.1", server.port, path, rcvbuf=4096)
    frame = client_frame(b"p" * 125, OP_PING)
    chunk = frame * (CHUNK // len(frame))
    sent = 0
    async with AttackWatch(server) as watch:
        while sent < FLOOD_BYTES:
            sock.writer.write(chunk)
            try:
                # Once the server stops reading, our send buffer fills and drain blocks: the
                # attack is stopped (or the server aborted us).
                await asyncio.wait_for(sock.writer.drain(), 3)
            except (TimeoutError, ConnectionError):
                break
            sent += len(chunk)
    print(f"\n{endpoint}: {sent / 2**20:.0f} MiB of pings accepted by the server, RSS growth "
          f"{watch.rss_growth / 2**20:.1f} MiB, late loop wake-ups {watch.late_wakeups:.0f}")
    watch.assert_unharmed()
    assert watch.rss_growth < RSS_BOUND
    sock.writer.transport.abort()
