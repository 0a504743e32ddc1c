"""Per-node interest: each node's inbound Redis pub/sub bytes with 3 nodes sharing 300 forum
threads and 60 lessons, against one node serving them all (issue 15).

Every "node" is the production pair of one server process, :class:`realtime.redis_broker.RedisBroker`
(``/ws`` channels) and :class:`collab.relay.RedisRelay` (lessons), here three pairs in one process,
each with its own Redis connections. Clients are spread evenly: thread ``i`` has its listener on
node ``i % 3``, lesson ``j`` its room on node ``j % 3``. Then every thread gets the same events
(published through the broker's append script, as the outbox drain does) and every lesson the same
relayed updates (from a fourth publisher-only relay, as another node's room would). A node's
inbound bytes are what its subscriber connections read, counted as RESP2 puts them on the wire
(``Subscriber.bytes_in``); Redis's own ``total_net_output_bytes`` is reported beside them.

    python bench/scale_interest.py [--cluster] [--out bench/results/scale-interest.md]

Runs against a redis-server it starts (and, with ``--cluster``, a 3-master Redis Cluster as
tests/cluster/ starts it); a run takes a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402

from collab.relay import KIND_UPDATE, RedisRelay  # noqa: E402
from realtime.broker import Event, Reset  # noqa: E402
from realtime.redis_broker import RedisBroker  # noqa: E402
from tests.support import RedisServer  # noqa: E402
from tests.support.redis_cluster import RedisCluster  # noqa: E402
from wire.redis import is_cluster  # noqa: E402

THREADS = 300
ROOMS = 60
EVENTS_PER_THREAD = 10
UPDATES_PER_ROOM = 20
PAYLOAD = "x" * 200  # a forum reply's JSON is a few hundred bytes
UPDATE = b"\x00\x02" + b"y" * 60  # a typed character's y-websocket update frame is ~30-80 bytes


class Node:
    def __init__(self, url: str, prefix: str, name: str) -> None:
        self.broker = RedisBroker(url, prefix)
        self.relay = RedisRelay(url, prefix, name)
        self.events = 0
        self.updates = 0

    async def start(self) -> None:
        self.relay.bind(self._on_relay, lambda: None)
        await self.broker.start()
        await self.relay.start()

    def _on_relay(self, lesson: str, kind: bytes, payload: bytes, origin: str) -> None:
        self.updates += 1

    def _on_event(self, item: Event | Reset) -> None:
        self.events += 1

    async def serve(self, threads: list[str], rooms: list[str]) -> None:
        for thread in threads:
            await self.broker.subscribe(thread, self._on_event)
        for room in rooms:
            self.relay.subscribe(room)
        for room in rooms:
            assert await self.relay.subscribed(room, within=10)

    @property
    def bytes_in(self) -> int:
        return self.broker.subscriber.bytes_in + self.relay.subscriber.bytes_in

    async def stop(self) -> None:
        await self.relay.stop()
        await self.broker.close()


async def redis_out_bytes(ports: list[int]) -> int:
    """``total_net_output_bytes`` summed over the Redis servers (every cluster node)."""
    total = 0
    for port in ports:
        client = aioredis.Redis(port=port, decode_responses=True)
        try:
            total += int((await client.info("stats"))["total_net_output_bytes"])
        finally:
            await client.aclose()
    return total


class PatternListener:
    """What a node of the previous design read: one PSUBSCRIBE to every live and relay channel
    (plain Redis only: a pattern does not match shard channels)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = aioredis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.prefix = prefix
        self.bytes_in = 0
        self.messages_in = 0
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.pubsub.psubscribe(f"{self.prefix}:live:*", f"{self.prefix}:collab:*")
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            message = await self.pubsub.get_message(timeout=None)
            if message and message["type"] == "pmessage":
                self.messages_in += 1
                self.bytes_in += 4 + sum(_bulk(len(part)) for part in (
                    b"pmessage", message["pattern"], message["channel"], message["data"]))

    def reset(self) -> None:
        self.bytes_in = self.messages_in = 0

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.pubsub.aclose()
        await self.client.aclose()


def _bulk(n: int) -> int:
    return 1 + len(str(n)) + 2 + n + 2


