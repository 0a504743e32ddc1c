"""Fan-out bench of /ws over the full path, with Redis, compared in the same run with Socket.IO.

usage (from the repository root, with the venv):
  BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/postgres \\
  .venv/bin/python bench/fanout_scriptorium/run.py --rate 30 --seconds 20 --clients 1000 [--socketio]

Starts its own redis-server and ``python -m server serve`` (REDIS_URL set, rate limit off) on a
fresh database, creates a few dozen users, one published course and one thread, then runs the
Node load generator ``ws_client.mjs`` (``npm install`` here at run time). Server CPU is utime+stime
of the server process from /proc; memory per connection is the RSS growth over N subscribed
sockets. SQL during the reconnect storm is the database's transaction count delta
(pg_stat_database.xact_commit). With ``--socketio`` it also runs ../shared/bench/fanout (copied to a
temporary directory, npm install there) at the same rate and client count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from bench.server_view import scrape, stalls  # noqa: E402
from server.catalog.models import Course  # noqa: E402
from server.db import make_engine  # noqa: E402
from server.migrate import upgrade  # noqa: E402
from tests.support import Postgres, RedisServer, ServerProcess, database_name, dev_user  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes with ``--workers N``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        children = Path(f"/proc/{current}/task/{current}/children")
        if children.exists():
            todo += [int(c) for c in children.read_text().split()]
    return found


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_kib(pid: int) -> int:
    total = 0
    for p in tree(pid):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


async def xact_commits(admin_url: str, db: str) -> int:
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        value: int = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", db)
        return value
    finally:
        await conn.close()


def npm_install(path: Path) -> None:
    if not (path / "node_modules").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=path, check=True,
                       stdout=subprocess.DEVNULL)


async def bench_thread(client: httpx.AsyncClient, engine: Any, count: int) -> tuple[list[Any], str]:
    """``count`` dev users and a thread of the first one's, in a published course: (users, post id)."""
    users = [await dev_user(client, f"Reader {k}") for k in range(count)]
    author = users[0]
    async with AsyncSession(engine, expire_on_commit=False) as session:
        course = Course(author_id=author.clerk_id, title="Bench course", is_published=True)
        session.add(course)
        await session.commit()
    r = await client.post(f"/api/courses/{course.id}/forum/posts", headers=author.headers,
                          json={"title": "Bench thread", "content": "Fan-out"})
    r.raise_for_status()
    return users, str(r.json()["id"])


