"""An embedded PostgreSQL (PyPI ``pgserver``) for running without a configured database."""

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
        import pgserver

    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pgdata)
    server = _servers.get(pgdata)
    if server is None:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        _servers[pgdata] = server
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    socket_dir = parse_qs(urlparse(server.get_uri()).query)["host"][0]
    log.info("embedded postgres", extra={"pgdata": str(pgdata)})
    return f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"


def _forget_dead_handles(pgdata: Path) -> None:
    """pgserver stops PostgreSQL when the last process using it exits; a process that was killed
    (SIGKILL, a crash) stays in its list and would keep PostgreSQL running forever after."""
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
