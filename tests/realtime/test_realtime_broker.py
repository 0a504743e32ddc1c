"""The broker contract, the same tests over both backends (in-process and Redis)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from realtime.broker import Broker, Event, HistoryPolicy, Reset
from realtime.memory_broker import MemoryBroker
from realtime.redis_broker import RedisBroker


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Broker]:
    policy = HistoryPolicy(keep=5, max_age_s=0, cap=50)
    made: Broker = (MemoryBroker(policy) if request.param == "memory"
                    else RedisBroker(redis_url, f"scr-broker-test-{uuid.uuid4().hex[:8]}", policy))
    await made.start()
    yield made
    await made.close()


def channel() -> str:
    return f"course:{uuid.uuid4()}"


async def test_ids_increase_and_publish_is_idempotent(broker: Broker) -> None:
    ch = channel()
    assert await broker.last_id(ch) == 0
    assert await broker.read_since(ch, 0) == []
    assert [await broker.publish(ch, "e", {"n": n}) for n in range(3)] == [1, 2, 3]
    assert await broker.publish(ch, "e", {"n": "again"}, id=2) == 2  # a retry of id 2: no-op
    assert await broker.publish(ch, "e", {"n": 3}, id=4) == 4
    got = await broker.read_since(ch, 1)
    assert isinstance(got, list)
    assert [(e.id, e.data) for e in got] == [(2, {"n": 1}), (3, {"n": 2}), (4, {"n": 3})]
    assert await broker.last_id(ch) == 4
    assert await broker.read_since(ch, 4) == []


async def test_history_is_trimmed_to_policy_and_older_reads_reset(broker: Broker) -> None:
    ch = channel()
    for n in range(12):
        await broker.publish(ch, "e", {"n": n})
    assert await broker.read_since(ch, 2) == Reset(ch, 12)
    kept = await broker.read_since(ch, 7)
    assert isinstance(kept, list) and [e.id for e in kept] == [8, 9, 10, 11, 12]
    page = await broker.read_since(ch, 7, limit=2)
    assert isinstance(page, list) and [e.id for e in page] == [8, 9]


async def test_live_listeners_get_events_and_signals_in_order(broker: Broker) -> None:
    ch, other = channel(), channel()
    got: list[Event | Reset] = []
    done = asyncio.Event()

    def listener(item: Event | Reset) -> None:
        got.append(item)
        if isinstance(item, Event) and item.event == "last":
            done.set()

    await broker.subscribe(ch, listener)
    await broker.publish(other, "elsewhere", {})
    await broker.publish(ch, "first", {"a": 1})
    await broker.signal(ch, "typing", {"user_id": "u"})
    await broker.publish(ch, "last", {"a": 2})
    await asyncio.wait_for(done.wait(), 5)
    assert [(e.id, e.event) for e in got if isinstance(e, Event)] == [(1, "first"), (None, "typing"), (2, "last")]
    await broker.unsubscribe(ch, listener)


async def test_restore_puts_back_history_without_fanning_out(broker: Broker) -> None:
    ch = channel()
    got: list[Event | Reset] = []
    await broker.subscribe(ch, got.append)
    await broker.restore(ch, [(7, "e", '{"n":7}', 0), (8, "e", '{"n":8}', 0)], 9)
    assert await broker.last_id(ch) == 9
    assert await broker.publish(ch, "e", {"n": 8}, id=8) == 8  # already there
    assert got == []
    await broker.unsubscribe(ch, got.append)


async def test_restore_of_a_long_history_keeps_order_ids_and_policy(broker: Broker) -> None:
    """More events than one restore call carries (realtime/redis_broker.py RESTORE_EVENTS_PER_CALL):
    every call's events land in id order, an id the broker has is skipped, and the history policy
    applies as after live publishes (the fixture's: old events trimmed down to ``keep``, 5)."""
    ch = channel()
    got: list[Event | Reset] = []
    await broker.subscribe(ch, got.append)
    assert await broker.publish(ch, "e", {"n": "live"}, id=1) == 1  # already there: kept, not doubled
    await broker.restore(ch, [(n, "e", f'{{"n":{n}}}', 0) for n in range(1, 451)], 450)
    assert await broker.last_id(ch) == 450
    kept = await broker.read_since(ch, 445)
    assert isinstance(kept, list) and [(e.id, e.data) for e in kept] == [(n, {"n": n}) for n in range(446, 451)]
    assert await broker.read_since(ch, 444) == Reset(ch, 450)
    assert await broker.publish(ch, "e", {"n": 451}) == 451  # live publishing goes on after it
    await broker.unsubscribe(ch, got.append)
