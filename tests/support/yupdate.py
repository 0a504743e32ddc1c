"""What a Yjs (v1) update holds, for tests that check a log stores every change exactly once: the
clock ranges of its structs per client id (a row may hold many updates merged, so counting rows
or comparing their bytes says nothing of duplicates).

The format is Yjs's ``writeStructs`` (lib0 encoding): the number of clients, then per client the
number of structs, the client id, the first clock, then the structs; each struct's length is its
content's (a string counts UTF-16 code units). The delete set that follows is not read."""

from __future__ import annotations

from collections.abc import Iterable

from collab.protocol import read_var_uint


def _var_int(data: bytes, pos: int) -> int:
    byte = data[pos]
    pos += 1
    shift = 6
    while byte & 0x80:
        byte = data[pos]
        pos += 1
        shift += 7
    return pos


def _var_string(data: bytes, pos: int) -> tuple[str, int]:
    size, pos = read_var_uint(data, pos)
    return data[pos:pos + size].decode("utf-8", "surrogatepass"), pos + size


def _any(data: bytes, pos: int) -> int:
    """Skip one lib0 ``any`` value."""
    kind = data[pos]
    pos += 1
    if kind in (127, 126, 121, 120):  # undefined, null, false, true
        return pos
    if kind == 125:  # integer
        return _var_int(data, pos)
    if kind == 124:  # float32
        return pos + 4
    if kind in (123, 122):  # float64, bigint64
        return pos + 8
    if kind == 119:  # string
        return _var_string(data, pos)[1]
    if kind == 118:  # object
        count, pos = read_var_uint(data, pos)
        for _ in range(count):
            pos = _var_string(data, pos)[1]
            pos = _any(data, pos)
        return pos
    if kind == 117:  # array
        count, pos = read_var_uint(data, pos)
        for _ in range(count):
            pos = _any(data, pos)
        return pos
    if kind == 116:  # Uint8Array
        size, pos = read_var_uint(data, pos)
        return pos + size
    raise ValueError(f"unknown lib0 any type {kind}")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _content(data: bytes, pos: int, ref: int) -> tuple[int, int]:
    """Skip an item's content of type ``ref``; returns (its length, position after it)."""
    if ref == 1:  # deleted
        return read_var_uint(data, pos)
    if ref == 2:  # JSON: count, then strings
        count, pos = read_var_uint(data, pos)
        for _ in range(count):
            pos = _var_string(data, pos)[1]
        return count, pos
    if ref == 3:  # binary
        size, pos = read_var_uint(data, pos)
        return 1, pos + size
    if ref == 4:  # string
        text, pos = _var_string(data, pos)
        return _utf16_len(text), pos
    if ref == 5:  # embed (JSON string)
        return 1, _var_string(data, pos)[1]
    if ref == 6:  # format: key, value
        pos = _var_string(data, pos)[1]
        return 1, _var_string(data, pos)[1]
    if ref == 7:  # type: type ref, then a name for XmlElement (3) and XmlHook (5)
        type_ref, pos = read_var_uint(data, pos)
        if type_ref in (3, 5):
            pos = _var_string(data, pos)[1]
        return 1, pos
    if ref == 8:  # any: count, then values
        count, pos = read_var_uint(data, pos)
        for _ in range(count):
            pos = _any(data, pos)
        return count, pos
    if ref == 9:  # subdocument: guid, options
        pos = _var_string(data, pos)[1]
        return 1, _any(data, pos)
    raise ValueError(f"unknown content type {ref}")


def struct_ranges(update: bytes) -> dict[int, list[tuple[int, int]]]:
    """Client id -> [start, end) clock ranges of the structs ``update`` carries (skips left out)."""
    ranges: dict[int, list[tuple[int, int]]] = {}
    clients, pos = read_var_uint(update, 0)
    for _ in range(clients):
        structs, pos = read_var_uint(update, pos)
        client, pos = read_var_uint(update, pos)
        clock, pos = read_var_uint(update, pos)
        for _ in range(structs):
            info = update[pos]
            pos += 1
            ref = info & 0x1F
            if ref in (0, 10):  # GC, skip
                length, pos = read_var_uint(update, pos)
                if ref == 0:
                    ranges.setdefault(client, []).append((clock, clock + length))
                clock += length
                continue
            if info & 0x80:  # origin
                pos = read_var_uint(update, read_var_uint(update, pos)[1])[1]
            if info & 0x40:  # right origin
                pos = read_var_uint(update, read_var_uint(update, pos)[1])[1]
            if not info & 0xC0:  # no origin: the parent is named
                named, pos = read_var_uint(update, pos)
                if named:
                    pos = _var_string(update, pos)[1]
                else:
                    pos = read_var_uint(update, read_var_uint(update, pos)[1])[1]
                if info & 0x20:  # parent sub (a map key)
                    pos = _var_string(update, pos)[1]
            length, pos = _content(update, pos, ref)
            ranges.setdefault(client, []).append((clock, clock + length))
            clock += length
    return ranges


def overlaps(updates: Iterable[bytes]) -> list[tuple[int, int]]:
    """(client id, clock) pairs that more than one of ``updates`` carries (empty: each change is
    stored once)."""
    seen: dict[int, list[tuple[int, int]]] = {}
    twice: list[tuple[int, int]] = []
    for update in updates:
        for client, spans in struct_ranges(update).items():
            earlier = seen.setdefault(client, [])
            for start, end in spans:
                twice.extend((client, clock) for a, b in earlier for clock in range(max(a, start), min(b, end)))
            earlier.extend(spans)
    return twice


def struct_count(updates: Iterable[bytes]) -> int:
    """How many clock ticks ``updates`` carry in all (with :func:`overlaps` empty: the changes)."""
    return sum(end - start for update in updates for spans in struct_ranges(update).values()
               for start, end in spans)

