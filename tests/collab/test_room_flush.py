"""How a room's applied updates leave (collab.room.Room.flush_updates, collab.sender.Coalescer):
merged per write, never lost when a merge or a callback fails, bounded in count."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from pycrdt import Doc, Text

import collab.room as room_module
import collab.sender as sender_module
from collab import protocol as p
from collab.access import Grant
from collab.room import MERGE_MAX_UPDATES, Peer, Room
from collab.sender import Coalescer
from collab.throttle import AnswerBudget

LESSON = str(uuid.uuid4())


class Link:
    def __init__(self) -> None:
        self.closed = False
        self.frames: list[bytes] = []
        self.pushed = asyncio.Event()

    def push(self, frame: bytes, message: dict[str, Any] | None = None, wire: bytes | None = None) -> None:
        self.frames.append(frame)
        self.pushed.set()

    def close(self, code: int, reason: str = "") -> None:
        self.closed = True


def room_with(coalescer: Coalescer, *names: str) -> tuple[Room, dict[str, Peer], dict[str, Link]]:
    room = Room(LESSON, Doc(), writes=coalescer)
    links = {name: Link() for name in names}
    peers = {name: Peer(Grant(name, can_write=True), link, AnswerBudget(5, 5, time.monotonic()))
             for name, link in links.items()}
    room.peers.extend(peers.values())
    return room, peers, links


def edit(text: str) -> bytes:
    doc: Doc[Any] = Doc()
    doc.get("body", type=Text).insert(0, text)
    return doc.get_update()


def body(frames: list[bytes]) -> str:
    doc: Doc[Any] = Doc()
    for frame in frames:
        doc.apply_update(p.parse_frame(frame).payload)
    return str(doc.get("body", type=Text))


async def flushed(link: Link) -> None:
    await asyncio.wait_for(link.pushed.wait(), 5)


async def test_a_burst_of_one_writer_never_comes_back_to_it() -> None:
    room, peers, links = room_with(Coalescer(), "ann", "viewer")
    for text in ("a", "b", "c"):
        update = edit(text)
        room.broadcast_update(p.update_frame(update), update, peers["ann"])
    await flushed(links["viewer"])
    [merged] = links["viewer"].frames
    assert sorted(body([merged])) == ["a", "b", "c"]
    assert links["ann"].frames == []


async def test_updates_that_do_not_merge_still_leave_one_by_one_and_later_writes_go_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    class PanicException(BaseException):  # what pycrdt raises for a Rust panic
        pass

    def panics(*updates: bytes) -> bytes:
        raise PanicException("merge panicked")

    coalescer = Coalescer()
    room, peers, links = room_with(coalescer, "ann", "bob", "viewer")
    ann, bob = edit("ann"), edit("bob")
    monkeypatch.setattr(room_module, "merge_updates", panics)
    room.broadcast_update(p.update_frame(ann), ann, peers["ann"])
    room.broadcast_update(p.update_frame(bob), bob, peers["bob"])
    await flushed(links["viewer"])
    assert links["viewer"].frames == [p.update_frame(ann), p.update_frame(bob)]
    assert links["ann"].frames == [p.update_frame(bob)] and links["bob"].frames == [p.update_frame(ann)]
    assert "did not merge" in caplog.text
    monkeypatch.undo()

    # a callback that fails outright does not leave the coalescer stuck
    def fails() -> None:
        raise PanicException("a callback panicked")

    coalescer.defer(fails)
    await asyncio.sleep(0)  # (the flush it scheduled runs)
    links["viewer"].pushed.clear()
    later = edit("later")
    room.broadcast_update(p.update_frame(later), later, peers["ann"])
    await flushed(links["viewer"])
    assert links["viewer"].frames[-1] == p.update_frame(later)
    assert "flush callback failed" in caplog.text


async def test_a_merge_holds_at_most_so_many_updates() -> None:
    room, peers, links = room_with(Coalescer(), "ann", "bob", "viewer")
    total = MERGE_MAX_UPDATES * 2 + 1
    for i in range(total):
        update = edit(f"{i} ")
        room.broadcast_update(p.update_frame(update), update, peers["ann" if i % 2 else "bob"])
    assert len(room.pending) <= MERGE_MAX_UPDATES
    while len(links["viewer"].frames) < 3:
        links["viewer"].pushed.clear()
        await flushed(links["viewer"])
    assert len(links["viewer"].frames) == 3
    assert len(body(links["viewer"].frames).split()) == total


async def test_a_quiet_rooms_update_leaves_at_once_and_a_busy_rooms_at_the_nodes_pace() -> None:
    loop = asyncio.get_running_loop()
    coalescer = Coalescer(0.2)
    busy, busy_peers, busy_links = room_with(coalescer, "ann", "viewer")
    quiet, quiet_peers, quiet_links = room_with(coalescer, "bob", "reader")

    first = edit("first")
    busy.broadcast_update(p.update_frame(first), first, busy_peers["ann"])
    await asyncio.sleep(0)  # a room that sent nothing yet: at the end of this loop turn
    assert busy_links["viewer"].frames == [p.update_frame(first)]
    wrote_at = loop.time()

    second = edit("second")
    busy.broadcast_update(p.update_frame(second), second, busy_peers["ann"])  # within its interval
    lone = edit("lone")
    quiet.broadcast_update(p.update_frame(lone), lone, quiet_peers["bob"])
    await asyncio.sleep(0)
    # the quiet room's update did not wait for the node's pace, nor take the busy room's along
    assert quiet_links["reader"].frames == [p.update_frame(lone)]
    assert busy_links["viewer"].frames == [p.update_frame(first)]
    third = edit("third")
    busy.broadcast_update(p.update_frame(third), third, busy_peers["ann"])
    busy_links["viewer"].pushed.clear()
    await flushed(busy_links["viewer"])
    assert loop.time() - wrote_at >= 0.2 - 0.01
    assert len(busy_links["viewer"].frames) == 2 and body(busy_links["viewer"].frames[1:]) in (
        "secondthird", "thirdsecond")  # the interval's updates, merged into one frame
    assert busy_links["ann"].frames == []  # a lone writer's own burst never comes back


class FakeMeter:
    """The load meter: each reading one second later than the last, the loop's thread having
    asked ``load`` of that second of a CPU."""

    def __init__(self) -> None:
        self.load = 0.0
        self.at = 0.0
        self.busy = 0.0

    def __call__(self) -> tuple[float, float]:
        self.at += 1.0
        self.busy += self.load
        return self.at, self.busy


async def test_a_busy_room_waits_for_the_nodes_pace_only_while_the_node_is_busy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender_module, "LOAD_WINDOW_S", 0.0)  # the load is looked at on every ask
    cpu = FakeMeter()
    coalescer = Coalescer(0.2, pace_above=0.5, meter=cpu)
    room, peers, links = room_with(coalescer, "ann", "viewer")
    viewer = links["viewer"]

    def send(text: str) -> None:
        update = edit(text)
        room.broadcast_update(p.update_frame(update), update, peers["ann"])

    # An idle node: a busy room's updates each leave at the end of their loop turn.
    assert coalescer.hold() == 0.0
    for i, text in enumerate(("a", "b", "c")):
        send(text)
        await asyncio.sleep(0)  # (one loop turn)
        assert len(viewer.frames) == i + 1
    assert sorted(body(viewer.frames)) == ["a", "b", "c"]

    # From half a core on, it waits for the node's next write, merged with the interval's others.
    cpu.load = 0.6
    assert coalescer.hold() == 0.2
    wrote_at = asyncio.get_running_loop().time()
    send("d")
    send("e")
    await asyncio.sleep(0)
    assert len(viewer.frames) == 3
    viewer.pushed.clear()
    await flushed(viewer)
    assert asyncio.get_running_loop().time() - wrote_at >= 0.2 - 0.01
    assert len(viewer.frames) == 4 and body(viewer.frames[3:]) in ("de", "ed")

    # Hysteresis: paced until the load falls under half of the threshold, and then not paced
    # until it reaches the threshold again.
    cpu.load = 0.4
    assert coalescer.hold() == 0.2
    cpu.load = 0.2
    assert coalescer.hold() == 0.0
    cpu.load = 0.4
    assert coalescer.hold() == 0.0
    send("f")
    await asyncio.sleep(0)
    assert len(viewer.frames) == 5 and body(viewer.frames[4:]) == "f"
    assert links["ann"].frames == []


async def test_the_first_look_only_starts_a_window_and_paced_time_is_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender_module, "LOAD_WINDOW_S", 0.0)
    meter = FakeMeter()
    meter.busy = 1e6  # what the thread used before: not a load
    meter.load = 0.9
    coalescer = Coalescer(0.2, pace_above=0.5, meter=meter)
    assert coalescer.hold() == 0.0 and not coalescer.paced  # the first look: a start only
    assert coalescer.hold() == 0.2 and coalescer.paced_seconds == 0.0  # 0.9 over the last second
    assert coalescer.hold() == 0.2 and coalescer.paced_seconds == 1.0
    meter.load = 0.0
    assert coalescer.hold() == 0.0 and coalescer.paced_seconds == 2.0
    assert coalescer.hold() == 0.0 and coalescer.paced_seconds == 2.0


async def test_the_load_is_looked_at_once_per_window() -> None:
    meter = FakeMeter()
    meter.load = 0.9
    coalescer = Coalescer(0.2, pace_above=0.5, meter=meter)
    for _ in range(100):
        coalescer.hold()
    assert meter.at == 1.0  # one look (the start) within the first LOAD_WINDOW_S


async def test_a_node_always_paced_with_pace_above_0_and_never_with_interval_0(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender_module, "LOAD_WINDOW_S", 0.0)
    meter = FakeMeter()
    assert Coalescer(0.2, pace_above=0.0, meter=meter).hold() == 0.2
    meter.load = 1.0
    never = Coalescer(0.0, pace_above=0.5, meter=meter)
    for _ in range(3):
        assert never.hold() == 0.0
    assert not never.paced and meter.at == 0.0  # not even looked at


def test_the_default_meter_counts_the_threads_wait_for_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender_module.schedstat, "read", lambda: (2.0, 0.5))
    assert sender_module.default_meter()[1] == 2.5
    monkeypatch.setattr(sender_module.schedstat, "read", lambda: None)  # no schedstat: CPU time
    _at, busy = sender_module.default_meter()
    assert busy == pytest.approx(time.thread_time(), abs=0.05)
