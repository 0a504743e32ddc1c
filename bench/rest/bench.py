"""REST benchmark: a real server (1 and 2 workers) on loopback, load from ``wrk``.

    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1/test .venv/bin/python bench/rest/bench.py \
        --duration 10 --connections 50 --workers 1 2

Seeds a fresh database through the API (60 published courses; one of 20 units × 10 lessons), then
runs ``wrk --latency`` against ``GET /api/courses?limit=20`` and ``GET /api/courses/{id}/outline``
(anonymous, as the public catalogue is read), and — when the learning routes are present —
``PUT /api/lessons/{id}/progress`` as an enrolled user, checking the final progress afterwards.
Prints a Markdown table and appends it to ``bench/results/rest.md`` with ``--write``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from server.migrate import upgrade  # noqa: E402
from tests.support import Postgres, ServerProcess, dev_user  # noqa: E402

PROGRESS_LUA = """
local lessons = {%s}
local token = "%s"
local i = 0
request = function()
  i = i + 1
  local lesson = lessons[(i %% #lessons) + 1]
  return wrk.format("PUT", "/api/lessons/" .. lesson .. "/progress",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"},
    '{"status": "completed"}')
end
"""


async def seed(base_url: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        author = await dev_user(client, "Bench Author")
        h = author.headers

        async def post(path: str, body: dict[str, object], status: int = 201) -> dict[str, object]:
            response = await client.post(path, json=body, headers=h)
            assert response.status_code == status, response.text
            data: dict[str, object] = response.json()
            return data

        big = await post("/api/courses", {"title": "Big course", "description": "20 units of 10 lessons",
                                          "language": "en", "tags": ["bench"]})
        lessons: list[str] = []
        for u in range(20):
            unit = await post(f"/api/courses/{big['id']}/units", {"title": f"Unit {u}"})
            for i in range(10):
                lesson = await post(f"/api/units/{unit['id']}/lessons",
                                    {"title": f"Lesson {u}.{i}", "content_type": "text",
                                     "content": {"body": f"# Lesson {u}.{i}\n\nSome *text*."}})
                lessons.append(str(lesson["id"]))
        await post(f"/api/courses/{big['id']}/publish", {}, 200)
        for c in range(59):
            course = await post("/api/courses", {"title": f"Course {c}", "description": "bench", "tags": ["bench"]})
            unit = await post(f"/api/courses/{course['id']}/units", {"title": "U"})
            await post(f"/api/units/{unit['id']}/lessons", {"title": "L", "content_type": "text"})
            await post(f"/api/courses/{course['id']}/publish", {}, 200)
        learner = await dev_user(client, "Bench Learner")
        enrolled = await client.put(f"/api/courses/{big['id']}/enrollment", headers=learner.headers)
        return {"course": str(big["id"]), "lessons": ",".join(lessons), "learner_token": learner.token,
                "progress": "yes" if enrolled.status_code in (200, 201) else "no"}


def run_wrk(url: str, *, duration: int, connections: int, threads: int, script: str | None = None) -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50": ms("50%"), "p99": ms("99%"), "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
            "socket_errors": 1.0 if errors else 0.0}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--pool", type=int, default=8, help="DB_POOL_SIZE per worker (no overflow)")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="REDIS_URL of the server (several workers need it; used for every run)")
    args = parser.parse_args()

    postgres = Postgres()
    database_url = await postgres.create_database("scr_bench")
    await upgrade(database_url)
    rows: list[str] = []
    data_dir = Path(tempfile.mkdtemp(prefix="scr-bench-"))
    env = {"RATE_LIMIT_PER_MINUTE": "0", "LOG_LEVEL": "warning", "DB_POOL_SIZE": str(args.pool),
           "DB_MAX_OVERFLOW": "0"}
    try:
        seeded: dict[str, str] | None = None
        for workers in args.workers:
            server = ServerProcess(database_url=database_url, data_dir=data_dir, env=env, workers=workers,
                                   redis_url=args.redis).start()
            try:
                if seeded is None:
                    seeded = await seed(server.base_url)
                targets = [
                    ("GET /api/courses?limit=20", f"{server.base_url}/api/courses?limit=20", None),
                    ("GET /api/courses/{id}/outline (20×10)",
                     f"{server.base_url}/api/courses/{seeded['course']}/outline", None),
                ]
                if seeded["progress"] == "yes":
                    lua = Path(data_dir / "progress.lua")
                    quoted = ",".join(f'"{lesson}"' for lesson in seeded["lessons"].split(","))
                    lua.write_text(PROGRESS_LUA % (quoted, seeded["learner_token"]))  # noqa: ASYNC240
                    targets.append(("PUT /api/lessons/{id}/progress", server.base_url, str(lua)))
                assert server.proc is not None
                root = psutil.Process(server.proc.pid)
                tree = [root, *root.children(recursive=True)]
                for label, url, script in targets:
                    cpu_before = sum(sum(p.cpu_times()[:2]) for p in tree)
                    result = run_wrk(url, duration=args.duration, connections=args.connections,
                                     threads=args.threads, script=script)
                    cpu = sum(sum(p.cpu_times()[:2]) for p in tree) - cpu_before
                    per_request = cpu / max(1.0, result["rps"] * args.duration) * 1000
                    rows.append(f"| {label} | {workers} | {args.connections} | {result['rps']:,.0f} | "
                                f"{result['p50']:.1f} | {result['p99']:.1f} | {int(result['non2xx'])} | "
                                f"{per_request:.2f} |")
                    print(rows[-1], flush=True)
            finally:
                server.stop()
    finally:
        await postgres.drop_database(database_url)
    header = ("| route | workers | connections | req/s | p50 ms | p99 ms | non-2xx | server CPU ms/req |\n"
              "|---|---|---|---|---|---|---|---|")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    table = (f"\n## {stamp} — wrk {args.duration}s, {args.threads} threads, DB pool {args.pool}/worker, "
             f"load average before "
             f"{load[0]:.2f}\n\n{header}\n" + "\n".join(rows) + "\n")
    print(table)
    if args.write:
        results = ROOT / "bench" / "results" / "rest.md"
        results.parent.mkdir(parents=True, exist_ok=True)
        if not results.exists():
            results.write_text("# REST benchmark results\n\nProduced by `bench/rest/bench.py` (see its docstring).\n")
        with results.open("a") as f:
            f.write(table)


if __name__ == "__main__":
    asyncio.run(main())
