"""In-process fuzz targets: the pure functions that parse what a signed-in attacker sends.

Each target takes the fuzzer's bytes, feeds them to the code under test the way the server does,
lets through only the exception types that code documents for bad input, and checks a property
that must hold for every input (round trips, bounded output). Anything else that escapes, or a
violated property (:class:`Finding`), is a crash for the driver (:mod:`tests.fuzz.run`), which
also times every input against :data:`BUDGET_S` and watches memory (libFuzzer ``-rss_limit_mb``).

The targets are plain functions so that the same code serves the in-suite short runs
(tests/adversarial/test_fuzz_targets.py), the long runs (bench/fuzz/) and reproducing a crash
file (``python -m tests.fuzz.run <target> crash-…``).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

MAX_LEN = 4096  # bytes per input; the stated time bounds are for inputs up to this size

# Seconds one input of up to MAX_LEN bytes may take (measured twice before it counts as slow).
BUDGET_S: dict[str, float] = {
    "y_frame": 0.05,
    "collab_dispatch": 0.1,
    "ws_frame": 0.1,
    "cursor": 0.05,
    "requirement": 0.05,
    "suggestion": 0.1,
    "markdown": 0.25,  # linear rendering is ~7 µs a character: 30 ms for 4 KiB, with room for a busy machine
}


class Finding(AssertionError):
    """A property every input must have does not hold (a bug, reported as a crash)."""


def _split(data: bytes, sep: bytes, limit: int = 8) -> list[bytes]:
    return data.split(sep, limit - 1)


# --- y-websocket frames (collab/protocol.py) ------------------------------------------------------


def y_frame(data: bytes) -> None:
    """parse_frame / parse_awareness: only ProtocolError; what parses re-encodes to the same entries."""
    from collab import protocol as p

    try:
        frame = p.parse_frame(data)
    except p.ProtocolError:
        return
    if len(frame.payload) > len(data):
        raise Finding("payload longer than the frame")
    if frame.type == p.MSG_AWARENESS:
        try:
            entries = p.parse_awareness(frame.payload)
        except p.ProtocolError:
            return
        if len(entries) > len(frame.payload):
            raise Finding("more awareness entries than bytes")
        if p.parse_awareness(p.encode_awareness(entries)) != entries:
            raise Finding("awareness entries do not survive a round trip")
    if frame.type == p.MSG_SYNC and frame.sync in (p.SYNC_STEP1, p.SYNC_STEP2, p.SYNC_UPDATE):
        if p.parse_frame(p.sync_frame(frame.sync, frame.payload)) != frame:
            raise Finding("sync frame does not survive a round trip")


# --- collab message dispatch (collab/receiver.py Receiver.receive) -------------------------------


class _Sink:
    """A peer's sender that keeps count of what the room queued for it."""

    def __init__(self) -> None:
        self.closed = False
        self.bytes = 0
        self.frames = 0

    def push(self, frame: bytes, message: Any = None, wire: Any = None) -> None:
        self.bytes += len(frame)
        self.frames += 1

    def close(self, code: int, reason: str = "") -> None:
        self.closed = True


_ROOMS: Any = None


def _room_manager() -> Any:
    global _ROOMS
    if _ROOMS is None:
        from collab.manager import RoomManager

        async def never(*_: Any) -> Any:
            raise AssertionError("not used by Receiver.receive")

        _ROOMS = RoomManager(store=None, authorize=never, recheck=never)  # type: ignore[arg-type]
    return _ROOMS


