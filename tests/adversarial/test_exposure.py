"""What a server exposes to the network it listens on (§1, issue 11).

* Dev sign-in mints a token for any user, an admin included: ``serve`` refuses it on a
  non-loopback address unless ALLOW_DEV_AUTH_ON_NETWORK=1, and then warns loudly.
* ``/metrics`` (traffic, users online, rooms) is off unless METRICS asks for it; METRICS=host:port
  serves it on a listener of its own, apart from the public port.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from server.cli import exposure_check, is_loopback
from server.settings import Settings, SettingsError
from tests.support import ROOT, ServerProcess, free_port, inherited_env


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.7", "example.com", ""])
def test_network_hosts(host: str) -> None:
    assert not is_loopback(host)


def test_metrics_setting() -> None:
    assert Settings.from_env({}).metrics == "off"
    assert Settings.from_env({"METRICS": "on"}).metrics == "app"
    listen = Settings.from_env({"METRICS": "10.0.0.5:9464"})
    assert (listen.metrics, listen.metrics_listen) == ("listen", ("10.0.0.5", 9464))
    assert Settings.from_env({"METRICS": "[::1]:9464"}).metrics_listen == ("::1", 9464)
    for bad in ("public", "0.0.0.0", ":9464", "host:0", "host:70000"):
        with pytest.raises(SettingsError):
            Settings.from_env({"METRICS": bad})


def test_collab_commit_gap_is_bounded() -> None:
    """A huge gap would hold every "saved" answer and the other nodes' copies that long."""
    assert Settings.from_env({}).collab_commit_gap_ms == 20.0
    assert Settings.from_env({"COLLAB_COMMIT_GAP_MS": "0"}).collab_commit_gap_ms == 0.0
    assert Settings.from_env({"COLLAB_COMMIT_GAP_MS": "1000"}).collab_commit_gap_ms == 1000.0
    for bad in ("1001", "1e9", "-1", "nan", "inf", "soon"):
        with pytest.raises(SettingsError, match="COLLAB_COMMIT_GAP_MS"):
            Settings.from_env({"COLLAB_COMMIT_GAP_MS": bad})


def test_clerk_on_the_network_is_fine() -> None:
    clerk = Settings.from_env({"CLERK_JWKS_URL": "https://clerk.example/.well-known/jwks.json"})
    assert exposure_check(clerk, "0.0.0.0") is None


def _serve(host: str, port: int, data_dir: Path, database_url: str,
           extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = inherited_env()  # the shell's settings never leak into the server under test
    env.update(DATABASE_URL=database_url, DATA_DIR=str(data_dir), LOG_LEVEL="warning", **extra)
    return subprocess.Popen([sys.executable, "-m", "server", "serve", "--host", host, "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _refused_or_serving(proc: subprocess.Popen[bytes], host: str, port: int, within: float = 60.0) -> str:
    """'exited' once the process has exited, 'minted' if it hands out dev tokens first."""
    # an IPv6 wildcard socket is IPv6-only under asyncio: reach it over ::1
    loopback = "[::1]" if ":" in host else "127.0.0.1"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "exited"
        try:
            minted = httpx.post(f"http://{loopback}:{port}/api/dev/token", json={"sub": "user_admin"},
                                timeout=1)
            if minted.status_code == 200:
                return "minted"
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return "neither"


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
async def test_dev_auth_on_the_network_is_refused(host: str, database_url: str, tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(host, port, tmp_path, database_url, {})
    try:
        outcome = await asyncio.to_thread(_refused_or_serving, proc, host, port)
        assert outcome == "exited", f"AUTH_MODE=dev on {host}: {outcome}"
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert proc.returncode == 2
        assert "AUTH_MODE=dev" in output and "ALLOW_DEV_AUTH_ON_NETWORK" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_clerk_mode_without_a_key_is_refused(database_url: str, tmp_path: Path) -> None:
    """docker-compose.yml's default: AUTH_MODE=clerk with no CLERK_* given does not start."""
    port = free_port()
    proc = _serve("0.0.0.0", port, tmp_path, database_url, {"AUTH_MODE": "clerk"})
    try:
        assert await asyncio.to_thread(_refused_or_serving, proc, "0.0.0.0", port) == "exited"
        assert proc.returncode == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_dev_auth_on_the_network_with_the_override_warns(database_url: str, tmp_path: Path) -> None:
    """The override starts it (compose's dev overlay: nodes on 0.0.0.0 behind a loopback proxy),
    with a loud warning; and metrics on a listener of their own, not on the public port."""
    metrics_port = free_port()
    server = ServerProcess(database_url=database_url, data_dir=tmp_path, host="0.0.0.0",
                           env={"ALLOW_DEV_AUTH_ON_NETWORK": "1", "METRICS": f"127.0.0.1:{metrics_port}"})
    await asyncio.to_thread(server.start)
    try:
        assert "WARNING: AUTH_MODE=dev served on 0.0.0.0" in server.log_text()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            assert (await client.post("/api/dev/token", json={"sub": "user_x"})).status_code == 200
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/metrics")).status_code == 404
        # a client that connects and sends nothing does not hold the listener up
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", metrics_port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}", timeout=10) as scraper:
            scraped = await scraper.get("/metrics")
            assert scraped.status_code == 200
            assert 'scriptorium_http_requests_total{method="GET",route="/healthz",status="200"}' in scraped.text
            assert (await scraper.get("/api/me")).status_code == 404
        # nor does one whose request never ends: it is cut at REQUEST_MAX_BYTES
        idle_writer.write(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 20_000)
        await idle_writer.drain()
        assert await asyncio.wait_for(idle_reader.read(), 10) == b""
        idle_writer.close()
    finally:
        server.stop()


async def test_metrics_are_off_unless_asked_for(database_url: str, tmp_path: Path) -> None:
    server = ServerProcess(database_url=database_url, data_dir=tmp_path, env={"METRICS": "off"})
    await asyncio.to_thread(server.start)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            await client.get("/healthz")
            refused = await client.get("/metrics")
            assert refused.status_code == 404
            assert "scriptorium_" not in refused.text
    finally:
        server.stop()
