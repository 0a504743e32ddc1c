#!/usr/bin/env bash
# Collab benchmark (see run.py): ./bench/collab/run.sh [--k 100 --w 20 --r 25 --secs 10 ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python bench/collab/run.py "$@"
