"""A WebSocket client on a bare TCP stream, for attacks a well-behaved client library won't make:
many frames packed into one write, and a socket that does not read until told to."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from dataclasses import dataclass

OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9


def client_frames(payloads: list[bytes]) -> bytes:
    return b"".join(client_frame(p) for p in payloads)


def client_frame(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    """A final, masked client frame (RFC 6455: clients mask every frame)."""
    size = len(payload)
    head = bytes((0x80 | opcode,))
    if size < 126:
        head += bytes((0x80 | size,))
    elif size < 65536:
        head += bytes((0x80 | 126,)) + size.to_bytes(2, "big")
    else:
        head += bytes((0x80 | 127,)) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    if not payload:
        return head + mask
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes((mask * (size // 4 + 1))[:size], "little"))
    return head + mask + masked.to_bytes(size, "little")


@dataclass
class Received:
    frames: int = 0
    payload_bytes: int = 0
    close_code: int | None = None


class RawSocket:
    """One collab socket driven by hand. ``open`` does the handshake only."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, path: str, *, rcvbuf: int | None = None) -> RawSocket:
        reader, writer = await asyncio.open_connection(host, port, limit=64 * 1024 * 1024)
        if rcvbuf is not None:
            import socket

            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"handshake refused: {head[:60]!r}")
        return cls(reader, writer)

    async def send_frames(self, payloads: list[bytes]) -> None:
        """All of ``payloads`` as binary frames in one write."""
        await self.send_raw(b"".join(client_frame(p) for p in payloads))

    async def send_raw(self, data: bytes) -> None:
        """Bytes made beforehand (e.g. many frames), so the test process is idle during an attack
        and does not slow the innocent client's thread down."""
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return first & 0x0F, await self.reader.readexactly(size)

    async def read_until_close(self, *, give_up_after: int, within: float = 20.0) -> Received:
        """Read frames until the server's close frame (or EOF); stop early once more than
        ``give_up_after`` payload bytes have arrived, or after ``within`` seconds of silence."""
        got = Received()
        while got.payload_bytes <= give_up_after:
            try:
                opcode, payload = await asyncio.wait_for(self.read_frame(), within)
            except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                return got
            if opcode == OP_CLOSE:
                got.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                return got
            got.frames += 1
            got.payload_bytes += len(payload)
        return got

    def close(self) -> None:
        self.writer.close()
