# Shared by scripts/run, scripts/test and scripts/check: make .venv with a CPython 3.11-3.14 and
# install the hashed lock requirements/<run|test>.lock (scripts/lock refreshes it), then the project
# itself, editable, without touching the locked set. Set PYTHON=/path/to/python3.X to choose the
# interpreter; otherwise the first of python3, python3.14 ... python3.11 in that range is used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv_extra=${1:-run}
venv_lock=requirements/$venv_extra.lock
# The lock is checked for these (every locked package with compiled code has a wheel for each, on
# Linux x86_64 and aarch64); outside them an install would fall back to building from source.
supported() { "$1" -c 'import sys; raise SystemExit(not (3, 11) <= sys.version_info[:2] <= (3, 14))' 2>/dev/null; }
pick_python() {
  local candidate
  for candidate in ${PYTHON:-python3 python3.14 python3.13 python3.12 python3.11}; do
    if command -v "$candidate" >/dev/null 2>&1 && supported "$candidate"; then
      echo "$candidate"; return 0
    fi
  done
  {
    echo "Scriptorium needs CPython 3.11, 3.12, 3.13 or 3.14 (its dependency lock is checked for those)."
    if [ -n "${PYTHON:-}" ]; then
      echo "PYTHON=$PYTHON is $("$PYTHON" --version 2>&1 || echo 'not runnable')."
    else
      echo "python3 here is $(python3 --version 2>&1 || echo 'missing'). Install one of them and run again,"
      echo "or point PYTHON at it: PYTHON=/usr/bin/python3.12 $0"
    fi
  } >&2
  return 1
}
# The stamp names the lock's and pyproject's checksums: a changed lock rebuilds .venv from scratch,
# so nothing left from an older lock stays installed.
venv_stamp=.venv/.installed-$venv_extra-$(cat pyproject.toml "$venv_lock" | cksum | cut -d' ' -f1)
if [ -d .venv ] && [ ! -f "$venv_stamp" ] && {
     ! supported .venv/bin/python || compgen -G ".venv/.installed-$venv_extra-*" >/dev/null ||
     compgen -G ".venv/.installed-[0-9]*" >/dev/null; }; then
  echo "_venv.sh: .venv predates requirements/ (or the lock changed, or its Python is unsupported): rebuilding it" >&2
  rm -rf .venv
fi
if [ ! -f "$venv_stamp" ]; then
  if [ ! -x .venv/bin/python ]; then
    venv_python=$(pick_python)
    echo "_venv.sh: creating .venv with $("$venv_python" --version) ($(command -v "$venv_python"))" >&2
    "$venv_python" -m venv .venv
  fi
  echo "_venv.sh: installing $venv_lock into .venv" >&2
  # The venv's own pip (23.2 on 3.11, 24.2 on 3.13.0) handles hashes and markers: it is not upgraded,
  # so nothing unpinned is installed. setuptools and wheel for the editable build come from the lock.
  .venv/bin/python -m pip install --quiet --require-hashes -r "$venv_lock"
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
  touch "$venv_stamp"
fi
