"""Awareness across nodes is batched: a room's cursor changes cross the relay as at most one message
per relay tick per node (the newest state of each changed client), while local peers get each
change at once; the other node converges to the final cursors."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from starlette.types import Scope

from collab import protocol as p
from collab.access import Grant
from collab.manager import RoomManager
from collab.relay import KIND_AWARENESS, Handler
from collab.store import LoadedDocument, PendingUpdate
from tests.support import eventually

LESSON = "00000000-0000-4000-8000-0000000000a7"
PEERS = 200
TICK = 0.05


class MemoryStore:
    async def load(self, lesson_id: str, seed: Callable[[str, str], bytes]) -> LoadedDocument:
        return LoadedDocument([seed("Title", "Body")], 1)

    async def append(self, batch: Sequence[PendingUpdate]) -> None:
        pass

    async def compact(self, lesson_id: str, merge: Any) -> int:
        return 0

    async def materialise(self, lesson_id: str, title: str, body: str) -> bool:
        return True

    async def record_version(self, lesson_id: str, **kw: Any) -> str:
        return "v1"


class LinkedRelay:
    """One node's end of an in-process relay: what it publishes reaches the other end's handler on
    a later loop turn (as over Redis), and is counted here."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.other: LinkedRelay | None = None
        self.handler: Handler | None = None
        self.published: list[tuple[bytes, bytes]] = []

    def bind(self, handler: Handler, on_reconnect: Callable[[], None]) -> None:
        self.handler = handler

    def last_seen(self, node_id: str) -> float:
        return time.monotonic()

    def subscribe(self, lesson_id: str) -> None: ...

    def unsubscribe(self, lesson_id: str) -> None: ...

    def publish(self, lesson_id: str, kind: bytes, payload: bytes) -> None:
        self.published.append((kind, payload))
        other = self.other
        if other is not None and other.handler is not None:
            asyncio.get_running_loop().call_soon(other.handler, lesson_id, kind, payload, self.node_id)

    def others_listen(self, lesson_id: str) -> bool:
        return True  # another node is always there

    async def subscribed(self, lesson_id: str, within: float) -> bool:
        return True

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def awareness(self) -> list[bytes]:
        return [payload for kind, payload in self.published if kind == KIND_AWARENESS]


class Link:
    def __init__(self) -> None:
        self.closed = False
        self.states: dict[int, tuple[int, str]] = {}  # what this client knows: id -> (clock, state)
        self.awareness_frames = 0

    def push(self, frame: bytes, message: dict[str, Any] | None = None, wire: bytes | None = None) -> None:
        if frame[0] != p.MSG_AWARENESS:
            return
        self.awareness_frames += 1
        for entry in p.parse_awareness(p.parse_frame(frame).payload):
            known = self.states.get(entry.client_id)
            if known is None or entry.clock >= known[0]:
                self.states[entry.client_id] = (entry.clock, entry.state)

    def close(self, code: int, reason: str = "") -> None:
        self.closed = True


class Quiet(Link):
    """A peer's socket whose frames nobody reads."""

    def push(self, frame: bytes, message: dict[str, Any] | None = None, wire: bytes | None = None) -> None:
        pass


async def _authorize(scope: Scope, lesson_id: str) -> Grant:
    return Grant(str(scope["user"]), can_write=True)


async def _recheck(lesson_id: str, grant: Grant) -> bool:
    return True


def _cursor(client_id: int, clock: int) -> p.AwarenessEntry:
    return p.AwarenessEntry(client_id, clock, json.dumps({"user": f"u{client_id}", "cursor": clock * 7}))


async def test_200_peers_cross_the_relay_as_one_message_per_tick() -> None:
    relay_a, relay_b = LinkedRelay("node-a"), LinkedRelay("node-b")
    relay_a.other, relay_b.other = relay_b, relay_a
    a = RoomManager(MemoryStore(), _authorize, _recheck, relay_a, awareness_relay_tick=TICK)  # type: ignore[arg-type]
    b = RoomManager(MemoryStore(), _authorize, _recheck, relay_b, awareness_relay_tick=TICK)  # type: ignore[arg-type]
    await a.start()
    await b.start()
    try:
        peers = []
        for i in range(PEERS):
            grant, room = await a.admit({"user": f"u{i}"}, LESSON)
            room, peer = await a.join(room, grant, Quiet())
            peers.append(peer)
        local_watcher = Link()
        grant, room_a = await a.admit({"user": "watcher-a"}, LESSON)
        room_a, _ = await a.join(room_a, grant, local_watcher)
        remote_watcher = Link()
        grant, room_b = await b.admit({"user": "watcher-b"}, LESSON)
        room_b, _ = await b.join(room_b, grant, remote_watcher)
        before = len(relay_a.awareness())

        started = time.monotonic()
        rounds = 3
        for clock in range(1, rounds + 1):  # every peer moves its cursor, a burst per round
            for i, peer in enumerate(peers):
                a.receiver.receive(room_a, peer, p.awareness_frame(p.encode_awareness([_cursor(i + 1, clock)])))
            # Local peers have every change at once, before any relay tick.
            assert local_watcher.states[PEERS][0] == clock
            await asyncio.sleep(0)
        final = {i + 1: (rounds, _cursor(i + 1, rounds).state) for i in range(PEERS)}

        async def converged() -> bool:
            return {cid: remote_watcher.states.get(cid) for cid in final} == final

        await eventually(converged, within=5)
        elapsed = time.monotonic() - started
        published = relay_a.awareness()[before:]
        updates = PEERS * rounds
        print(f"\n{updates} awareness updates -> {len(published)} relay message(s) in {elapsed * 1000:.0f} ms")
        assert 1 <= len(published) <= math.ceil(elapsed / TICK) + 1
        assert len(published) < 10  # not one per update (600)
        assert local_watcher.awareness_frames >= updates  # local: one frame per change
        # Each message carries the newest state of each changed client, once.
        last = p.parse_awareness(p.parse_frame(published[-1]).payload)
        assert len({e.client_id for e in last}) == len(last)
    finally:
        await a.stop()
        await b.stop()
