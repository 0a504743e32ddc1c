"""Long atheris runs of every target of tests/fuzz/targets.py; writes bench/fuzz/atheris_long.json.

    python -m bench.fuzz.long_run --inputs 1000000 --max-minutes 10 [--only markdown,cursor]

Each target runs until ``--inputs`` inputs or ``--max-minutes``. libFuzzer stops at the first
crash: the crash file is kept under bench/fuzz/crashes/ (first line of the error recorded), and the
run resumes from the grown corpus with another seed, up to ``--max-crashes`` per target. Inputs
are counted by the driver (``--stats``), summed over the resumed runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz import targets

ROOT = Path(__file__).resolve().parents[2]
CRASHES = ROOT / "bench" / "fuzz" / "crashes"


def _error_line(output: str) -> str:
    lines = output.splitlines()
    for n, line in enumerate(lines):
        if "Uncaught Python exception" in line and n + 1 < len(lines):
            return lines[n + 1][:300]
    for line in lines:
        if "ERROR: libFuzzer" in line:
            return line[:300]
    return "unknown"


def run_target(name: str, inputs: int, max_seconds: float, max_crashes: int) -> dict[str, object]:
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-long-{name}-"))
    for n, seed in enumerate(targets.seeds(name)):
        (corpus / f"seed-{n}").write_bytes(seed)
    CRASHES.mkdir(parents=True, exist_ok=True)
    done, slowest, crashes, attempt = 0, 0.0, [], 0
    started = time.monotonic()
    while done < inputs and time.monotonic() - started < max_seconds and len(crashes) < max_crashes:
        attempt += 1
        stats = corpus.parent / f"{corpus.name}-stats.json"
        left = max(1, int(max_seconds - (time.monotonic() - started)))
        proc = subprocess.run(
            [sys.executable, "-m", "tests.fuzz.run", name, str(corpus), f"-runs={inputs - done}",
             f"-max_total_time={left}", f"-seed={attempt}", "-rss_limit_mb=1536", "-timeout=30",
             f"-artifact_prefix={CRASHES}/{name}-", "--stats", str(stats)],
            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        result = json.loads(stats.read_text()) if stats.exists() else {"inputs": 0, "slowest_s": 0.0}
        done += int(result["inputs"])
        if not result.get("crashed"):
            slowest = max(slowest, float(result["slowest_s"]))
        if proc.returncode != 0:
            found = re.search(r"Test unit written to (\S+)", proc.stdout + proc.stderr)
            crashes.append({"error": _error_line(proc.stdout + proc.stderr),
                            "file": str(Path(found.group(1)).relative_to(ROOT)) if found else None,
                            "after_inputs": done})
            print(f"  {name}: crash after {done} inputs: {crashes[-1]['error']}", flush=True)
    seconds = round(time.monotonic() - started, 1)
    print(f"{name}: {done} inputs in {seconds}s, {len(crashes)} crash(es), slowest passing input "
          f"{slowest * 1000:.1f} ms (budget {targets.BUDGET_S[name] * 1000:.0f} ms)", flush=True)
    return {"target": name, "inputs": done, "seconds": seconds, "budget_s": targets.BUDGET_S[name],
            "slowest_passing_s": slowest, "crashes": crashes,
            "corpus_files": len(list(corpus.iterdir()))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--max-minutes", type=float, default=10)
    parser.add_argument("--max-crashes", type=int, default=5)
    parser.add_argument("--only", default="")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "fuzz" / "atheris_long.json")
    args = parser.parse_args()
    names = [n for n in targets.TARGETS if not args.only or n in args.only.split(",")]
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    results = dict(previous)
    for name in names:
        results[name] = run_target(name, args.inputs, args.max_minutes * 60, args.max_crashes)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(r["crashes"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
