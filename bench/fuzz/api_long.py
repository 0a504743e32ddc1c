"""The long schemathesis run: a fresh server and database, many examples per operation, varied seeds.

    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python -m bench.fuzz.api_long --positive 25 --negative 15 --rounds 2 --out bench/fuzz/api_long.json

Each round is a stateless pass over every operation, then ``--scenarios`` stateful scenarios
(tests/fuzz/api_stateful.py). Each round re-seeds the world (deletes in the previous round may have removed the seeded rows) and
draws from another hypothesis seed. Prints the summary and every distinct failure; writes them as
JSON to ``--out``; exits 1 when anything failed or the server logged a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from server.migrate import upgrade
from tests.fuzz import api_fuzz, api_stateful
from tests.fuzz.api_world import seed
from tests.support import Postgres, ServerProcess


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positive", type=int, default=25)
    parser.add_argument("--negative", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--scenarios", type=int, default=150, help="stateful scenarios per round")
    parser.add_argument("--out", type=Path, default=Path("bench/fuzz/api_long.json"))
    args = parser.parse_args()

    postgres = Postgres()
    url = asyncio.run(postgres.create_database("scr_fuzz"))
    asyncio.run(upgrade(url))
    server = ServerProcess(database_url=url, data_dir=Path(tempfile.mkdtemp(prefix="scr-fuzz-")),
                           env={"RATE_LIMIT_PER_MINUTE": "0"}).start()
    assert server.log_path is not None
    started = time.monotonic()
    results: list[dict[str, object]] = []
    failures: dict[str, str] = {}
    try:
        for n in range(args.rounds):
            world = seed(server.base_url, tag=f"long{n}")
            report = api_fuzz.run(world, positive=args.positive, negative=args.negative, seed=args.seed + 1000 * n)
            print(f"round {n}: {report.summary()}", flush=True)
            results.append({"round": n, "cases": report.cases, "operations": report.operations,
                            "seconds": round(report.seconds, 1), "statuses": report.statuses,
                            "failures": sorted(report.failures)})
            failures.update(report.failures)
            stateful = api_stateful.run(world, scenarios=args.scenarios, derandomize=False)
            print(f"round {n} stateful: {stateful.summary()}", flush=True)
            results.append({"round": n, "stateful": True, "cases": stateful.cases, "statuses": stateful.statuses,
                             "failures": sorted(stateful.failures)})
            failures.update(stateful.failures)
    finally:
        server.stop()
        asyncio.run(postgres.drop_database(url))
    log = server.log_path.read_text(errors="replace")
    tracebacks = log.count("Traceback")
    summary = {"rounds": results, "cases": sum(int(str(r["cases"])) for r in results),
               "wall_seconds": round(time.monotonic() - started, 1), "distinct_failures": failures,
               "server_tracebacks": tracebacks}
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    for key, example in sorted(failures.items()):
        print(f"FAIL {key}\n    {example}")
    print(f"{summary['cases']} cases, {len(failures)} distinct failures, {tracebacks} tracebacks in the server log, "
          f"{summary['wall_seconds']}s")
    if tracebacks:
        print(log[-8000:])
    return 1 if failures or tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