def collab_dispatch(data: bytes) -> None:
    """Up to 8 frames (split on ff fe fd) from one writing peer into a room holding a lesson.

    Bad frames are dropped (the room logs them); nothing may escape. What the room queues for
    the sender and for a second peer is bounded by the document and the input, and the room's
    awareness holds no more clients than the input could name.
    """
    import logging

    from pycrdt import Doc

    from collab.access import Grant
    from collab.room import Peer, Room, seed_update
    from collab.throttle import AnswerBudget

    logging.getLogger("scriptorium.collab").setLevel(logging.ERROR)  # "dropped a bad collab message" per input
    rooms = _room_manager()
    rooms.persistence.pending.clear()
    rooms.persistence.saved_waiters.clear()
    doc: Doc[Any] = Doc()
    doc.apply_update(seed_update("A lesson", "Some body text, ünïcödé and 🙂."))
    room = Room("00000000-0000-4000-8000-000000000000", doc)
    writer, other = _Sink(), _Sink()
    # A budget that never runs out within one input's 8 frames: the throttle is tested apart, and a
    # deferred answer would need an event loop this process does not run.
    def budget() -> AnswerBudget:
        return AnswerBudget(16, 1.0, 0.0)

    peer = Peer(Grant("user_fuzz", True), writer, budget())  # type: ignore[arg-type]
    room.peers.extend([peer, Peer(Grant("user_other", False), other, budget())])  # type: ignore[arg-type]
    doc_size = len(doc.get_update())
    for frame in _split(data, b"\xff\xfe\xfd"):
        if frame:
            rooms.receiver.receive(room, peer, frame)
    grown = len(room.doc.get_update())
    # The step-2 answer to a step 1 is at most the whole document; one per frame.
    if writer.bytes > 8 * (grown + 64) + 2 * len(data):
        raise Finding(f"{writer.bytes} bytes queued for the sender of {len(data)} bytes (doc {doc_size}->{grown})")
    if other.bytes > 8 * len(data) + 1024:
        raise Finding(f"{other.bytes} bytes relayed to a peer for {len(data)} bytes in")
    if len(room.awareness) > len(data):
        raise Finding("more awareness clients than input bytes")


# --- /ws frames (realtime/hub.py Hub._read_forever) -----------------------------------------------


class _FakeWebSocket:
    def __init__(self, frames: list[dict[str, Any]]) -> None:
        self.scope: dict[str, Any] = {}
        self._frames = frames

    async def receive(self) -> dict[str, Any]:
        if self._frames:
            return self._frames.pop(0)
        return {"type": "websocket.disconnect", "code": 1000}


class _User:
    clerk_id = "user_fuzz"
    name = "Fuzz"


_LOOP: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP


def ws_frame(data: bytes) -> None:
    """Up to 8 text frames (split on 0x1e) read by the hub: the socket stays open (§7: any frame
    that cannot be parsed is a bad_request) and what it queues is bounded by what came in."""
    from realtime.hub import Connection, Hub, HubLimits
    from realtime.memory_broker import MemoryBroker

    async def authorize(user: Any, channel: str) -> str:
        from realtime.hub import ChannelDenied

        kind, _, ident = channel.partition(":")
        if kind in ("thread", "course") and len(ident) == 36:
            return f"{kind}:{ident}"
        if channel == "user:me":
            return f"user:{user.clerk_id}"
        raise ChannelDenied("not_found", "No such channel.")

    async def authenticate(ws: Any) -> Any:
        return _User()

    async def drive() -> None:
        from starlette.websockets import WebSocketDisconnect

        hub = Hub(MemoryBroker(), authenticate, authorize, HubLimits())  # type: ignore[arg-type]
        texts = [t.decode("utf-8", "replace") for t in _split(data, b"\x1e")]
        ws = _FakeWebSocket([{"type": "websocket.receive", "text": t} for t in texts])
        conn = Connection(hub, ws, _User())  # type: ignore[arg-type]
        try:
            await hub._read_forever(conn)
        except WebSocketDisconnect:
            pass
        if conn.close_code is not None:
            raise Finding(f"socket closed with {conn.close_code} by {len(texts)} small frame(s)")
        queued = sum(len(item[0]) for item in conn.queue if isinstance(item, tuple))
        # An error may quote the frame: JSON escapes a character in at most 6 bytes (\uXXXX).
        if queued > 6 * len(data) + 512 * len(texts):
            raise Finding(f"{queued} bytes queued for {len(data)} bytes in")
        for sub in list(conn.subs.values()):
            await hub._detach(sub)

    _loop().run_until_complete(drive())


# --- cursors (server/http.py decode_cursor) --------------------------------------------------------


