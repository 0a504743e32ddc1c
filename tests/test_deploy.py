"""docker compose is not installed here: check the file's shape instead of running it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support import ROOT


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_has_postgres_redis_two_nodes_and_a_proxy() -> None:
    services = _compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["proxy"]["image"].startswith(("nginx", "caddy"))
    for node in ("app1", "app2"):
        env = services[node]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379")
        assert "readyz" in " ".join(services[node]["healthcheck"]["test"])
        assert services[node]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[node]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["app1"]["environment"]["NODE_ID"] != services["app2"]["environment"]["NODE_ID"]
    for name in ("postgres", "redis", "proxy"):
        assert services[name]["healthcheck"]["test"]


def test_proxy_passes_websocket_upgrades_to_both_nodes() -> None:
    services = _compose()["services"]
    mount = next(v for v in services["proxy"]["volumes"] if "nginx.conf" in v)
    conf = (ROOT / mount.split(":")[0]).read_text()
    assert "server app1:8000" in conf and "server app2:8000" in conf
    assert "proxy_set_header Upgrade $http_upgrade" in conf
    assert "proxy_http_version 1.1" in conf
    assert (ROOT / "Dockerfile").exists()
    assert Path(ROOT / "Dockerfile").read_text().count("python") >= 1
