"""A collab socket's frames leave in one write at most once per ``COLLAB_WRITE_INTERVAL_MS``
(collab.sender.Coalescer): a lone frame at once, the frames of a busy spell together."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from collab.sender import Coalescer, Sender
from wire.websocket import encode_frame


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.wrote = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.wrote.set()

    def get_write_buffer_size(self) -> int:
        return 0


class WebSocketsSansIOProtocol:
    """Stands in for uvicorn's protocol, which ``direct_protocol`` recognises by class name."""

    def __init__(self) -> None:
        self.transport = _Transport()
        self.writable = asyncio.Event()
        self.writable.set()
        self.close_sent = False
        self.conn = SimpleNamespace(state=1, extensions=[])  # OPEN, no permessage-deflate

    async def asgi_send(self, message: dict[str, Any]) -> None:
        raise AssertionError("the direct path writes to the transport")


async def _next_write(transport: _Transport) -> bytes:
    await asyncio.wait_for(transport.wrote.wait(), 5)
    transport.wrote.clear()
    return transport.writes[-1]


async def test_a_lone_frame_leaves_at_once_and_a_busy_spell_in_one_write() -> None:
    loop = asyncio.get_running_loop()
    proto = WebSocketsSansIOProtocol()
    coalescer = Coalescer(0.05)
    sender = Sender(proto.asgi_send, coalescer=coalescer)
    assert sender.direct

    sender.push(b"first")
    await asyncio.sleep(0)  # one loop iteration: the lone frame is written at its end
    assert proto.transport.writes == [encode_frame(b"first")]
    proto.transport.wrote.clear()
    flushed_at = loop.time()

    sender.push(b"second")
    sender.push(b"third")
    await asyncio.sleep(0)
    assert len(proto.transport.writes) == 1, "within the interval, frames wait for the next write"
    sender.push(b"fourth")
    joined = await _next_write(proto.transport)
    assert loop.time() - flushed_at >= 0.05 - 0.005
    assert joined == encode_frame(b"second") + encode_frame(b"third") + encode_frame(b"fourth")
    assert len(proto.transport.writes) == 2


async def test_close_writes_the_frames_waiting_for_the_interval_first() -> None:
    proto = WebSocketsSansIOProtocol()
    sender = Sender(proto.asgi_send, coalescer=Coalescer(10.0))
    sender.push(b"a")
    await asyncio.sleep(0)
    sender.push(b"b")  # waits up to 10 s for the next flush
    closed: list[dict[str, Any]] = []

    async def record(message: dict[str, Any]) -> None:
        closed.append(message)

    sender._send = record  # the close frame goes through the ASGI path
    sender.close(4000, "bye")
    assert proto.transport.writes == [encode_frame(b"a"), encode_frame(b"b")]
    assert closed == [{"type": "websocket.close", "code": 4000, "reason": "bye"}]


async def test_interval_zero_writes_once_per_loop_iteration() -> None:
    proto = WebSocketsSansIOProtocol()
    sender = Sender(proto.asgi_send, coalescer=Coalescer(0.0))
    sender.push(b"x")
    sender.push(b"y")
    await asyncio.sleep(0)
    sender.push(b"z")
    await asyncio.sleep(0)
    assert proto.transport.writes == [encode_frame(b"x") + encode_frame(b"y"), encode_frame(b"z")]
