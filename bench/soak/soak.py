"""Soak: mixed load on one node for a while, then everyone leaves; is anything left behind?

usage (from the repository root): bench/soak/run.sh --minutes 30   (this script + the plot)
    .venv/bin/python bench/soak/soak.py --minutes 2 [--rooms 5 --editors 4 --subscribers 500]

One server process (``python -m server serve``, in-process broker, METRICS=on) on a fresh
database of BENCH_DATABASE_URL / TEST_DATABASE_URL's server (else an embedded PostgreSQL). The
load, from this process: co-editors typing in several rooms (asking "saved?" now and then), 500
/ws subscribers following a forum thread while replies are posted (each a notification to the
thread's author, who follows ``user:me``), REST reads (thread, replies, notifications, me) and
writes (replies, PATCH /api/me). Every second: the server's RSS, open fds, asyncio tasks, the
event loop's longest lag of that second, collab rooms, open sockets, DB connections
(pg_stat_activity), events delivered to the subscribers. Then all clients leave and it waits for
the idle counts to come back.

Checks (exit 1 if one fails): RSS growth after warm-up < 10 %; loop lag p99 < 50 ms over the whole
load (from the server's histogram); rooms, sockets, tasks, fds and busy DB connections back to
their idle counts. Writes bench/results/soak.json (samples) and bench/results/soak.md (figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect  # noqa: E402

from bench.server_view import parse_metrics  # noqa: E402
from server.db import make_engine  # noqa: E402
from server.migrate import upgrade  # noqa: E402
from tests.support import DevUser, Postgres, ServerProcess, database_name, dev_user  # noqa: E402
from tests.support.collab import YClient, make_lesson  # noqa: E402
from tests.support.forum import create_post, make_course  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MiB = 1024 * 1024


class Load:
    def __init__(self, args: argparse.Namespace, base: str, ws_base: str) -> None:
        self.args, self.base, self.ws_base = args, base, ws_base
        self.stop = asyncio.Event()
        self.delivered = 0  # /ws event frames received by all subscribers
        self.edits = 0
        self.saved = 0
        self.requests = 0
        self.sessions = 0  # writing sessions ended (--session-minutes)
        self.errors: dict[str, int] = {}

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    async def room(self, engine: Any, author: DevUser, r: int) -> None:
        """One room's co-editors. With ``--session-minutes`` they all leave after that long and
        meet again in a fresh lesson (the old room unloads a minute later), as writing sessions
        come and go; without it they type into one lesson for the whole run, whose document then
        grows by its own history (Yjs keeps an item per insert) for as long as the run lasts."""
        session_s = self.args.session_minutes * 60
        while not self.stop.is_set():
            lesson = await make_lesson(engine, author.clerk_id, body="")
            ended = asyncio.Event()
            editors = [asyncio.create_task(self.editor(lesson.id, author, r * 100 + e, ended))
                       for e in range(self.args.editors)]
            if session_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), session_s)
                ended.set()
            await asyncio.gather(*editors)
            self.sessions += 1

    async def editor(self, lesson_id: str, user: DevUser, n: int, ended: asyncio.Event | None = None) -> None:
        # a node busy accepting 500 sockets may answer the handshake and sync late
        client = await YClient.connect(self.ws_base, lesson_id, user.token, sync=False, open_timeout=60)
        try:
            await asyncio.wait_for(client.synced.wait(), 120)
            k = 0
            while not self.stop.is_set() and not (ended is not None and ended.is_set()):
                body = client.body
                if len(str(body)) > 4000:  # keep the text bounded: delete what was typed
                    del body[0:2000]
                body.insert(len(str(body)), f"<{n}.{k}>")
                k += 1
                self.edits += 1
                if k % 20 == 0:
                    await client.saved(within=30)
                    self.saved += 1
                await asyncio.sleep(1 / self.args.keys_per_second * random.uniform(0.5, 1.5))
        except Exception as exc:
            self.error(f"editor: {type(exc).__name__}")
        finally:
            await client.close()

    async def subscriber(self, user: DevUser, channel: str, ready: asyncio.Event | None = None) -> None:
        async with connect(f"{self.ws_base}/ws?token={user.token}", open_timeout=60, max_queue=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            if ready is not None:
                ready.set()
            stopping = asyncio.create_task(self.stop.wait())
            try:
                while True:
                    receiving = asyncio.create_task(ws.recv())
                    done, _ = await asyncio.wait([receiving, stopping], return_when=asyncio.FIRST_COMPLETED)
                    if receiving not in done:
                        receiving.cancel()
                        return
                    if json.loads(receiving.result())["type"] == "event":
                        self.delivered += 1
            finally:
                stopping.cancel()

    async def rest(self, http: httpx.AsyncClient, author: DevUser, users: list[DevUser], post_id: str) -> None:
        n = 0
        while not self.stop.is_set():
            user = users[n % len(users)]
            try:
                calls = [
                    http.post(f"/api/forum/posts/{post_id}/replies", headers=user.headers,
                              json={"content": f"reply {n}"}),
                    http.get(f"/api/forum/posts/{post_id}", headers=user.headers),
                    http.get(f"/api/forum/posts/{post_id}/replies", headers=user.headers),
                    http.get("/api/notifications", headers=author.headers),
                    http.get("/api/me", headers=user.headers),
                ]
                if n % 4 == 0:
                    calls.append(http.patch("/api/me", headers=user.headers, json={"name": f"User {n}"}))
                for response in await asyncio.gather(*calls):
                    self.requests += 1
                    if response.status_code >= 400:
                        self.error(f"http {response.status_code} {response.request.method}")
            except httpx.HTTPError as exc:
                self.error(f"http {type(exc).__name__}")
            n += 1
            await asyncio.sleep(1 / self.args.replies_per_second)


def proc_status(pid: int) -> dict[str, int]:
    out = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "VmRSS":
            out["rss"] = int(value.split()[0]) * 1024
    return out


def open_connections(port: int) -> int:
    """Established TCP connections to the server's port (HTTP keep-alive, /ws and collab sockets)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def lag_quantile(first: dict[str, float], last: dict[str, float], q: float, prefix: str = "lag_le_") -> float:
    """The q-quantile of the loop-lag observations between two scrapes (a bucket's upper bound)."""
    buckets = sorted((float(k[len(prefix):]), last[k] - first.get(k, 0.0)) for k in last if k.startswith(prefix))
    total = buckets[-1][1] if buckets else 0.0
    for bound, count in buckets:
        if total and count >= q * total:
            return bound
    return float("inf")


