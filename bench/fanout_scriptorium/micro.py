"""The hub's send path alone, in one process: ``Hub._fan_out`` of E events to N subscribed sockets
whose transports are real uvloop TCP transports on loopback (the readers never read; the kernel
buffers hold what E events need). No HTTP, database or broker: what one delivery costs the hub
and the kernel's send. CPU time of this process (``time.process_time``), best of R rounds; run it
under ``valgrind --tool=callgrind`` for instruction counts that a busy machine does not disturb.

usage: .venv/bin/python bench/fanout_scriptorium/micro.py [--sockets 1000] [--events 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import uvloop
from websockets.protocol import State

from realtime.broker import Event
from realtime.hub import Connection, Hub, Subscription


class _Conn:
    state = State.OPEN
    extensions: list[Any] = []


class WebSocketsSansIOProtocol:
    """Stands in for uvicorn's protocol (recognised by this class name, as in the server)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.conn = _Conn()
        self.writable = asyncio.Event()
        self.close_sent = False

    async def asgi_send(self, message: Any) -> None:
        raise AssertionError("the fast path never goes through ASGI")


class _WS:
    def __init__(self, proto: WebSocketsSansIOProtocol) -> None:
        self.scope = {"state": {"asgi_send": proto.asgi_send}}


class _User:
    def __init__(self, k: int) -> None:
        self.clerk_id = f"user_{k % 40}"
        self.name = None


async def main(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    readers, transports = [], []
    for _ in range(args.sockets):
        client = socket.create_connection(("127.0.0.1", port))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        server, _ = listener.accept()
        server.setblocking(False)
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=server)
        readers.append(client)
        transports.append(transport)
    hub = Hub(broker=None, authenticate=None, authorize=None)  # type: ignore[arg-type]
    subs = set()
    for k, transport in enumerate(transports):
        conn = Connection(hub, _WS(WebSocketsSansIOProtocol(transport)), _User(k))  # type: ignore[arg-type]
        sub = Subscription(conn, "thread:t", "thread:t", replaying=False)
        conn.subs["thread:t"] = sub
        subs.add(sub)
    hub._subs["thread:t"] = subs
    data = json.dumps({"id": "r", "content": "x" * 160})
    best = float("inf")
    next_id = 1
    for _ in range(args.rounds):
        for r in readers:  # empty the kernel buffers between rounds (not timed)
            r.setblocking(False)
            try:
                while r.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass
        start = time.process_time()
        for _ in range(args.events):
            hub._fan_out("thread:t", Event("thread:t", next_id, "reply.created", data))
            next_id += 1
            await asyncio.sleep(0)
        best = min(best, time.process_time() - start)
    for t in transports:
        t.abort()
    for r in readers:
        r.close()
    deliveries = args.sockets * args.events
    return {"sockets": args.sockets, "events": args.events, "best_cpu_s": round(best, 4),
            "us_per_delivery": round(1e6 * best / deliveries, 3)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    print(json.dumps(uvloop.run(main(parser.parse_args()))))
