# Shared by scripts/run and scripts/test: make .venv with a Python >= 3.11 and install the project.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pick_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; raise SystemExit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "Scriptorium needs Python 3.11 or newer" >&2; return 1
}
if [ ! -x .venv/bin/python ]; then
  "$(pick_python)" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | cksum | cut -d' ' -f1)-${1:-run}
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  if [ "${1:-run}" = test ]; then
    .venv/bin/python -m pip install --quiet -e '.[test]'
  else
    .venv/bin/python -m pip install --quiet -e .
  fi
  touch "$stamp"
fi
