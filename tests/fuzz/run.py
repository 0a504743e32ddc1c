"""atheris (libFuzzer) driver for the targets of :mod:`tests.fuzz.targets`.

    python -m tests.fuzz.run TARGET [libFuzzer flags] [corpus dirs or crash files]
    python -m tests.fuzz.run markdown -runs=1000000 -max_len=4096 -rss_limit_mb=1024 -seed=1

Every input is timed (the CPU time of the thread running it: a CI machine's other processes do
not count; a 98-byte input was once "slow" at 0.1009 s of wall clock, twice): one over the target's budget (``targets.BUDGET_S``) is run once more and,
if slow again, is a crash (``Slow``), so libFuzzer saves it as ``crash-<sha1>``. The stats file
(``--stats PATH``, JSON) gets inputs run, slowest input and seconds, rewritten every 1,000 inputs
and on a crash (libFuzzer ends the process without running ``atexit``).
Without a corpus directory the target's seeds are written to a fresh one.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import atheris

# Modules whose code the fuzzer should see coverage of, per target.
_INSTRUMENT = {
    "y_frame": ["collab.protocol"],
    "collab_dispatch": ["collab.protocol", "collab.room", "collab.receiver", "collab.manager"],
    "ws_frame": ["realtime.hub", "realtime.memory_broker", "json"],
    "cursor": ["server.http", "base64", "json"],
    "requirement": ["server.gamification.requirements", "json"],
    "suggestion": ["collab.suggestions", "collab.versions", "json"],
    "markdown": ["server.markdown", "markdown_it"],
}


class Slow(Exception):
    """An input that took longer than the target's budget, twice."""


def main() -> None:
    # A Rust panic (pycrdt) with RUST_BACKTRACE set spends ~0.1 s and 50 MB symbolising the
    # backtrace: that is the environment's cost, not the target's.
    os.environ["RUST_BACKTRACE"] = "0"
    args = sys.argv[1:]
    stats_path = None
    if "--stats" in args:
        i = args.index("--stats")
        stats_path = Path(args[i + 1])
        del args[i:i + 2]
    if not args or args[0] not in _INSTRUMENT:
        sys.exit(f"usage: python -m tests.fuzz.run {{{','.join(_INSTRUMENT)}}} [libFuzzer args]")
    name, rest = args[0], args[1:]

    with atheris.instrument_imports(include=_INSTRUMENT[name]):
        import importlib

        for module in _INSTRUMENT[name]:
            importlib.import_module(module)
    from tests.fuzz import targets

    target = targets.TARGETS[name]
    budget = targets.BUDGET_S[name]
    if not any(not a.startswith("-") for a in rest):
        corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
        for n, seed in enumerate(targets.seeds(name)):
            (corpus / f"seed-{n}").write_bytes(seed)
        rest.append(str(corpus))
    if not any(a.startswith("-max_len=") for a in rest):
        rest.append(f"-max_len={targets.MAX_LEN}")

    runs = next((int(a.split("=", 1)[1]) for a in rest if a.startswith("-runs=")), -1)
    stats = {"target": name, "inputs": 0, "slowest_s": 0.0, "slowest_len": 0, "budget_s": budget,
             "started": time.time()}

    def write_stats() -> None:
        stats["seconds"] = round(time.time() - float(stats["started"]), 1)
        if stats_path is not None:
            stats_path.write_text(json.dumps(stats) + "\n")

    def one_input(data: bytes) -> None:
        # The thread's CPU time, not the wall clock: what the input costs, not how long another
        # process (the suite's other worker, a server) kept this one off the CPU meanwhile.
        started = time.thread_time()
        target(data)
        took = time.thread_time() - started
        stats["inputs"] = int(stats["inputs"]) + 1
        if took > budget:
            # A shared machine stalls now and then: only an input slow twice counts.
            started = time.thread_time()
            target(data)
            took = min(took, time.thread_time() - started)
            if took > budget:
                stats["slowest_s"], stats["slowest_len"] = round(took, 4), len(data)
                write_stats()
                raise Slow(f"{len(data)} bytes took {took:.3f}s (budget {budget}s)")
        if took > float(stats["slowest_s"]):
            stats["slowest_s"], stats["slowest_len"] = round(took, 4), len(data)
        if int(stats["inputs"]) % 1000 == 0 or stats["inputs"] == runs:
            write_stats()

    def guarded(data: bytes) -> None:
        try:
            one_input(data)
        except BaseException:
            stats["crashed"] = True
            write_stats()
            raise

    atheris.Setup([sys.argv[0], *rest], guarded)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