class _Query:
    def __init__(self, cursor: str) -> None:
        self.query_params = {"cursor": cursor}


def cursor(data: bytes) -> None:
    """decode_cursor on the bytes as text and as base64 of them: ValidationFailed or a list whose
    strings PostgreSQL can bind (no NUL, no unpaired surrogate)."""
    from server.errors import ValidationFailed
    from server.http import decode_cursor

    for raw in (data.decode("utf-8", "replace"), base64.urlsafe_b64encode(data).decode().rstrip("=")):
        try:
            values = decode_cursor(_Query(raw))  # type: ignore[arg-type]
        except ValidationFailed:
            continue
        if values is None:
            continue
        if not isinstance(values, list):
            raise Finding("a cursor that is not a list was accepted")
        for value in values:
            if isinstance(value, str):
                if "\x00" in value:
                    raise Finding("a cursor string with NUL was accepted")
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise Finding("a cursor string with an unpaired surrogate was accepted") from None


# --- the achievement requirement grammar (server/gamification/requirements.py) ---------------------


def requirement(data: bytes) -> None:
    """parse_requirement: ValidationFailed, or a requirement that evaluates in range and round-trips."""
    from server.errors import ValidationFailed
    from server.gamification.requirements import COUNT_KEYS, MAX_DEPTH, parse_requirement

    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return  # not JSON: the JSON parser's business (deep JSON is a separate item)
    try:
        req = parse_requirement(raw)
    except ValidationFailed:
        return
    if req.depth() > MAX_DEPTH:
        raise Finding("a requirement deeper than MAX_DEPTH was accepted")
    counts = {key: (n * 7 + len(data)) % 50 for n, key in enumerate(COUNT_KEYS)}
    progress = req.progress(counts)
    if not 0.0 <= progress <= 100.0:
        raise Finding(f"progress {progress} out of 0-100")
    if req.met(counts) and progress < 100.0:
        raise Finding("met but progress below 100")
    if not req.keys() <= set(COUNT_KEYS):
        raise Finding("unknown key")
    if parse_requirement(req.to_json()) != req:
        raise Finding("does not survive to_json")


# --- suggestion ranges (collab/suggestions.py) -----------------------------------------------------


def suggestion(data: bytes) -> None:
    """parse_changes/anchor/apply and rebase on text split from the input (code points vs the
    CRDT's UTF-8 offsets): only SuggestionError; applying through the CRDT gives the same text as
    applying to the Python string; rebase onto the same text is the identity."""
    from pycrdt import Doc, Text

    from collab import suggestions as s

    head, _, tail = data.partition(b"\x00")
    text = head.decode("utf-8", "replace")
    try:
        raw = json.loads(tail)
    except (ValueError, RecursionError):
        raw = [{"index": b % (len(text) + 2), "delete": (b >> 4) % 4, "insert": chr(0x1F600 + b % 3) * (b % 2)}
               for b in tail[:8]]
    if not isinstance(raw, list):
        return
    # What the REST model lets through (a list of objects with an int index and delete, and an
    # insert that is a string without unpaired surrogates), as the route hands it on.
    from pydantic import ValidationError

    from server.editing.api import ChangeIn

    try:
        raw = [ChangeIn.model_validate(c).model_dump() for c in raw]
    except ValidationError:
        return
    try:
        changes = s.parse_changes(text, raw)
    except s.SuggestionError:
        return
    pieces, pos = [], 0
    for c in changes:  # sorted and non-overlapping (parse_changes)
        pieces += [text[pos:c.index], c.insert]
        pos = c.index + c.delete
    expected = "".join([*pieces, text[pos:]])
    doc: Doc[Any] = Doc()
    doc["body"] = body = Text()
    body += text
    if str(body) != text:
        return  # replacement characters etc. aside, the CRDT holds what we put in
    payload = s.anchor(doc, "body", raw, base_version="1", comment=None)
    got = s.apply(doc, payload)
    if got != expected:
        raise Finding(f"CRDT apply {got!r} != string apply {expected!r}")
    if s.rebase(text, text, changes) != [{"index": c.index, "delete": c.delete, "insert": c.insert}
                                         for c in changes]:
        raise Finding("rebase onto the same text changed the changes")
    live = text[: len(text) // 2] + "x" + text[len(text) // 2:]
    rebased = s.rebase(text, live, changes)
    if rebased is not None:
        try:
            s.parse_changes(live, rebased)
        except s.SuggestionError as err:
            raise Finding(f"rebase produced changes that do not fit the live text: {err}") from None


# --- Markdown (server/markdown.py) -----------------------------------------------------------------


def markdown(data: bytes) -> None:
    """render_markdown: never raises, and the HTML is bounded by the Markdown's size."""
    from server.markdown import MAX_GROWTH, MAX_SLACK, render_markdown

    body = data.decode("utf-8", "replace")
    html = render_markdown(body)
    # Stored and sent on every read: growth past this bound is an amplification.
    if len(html) > MAX_GROWTH * len(body) + MAX_SLACK:
        raise Finding(f"{len(body)} characters of Markdown rendered to {len(html)} of HTML")
    lowered = html.lower()
    if "<script" in lowered or "javascript:" in lowered or " onerror=" in lowered:
        raise Finding("unsafe HTML survived sanitising")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "y_frame": y_frame,
    "collab_dispatch": collab_dispatch,
    "ws_frame": ws_frame,
    "cursor": cursor,
    "requirement": requirement,
    "suggestion": suggestion,
    "markdown": markdown,
}


