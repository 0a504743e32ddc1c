"""How a node decides it is alone on a lesson's relay channel (collab.relay): only from a count of
receivers it can trust. Each case below is one way a count of 1 can mislead; the two-node tests
(tests/collab/test_collab_nodes.py, tests/cluster/test_cluster_interest.py) run the whole path."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from pycrdt import Doc

from collab.awareness import Awareness
from collab.cluster import Cluster
from collab.relay import KIND_QUERY, KIND_UPDATE, Handler, RedisRelay
from collab.room import Room
from tests.support import eventually

LESSON = str(uuid.uuid4())


def relay() -> RedisRelay:
    """A relay of node "a" subscribed to LESSON whose own heartbeat just came back (never started:
    publish counts are handed to it as its publish loop would)."""
    r = RedisRelay("redis://127.0.0.1:1/0", "test", "a")
    r.bind(lambda *args: None, lambda: None)
    r.subscribe(LESSON)
    hear_own_heartbeat(r)
    return r


def hear_own_heartbeat(r: RedisRelay) -> None:
    r._dispatch(r._control, b"a\nh")


def counted(r: RedisRelay, count: int, *, sent: float, listening: bool = True) -> None:
    """The answer to one publish on LESSON's channel, sent at ``sent``."""
    r._counted([(r.channel(LESSON), b"a\nu", LESSON)], [listening], [count], sent)


def from_b(r: RedisRelay) -> None:
    """A message of node "b" on LESSON's channel."""
    r._dispatch(r.channel(LESSON), b"b\nq" + b"\x00")


def test_only_this_node_received_it_so_it_is_alone() -> None:
    r = relay()
    assert r.others_listen(LESSON)  # until a count says otherwise
    counted(r, 1, sent=time.monotonic())
    assert not r.others_listen(LESSON) and r.alone_count() == 1
    counted(r, 2, sent=time.monotonic())  # another node subscribed
    assert r.others_listen(LESSON)


def test_a_count_from_before_another_nodes_message_is_stale() -> None:
    r = relay()
    sent = time.monotonic()
    from_b(r)  # node b's question arrives while the publish's answer is still on its way
    counted(r, 1, sent=sent)
    assert r.others_listen(LESSON)
    counted(r, 1, sent=time.monotonic())  # a publish sent after it reached only this node: b left
    assert not r.others_listen(LESSON)
    from_b(r)  # b is back
    assert r.others_listen(LESSON)


def test_a_count_of_one_while_this_node_was_not_subscribed_may_be_another_node() -> None:
    r = relay()
    counted(r, 1, sent=time.monotonic(), listening=False)
    assert r.others_listen(LESSON)


def test_a_node_that_stops_hearing_itself_publishes_again() -> None:
    r = relay()
    counted(r, 1, sent=time.monotonic())
    assert not r.others_listen(LESSON)
    r._echo_at -= 60  # its subscription fell silent (a half-open connection): the 1 may be another node
    assert r.others_listen(LESSON) and r.alone_count() == 0
    hear_own_heartbeat(r)
    assert not r.others_listen(LESSON)


def test_a_count_from_before_the_room_was_opened_again_is_stale() -> None:
    r = relay()
    sent = time.monotonic()
    r.unsubscribe(LESSON)
    counted(r, 1, sent=sent)  # the room closed meanwhile
    assert r.others_listen(LESSON) and r.alone_count() == 0
    r.subscribe(LESSON)
    counted(r, 1, sent=sent)  # ... and opened again: a count from before says nothing now
    assert r.others_listen(LESSON)


