"""The y-websocket wire protocol (y-protocols sync + awareness), encoded once per message.

A frame starts with a varuint message type: 0 sync (then 0 step 1 / 1 step 2 / 2 update and a
length-prefixed payload), 1 awareness (length-prefixed awareness update), 3 query-awareness.

One extension, used only by clients that ask for it (stock clients never see it): a client sends
``101 <varuint n>`` ("saved?") and the server answers ``100 <varuint n>`` once every update it
received on that socket before the question is committed to PostgreSQL. The web editor's "Saved"
indicator is that answer.

Depends on nothing (the standard library).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MSG_SYNC = 0
MSG_AWARENESS = 1
MSG_AUTH = 2
MSG_QUERY_AWARENESS = 3
MSG_SAVED = 100  # server -> client: everything before question n is persisted
MSG_QUERY_SAVED = 101  # client -> server: tell me when what I sent so far is persisted

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

EMPTY_UPDATE = b"\x00\x00"


class ProtocolError(ValueError):
    """A frame that does not follow the y-websocket protocol."""


def write_var_uint(num: int) -> bytes:
    out = bytearray()
    while num > 127:
        out.append(128 | (num & 127))
        num >>= 7
    out.append(num)
    return bytes(out)


def read_var_uint(data: bytes, pos: int) -> tuple[int, int]:
    """The varuint at ``pos`` and the position after it."""
    num = 0
    shift = 0
    length = len(data)
    while True:
        if pos >= length:
            raise ProtocolError("truncated varuint")
        byte = data[pos]
        pos += 1
        num |= (byte & 127) << shift
        if byte < 128:
            return num, pos
        shift += 7
        if shift > 63:
            raise ProtocolError("varuint too long")


def read_var_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = read_var_uint(data, pos)
    end = pos + size
    if end > len(data):
        raise ProtocolError("truncated payload")
    return data[pos:end], end


def sync_frame(kind: int, payload: bytes) -> bytes:
    return bytes((MSG_SYNC, kind)) + write_var_uint(len(payload)) + payload


def step1_frame(state_vector: bytes) -> bytes:
    return sync_frame(SYNC_STEP1, state_vector)


def step2_frame(update: bytes) -> bytes:
    return sync_frame(SYNC_STEP2, update)


def update_frame(update: bytes) -> bytes:
    return sync_frame(SYNC_UPDATE, update)


def awareness_frame(awareness_update: bytes) -> bytes:
    return bytes((MSG_AWARENESS,)) + write_var_uint(len(awareness_update)) + awareness_update


def saved_frame(nonce: int) -> bytes:
    return bytes((MSG_SAVED,)) + write_var_uint(nonce)


def query_saved_frame(nonce: int) -> bytes:
    return bytes((MSG_QUERY_SAVED,)) + write_var_uint(nonce)


@dataclass(frozen=True)
class Frame:
    """A decoded frame: its type, sync sub-type (or -1) and payload."""

    type: int
    sync: int
    payload: bytes


def parse_frame(data: bytes) -> Frame:
    if not data:
        raise ProtocolError("empty frame")
    kind, pos = read_var_uint(data, 0)
    if kind == MSG_SYNC:
        sub, pos = read_var_uint(data, pos)
        payload, _ = read_var_bytes(data, pos)
        return Frame(kind, sub, payload)
    if kind == MSG_AWARENESS:
        payload, _ = read_var_bytes(data, pos)
        return Frame(kind, -1, payload)
    return Frame(kind, -1, b"")


# --- awareness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str  # JSON text; "null" when the client is gone

    @property
    def removed(self) -> bool:
        return self.state in ("null", "")


def awareness_count(update: bytes) -> int:
    """How many entries an awareness update claims (read without parsing them)."""
    count, _ = read_var_uint(update, 0)
    return count


def parse_awareness(update: bytes) -> list[AwarenessEntry]:
    count, pos = read_var_uint(update, 0)
    entries: list[AwarenessEntry] = []
    for _ in range(count):
        client_id, pos = read_var_uint(update, pos)
        clock, pos = read_var_uint(update, pos)
        raw, pos = read_var_bytes(update, pos)
        try:
            state = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("awareness state is not UTF-8") from exc
        entries.append(AwarenessEntry(client_id, clock, state))
    return entries


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    parts = [write_var_uint(len(entries))]
    for entry in entries:
        state = entry.state.encode("utf-8")
        parts += [write_var_uint(entry.client_id), write_var_uint(entry.clock),
                  write_var_uint(len(state)), state]
    return b"".join(parts)


def awareness_state(entry: AwarenessEntry) -> object:
    """The decoded state of an entry (for tests and logs)."""
    return json.loads(entry.state) if entry.state else None
