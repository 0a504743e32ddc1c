"""Hocuspocus-protocol benchmark: Scriptorium's ``WS /collab`` vs ``@hocuspocus/server`` (npm).

usage (from the repository root, with the project venv; tests/js's npm packages installed):
    .venv/bin/python bench/hocuspocus/run.py [--only hocuspocus,scriptorium] [--scenarios room,docs]

Both servers get the same load from bench/hocuspocus/load.mjs (shared/bench/collab_load.mjs
adapted to the Hocuspocus wire format: raw frames, auth first, one Y.Map "ts" per document):

- ``room``: one document, 100 sockets, 20 writers, 25 updates/s each, 10 s;
- ``docs``: 50 documents over 50 sockets (every socket opens every document: 2,500 document
  connections), 50 writers at 5 updates/s each cycling over the documents, 10 s.

``@hocuspocus/server`` runs in memory with no extensions and no auth hook. Scriptorium runs as in
bench/collab/run.py: dev-token auth, PostgreSQL persistence and the Redis relay ON (a
redis-server of its own, PostgreSQL from BENCH_DATABASE_URL or TEST_DATABASE_URL). Server CPU is
read from /proc for the server's process tree. Writes bench/results/hocuspocus.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = HERE / ".work"
LOAD = Path(os.environ.get("COLLAB_LOAD", "/work/shared/bench/collab_load.mjs"))
PROFILE = os.environ.get("BENCH_PROFILE")
# BENCH_PROFILE_PHASE=setup: sample the server while the sockets connect and authenticate instead
PROFILE_PHASE = os.environ.get("BENCH_PROFILE_PHASE", "load")
# BENCH_PIN=SERVER_CPUS:GENERATOR_CPUS (e.g. 1:0): each server's threads on SERVER_CPUS, the load
# generator on GENERATOR_CPUS (taskset), so neither takes the other's CPU; PostgreSQL and Redis
# (Scriptorium's, not counted in its CPU) stay unpinned.
PIN = os.environ.get("BENCH_PIN", "")
sys.path.insert(0, str(ROOT))

from bench.server_view import scrape, stalls  # noqa: E402
from tests.support import Postgres, RedisServer, ServerProcess, free_port, wait_for_port  # noqa: E402

_spec = importlib.util.spec_from_file_location("collab_bench", ROOT / "bench" / "collab" / "run.py")
assert _spec is not None and _spec.loader is not None
collab_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(collab_bench)

SCENARIOS = {
    "room": {"docs": 1, "sockets": 100, "writers": 20, "rate": 25},
    "docs": {"docs": 50, "sockets": 50, "writers": 50, "rate": 5},
}


def install() -> None:
    js = ROOT / "tests" / "js"
    if not (js / "node_modules" / "@hocuspocus" / "server").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=js, check=True)
    WORK.mkdir(parents=True, exist_ok=True)
    link = WORK / "node_modules"
    if not link.exists():
        link.symlink_to(js / "node_modules")
    for name in ("load.mjs", "server.mjs"):
        shutil.copy(HERE / name, WORK / name)


def services_cpu() -> float:
    """CPU seconds of this machine's PostgreSQL and Redis server processes (Scriptorium's storage
    and relay; @hocuspocus/server in memory uses neither, so theirs stays near 0)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "redis-server"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return collab_bench.cpu_seconds(pids)


