"""The REST write path of the fan-out bench alone: server CPU and SQL statements per reply POST.

usage (from the repository root, with the venv):
  BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/postgres \\
  .venv/bin/python bench/fanout_scriptorium/post_cost.py --replies 600 --concurrency 4 [--profile out.txt]

The same server as ``run.py`` (``python -m server serve``, its own redis-server, rate limit off,
CHECK_RESPONSES=1 as every ServerProcess) with no /ws subscriber: the thread's author POSTs
``--replies`` replies (``--concurrency`` at a time, after ``--warmup`` unmeasured ones), so the
figure is REST → commit → outbox → drain → Redis, without the fan-out. Server CPU is
utime+stime from /proc (less disturbed by a busy machine than wall time). A second server with
``SQL_STATEMENT_HEADER=1`` reports the statements per POST (the header's own listener would
add CPU to the first). ``--profile``: py-spy raw stacks of the measured part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.fanout_scriptorium.run import bench_thread, cpu_s  # noqa: E402
from server.db import make_engine  # noqa: E402
from server.migrate import upgrade  # noqa: E402
from tests.support import Postgres, RedisServer, ServerProcess  # noqa: E402


async def post_replies(client: httpx.AsyncClient, post_id: str, headers: dict[str, str], count: int,
                       concurrency: int, statements: Counter[int]) -> None:
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            r = await client.post(f"/api/forum/posts/{post_id}/replies", headers=headers,
                                  json={"content": f"reply {i} with a little **markdown**"})
            r.raise_for_status()
            if "x-sql-statements" in r.headers:
                statements[int(r.headers["x-sql-statements"])] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(args: argparse.Namespace, *, count_statements: bool) -> dict[str, Any]:
    admin = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if admin:
        os.environ["TEST_DATABASE_URL"] = admin
    postgres = Postgres()
    url = await postgres.create_database("scr_postcost")
    await upgrade(url)
    redis = RedisServer().start()
    data_dir = Path(tempfile.mkdtemp(prefix="scr-postcost-"))
    env = {"RATE_LIMIT_PER_MINUTE": "0", "LOG_LEVEL": "warning", "WS_SOCKETS_PER_USER": "0",
           "CHECK_RESPONSES": "0"}  # production's setting, as run.py
    if count_statements:
        env["SQL_STATEMENT_HEADER"] = "1"
    server = ServerProcess(database_url=url, data_dir=data_dir, redis_url=redis.url, env=env)
    await asyncio.to_thread(server.start)
    engine = make_engine(url)
    try:
        assert server.proc is not None
        pid = server.proc.pid
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            users, post_id = await bench_thread(client, engine, args.users)
            author = users[0]
            statements: Counter[int] = Counter()
            await post_replies(client, post_id, author.headers, args.warmup, args.concurrency, Counter())
            await asyncio.sleep(0.5)  # the warm-up's drain done
            spy = None
            if args.profile and not count_statements:
                spy = subprocess.Popen([  # noqa: ASYNC220 (started, never waited on in the loop)
                                        args.pyspy, "record", "-p", str(pid), "-r", "200", "-f", "raw",
                                        "-o", args.profile, "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                await asyncio.sleep(1.0)
            cpu0, t0 = cpu_s(pid), time.perf_counter()
            await post_replies(client, post_id, author.headers, args.replies, args.concurrency, statements)
            await asyncio.sleep(0.3)  # let the drain publish the last events
            cpu1, t1 = cpu_s(pid), time.perf_counter()
            if spy is not None:
                spy.send_signal(2)
                spy.wait(30)
        result: dict[str, Any] = {
            "replies": args.replies, "concurrency": args.concurrency,
            "wall_s": round(t1 - t0, 2), "server_cpu_s": round(cpu1 - cpu0, 2),
            "server_cpu_ms_per_post": round(1000 * (cpu1 - cpu0) / args.replies, 3),
        }
        if count_statements:
            result["statements_per_post"] = dict(sorted(statements.items()))
        return result
    finally:
        server.stop()
        redis.stop()
        await engine.dispose()
        await postgres.drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replies", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--profile", help="write py-spy raw stacks of the measured POSTs here")
    parser.add_argument("--pyspy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--no-statements", action="store_true", help="skip the statement-counting server")
    args = parser.parse_args()
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                              "cpu": asyncio.run(measure(args, count_statements=False))}
    if not args.no_statements:
        report["statements"] = asyncio.run(measure(args, count_statements=True))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
