#!/usr/bin/env bash
# Soak (see soak.py): bench/soak/run.sh --minutes 30 [--rooms 5 --editors 4 --subscribers 500 ...]
# Writes bench/results/soak.json and soak.md, then plots docs/soak.png with matplotlib from a venv
# of its own under .data/soak-venv (a bench-only dependency, not in the server's lock).
# PostgreSQL: BENCH_DATABASE_URL or TEST_DATABASE_URL (a fresh database on it), else embedded.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=/work/main/.venv/bin/python
"$PY" bench/soak/soak.py "$@"
status=$?
if [ ! -x .data/soak-venv/bin/python ]; then
  python3 -m venv .data/soak-venv && .data/soak-venv/bin/pip install -q matplotlib
fi
.data/soak-venv/bin/python bench/soak/plot.py bench/results/soak.json docs/soak.png
exit $status