def run_load(url: str, names: list[str], scenario: dict[str, int], secs: int, pids: list[int],
             token: str | None, metrics_url: str | None = None) -> dict[str, Any]:
    """Run load.mjs; server CPU is counted from when every socket is in (its ``phase`` line):
    connecting and authenticating the sockets is reported apart (``setup_cpu_s``). With
    ``metrics_url`` (Scriptorium) the server's loop stalls and collector passes over the load
    are read from its /metrics (:func:`stalls`)."""
    def server_cpu() -> float:
        # the process tree as it is now: a worker process started during the load counts too
        return collab_bench.cpu_seconds(sorted(set(pids) | set(collab_bench.tree(pids[0]))))

    cpu0 = server_cpu()
    metrics0: dict[str, float] = {}
    cmd = ["node", "load.mjs", url, json.dumps(names), str(scenario["sockets"]), str(scenario["writers"]),
           str(scenario["rate"]), str(secs), token or ""]
    if PIN:
        server_cpus, generator_cpus = PIN.split(":")
        for pid in pids:  # every thread the server has; threads it starts later inherit
            subprocess.run(["taskset", "-a", "-p", "-c", server_cpus, str(pid)], check=True, stdout=subprocess.DEVNULL)
        cmd = ["taskset", "-c", generator_cpus, *cmd]
    proc = subprocess.Popen(cmd, cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    setup_profiler = None
    if PROFILE and PROFILE_PHASE == "setup":
        setup_out = WORK / f"profile-setup-{pids[0]}.raw"
        setup_profiler = subprocess.Popen([PROFILE, "record", "-p", str(pids[0]), "-r", "200", "--native",
                                           "-f", "raw", "-o", str(setup_out)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"profiling the server's setup into {setup_out}", file=sys.stderr)
    # load.mjs gives up on a socket after 120 s of setup; past this the run is abandoned.
    killer = threading.Timer(secs + 400, proc.kill)
    killer.start()
    cpu_load = cpu0
    services0 = services_cpu()
    lines = []
    profiler = None
    for line in proc.stdout:
        if line.startswith('{"phase"'):
            cpu_load = server_cpu()
            services0 = services_cpu()
            metrics0 = scrape(metrics_url) if metrics_url else {}
            if setup_profiler is not None:
                setup_profiler.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
                setup_profiler.wait(timeout=60)
            elif PROFILE:  # BENCH_PROFILE=<py-spy binary>: sample the server during the load
                out = WORK / f"profile-{pids[0]}.raw"
                profiler = subprocess.Popen([PROFILE, "record", "-p", str(pids[0]), "-d", str(secs), "-r", "200",
                                             "--native", "-f", "raw", "-o", str(out)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                print(f"profiling the server into {out}", file=sys.stderr)
        elif line.startswith("{"):
            lines.append(line)
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    # wait4: the generator's own CPU (a starved generator measures its own queueing, not the server's)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    killer.cancel()
    if profiler is not None:
        profiler.wait(timeout=60)
    cpu1 = server_cpu()
    services1 = services_cpu()
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": stderr[-500:]}
    if metrics_url is not None:
        result["server"] = stalls(metrics0, scrape(metrics_url))
    result["setup_cpu_s"] = round(cpu_load - cpu0, 2)
    result["generator_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    result["cpu_s"] = round(cpu1 - cpu_load, 2)
    result["services_cpu_s"] = round(services1 - services0, 2)
    result["rss_mb"] = round(collab_bench.rss_mb(pids), 1)
    received = result.get("received") or 0
    result["cpu_us_per_delivery"] = round(1e6 * result["cpu_s"] / received, 2) if received else None
    return result


def run_hocuspocus(scenarios: dict[str, dict[str, int]], secs: int, results: dict[str, list[dict[str, Any]]]) -> None:
    for name, scenario in scenarios.items():
        port = free_port()
        proc = subprocess.Popen(["node", "server.mjs", str(port)], cwd=WORK,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc=proc)
            names = [f"lesson:bench-{i}" for i in range(scenario["docs"])]
            results.setdefault(f"{name} · @hocuspocus/server (in-memory, no extensions)", []).append(run_load(
                f"ws://127.0.0.1:{port}", names, scenario, secs, [proc.pid], None))
        finally:
            proc.terminate()
            proc.wait()


def run_scriptorium(scenarios: dict[str, dict[str, int]], args: argparse.Namespace, which: list[str],
                    results: dict[str, list[dict[str, Any]]]) -> None:
    postgres = Postgres() if os.environ.get("TEST_DATABASE_URL") else None
    if postgres is None:
        os.environ["TEST_DATABASE_URL"] = os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres")
        postgres = Postgres()
    database_url = asyncio.run(postgres.create_database("scr_bench"))
    from server.migrate import upgrade

    asyncio.run(upgrade(database_url))
    redis = RedisServer().start()
    extra = dict(item.split("=", 1) for item in args.server_env)
    variant = f" [{' '.join(args.server_env)}]" if extra else ""
    node = ServerProcess(database_url=database_url, data_dir=Path(tempfile.mkdtemp(prefix="scr-bench-")),
                         # the calibration (collab_load.mjs) has one token for every socket: no per-user socket cap
                         redis_url=redis.url, env={"RATE_LIMIT_PER_MINUTE": "0",
                                                   "COLLAB_SOCKETS_PER_USER": "0",
                                                   "CHECK_RESPONSES": "0", **extra})
    try:
        for name, scenario in scenarios.items():
            node.start(timeout=120)  # a fresh process per scenario, as for the other server
            assert node.proc is not None
            token, lessons = asyncio.run(collab_bench.scriptorium_setup(
                database_url, scenario["docs"], node.base_url))
            # the author's token for socket 0, an editor of its own for every other socket
            tokens = [token, *asyncio.run(own_accounts(database_url, node.base_url, lessons,
                                                       scenario["sockets"] - 1))]
            key = f"{name} · Scriptorium /collab (auth + PostgreSQL + Redis relay){variant}"
            results.setdefault(key, []).append(run_load(
                f"{node.ws_url}/collab", [f"lesson:{lesson}" for lesson in lessons], scenario, args.secs,
                collab_bench.tree(node.proc.pid), json.dumps(tokens), metrics_url=f"{node.base_url}/metrics"))
            node.stop()
            if name == "room" and "ywebsocket" in which and LOAD.exists():
                # Calibration: the same room over y-websocket with the original harness.
                node.start(timeout=120)
                assert node.proc is not None
                token, lessons = asyncio.run(collab_bench.scriptorium_setup(database_url, 1, node.base_url))
                shutil.copy(LOAD, WORK / "collab_load.mjs")
                pids = collab_bench.tree(node.proc.pid)
                cpu0 = collab_bench.cpu_seconds(pids)
                out = subprocess.run(["node", "collab_load.mjs", f"{node.ws_url}/collab/lessons", lessons[0],
                                      str(scenario["sockets"]), str(scenario["writers"]), str(scenario["rate"]),
                                      str(args.secs), token], cwd=WORK, capture_output=True, text=True,
                                     timeout=args.secs + 300)
                cpu = collab_bench.cpu_seconds(pids) - cpu0
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
                result: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": out.stderr[-500:]}
                result["cpu_s"] = round(cpu, 2)
                result["rss_mb"] = round(collab_bench.rss_mb(pids), 1)
                received = result.get("received") or 0
                result["cpu_us_per_delivery"] = round(1e6 * cpu / received, 2) if received else None
                results.setdefault(f"{name} · Scriptorium /collab/lessons (y-websocket, collab_load.mjs, its CPU "
                                   f"includes setup; calibration){variant}", []).append(result)
                node.stop()
    finally:
        node.stop()
        redis.stop()
        asyncio.run(postgres.drop_database(database_url))



async def own_accounts(database_url: str, base_url: str, lessons: list[str], count: int) -> list[str]:
    """``count`` more accounts, each an editor of the course of ``lessons`` (one token each): every
    socket of the load is its own user, as in a real room (one writer's updates share rows of
    the log, collab.persistence.log_rows; each socket's token is resolved on its own)."""
    import httpx
    from sqlalchemy import insert, select

    from server.catalog.models import Collaborator, Lesson, Unit
    from server.db import make_engine

    tokens, subs = [], []
    async with httpx.AsyncClient(base_url=base_url) as http:
        for i in range(count):
            sub = f"user_bench_{uuid.uuid4().hex[:8]}"
            token = (await http.post("/api/dev/token", json={"sub": sub, "name": f"Writer {i}"})).json()["token"]
            (await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})).raise_for_status()
            tokens.append(token)
            subs.append(sub)
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            course = (await conn.execute(select(Unit.course_id).join(Lesson, Lesson.unit_id == Unit.id)
                                         .where(Lesson.id == uuid.UUID(lessons[0])))).scalar_one()
            await conn.execute(insert(Collaborator), [{"course_id": course, "user_id": sub, "role": "editor"}
                                                      for sub in subs])
    finally:
        await engine.dispose()
    return tokens


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for several rounds of a server and scenario: each figure's median (converged only
    if every round converged, lost the most any round lost), the rounds themselves under
    ``rounds``."""
    if len(rounds) == 1:
        return rounds[0]
    row: dict[str, Any] = {}
    for key, value in rounds[0].items():
        values = [r.get(key) for r in rounds]
        if key == "converged":
            row[key] = all(values)
        elif key == "lost":
            row[key] = max(v for v in values if v is not None) if any(v is not None for v in values) else None
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and all(
                isinstance(v, (int, float)) for v in values):
            row[key] = statistics.median(values)  # type: ignore[type-var]
        else:
            row[key] = value
    row["rounds"] = rounds
    return row


def main() -> None:
    # Stopped (e.g. by `timeout`): unwind, so the servers started here are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="hocuspocus,scriptorium,ywebsocket")
    ap.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for Scriptorium's server (repeatable; named in its rows), "
                         "e.g. COLLAB_WRITE_INTERVAL_MS=0 to compare variants run by run")
    ap.add_argument("--scenarios", default="room,docs")
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "hocuspocus.md"))
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every server this many times, in turn; the table gives each figure's median")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other rows of the last run (its raw JSON beside --out): run parts one by one")
    args = ap.parse_args()
    install()
    which = args.only.split(",")
    scenarios = {name: SCENARIOS[name] for name in args.scenarios.split(",")}
    rounds: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(args.rounds):
        # in turn, and each first every other round: a machine slowing down over the run (seen
        # here) weighs on both alike
        order = ["hocuspocus", "scriptorium"] if round_ % 2 == 0 else ["scriptorium", "hocuspocus"]
        for server in order:
            if server in which and server == "hocuspocus":
                run_hocuspocus(scenarios, args.secs, rounds)
            elif server in which:
                run_scriptorium(scenarios, args, which, rounds)
    results = {name: median_of(runs) for name, runs in rounds.items()}

    raw = Path(args.out).with_suffix(".json")
    for result in results.values():
        result["at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.merge and raw.exists():
        results = {**json.loads(raw.read_text()), **results}
    results = dict(sorted(results.items()))
    raw.write_text(json.dumps(results, indent=1) + "\n")
    write_results(Path(args.out), args, SCENARIOS, results)
    print(json.dumps(results, indent=1))


READERS_NOTE = {
    False: ["Once synced, a reader decodes each update it gets instead of applying it to a Y.Doc (each new",
            "key of the map is a delivery, counted once per socket and document; `gaps` counts structs that",
            "came before an earlier clock of their writer, and must be 0); the last socket still applies",
            "every update (`verified`: its maps hold every entry, nothing pending). Each distinct update is",
            "decoded once per generator thread (every reader of a broadcast gets the same bytes) and each",
            "socket keeps its own count. Applying every update on every socket kept the generator saturated",
            "here (9-11 s of CPU in 10 s), and its own queue set both servers' tail (`LOAD_APPLY=1` applies",
            "them)."],
    True: ["`LOAD_APPLY=1`: every reader applied every update to a Y.Doc (the generator may be saturated)."],
}


def write_results(path: Path, args: argparse.Namespace, scenarios: dict[str, dict[str, int]],
                  results: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Hocuspocus protocol benchmark",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `./bench/hocuspocus/run.sh`"
        f"{' (parts run one by one with --merge; each row has its time in the raw JSON)' if args.merge else ''}.",
        "",
        "Scenarios (bench/hocuspocus/load.mjs, raw Hocuspocus frames):",
    ]
    for name, s in scenarios.items():
        lines.append(f"- `{name}`: {s['docs']} document(s), {s['sockets']} sockets each opening every document, "
                     f"{s['writers']} writers × {s['rate']} updates/s, {args.secs} s.")
    lines += [
        "",
        ("Caveat: a 2-core machine, the load generator on the same cores; compare the servers within one"
         if not PIN else
         f"Pinned (BENCH_PIN={PIN}): each server's threads on CPU {PIN.split(':')[0]}, the generator on CPU "
         f"{PIN.split(':')[1]}; PostgreSQL and Redis unpinned. Compare the servers within one"),
        "run, as ratios. Every writer keeps to its schedule (its updates due at fixed times, the writers'",
        "phases spread over a period; a timer that fires late sends what is due at once), so both servers",
        "get the same load; `timerLateMs` in the raw JSON is how late the generator sent, on average.",
        *READERS_NOTE[os.environ.get("LOAD_APPLY") == "1"],
        f"Generator threads: {os.environ.get('LOAD_THREADS', '1')} (`LOAD_THREADS`); `generatorLoadCpu` in the raw JSON is",
        "the generator's CPU over the load."
        + (" Rows kept from earlier runs (--merge) have their own `apply` and `threads` in the raw JSON."
           if args.merge else ""),
        "Every Scriptorium socket is its own account (an editor of the course).",
        "",
        "delivered/s: deliveries from the first send to the last delivery (a server that falls behind",
        "stretches the span); p50/p99: send to receipt at a reading socket; lost: expected − received",
        "deliveries; converged: every socket has every entry of every document; CPU: the server's",
        "process tree from when every socket is in (authenticated and synced) to the end of the run;",
        "connecting and authenticating the sockets is `setup CPU s` (Scriptorium checks each token",
        "against PostgreSQL; @hocuspocus/server without an auth hook accepts any).",
        "",
        "PostgreSQL + Redis CPU s: those servers' processes over the load (Scriptorium's storage and relay;",
        "near 0 for @hocuspocus/server, which uses neither).",
        "",
    ]
    if args.rounds > 1:
        lines += [f"Each row is the median of {args.rounds} rounds, the servers run in turn; every round is in",
                  "the raw JSON (`rounds`), and the spread is below the table.", ""]
    lines += [
        "| scenario · server | sent | delivered/s | p50 ms | p99 ms | lost | converged | setup CPU s | load CPU s | CPU µs/delivery | PostgreSQL + Redis CPU s | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r.get('sent')} | {r.get('deliveredPerSec')} | {r.get('p50')} | {r.get('p99')} | "
                     f"{r.get('lost')} | {r.get('converged')} | {r.get('setup_cpu_s', '–')} | {r.get('cpu_s')} | "
                     f"{r.get('cpu_us_per_delivery')} | {r.get('services_cpu_s', '–')} | {r.get('rss_mb')} |")
    spread = [(name, r["rounds"]) for name, r in results.items() if "rounds" in r]
    if spread:
        lines += ["", "Rounds (delivered/s · p99 ms · CPU µs/delivery):", ""]
        for name, runs in spread:
            lines.append(f"- {name}: " + "; ".join(
                f"{run.get('deliveredPerSec')} · {run.get('p99')} · {run.get('cpu_us_per_delivery')}" for run in runs))
    lines += ["", "Raw:", "", "```json", json.dumps(results, indent=1), "```", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
