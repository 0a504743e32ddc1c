#!/usr/bin/env bash
# Hocuspocus-protocol benchmark (see run.py): ./bench/hocuspocus/run.sh [--scenarios room,docs ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python bench/hocuspocus/run.py "$@"