def seeds(name: str) -> list[bytes]:
    """A few valid inputs per target, so mutation starts from the interesting shapes."""
    from collab import protocol as p

    if name in ("y_frame", "collab_dispatch"):
        from pycrdt import Doc, Text

        doc: Doc[Any] = Doc()
        doc["body"] = body = Text()
        body += "hello"
        state = doc.get_state()
        body += " world"
        update = doc.get_update(state)
        aw = p.encode_awareness([p.AwarenessEntry(7, 1, json.dumps({"user": {"name": "a"}})),
                                 p.AwarenessEntry(8, 2, "null")])
        frames = [p.step1_frame(b"\x00"), p.step2_frame(update), p.update_frame(update), p.awareness_frame(aw),
                  bytes((p.MSG_QUERY_AWARENESS,)), p.query_saved_frame(3)]
        return [*frames, b"\xff\xfe\xfd".join(frames)]
    if name == "ws_frame":
        return [b'{"type":"ping"}', b'{"type":"subscribe","channel":"user:me","since":0}',
                b'{"type":"subscribe","channel":"thread:00000000-0000-4000-8000-000000000000"}\x1e'
                b'{"type":"typing","channel":"thread:00000000-0000-4000-8000-000000000000"}',
                b'{"type":"unsubscribe","channel":"user:me"}', b"[1,2]", b'{"type":[[[]]]}',
                b'{"type":' + b"[" * 1500]  # deep nesting: a bad_request, never a closed socket (§7)
    if name == "cursor":
        return [json.dumps(v).encode() for v in (["2024-01-01T00:00:00+00:00", "00000000-0000-4000-8000-000000000000"],
                                                 [3, "tag"], [True, "2024-01-01T00:00:00Z", "x"])] + [b"[" * 1500, b'["\\ud800"]']
    if name == "requirement":
        return [b'{"lessons_completed": 3}', b'{"all": [{"streak_days": 2}, {"any": [{"forum_posts": 1}]}]}',
                b'{"any": [{"likes_received": 10}, {"flashcards_reviewed": 5}]}']
    if name == "suggestion":
        return [b'Hello world\x00[{"index": 0, "delete": 5, "insert": "Bye"}]',
                "ünï 🙂 text\x00".encode() + b'[{"index": 4, "delete": 1, "insert": "\\ud83d\\ude00"},'
                b' {"index": 6, "insert": "x"}]']
    if name == "markdown":
        return [b"# Title\n\nSome *emphasis* and [a link](https://example.com).\n\n- a\n- b\n",
                b"| a | b |\n|---|---|\n| 1 | 2 |\n", b"[x]: https://example.com\n\n[x] [x]", b"![a](b) `code` <b>x</b>"]
    return []
