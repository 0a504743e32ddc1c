"""/ws over real sockets (§7), on both broker backends: in-process and Redis."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support import Postgres, eventually
from tests.support.realtime import (
    Live,
    events,
    live_deployment,
    nothing_more,
    recv,
    send,
    slow_closes,
    subscribe,
)


@pytest.fixture(scope="module", params=["memory", "redis"])
async def live(request: pytest.FixtureRequest, postgres: Postgres, data_dir: Path,
               redis_url: str) -> AsyncIterator[Live]:
    async with live_deployment(request.param, postgres, data_dir, redis_url) as deployment:
        yield deployment


async def test_live_event_reaches_a_subscriber(live: Live) -> None:
    alice = await live.user("Alice")
    course = await live.course(alice)
    channel = f"course:{course}"
    async with live.ws(alice) as ws:
        assert await subscribe(ws, channel) == {"type": "subscribed", "channel": channel, "last_id": 0}
        await live.emit(channel, "post.created", {"id": "p1", "title": "Hello"})
        [frame] = await events(ws, 1)
        assert frame == {"type": "event", "channel": channel, "id": frame["id"], "event": "post.created",
                         "data": {"id": "p1", "title": "Hello"}}
        await live.emit(channel, "post.updated", {"id": "p1", "title": "Hello!"})
        [second] = await events(ws, 1)
        assert second["id"] > frame["id"]
        # a new subscriber learns where the channel is
        async with live.ws(alice) as other:
            assert (await subscribe(other, channel))["last_id"] == second["id"]


async def test_user_me_is_echoed_and_private(live: Live) -> None:
    alice, bob = await live.user("Alice"), await live.user("Bob")
    async with live.ws(alice) as ws, live.ws(bob) as intruder:
        assert (await subscribe(ws, "user:me"))["channel"] == "user:me"
        refused = await subscribe(intruder, f"user:{alice.clerk_id}")
        assert refused["type"] == "error" and refused["code"] == "not_found"
        assert refused["channel"] == f"user:{alice.clerk_id}"
        await live.emit(f"user:{alice.clerk_id}", "notification.created", {"id": "n1", "unread_count": 1})
        [frame] = await events(ws, 1)
        assert frame["channel"] == "user:me" and frame["data"]["unread_count"] == 1


async def test_strangers_cannot_see_drafts(live: Live) -> None:
    author, stranger = await live.user("Author"), await live.user("Stranger")
    draft = await live.course(author, published=False)
    draft_thread = await live.thread(author, draft)
    published = await live.course(author)
    public_thread = await live.thread(author, published)
    async with live.ws(stranger) as ws:
        for channel in (f"course:{draft}", f"thread:{draft_thread}",
                        "course:00000000-0000-0000-0000-000000000000"):
            answer = await subscribe(ws, channel)
            assert answer["type"] == "error" and answer["code"] == "not_found", answer
            assert answer["channel"] == channel
        assert (await subscribe(ws, f"thread:{public_thread}"))["type"] == "subscribed"
    async with live.ws(author) as ws:
        assert (await subscribe(ws, f"course:{draft}"))["type"] == "subscribed"


async def test_resume_after_missing_500_events(live: Live) -> None:
    alice = await live.user("Alice")
    channel = f"thread:{await live.thread(alice, await live.course(alice))}"
    async with live.ws(alice) as ws:
        assert (await subscribe(ws, channel))["last_id"] == 0
        await live.emit_many(channel, 3)
        seen = await events(ws, 3)
    last_seen = seen[-1]["id"]
    await live.emit_many(channel, 500, start=3)
    async with live.ws(alice) as ws:
        subscribed = await subscribe(ws, channel, since=last_seen)
        assert subscribed["type"] == "subscribed"
        missed = await events(ws, 500)
        assert [f["data"]["n"] for f in missed] == list(range(3, 503))
        ids = [f["id"] for f in missed]
        assert ids == sorted(set(ids)) and ids[0] > last_seen
        assert subscribed["last_id"] <= ids[-1]  # the drain may still be publishing at subscribe
        # then live, with nothing repeated in between
        await nothing_more(live, ws, channel)
    # since: 0 replays from the first event
    async with live.ws(alice) as ws:
        await subscribe(ws, channel, since=0)
        everything = await events(ws, 504)
        assert [f["data"].get("n") for f in everything[:503]] == list(range(503))


async def test_replay_racing_live_events_has_no_gap_or_duplicate(live: Live) -> None:
    alice = await live.user("Alice")
    channel = f"course:{await live.course(alice)}"
    await live.emit_many(channel, 200)
    writer = asyncio.create_task(live.emit_many(channel, 200, start=200, per_tx=5))
    async with live.ws(alice) as ws:
        await subscribe(ws, channel, since=0)
        await writer
        got = await events(ws, 400)
        assert [f["data"]["n"] for f in got] == list(range(400))
        await nothing_more(live, ws, channel)


async def test_bad_input_gets_errors_and_the_socket_stays_open(live: Live) -> None:
    alice = await live.user("Alice")
    channel = f"course:{await live.course(alice)}"
    async with live.ws(alice) as ws:
        await ws.send("{not json")
        assert (await recv(ws))["code"] == "bad_request"
        await ws.send("[1, 2]")
        assert (await recv(ws))["code"] == "bad_request"
        await send(ws, {"type": "shout", "channel": channel})
        assert (await recv(ws))["code"] == "bad_request"
        for bad in ("course:not-a-uuid", "forum", "lesson:1", "", "user:"):
            answer = await subscribe(ws, bad)
            assert answer["type"] == "error" and answer["code"] == "bad_request", (bad, answer)
        await live.emit(channel, "post.created", {"id": "p"})
        for since in (10_000, "1700000000000-0", -1, 1.5, True):
            answer = await subscribe(ws, channel, since=since)
            assert answer == {"type": "error", "channel": channel, "code": "bad_request",
                              "detail": answer["detail"]}, since
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}
        await ws.send(b"\x00binary")
        assert (await recv(ws))["code"] == "bad_request"
        assert (await subscribe(ws, channel, since=0))["type"] == "subscribed"
        [replayed] = await events(ws, 1)
        assert replayed["data"] == {"id": "p"}


async def test_oversized_frame_closes_1009(live: Live) -> None:
    alice = await live.user("Alice")
    async with live.ws(alice) as ws:
        await send(ws, {"type": "ping", "pad": "x" * (64 * 1024)})
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # the server is fine
    async with live.ws(alice) as ws:
        await send(ws, {"type": "ping", "pad": "x" * 60_000})
        assert await recv(ws) == {"type": "pong"}


async def test_no_token_closes_4401(live: Live) -> None:
    for url in (f"{live.server.ws_url}/ws", f"{live.server.ws_url}/ws?token=garbage"):
        from websockets.asyncio.client import connect

        async with connect(url) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_unsubscribe_stops_events(live: Live) -> None:
    alice = await live.user("Alice")
    one, two = f"course:{await live.course(alice)}", f"course:{await live.course(alice)}"
    async with live.ws(alice) as ws:
        await subscribe(ws, one)
        await subscribe(ws, two)
        await send(ws, {"type": "unsubscribe", "channel": one})
        await live.emit(one, "post.created", {"id": "gone"})
        await live.emit(two, "post.created", {"id": "kept"})
        [frame] = await events(ws, 1)
        assert frame["channel"] == two and frame["data"] == {"id": "kept"}


async def test_typing_is_relayed_to_others_only_and_rate_limited(live: Live) -> None:
    alice, bob = await live.user("Alice"), await live.user("Bob")
    channel = f"thread:{await live.thread(alice, await live.course(alice))}"
    async with live.ws(alice) as a, live.ws(bob) as b:
        await subscribe(a, channel)
        await subscribe(b, channel)
        await send(a, {"type": "typing", "channel": channel})
        frame = await recv(b)
        assert frame == {"type": "event", "channel": channel, "event": "typing",
                         "data": {"user_id": alice.clerk_id, "name": "Alice"}}
        # alice got no echo of her own typing: the next thing both see is the next stored event
        await live.emit(channel, "marker", {"n": 1})
        for ws in (a, b):
            assert (await recv(ws))["event"] == "marker"
        codes = []
        for _ in range(10):
            await send(a, {"type": "typing", "channel": channel})
        await send(a, {"type": "ping"})
        while (frame := await recv(a))["type"] != "pong":
            codes.append(frame.get("code"))
        assert "rate_limited" in codes
        await send(a, {"type": "typing", "channel": "course:00000000-0000-0000-0000-000000000000"})
        assert (await recv(a))["code"] == "bad_request"
    async with live.ws(bob) as b:
        await subscribe(b, channel, since=0)
        [replay] = await events(b, 1)  # typing is not stored: only the marker replays
        assert replay["event"] == "marker"
        await nothing_more(live, b, channel)


async def test_subscription_cap(live: Live) -> None:
    alice = await live.user("Alice")
    async with live.ws(alice) as ws:
        courses = [await live.course(alice) for _ in range(201)]
        for course in courses[:200]:
            await send(ws, {"type": "subscribe", "channel": f"course:{course}"})
        for _ in range(200):
            assert (await recv(ws))["type"] == "subscribed"
        answer = await subscribe(ws, f"course:{courses[200]}")
        assert answer["type"] == "error" and answer["code"] == "bad_request"


async def test_slow_reader_is_closed_4008(live: Live) -> None:
    alice = await live.user("Alice")
    channel = f"course:{await live.course(alice)}"
    async with live.ws(alice, max_queue=1) as ws:
        # A fixed receive buffer: Linux autotunes a loopback socket's up to tcp_rmem's max (32 MiB
        # on some machines), which would hold the whole flood in the kernel.
        ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        await subscribe(ws, channel)
        before = await slow_closes(live.client)
        # ~20 MB of live events while the client reads nothing: more than the kernel's socket
        # buffers on both ends can hold, so the server's own backlog passes 1 MiB
        await live.emit_many(channel, 800, pad="x" * 25_000, per_tx=100)
        # The events reach the hub after their commit (outbox, then the broker): the reader starts
        # reading only once the server has counted it as too slow, or on a slow delivery it keeps
        # up and is never behind.
        async def counted() -> bool:
            return await slow_closes(live.client) > before

        await eventually(counted, within=60)
        got = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await recv(ws, 30)
                got += 1
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
        assert got < 800




async def test_many_sockets_subscribing_at_once_all_get_events(live: Live) -> None:
    users = [await live.user(f"Reader {k}") for k in range(5)]
    channel = f"course:{await live.course(users[0])}"
    await live.emit_many(channel, 3)
    sockets = [await live.ws(users[k % 5]).__aenter__() for k in range(60)]
    try:
        answers = await asyncio.gather(*(subscribe(ws, channel, since=0) for ws in sockets))
        assert all(a["type"] == "subscribed" for a in answers)
        await live.emit(channel, "post.created", {"n": 3})
        for ws in sockets:
            got = await events(ws, 4)
            assert [f["data"]["n"] for f in got] == [0, 1, 2, 3]
    finally:
        for ws in sockets:
            await ws.close()
