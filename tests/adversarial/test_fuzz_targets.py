"""Short atheris (libFuzzer) runs of every in-process target, a fixed seed and input count each.

Targets and their properties: tests/fuzz/targets.py; the driver: tests/fuzz/run.py; the long
runs (a million inputs and more per target): bench/fuzz/. A crash (an exception the code does not
document, a broken property, or an input slower than the target's budget twice) fails the test
with the fuzzer's output, and libFuzzer leaves the input as tests/.artifacts/fuzz/crash-<sha1>
(reproduce with ``python -m tests.fuzz.run TARGET that-file``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.fuzz.targets import BUDGET_S
from tests.support import ARTIFACTS, ROOT

# atheris ships wheels for Linux x86_64 only (the lock installs it there): elsewhere these runs
# cannot happen, and say so.
needs_atheris = pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                                   reason="atheris has wheels for Linux x86_64 only")

# Inputs per target: about 2-5 s each on a quiet 2-core machine.
RUNS = {"y_frame": 50_000, "collab_dispatch": 10_000, "ws_frame": 20_000, "cursor": 50_000,
        "requirement": 50_000, "suggestion": 10_000, "markdown": 3_000}


@needs_atheris
@pytest.mark.parametrize("target", sorted(RUNS))
def test_fuzz_target_short_run(target: str) -> None:
    assert set(RUNS) == set(BUDGET_S)
    out = ARTIFACTS / "fuzz"
    out.mkdir(parents=True, exist_ok=True)
    stats = out / f"{target}.json"
    stats.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", target, f"-runs={RUNS[target]}", "-seed=1",
         "-rss_limit_mb=1024", "-timeout=10", f"-artifact_prefix={out}/", "--stats", str(stats)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # with -seed=1: the same inputs every run
    )
    tail = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines()
                     if not line.startswith(("#", "INFO", '"', "WARNING")))[-4000:]
    assert proc.returncode == 0, tail
    result = json.loads(stats.read_text())
    assert result["inputs"] >= RUNS[target], result
    assert result["slowest_s"] <= BUDGET_S[target], result


@needs_atheris
def test_fuzz_crash_files_stay_fixed() -> None:
    """Every input a fuzz run crashed on (bench/fuzz/crashes/<target>-…) passes its target now."""
    crashes = sorted((ROOT / "bench" / "fuzz" / "crashes").iterdir())
    assert crashes
    for path in crashes:
        target = path.name.split("-", 1)[0]
        assert target in RUNS, path.name
        proc = subprocess.run([sys.executable, "-m", "tests.fuzz.run", target, str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{path.name}:\n{proc.stderr[-3000:]}"
