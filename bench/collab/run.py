"""Collab fan-out benchmark: Scriptorium vs @y/websocket-server 0.1.1 vs pycrdt-websocket.

usage (from the repository root, with the project venv):
    .venv/bin/python bench/collab/run.py [--k 100 --w 20 --r 25 --secs 10] [--idle 1000 --idle-rooms 100]

Installs the reference servers into bench/collab/.work (ignored; never committed), starts a
redis-server and uses PostgreSQL from BENCH_DATABASE_URL (default: a fresh database on
postgresql://postgres@127.0.0.1/postgres). Scriptorium runs with auth (dev tokens),
PostgreSQL persistence and the Redis relay ON. Writes bench/results/collab.md.
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
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WORK = Path(__file__).resolve().parent / ".work"
LOAD = Path(os.environ.get("COLLAB_LOAD", "/work/shared/bench/collab_load.mjs"))
sys.path.insert(0, str(ROOT))

from tests.support import Postgres, RedisServer, ServerProcess, free_port, wait_for_port  # noqa: E402

PYCRDT_SERVER = """
import sys, uvicorn
from pycrdt.websocket import ASGIServer, WebsocketServer
websocket_server = WebsocketServer()
app = ASGIServer(websocket_server)
async def main():
    async with websocket_server:
        config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                                loop="uvloop", http="httptools")
        await uvicorn.Server(config).serve()
