"""Per-node interest of the Redis broker and the collab relay, on one Redis and on the Redis
Cluster: a node is subscribed only to the channels its local listeners use, unsubscribes when the
last one leaves, and keeps the broker's guarantee (once ``subscribe`` returns, every event above
``last_id`` reaches the listener exactly once, in order) while events keep coming."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from collab.relay import KIND_QUERY, KIND_STATE, KIND_UPDATE, RedisRelay
from realtime.broker import Event, Reset
from realtime.redis_broker import RedisBroker
from tests.support import eventually
from tests.support.redis_cluster import RedisCluster
from wire.redis import connect, is_cluster


@pytest.fixture(params=["redis", "cluster"])
def url(request: pytest.FixtureRequest, redis_url: str) -> str:
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    return redis_url


@pytest.fixture
async def brokers(url: str) -> AsyncIterator[tuple[RedisBroker, RedisBroker]]:
    prefix = f"scr-interest-{uuid.uuid4().hex[:8]}"
    a, b = RedisBroker(url, prefix), RedisBroker(url, prefix)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


async def subscribers(url: str, live: str) -> int:
    """How many connections Redis has subscribed to ``live`` (``PUBSUB SHARDNUMSUB`` on the
    master that owns its slot, on a cluster)."""
    command = "NUMSUB"
    if is_cluster(url):
        cluster: Any = connect(url)
        try:
            await cluster.initialize()
            node = cluster.get_node_from_key(live)
        finally:
            await cluster.aclose()
        url, command = f"redis://{node.host}:{node.port}/0", "SHARDNUMSUB"
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        found = await client.execute_command("PUBSUB", command, live)
    finally:
        await client.aclose()
    counts = dict(found) if not isinstance(found[0], str) else dict(zip(found[::2], found[1::2], strict=True))
    return int(counts.get(live, 0))


async def test_a_node_hears_only_the_channels_it_serves(url: str, brokers: tuple[RedisBroker, RedisBroker]) -> None:
    a, b = brokers
    served, other = f"thread:{uuid.uuid4()}", f"thread:{uuid.uuid4()}"
    got: list[Event | Reset] = []
    await a.subscribe(served, got.append)
    assert a.subscriber.channels == {a._live(served)}
    assert await subscribers(url, a._live(served)) == 1
    for n in range(5):
        await b.publish(other, "e", {"n": n})
        await b.publish(served, "e", {"n": n})
    await eventually(lambda: _count(got, 5))
    assert [item.data["n"] for item in got if isinstance(item, Event)] == list(range(5))
    # only the served channel's 5 messages crossed to node A
    assert a.subscriber.messages_in == 5
    await a.unsubscribe(served, got.append)

    async def dropped() -> bool:
        return not a.subscriber.channels and await subscribers(url, a._live(served)) == 0

    await eventually(dropped)
    await b.publish(served, "e", {"n": 5})
    await b.publish(served, "e", {"n": 6})
    # subscribed again: Redis confirms before subscribe() returns, and live resumes after last_id
    await a.subscribe(served, got.append)
    assert await a.last_id(served) == 7
    await b.publish(served, "e", {"n": 7})
    await eventually(lambda: _count(got, 6))
    assert [item.id for item in got if isinstance(item, Event)] == [1, 2, 3, 4, 5, 8]


async def _count(got: list[Event | Reset], count: int) -> bool:
    return len(got) >= count


async def test_subscribing_while_events_flow_misses_and_repeats_nothing(
        brokers: tuple[RedisBroker, RedisBroker]) -> None:
    a, b = brokers
    channels = [f"course:{uuid.uuid4()}" for _ in range(20)]
    stop = asyncio.Event()

    async def publish(channel: str) -> None:
        n = 0
        while not stop.is_set():
            try:  # as the outbox drain does: a failed publish is retried with the same id
                await b.publish(channel, "e", {"n": n}, id=n + 1)
            except Exception:  # a client error under load: retried
                await asyncio.sleep(0.05)
                continue
            n += 1
            await asyncio.sleep(0)

    writers = [asyncio.create_task(publish(channel)) for channel in channels]
    received: dict[str, list[int]] = {channel: [] for channel in channels}
    floor: dict[str, int] = {}
    try:
        for channel in channels:
            await a.subscribe(channel, lambda item, c=channel: received[c].append(
                item.id if isinstance(item, Event) and item.id is not None else -1))
            floor[channel] = await a.last_id(channel)  # what the hub reads after subscribe()
    finally:
        stop.set()
        await asyncio.gather(*writers)
    for channel in channels:
        last = await b.last_id(channel)

        async def caught_up(channel: str = channel, last: int = last) -> bool:
            ids = received[channel]
            return (bool(ids) and ids[-1] >= last) or (not ids and last == floor[channel])

        await eventually(caught_up)
        ids = received[channel]
        assert -1 not in ids  # no reset
        if ids:
            assert ids == list(range(ids[0], last + 1)), channel  # consecutive, no duplicate
            assert ids[0] <= floor[channel] + 1  # nothing above last_id was missed
    assert sum(len(ids) for ids in received.values()) > 0


async def test_the_relay_follows_only_open_rooms(url: str) -> None:
    prefix = f"scr-interest-{uuid.uuid4().hex[:8]}"
    a, b = RedisRelay(url, prefix, "a"), RedisRelay(url, prefix, "b")
    heard: list[tuple[str, bytes]] = []
    a.bind(lambda lesson, kind, payload, origin: heard.append((lesson, payload)), lambda: None)
    b.bind(lambda *args: None, lambda: None)
    await a.start()
    await b.start()
    try:
        open_room, closed_room = str(uuid.uuid4()), str(uuid.uuid4())
        a.subscribe(open_room)
        assert await a.subscribed(open_room, within=5)
        assert await subscribers(url, a.channel(open_room)) == 1
        for n in range(3):
            b.publish(closed_room, KIND_UPDATE, b"closed %d" % n)
            b.publish(open_room, KIND_UPDATE, b"open %d" % n)

        async def three() -> bool:
            return len(heard) >= 3

        await eventually(three)
        assert heard == [(open_room, b"open %d" % n) for n in range(3)]
        a.unsubscribe(open_room)

        async def dropped() -> bool:
            return await subscribers(url, a.channel(open_room)) == 0

        await eventually(dropped)
    finally:
        await a.stop()
        await b.stop()


async def test_a_relay_alone_on_a_lesson_publishes_there_only_once_another_node_listens(redis_url: str) -> None:
    """What a publish returns (how many subscribers got it) tells a node it is alone on a lesson's
    channel; another node's message on it, or a publish that reached two, ends that."""
    prefix = f"scr-alone-{uuid.uuid4().hex[:8]}"
    a, b = RedisRelay(redis_url, prefix, "a"), RedisRelay(redis_url, prefix, "b")
    heard: list[bytes] = []
    a.bind(lambda *args: None, lambda: None)
    b.bind(lambda lesson, kind, payload, origin: heard.append(kind + payload), lambda: None)
    await a.start()
    await b.start()
    lesson = str(uuid.uuid4())
    try:
        a.subscribe(lesson)
        assert await a.subscribed(lesson, within=5)
        assert a.others_listen(lesson)  # until a count says otherwise
        a.publish(lesson, KIND_QUERY, b"sv")

        async def a_alone() -> bool:
            # (a count is trusted once A's own heartbeat came back: publish until one is)
            a.publish(lesson, KIND_STATE, b"sv")
            return not a.others_listen(lesson)

        await eventually(a_alone)
        assert a.alone_count() == 1
        # another node opens the room: it subscribes, then asks; its question ends A's solitude
        b.subscribe(lesson)
        assert await b.subscribed(lesson, within=5)
        b.publish(lesson, KIND_QUERY, b"sv")

        async def a_has_company() -> bool:
            return a.others_listen(lesson)

        await eventually(a_has_company)
        a.publish(lesson, KIND_UPDATE, b"one")

        async def b_heard() -> bool:
            return heard == [KIND_UPDATE + b"one"]

        await eventually(b_heard)
        # B leaves: A's next publish reaches only itself, and it stops publishing again
        b.unsubscribe(lesson)

        async def b_gone() -> bool:
            return await subscribers(redis_url, a.channel(lesson)) == 1

        await eventually(b_gone)
        await eventually(a_alone)
        # a room closed and opened again starts by publishing
        a.unsubscribe(lesson)
        assert a.others_listen(lesson) and a.alone_count() == 0
    finally:
        await a.stop()
        await b.stop()