async def db_connections(admin: Any, name: str) -> tuple[int, int]:
    rows = await admin.fetch("SELECT state FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
    return len(rows), sum(1 for r in rows if r["state"] not in ("idle", None))


async def main(args: argparse.Namespace) -> int:
    import asyncpg

    postgres = Postgres() if not os.environ.get("BENCH_DATABASE_URL") else None
    if postgres is None:
        os.environ["TEST_DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
        postgres = Postgres()
    url = await postgres.create_database("scr_soak")
    await upgrade(url)
    engine = make_engine(url)
    server = ServerProcess(database_url=url, data_dir=Path(tempfile.mkdtemp(prefix="scr-soak-")), env={
        "RATE_LIMIT_PER_MINUTE": "0", "WS_SOCKETS_PER_USER": "1000", "WS_FRAMES_PER_SECOND": "0",
        "COLLAB_SOCKETS_PER_USER": "1000",
        **({"EVENT_HISTORY": str(args.event_history)} if args.event_history is not None else {}),
        **({"EVENT_HISTORY_SECONDS": str(args.event_history_seconds)}
           if args.event_history_seconds is not None else {}),
        **dict(item.split("=", 1) for item in args.server_env)})
    await asyncio.to_thread(server.start, 120)
    assert server.proc is not None
    pid = server.proc.pid
    admin = await asyncpg.connect(postgres.admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    samples: list[dict[str, Any]] = []
    load = Load(args, server.base_url, server.ws_url)
    started = time.monotonic()
    phase = "idle"

    async with httpx.AsyncClient(base_url=server.base_url, timeout=60,
                                 limits=httpx.Limits(max_connections=20, keepalive_expiry=2.0)) as http:

        async def scrape() -> dict[str, Any]:
            # a pooled connection the server closed as idle fails at once: one retry on a new one
            for attempt in (1, 2):
                try:
                    return parse_metrics((await http.get("/metrics")).text)
                except httpx.TransportError:
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

        async def sample() -> dict[str, Any]:
            metrics = await scrape()
            conns, busy = await db_connections(admin, database_name(url))
            row: dict[str, Any] = {"t": round(time.monotonic() - started, 2), "phase": phase,
                                   **proc_status(pid), **metrics, "sockets": open_connections(server.port),
                                   "db_connections": conns, "db_busy": busy,
                                   "delivered": load.delivered, "edits": load.edits, "requests": load.requests}
            samples.append(row)
            return row

        async def sampler() -> None:
            while True:
                try:
                    await sample()
                except (httpx.TransportError, OSError) as exc:  # counted, never the end of the run
                    missed.append(f"{round(time.monotonic() - started, 1)} s: {type(exc).__name__}")
                await asyncio.sleep(1)

        missed: list[str] = []  # samples the server did not answer (reported with the figures)
        # idle counts: the server up, nobody connected
        for _ in range(5):
            idle = await sample()
            await asyncio.sleep(1)
        author = await dev_user(http, "Author")
        users = [await dev_user(http, f"User {i}") for i in range(max(4, args.subscribers // 50))]
        course = await make_course(engine, author)
        post = await create_post(http, course, author)
        sampling = asyncio.create_task(sampler())
        phase = "load"
        tasks: list[asyncio.Task[None]] = []
        ready = asyncio.Event()
        for r in range(args.rooms):
            tasks.append(asyncio.create_task(load.room(engine, author, r)))
        tasks.append(asyncio.create_task(load.subscriber(author, "user:me", ready)))
        for i in range(args.subscribers):
            tasks.append(asyncio.create_task(load.subscriber(users[i % len(users)], f"thread:{post['id']}")))
            if i % 50 == 49:
                await asyncio.sleep(0.2)  # connect in waves, as a class opening the page would
        tasks.append(asyncio.create_task(load.rest(http, author, users, post["id"])))
        load_started = time.monotonic()
        # warm-up: past the first writing session and its room's unload (a minute after it ended)
        warmup = max(30.0, args.minutes * 60 * 0.1, args.session_minutes * 60 + 90)
        await asyncio.sleep(args.minutes * 60)
        phase = "leaving"
        load.stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                load.error(f"client: {type(result).__name__}")
        left = time.monotonic()

        # back to idle: rooms unload a minute after their last client left (collab.manager)
        def fds_back(row: dict[str, Any]) -> bool:
            # the DB pool keeps the connections it opened (up to its size): one fd each
            return bool(row["fds"] <= idle["fds"] + (row["db_connections"] - idle["db_connections"]) + 2)

        def is_idle(row: dict[str, Any]) -> bool:
            return (row.get("rooms", 0) == 0 and row["sockets"] <= idle["sockets"] and row["db_busy"] <= idle["db_busy"]
                    and row.get("tasks", 0) <= idle.get("tasks", 0) + 2 and fds_back(row))

        while time.monotonic() - left < args.idle_wait:
            if samples and is_idle(samples[-1]):
                break
            await asyncio.sleep(1)
        phase = "idle again"
        await asyncio.sleep(3)
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
        final = await sample()

    await admin.close()
    await asyncio.to_thread(server.stop)
    await engine.dispose()
    await postgres.drop_database(url)

    load_rows = [s for s in samples if s["phase"] == "load"]
    t0 = load_rows[0]["t"]
    warm = [s for s in load_rows if s["t"] - t0 >= warmup]
    warm_rss = statistics.median(s["rss"] for s in warm[:10])
    end_rss = statistics.median(s["rss"] for s in warm[-10:])
    peak_rss = max(s["rss"] for s in warm)
    growth = (end_rss - warm_rss) / warm_rss
    lag_p99 = lag_quantile(load_rows[0], load_rows[-1], 0.99)
    held_p99 = lag_quantile(load_rows[0], load_rows[-1], 0.99, "held_le_")
    lag_max_p99 = sorted(s.get("lag_max", 0) for s in load_rows)[int(0.99 * (len(load_rows) - 1))]
    seconds = time.monotonic() - load_started
    first, last = load_rows[0], load_rows[-1]
    gc_slow = {gen: int((last.get(f"gc{gen}_le_+Inf", 0) - first.get(f"gc{gen}_le_+Inf", 0))
                        - (last.get(f"gc{gen}_le_0.05", 0) - first.get(f"gc{gen}_le_0.05", 0)))
               for gen in (0, 1, 2)}
    figures = {
        "minutes": args.minutes, "rooms": args.rooms, "editors_per_room": args.editors,
        "subscribers": args.subscribers, "replies_per_second": args.replies_per_second,
        "rss_after_warmup_mib": round(warm_rss / MiB, 1), "rss_end_mib": round(end_rss / MiB, 1),
        "rss_peak_mib": round(peak_rss / MiB, 1), "rss_growth_pct": round(100 * growth, 2),
        "session_minutes": args.session_minutes, "writing_sessions": load.sessions,
        "event_history": args.event_history or "default (1000)",
        "event_history_seconds": args.event_history_seconds or "default (86400)",
        "loop_lag_p99_ms": lag_p99 * 1000,
        "loop_held_p99_ms": held_p99 * 1000, "loop_lag_per_second_max_p99_ms": round(lag_max_p99 * 1000, 1),
        "seconds_with_lag_over_50ms": sum(1 for row in load_rows if row.get("lag_max", 0) > 0.05),
        "gc_passes_over_50ms_by_generation": gc_slow,
        "delivered": load.delivered, "delivered_per_second": round(load.delivered / seconds),
        "edits": load.edits, "saved_answers": load.saved, "requests": load.requests, "errors": load.errors,
        "missed_samples": missed,
        "idle": {k: idle.get(k) for k in ("rooms", "sockets", "tasks", "fds", "db_connections", "db_busy")},
        "after": {k: final.get(k) for k in ("rooms", "sockets", "tasks", "fds", "db_connections", "db_busy")},
        "back_to_idle_s": round(final["t"] - (left - started), 1),
    }
    checks = {
        "RSS growth after warm-up < 10 %": growth < 0.10,
        "loop lag p99 < 50 ms": lag_p99 <= 0.05,
        "rooms back to 0": final.get("rooms") == 0,
        "sockets back to idle (the sampler's own)": final["sockets"] <= idle["sockets"],
        "tasks back to idle (+2)": final.get("tasks", 0) <= idle.get("tasks", 0) + 2,
        "fds back to idle (+2, + the DB pool's kept connections)": fds_back(final),
        "busy DB connections back to idle": final["db_busy"] <= idle["db_busy"],
        "no client errors": not [k for k in load.errors if "(retried)" not in k],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    await asyncio.to_thread(out.write_text, json.dumps({"figures": figures, "checks": checks, "samples": samples},
                                                      indent=1))
    lines = [f"# Soak: {args.minutes} min of mixed load on one node", "",
             f"Command: `bench/soak/run.sh {' '.join(sys.argv[1:])}` (samples: `{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}`, "
             "plot: `docs/soak.png`).", "",
             f"Load: {args.rooms} rooms x {args.editors} co-editors ({args.keys_per_second} keys/s each, "
             f"\"saved?\" every 20 keys; "
             + (f"a fresh lesson every {args.session_minutes} min, the old room left to unload"
                if args.session_minutes > 0 else "one lesson each for the whole run")
             + f"), {args.subscribers} /ws subscribers on one thread, "
             f"{args.replies_per_second} reply/s (each a notification), REST reads and writes "
             "(thread, replies, notifications, me, PATCH me).", "",
             "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in figures.items()]
    lines += ["", "| check | result |", "|---|---|"]
    lines += [f"| {k} | {'pass' if ok else 'FAIL'} |" for k, ok in checks.items()]
    await asyncio.to_thread(Path(args.md).write_text, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rooms", type=int, default=5)
    parser.add_argument("--editors", type=int, default=4)
    parser.add_argument("--keys-per-second", type=float, default=2.0)
    parser.add_argument("--session-minutes", type=float, default=5.0,
                        help="a room's co-editors leave after this long and meet in a fresh lesson (0: never)")
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--event-history", type=int, default=None,
                        help="the server's EVENT_HISTORY (live events kept per channel, at least)")
    parser.add_argument("--event-history-seconds", type=int, default=None,
                        help="the server's EVENT_HISTORY_SECONDS (every event younger is kept too: by default "
                             "24 h, so a soak's live history grows for its whole run, by design)")
    parser.add_argument("--replies-per-second", type=float, default=1.0)
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for the server (repeatable), e.g. MALLOC_ARENA_MAX=2")
    parser.add_argument("--idle-wait", type=float, default=150.0, help="seconds to wait for idle counts")
    parser.add_argument("--out", default=str(RESULTS / "soak.json"))
    parser.add_argument("--md", default=str(RESULTS / "soak.md"))
    sys.exit(asyncio.run(main(parser.parse_args())))