class SlowSubscriptionRelay:
    """A relay whose subscription is confirmed only after the room's first question went out."""

    node_id = "b"

    def __init__(self) -> None:
        self.published: list[bytes] = []
        self.confirmed = asyncio.Event()

    def bind(self, handler: Handler, on_reconnect: Any) -> None: ...

    def last_seen(self, node_id: str) -> float:
        return 0.0

    def subscribe(self, lesson_id: str) -> None: ...

    def unsubscribe(self, lesson_id: str) -> None: ...

    def publish(self, lesson_id: str, kind: bytes, payload: bytes) -> None:
        self.published.append(kind)

    def others_listen(self, lesson_id: str) -> bool:
        return True

    async def subscribed(self, lesson_id: str, within: float) -> bool:
        try:
            await asyncio.wait_for(self.confirmed.wait(), within if within < 5 else 10)
        except TimeoutError:
            return False
        return True

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def test_a_room_whose_subscription_is_late_asks_again_once_subscribed() -> None:
    """Answers to a question sent before the subscription reach nobody; a node alone on the lesson
    would take its answer's count of 1 for being alone still. So the room asks again."""
    fake = SlowSubscriptionRelay()
    rooms: dict[str, Room] = {}
    cluster = Cluster(fake, rooms, Awareness(None, ids=8, state_bytes=1024, burst=10, per_second=10))
    room = rooms[LESSON] = Room(LESSON, Doc())
    await cluster.opened(room)  # its subscription was not confirmed within a second
    assert fake.published == [KIND_QUERY]
    fake.confirmed.set()

    async def asked_again() -> bool:
        return fake.published == [KIND_QUERY, KIND_QUERY]

    await eventually(asked_again, within=5)
    assert KIND_UPDATE not in fake.published


async def test_stopping_cancels_a_question_still_waiting_for_its_subscription() -> None:
    fake = SlowSubscriptionRelay()
    rooms: dict[str, Room] = {}
    cluster = Cluster(fake, rooms, Awareness(None, ids=8, state_bytes=1024, burst=10, per_second=10))
    room = rooms[LESSON] = Room(LESSON, Doc())
    await cluster.opened(room)
    [waiting] = cluster._tasks
    await cluster.stop()
    assert waiting.cancelled() and not cluster._tasks
    fake.confirmed.set()  # the subscription comes after the stop: nothing is asked
    await asyncio.sleep(0)
    assert fake.published == [KIND_QUERY]


class FakeSubscriber:
    connected = True

    def __init__(self) -> None:
        self.failed: list[BaseException] = []

    def fail(self, reason: BaseException) -> None:
        self.failed.append(reason)


def test_a_subscription_that_stops_hearing_its_own_heartbeat_is_reconnected() -> None:
    r = relay()
    fake = FakeSubscriber()
    r.subscriber = fake  # type: ignore[assignment]
    now = time.monotonic()
    r._published_at = now  # publishing works
    assert r._watch(now, now - 60) == now - 60 and fake.failed == []  # its heartbeat came back
    r._echo_at = now - 60  # ... and then stopped coming
    assert r._watch(now, now - 60) == now and len(fake.failed) == 1
    assert r._watch(now + 1, now) == now  # watched again from the reconnect: not at once
    r._published_at = now - 60  # nothing gets published (Redis away): the subscription is not blamed
    assert r._watch(now + 60, now) == now and len(fake.failed) == 1


async def test_a_failed_subscription_reconnects_and_the_rooms_resynchronise(redis_url: str) -> None:
    prefix = f"scr-deaf-{uuid.uuid4().hex[:8]}"
    reconnects: list[bool] = []
    heard: list[bytes] = []
    a, b = RedisRelay(redis_url, prefix, "a"), RedisRelay(redis_url, prefix, "b")
    a.bind(lambda lesson, kind, payload, origin: heard.append(payload), lambda: reconnects.append(True))
    b.bind(lambda *args: None, lambda: None)
    await a.start()
    await b.start()
    try:
        a.subscribe(LESSON)
        assert await a.subscribed(LESSON, within=5)
        a.subscriber.fail(TimeoutError("deaf"))

        async def back() -> bool:
            return bool(reconnects) and a.subscriber.confirmed(a.channel(LESSON))

        await eventually(back)

        async def hears_b() -> bool:
            b.publish(LESSON, KIND_UPDATE, b"after")
            return b"after" in heard

        await eventually(hears_b)
    finally:
        await a.stop()
        await b.stop()
