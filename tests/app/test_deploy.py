"""The deployment files: docker-compose.yml (and its dev overlay) checked statically, since docker
compose is not installed here; the nginx config it mounts run for real, in front of two nodes."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncSession
from websockets.asyncio.client import connect

from server.cli import exposure_check
from server.db import make_engine
from server.migrate import upgrade
from server.outbox.emit import emit
from server.settings import Settings, SettingsError
from tests.support import (
    ARTIFACTS,
    ROOT,
    Postgres,
    ServerProcess,
    dev_user,
    eventually,
    free_port,
    wait_for_port,
)
from tests.support.collab import YClient, make_lesson
from tests.support.realtime import events, subscribe

DEV_OVERLAY = ROOT / "deploy" / "compose.dev.yml"
TEMPLATE_DIR = "/etc/nginx/templates/"


class Override(list[Any]):
    """A sequence tagged ``!override`` in a compose file: it replaces, not extends, the base."""


class ComposeLoader(yaml.SafeLoader):
    pass


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Override:
    assert isinstance(node, yaml.SequenceNode)
    return Override(loader.construct_sequence(node))


ComposeLoader.add_constructor("!override", _override)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(path.read_text(), Loader=ComposeLoader)  # a SafeLoader
    return data


def _compose() -> dict[str, Any]:
    return _load(ROOT / "docker-compose.yml")


def _merged(*overlays: Path) -> dict[str, Any]:
    """docker compose's merge of ``-f docker-compose.yml -f overlay``: mappings merge key by key,
    sequences append unless tagged ``!override``."""

    def merge(base: Any, top: Any) -> Any:
        if isinstance(top, Override):
            return list(top)
        if isinstance(base, dict) and isinstance(top, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in top.items()}}
        if isinstance(base, list) and isinstance(top, list):
            return base + top
        return top

    data = _compose()
    for overlay in overlays:
        data = merge(data, _load(overlay))
    return data


def _interpolate(value: Any, env: dict[str, str]) -> str:
    """Compose's ``${NAME}`` / ``${NAME:-default}`` with the given shell environment."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3) or ""
        return env.get(name) or default

    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", one, str(value))


def _settings(service: dict[str, Any], shell: dict[str, str]) -> Settings:
    return Settings.from_env({k: _interpolate(v, shell) for k, v in service["environment"].items()})