import anyio; anyio.run(main)
"""


def install() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    if not (WORK / "node_modules" / "@y" / "websocket-server").exists():
        (WORK / "package.json").write_text('{"private":true,"type":"module"}')
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "@y/websocket-server@0.1.1",
                        "yjs", "y-protocols", "lib0", "ws"], cwd=WORK, check=True)
    if not (WORK / "pyvenv" / "websockets-installed").exists():
        if not (WORK / "pyvenv" / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(WORK / "pyvenv")], check=True)
        subprocess.run([str(WORK / "pyvenv" / "bin" / "pip"), "install", "-q", "pycrdt-websocket",
                        "uvicorn", "uvloop", "httptools", "websockets"], check=True)
        (WORK / "pyvenv" / "websockets-installed").touch()
    shutil.copy(LOAD, WORK / "collab_load.mjs")
    (WORK / "pycrdt_server.py").write_text(PYCRDT_SERVER)


def cpu_seconds(pids: list[int]) -> float:
    tck = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tck
        except FileNotFoundError:
            pass
    return total


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn workers, npx children)."""
    out = [pid]
    for child in Path("/proc").iterdir():
        if child.name.isdigit():
            try:
                ppid = int(Path(child, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, IndexError, ValueError):
                continue
            if ppid == pid:
                out += tree(int(child.name))
    return out


def run_load(url: str, room: str, args: argparse.Namespace, pids: list[int], token: str | None) -> dict[str, Any]:
    cpu0 = cpu_seconds(pids)
    cmd = ["node", "collab_load.mjs", url, room, str(args.k), str(args.w), str(args.r), str(args.secs)]
    if token:
        cmd.append(token)
    out = subprocess.run(cmd, cwd=WORK, capture_output=True, text=True, timeout=args.secs + 300)
    cpu1 = cpu_seconds(pids)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    result: dict[str, Any] = json.loads(line[-1]) if line else {"error": out.stderr[-500:]}
    result["cpu_s"] = round(cpu1 - cpu0, 2)
    result["rss_mb"] = round(rss_mb(pids), 1)
    received = result.get("received") or 0
    result["cpu_us_per_delivery"] = round(1e6 * result["cpu_s"] / received, 2) if received else None
    return result


async def idle_connections(url: str, rooms: list[str], total: int, token: str | None,
                           pids: list[int]) -> dict[str, Any]:
    """One connection per room first (rooms + their first connection), then the rest."""
    from websockets.asyncio.client import connect

    async def open_many(n: int, offset: int) -> int:
        failed = 0
        for i in range(offset, offset + n):
            q = f"?token={token}" if token else ""
            try:
                sockets.append(await connect(f"{url}/{rooms[i % len(rooms)]}{q}", max_size=None))
            except Exception:
                failed += 1
        return failed

    sockets: list[Any] = []
    base = rss_mb(pids)
    failed = await open_many(len(rooms), 0)
    await asyncio.sleep(2)
    with_rooms = rss_mb(pids)
    failed += await open_many(total - len(rooms), len(rooms))
    await asyncio.sleep(3)
    loaded = rss_mb(pids)
    alive = all(os.path.exists(f"/proc/{pid}") for pid in pids)  # noqa: ASYNC240
    for ws in sockets:
        await ws.close()
    if not alive or loaded == 0:
        return {"connected": len(sockets), "failed": failed, "error": "server process died"}
    per_conn_kb = (loaded - with_rooms) * 1024 / max(1, total - len(rooms))
    per_room_kb = (with_rooms - base) * 1024 / len(rooms) - per_conn_kb
    return {"connected": len(sockets), "failed": failed, "rss_before_mb": round(base, 1),
            "rss_after_mb": round(loaded, 1), "kb_per_connection": round(per_conn_kb, 1),
            "kb_per_room": round(per_room_kb, 1)}


async def scriptorium_setup(database_url: str, n_lessons: int, base_url: str) -> tuple[str, list[str]]:
    import httpx
    from sqlalchemy import insert

    from server.catalog.models import Course, Lesson, Unit
    from server.db import make_engine

    async with httpx.AsyncClient(base_url=base_url) as http:
        sub = f"user_bench_{uuid.uuid4().hex[:6]}"
        token = (await http.post("/api/dev/token", json={"sub": sub, "name": "Bench"})).json()["token"]
        (await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})).raise_for_status()
    engine = make_engine(database_url)
    lessons = []
    async with engine.begin() as conn:
        course, unit = uuid.uuid4(), uuid.uuid4()
        await conn.execute(insert(Course).values(id=course, author_id=sub, title="Bench"))
        await conn.execute(insert(Unit).values(id=unit, course_id=course, title="Bench"))
        for i in range(n_lessons):
            lid = uuid.uuid4()
            await conn.execute(insert(Lesson).values(id=lid, unit_id=unit, title=f"L{i}", content_type="text",
                                                     content={"body": "bench"}, position=i))
            lessons.append(str(lid))
    await engine.dispose()
    return token, lessons


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--w", type=int, default=20)
    ap.add_argument("--r", type=int, default=25)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--idle-rooms", type=int, default=100)
    ap.add_argument("--only", default="node,pycrdt,scriptorium")
    ap.add_argument("--profile", default="", help="py-spy raw profile of the Scriptorium server to this file")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "collab.md"))
    args = ap.parse_args()
    install()
    results: dict[str, dict[str, Any]] = {}
    idle: dict[str, dict[str, Any]] = {}
    which = args.only.split(",")
    rooms = [f"idle{i}" for i in range(args.idle_rooms)]

    if "node" in which:
        port = free_port()
        proc = subprocess.Popen(["node", "node_modules/@y/websocket-server/src/server.js"], cwd=WORK,
                                env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc=proc)
            url = f"ws://127.0.0.1:{port}"
            results["Node @y/websocket-server 0.1.1 (in-memory, no auth)"] = run_load(url, "bench", args, [proc.pid], None)
        finally:
            proc.terminate()
            proc.wait()
        if args.idle:
            port = free_port()
            proc = subprocess.Popen(["node", "node_modules/@y/websocket-server/src/server.js"], cwd=WORK,
                                    env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port)},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for_port(port, proc=proc)
                idle["Node @y/websocket-server"] = asyncio.run(idle_connections(
                    f"ws://127.0.0.1:{port}", rooms, args.idle, None, [proc.pid]))
            finally:
                proc.terminate()
                proc.wait()

    if "pycrdt" in which:
        port = free_port()
        proc = subprocess.Popen([str(WORK / "pyvenv" / "bin" / "python"), "pycrdt_server.py", str(port)], cwd=WORK,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc=proc)
            url = f"ws://127.0.0.1:{port}"
            results["pycrdt-websocket (uvicorn, in-memory, no auth)"] = run_load(url, "bench", args, [proc.pid], None)
        finally:
            proc.terminate()
            proc.wait()
        if args.idle:
            port = free_port()
            proc = subprocess.Popen([str(WORK / "pyvenv" / "bin" / "python"), "pycrdt_server.py", str(port)],
                                    cwd=WORK, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for_port(port, proc=proc)
                idle["pycrdt-websocket"] = asyncio.run(idle_connections(
                    f"ws://127.0.0.1:{port}", rooms, args.idle, None, [proc.pid]))
            finally:
                proc.terminate()
                proc.wait()

    if "scriptorium" in which:
        postgres = Postgres() if os.environ.get("TEST_DATABASE_URL") else None
        if postgres is None:
            os.environ["TEST_DATABASE_URL"] = os.environ.get(
                "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres")
            postgres = Postgres()
        redis = RedisServer().start()
        database_url = asyncio.run(postgres.create_database("scr_bench"))
        from server.migrate import upgrade

        asyncio.run(upgrade(database_url))
        node = ServerProcess(database_url=database_url, data_dir=Path(tempfile.mkdtemp(prefix="scr-bench-")),
                             # The load harness connects all its clients with one account's token:
                             # lift the per-user socket cap (COLLAB_SOCKETS_PER_USER, 32) for it.
                             redis_url=redis.url, env={"RATE_LIMIT_PER_MINUTE": "0",
                                                       "COLLAB_SOCKETS_PER_USER": "0"}).start()
        try:
            assert node.proc is not None
            token, lessons = asyncio.run(scriptorium_setup(database_url, 1 + args.idle_rooms, node.base_url))
            pids = tree(node.proc.pid)
            url = f"{node.ws_url}/collab/lessons"
            spy = None
            if args.profile:
                spy = subprocess.Popen([str(WORK / "pyvenv" / "bin" / "py-spy"), "record", "--pid", str(node.proc.pid),
                                        "--format", "raw", "-o", args.profile, "--nonblocking", "--rate", "200"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            results["Scriptorium (auth + PostgreSQL + Redis relay)"] = run_load(url, lessons[0], args, pids, token)
            if spy is not None:
                spy.send_signal(2)
                spy.wait(30)
            if args.idle:
                node.stop()  # a fresh process, as for the other servers
                node.start()
                assert node.proc is not None
                pids = tree(node.proc.pid)
                idle["Scriptorium"] = asyncio.run(idle_connections(f"{node.ws_url}/collab/lessons", lessons[1:],
                                                                   args.idle, token, pids))
        finally:
            node.stop()
            redis.stop()
            asyncio.run(postgres.drop_database(database_url))

    write_results(Path(args.out), args, results, idle)
    print(json.dumps({"results": results, "idle": idle}, indent=1))


def write_results(path: Path, args: argparse.Namespace, results: dict[str, dict[str, Any]],
                  idle: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Collab fan-out benchmark",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
        f"`.venv/bin/python bench/collab/run.py --k {args.k} --w {args.w} --r {args.r} --secs {args.secs}`"
        f" (`collab_load.mjs` K={args.k} W={args.w} R={args.r} for {args.secs} s, one room).",
        "",
        "Caveat: measured on a 2-core machine shared with other work at the time; compare the servers",
        "within this run, as ratios. The load generator shares the cores with the server.",
        "",
        "| server | delivered/s | p50 ms | p99 ms | lost | converged | server CPU s | CPU µs/delivery | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r.get('deliveredPerSec')} | {r.get('p50')} | {r.get('p99')} | {r.get('lost')} | "
                     f"{r.get('converged')} | {r.get('cpu_s')} | {r.get('cpu_us_per_delivery')} | {r.get('rss_mb')} |")
    if idle:
        lines += ["", f"## {args.idle} idle connections over {args.idle_rooms} rooms", "",
                  "KB per room = (RSS after one connection per room − before) / rooms − KB per connection;",
                  "KB per connection = RSS growth over the remaining connections / their number.", "",
                  "| server | connected | RSS before MB | RSS after MB | KB per connection | KB per room |",
                  "|---|---|---|---|---|---|"]
        for name, r in idle.items():
            if "error" in r:
                lines.append(f"| {name} | {r['connected']} | – | – | {r['error']} | – |")
                continue
            lines.append(f"| {name} | {r['connected']} | {r['rss_before_mb']} | {r['rss_after_mb']} | "
                         f"{r['kb_per_connection']} | {r['kb_per_room']} |")
    lines += ["", "Raw:", "", "```json", json.dumps({"results": results, "idle": idle}, indent=1), "```", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