async def run_scriptorium(args: argparse.Namespace) -> dict[str, Any]:
    admin = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if admin:
        os.environ["TEST_DATABASE_URL"] = admin
    postgres = Postgres()
    url = await postgres.create_database("scr_bench")
    await upgrade(url)
    redis = RedisServer().start()
    data_dir = Path(tempfile.mkdtemp(prefix="scr-bench-"))
    server = ServerProcess(database_url=url, data_dir=data_dir, redis_url=redis.url, workers=args.workers,
                           # CHECK_RESPONSES=0: production's setting (the test suite's servers
                           # validate every response body against its model, ~1.5 % of a POST)
                           env={"RATE_LIMIT_PER_MINUTE": "0", "LOG_LEVEL": "warning",
                                "WS_SOCKETS_PER_USER": "0", "CHECK_RESPONSES": "0"})
    await asyncio.to_thread(server.start)
    engine = make_engine(url)
    result: dict[str, Any] = {}
    try:
        assert server.proc is not None
        pid = server.proc.pid
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            users, post_id = await bench_thread(client, engine, args.users)
            author = users[0]
        print("[bench] thread ready; installing the load generator", file=sys.stderr, flush=True)
        npm_install(HERE)
        config = dict(wsUrl=server.ws_url, baseUrl=server.base_url, channel=f"thread:{post_id}", postId=post_id,
                      posterToken=author.token, tokens=[u.token for u in users], clients=args.clients,
                      rate=args.rate, seconds=args.seconds,
                      stormReplies=0 if args.no_storm else args.storm_replies)
        cfg_path = data_dir / "load.json"
        cfg_path.write_text(json.dumps(config))
        rss0, cpu0 = rss_kib(pid), cpu_s(pid)
        proc = await asyncio.create_subprocess_exec("node", str(HERE / "ws_client.mjs"), str(cfg_path), cwd=HERE,
                                                    stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        marks: dict[str, Any] = {}
        spy: subprocess.Popen[bytes] | None = None
        async for line in proc.stdout:
            msg = json.loads(line)
            print(f"[bench] {msg}", file=sys.stderr, flush=True)
            phase = msg.pop("phase", None)
            if phase == "subscribed":
                if args.profile:
                    # py-spy (pip download py-spy; its wheel holds one static binary) samples the
                    # server through the steady run; collapsed stacks for flamegraph tools.
                    spy = subprocess.Popen([  # noqa: ASYNC220 (started, never waited on in the loop)
                                            args.pyspy, "record", "-p", str(pid), "-d", str(args.seconds),
                                            "-r", "200", "-f", "raw", "-o", args.profile, "--native"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                marks["rss_subscribed"], marks["cpu_subscribed"] = rss_kib(pid), cpu_s(pid)
                marks["gen_cpu0"] = cpu_s(proc.pid)
                marks["metrics0"] = await asyncio.to_thread(scrape, f"{server.base_url}/metrics")
                result["connect_ms"] = msg["connectMs"]
            elif phase == "run_done":
                marks["cpu_run"] = cpu_s(pid)
                marks["gen_cpu1"] = cpu_s(proc.pid)
                result["run"] = msg
                result["server_view"] = stalls(marks["metrics0"], await asyncio.to_thread(
                    scrape, f"{server.base_url}/metrics"))
            elif phase == "storm_start":
                marks["xact_storm"] = await xact_commits(postgres.admin_url, database_name(url))
                marks["cpu_storm0"] = cpu_s(pid)
            elif phase == "storm_done":
                marks["xact_storm_done"] = await xact_commits(postgres.admin_url, database_name(url))
                marks["cpu_storm1"] = cpu_s(pid)
                result["storm"] = msg
        await proc.wait()
        if spy is not None:
            spy.wait(30)
        run = result["run"]
        run_cpu = marks["cpu_run"] - marks["cpu_subscribed"]
        result.update(
            server_cpu_s=round(run_cpu, 2),
            generator_cpu_s=round(marks["gen_cpu1"] - marks["gen_cpu0"], 2),
            cpu_s_per_1000_deliveries=round(1000 * run_cpu / max(1, run["received"]), 4),
            deliveries_per_cpu_s=round(run["received"] / run_cpu) if run_cpu else None,
            connect_cpu_s=round(marks["cpu_subscribed"] - cpu0, 2),
            rss_per_connection_kib=round((marks["rss_subscribed"] - rss0) / args.clients, 1),
        )
        if "storm" in result:
            result["storm"].update(
                server_cpu_s=round(marks["cpu_storm1"] - marks["cpu_storm0"], 2),
                db_transactions=marks["xact_storm_done"] - marks["xact_storm"],
            )
    finally:
        server.stop()
        redis.stop()
        await engine.dispose()
        await postgres.drop_database(url)
    return result


def run_socketio(rate: int, clients: int, seconds: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="sio-bench-")) / "fanout"
    # ../shared beside the project root (a worktree may sit one level deeper).
    shared = next(p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared") if p.is_dir())
    shutil.copytree(shared / "bench" / "fanout", work)
    for path in work.iterdir():
        path.chmod(0o755 if path.suffix == ".sh" else 0o644)
    work.chmod(0o755)
    npm_install(work)
    out = subprocess.run([str(work / "run.sh"), str(rate), str(clients), str(seconds)], cwd=work,
                         capture_output=True, text=True, timeout=seconds + 120).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    merged: dict[str, Any] = {}
    for line in lines:
        merged.update(line)
    if merged.get("cpu_s") and merged.get("received"):
        merged["cpu_s_per_1000_deliveries"] = round(1000 * merged["cpu_s"] / merged["received"], 4)
        merged["deliveries_per_cpu_s"] = round(merged["received"] / merged["cpu_s"])
    return merged


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=30)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--storm-replies", type=int, default=20)
    parser.add_argument("--socketio", action="store_true")
    parser.add_argument("--profile", help="write py-spy collapsed stacks of the server's steady run here")
    parser.add_argument("--pyspy", default=shutil.which("py-spy") or "py-spy", help="the py-spy binary")
    parser.add_argument("--no-storm", action="store_true", help="skip the reconnect storm")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (joined through Redis)")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    report: dict[str, Any] = {"date": started, "rate": args.rate, "clients": args.clients, "seconds": args.seconds,
                              "scriptorium": asyncio.run(run_scriptorium(args))}
    if args.socketio:
        report["socketio"] = run_socketio(args.rate, args.clients, args.seconds)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