async def scenario(url: str, ports: list[int], nodes_count: int) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    threads = [f"thread:{uuid.uuid4()}" for _ in range(THREADS)]
    rooms = [str(uuid.uuid4()) for _ in range(ROOMS)]
    nodes = [Node(url, prefix, f"node-{n}") for n in range(nodes_count)]
    source = RedisRelay(url, prefix, "source")
    source.bind(lambda *args: None, lambda: None)
    pattern = None if is_cluster(url) or nodes_count == 1 else PatternListener(url, prefix)
    if pattern is not None:
        await pattern.start()
    for node in nodes:
        await node.start()
    await source.start()
    for n, node in enumerate(nodes):
        await node.serve(threads[n::nodes_count], rooms[n::nodes_count])
    for node in nodes:  # heartbeats and subscription replies are not the traffic measured
        for subscriber in (node.broker.subscriber, node.relay.subscriber):
            subscriber.bytes_in = subscriber.messages_in = 0
    if pattern is not None:
        pattern.reset()
    before = await redis_out_bytes(ports)
    started = time.perf_counter()
    publisher = nodes[0].broker
    data = json.dumps({"content": PAYLOAD})
    for _ in range(EVENTS_PER_THREAD):
        for first in range(0, THREADS, 20):
            await asyncio.gather(*[publisher.publish(thread, "reply.created", data)
                                   for thread in threads[first:first + 20]])
    for _ in range(UPDATES_PER_ROOM):
        for room in rooms:
            source.publish(room, KIND_UPDATE, UPDATE)
    want_events, want_updates = THREADS * EVENTS_PER_THREAD, ROOMS * UPDATES_PER_ROOM
    deadline = time.monotonic() + 30
    def done() -> bool:
        return sum(n.events for n in nodes) >= want_events and sum(n.updates for n in nodes) >= want_updates

    while not done() and time.monotonic() < deadline:  # noqa: ASYNC110 (bounded poll of counters)
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    after = await redis_out_bytes(ports)
    result = {
        "nodes": nodes_count,
        "events": [n.events for n in nodes], "updates": [n.updates for n in nodes],
        "bytes_in": [n.bytes_in for n in nodes],
        "messages_in": [n.broker.subscriber.messages_in + n.relay.subscriber.messages_in for n in nodes],
        "redis_out_bytes": after - before, "seconds": round(elapsed, 2),
        "pattern_bytes_in": pattern.bytes_in if pattern is not None else None,
        "complete": sum(n.events for n in nodes) == want_events and sum(n.updates for n in nodes) == want_updates,
    }
    await source.stop()
    for node in nodes:
        await node.stop()
    if pattern is not None:
        await pattern.stop()
    return result


def table(mode: str, one: dict[str, Any], three: dict[str, Any]) -> str:
    single = one["bytes_in"][0]
    lines = [f"### {mode}", "",
             "| deployment | node | events delivered | updates delivered | messages in | inbound bytes | share of one node serving all |",
             "|---|---|---|---|---|---|---|"]
    lines.append(f"| 1 node, all 300 threads + 60 rooms | 0 | {one['events'][0]} | {one['updates'][0]} | "
                 f"{one['messages_in'][0]} | {single:,} | 100 % |")
    for n in range(three["nodes"]):
        lines.append(f"| 3 nodes, 100 threads + 20 rooms each | {n} | {three['events'][n]} | {three['updates'][n]} | "
                     f"{three['messages_in'][n]} | {three['bytes_in'][n]:,} | {100 * three['bytes_in'][n] / single:.1f} % |")
    if three["pattern_bytes_in"] is not None:
        lines.append(f"| 3 nodes, previous design (one pattern subscription per node) | each | – | – | – | "
                     f"{three['pattern_bytes_in']:,} | {100 * three['pattern_bytes_in'] / single:.1f} % |")
    lines += ["", f"Redis output during the run (every server, all connections: publisher replies, on the cluster "
              "replication to the replicas, and on one Redis the measuring pattern subscriber of the "
              "3-node run included): "
              f"1 node {one['redis_out_bytes']:,} B, 3 nodes {three['redis_out_bytes']:,} B. "
              f"Every event and update delivered: {one['complete'] and three['complete']}.", ""]
    return "\n".join(lines)


async def run(cluster: bool) -> tuple[str, dict[str, Any], dict[str, Any]]:
    if cluster:
        made: Any = RedisCluster().start()
        url, mode = made.url, "Redis Cluster (3 masters + 3 replicas, sharded pub/sub)"
        ports = [node.port for node in made.nodes]
    else:
        made = RedisServer().start()
        url, mode = made.url, "one Redis (SUBSCRIBE / PUBLISH)"
        ports = [made.port]
    try:
        one = await scenario(url, ports, 1)
        three = await scenario(url, ports, 3)
    finally:
        made.stop()
    return mode, one, three


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sections = []
    for cluster in (False, True):
        mode, one, three = asyncio.run(run(cluster))
        print(mode, json.dumps({"one": one, "three": three}))
        sections.append(table(mode, one, three))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    report = (
        "# Per-node interest: inbound Redis bytes per node\n\n"
        f"`python bench/scale_interest.py --out bench/results/scale-interest.md` (commit {commit}; "
        "2-core machine shared with other work). 300 forum threads (`/ws` channels) and 60 lessons "
        f"(collab rooms); each thread gets {EVENTS_PER_THREAD} events of ~230 B through the broker's "
        f"append-and-publish script, each lesson {UPDATES_PER_ROOM} relayed updates of 62 B. "
        "With 3 nodes, thread i and lesson j have their clients on node i % 3 and j % 3. "
        "Inbound bytes: what the node's subscriber connections (broker and relay) read, counted "
        "as RESP2 frames on the wire. Before this change each node held one pattern subscription "
        "and so read what the single node reads whatever it served: the row \"previous design\" measures "
        "such a pattern subscriber during the 3-node run.\n\n"
        + "\n".join(sections)
    )
    if args.out:
        args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