def _published(services: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (service, published port spec) of the project."""
    out = []
    for name, service in services.items():
        for port in service.get("ports", []):
            out.append((name, _interpolate(port["published"] if isinstance(port, dict) else port, {})))
    return out


def _on_loopback(spec: str) -> bool:
    return spec.startswith(("127.0.0.1:", "[::1]:"))


def _template_path(proxy: dict[str, Any]) -> Path:
    mount = next(v for v in proxy["volumes"] if v.split(":")[1].startswith(TEMPLATE_DIR))
    return ROOT / mount.split(":")[0]


def render(template: str, variables: dict[str, str]) -> str:
    """What the nginx image does to /etc/nginx/templates/*.template: envsubst of the variables
    that are set (``${NAME}``), nginx's own ``$variables`` untouched."""
    return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), template)


def _nodes(services: dict[str, Any]) -> list[str]:
    return sorted(name for name in services if re.fullmatch(r"app\d+", name))


def test_compose_has_postgres_redis_three_nodes_and_a_proxy() -> None:
    services = _compose()["services"]
    assert _nodes(services) == ["app1", "app2", "app3"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["proxy"]["image"].startswith(("nginx", "caddy"))
    for node in _nodes(services):
        env = services[node]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379")
        assert "readyz" in " ".join(services[node]["healthcheck"]["test"])
        assert services[node]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[node]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert len({services[n]["environment"]["NODE_ID"] for n in _nodes(services)}) == 3
    for name in ("postgres", "redis", "proxy"):
        assert services[name]["healthcheck"]["test"]


def test_only_the_proxy_is_published_and_metrics_stay_private() -> None:
    clerk_shell = {"CLERK_JWKS_URL": "https://clerk.example/jwks"}
    for compose, shell in ((_compose(), clerk_shell), (_merged(DEV_OVERLAY), {})):
        services = compose["services"]
        assert {name for name, _ in _published(services)} == {"proxy"}
        for node in _nodes(services):
            settings = _settings(services[node], shell)
            assert settings.metrics == "listen" and settings.metrics_listen is not None
            assert settings.metrics_listen[1] != 8000


def test_compose_requires_clerk_by_default() -> None:
    """``docker compose up`` with no CLERK_* in the environment: the nodes refuse to start."""
    services = _compose()["services"]
    for node in _nodes(services):
        assert services[node]["environment"]["AUTH_MODE"] == "clerk"
        assert "ALLOW_DEV_AUTH_ON_NETWORK" not in services[node]["environment"]
        with pytest.raises(SettingsError, match="CLERK_JWT_KEY or CLERK_JWKS_URL"):
            _settings(services[node], {})
        clerk = _settings(services[node], {"CLERK_JWKS_URL": "https://clerk.example/jwks",
                                           "CLERK_ISSUER": "https://clerk.example"})
        assert clerk.auth_mode == "clerk" and clerk.clerk_issuer == "https://clerk.example"
        assert exposure_check(clerk, "0.0.0.0") is None


def test_dev_overlay_is_published_on_loopback_only() -> None:
    """The dev-auth overlay: nodes allowed (with the warning) on their private network, the
    proxy published on loopback only; CLERK_* in the shell make the nodes refuse dev mode."""
    services = _merged(DEV_OVERLAY)["services"]
    published = _published(services)
    assert published and all(_on_loopback(spec) for _, spec in published), published
    for node in _nodes(services):
        dev = _settings(services[node], {})
        assert dev.auth_mode == "dev" and dev.allow_dev_auth_on_network
        assert exposure_check(dev, "0.0.0.0") is None
        with pytest.raises(SettingsError, match="refused"):
            _settings(services[node], {"CLERK_JWKS_URL": "https://clerk.example/jwks"})
    # and the base file alone never publishes dev auth: its published proxy runs Clerk nodes
    base = _compose()["services"]
    assert all(base[n]["environment"]["AUTH_MODE"] == "clerk" for n in _nodes(base))


def test_dockerfile_serves_on_port_8000_without_dev_auth_baked_in() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert '"--host", "0.0.0.0", "--port", "8000"' in dockerfile
    for line in dockerfile.splitlines():
        if line.startswith("ENV"):
            assert "AUTH_MODE" not in line and "ALLOW_DEV_AUTH" not in line and "METRICS" not in line


def test_proxy_template_is_rendered_from_the_compose_environment() -> None:
    """Every ``${VAR}`` of the mounted template is set by the proxy service, and names the nodes."""
    services = _compose()["services"]
    proxy = services["proxy"]
    template = _template_path(proxy).read_text()
    wanted = set(re.findall(r"\$\{(\w+)\}", template))
    assert wanted and wanted <= set(proxy["environment"])
    conf = render(template, {k: str(v) for k, v in proxy["environment"].items()})
    for node in _nodes(services):
        assert re.search(rf"server {node}:8000 [^;]*;", conf), node
    assert "listen 80;" in conf
    assert "proxy_set_header Host $http_host;" in conf
    assert "proxy_set_header Upgrade $http_upgrade" in conf
    assert "proxy_http_version 1.1" in conf
    assert re.search(r"location\s+/metrics\s*\{\s*return 404;", conf)


# --- the proxy for real ------------------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        pytest.fail("nginx is missing: run scripts/test-deps (it installs Debian's nginx)")
    return found


@dataclass
class Proxy:
    port: int
    node_a: ServerProcess
    node_b: ServerProcess
    metrics_a: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def run_nginx(conf: str, port: int) -> Iterator[None]:
    """nginx in the foreground, one process (no worker switching to another user when run as
    root), everything under a temporary prefix; the rendered site config as its http block."""
    prefix = Path(tempfile.mkdtemp(prefix="scr-nginx-"))
    (prefix / "site.conf").write_text(conf)
    temps = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (prefix / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {prefix / 'nginx.pid'};\nerror_log stderr warn;\n"
        f"events {{ worker_connections 512; }}\n"
        f"http {{\n    access_log off;\n{temps}\n    include {prefix / 'site.conf'};\n}}\n"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"nginx-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([nginx_binary(), "-e", "stderr", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port(port, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"nginx did not start: {exc}\n{log_path.read_text()}") from None
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="module")
async def proxy(postgres: Postgres, redis_url: str, data_dir: Path) -> AsyncIterator[Proxy]:
    """Two nodes on one PostgreSQL (their own database: its outbox is drained by them) and Redis,
    behind the compose file's own nginx config. Node A serves metrics apart as compose's nodes
    do; node B serves them on its app port, so the proxy is what must refuse them."""
    url = await postgres.create_database()
    await upgrade(url)
    metrics_a = free_port()
    common = {"RATE_LIMIT_PER_MINUTE": "0"}
    node_a = ServerProcess(database_url=url, data_dir=data_dir, redis_url=redis_url,
                           env={**common, "NODE_ID": "node-a", "METRICS": f"127.0.0.1:{metrics_a}"})
    node_b = ServerProcess(database_url=url, data_dir=data_dir, redis_url=redis_url,
                           env={**common, "NODE_ID": "node-b", "METRICS": "on"})
    await asyncio.to_thread(node_a.start)
    await asyncio.to_thread(node_b.start)
    port = free_port()
    proxy_service = _compose()["services"]["proxy"]
    conf = render(_template_path(proxy_service).read_text(), {
        "SCRIPTORIUM_LISTEN": f"127.0.0.1:{port}",
        "SCRIPTORIUM_UPSTREAM": f"server 127.0.0.1:{node_a.port}; server 127.0.0.1:{node_b.port};",
    })
    nginx = run_nginx(conf, port)
    try:
        await asyncio.to_thread(next, nginx)
        yield Proxy(port, node_a, node_b, metrics_a)
    finally:
        with contextlib.suppress(StopIteration):
            next(nginx)
        node_a.stop()
        node_b.stop()
        await postgres.drop_database(url)


async def _healthz_count(url: str) -> float:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(url)).text
    line = 'scriptorium_http_requests_total{method="GET",route="/healthz",status="200"} '
    return next((float(row[len(line):]) for row in text.splitlines() if row.startswith(line)), 0.0)


async def test_requests_reach_both_nodes(proxy: Proxy) -> None:
    counters = (f"http://127.0.0.1:{proxy.metrics_a}/metrics", f"{proxy.node_b.base_url}/metrics")
    before = [await _healthz_count(u) for u in counters]
    async with httpx.AsyncClient(base_url=proxy.base_url, timeout=10) as client:
        for _ in range(10):
            assert (await client.get("/healthz")).status_code == 200
    after = [await _healthz_count(u) for u in counters]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    assert sum(after) - sum(before) == 10


async def test_cookie_write_from_the_proxied_origin_succeeds(proxy: Proxy) -> None:
    """The browser's Origin is http://127.0.0.1:<proxy port>; the node sees that Host only if the
    proxy passes the port on ($http_host, not $host)."""
    origin = proxy.base_url
    async with httpx.AsyncClient(base_url=proxy.base_url, timeout=10) as client:
        user = await dev_user(client, "Cookie")
        for _ in range(2):  # round-robin: once on each node
            cookie = f"__session={user.token}"
            patched = await client.patch("/api/me", json={"name": "Through nginx"},
                                         headers={"Origin": origin, "Cookie": cookie})
            assert patched.status_code == 200, patched.text
            assert patched.json()["name"] == "Through nginx"
            foreign = await client.patch("/api/me", json={"name": "Forged"},
                                         headers={"Origin": "http://evil.example", "Cookie": cookie})
            assert foreign.status_code == 403


async def test_live_socket_through_the_proxy(proxy: Proxy) -> None:
    async with httpx.AsyncClient(base_url=proxy.base_url, timeout=10) as client:
        user = await dev_user(client, "Live")
    engine = make_engine(proxy.node_a.database_url)
    try:
        async with connect(f"{proxy.ws_url}/ws", origin=proxy.base_url,  # type: ignore[arg-type]
                           additional_headers={"Cookie": f"__session={user.token}"}, open_timeout=10) as ws:
            assert (await subscribe(ws, "user:me"))["type"] == "subscribed"
            async with AsyncSession(engine) as session:
                await emit(session, channel=f"user:{user.clerk_id}", event="notification.created",
                           data={"id": "n1", "unread_count": 1})
                await session.commit()
            [frame] = await events(ws, 1)
            assert frame["channel"] == "user:me" and frame["data"]["unread_count"] == 1
    finally:
        await engine.dispose()


async def test_collab_sockets_through_the_proxy(proxy: Proxy) -> None:
    async with httpx.AsyncClient(base_url=proxy.base_url, timeout=10) as client:
        author = await dev_user(client, "Author")
    engine = make_engine(proxy.node_a.database_url)
    try:
        lesson = await make_lesson(engine, author.clerk_id, body="Hello")
    finally:
        await engine.dispose()
    headers = {"Cookie": f"__session={author.token}"}
    # two sockets in a row: round-robin puts them on different nodes, the edit crosses via Redis
    a = await YClient.connect(proxy.ws_url, lesson.id, None, origin=proxy.base_url, additional_headers=headers)
    b = await YClient.connect(proxy.ws_url, lesson.id, None, origin=proxy.base_url, additional_headers=headers)
    try:
        marker = uuid.uuid4().hex[:8]
        a.body.insert(0, marker)

        async def arrived() -> bool:
            return bool(b.text()["body"].startswith(marker))

        await eventually(arrived)
    finally:
        await a.ws.close()
        await b.ws.close()


@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "/metrics?format=text", "//metrics",
                                  "/%6detrics", "/metrics%2F"])
async def test_metrics_are_not_reachable_through_the_proxy(proxy: Proxy, path: str) -> None:
    async with httpx.AsyncClient(timeout=10) as direct:
        assert (await direct.get(f"{proxy.node_b.base_url}/metrics")).status_code == 200
        assert (await direct.get(f"{proxy.node_a.base_url}/metrics")).status_code == 404
    async with httpx.AsyncClient(base_url=proxy.base_url, timeout=10) as client:
        for _ in range(2):  # once on each node
            response = await client.get(httpx.URL(proxy.base_url + path))
            assert response.status_code == 404, (path, response.status_code)
            assert "scriptorium_" not in response.text
