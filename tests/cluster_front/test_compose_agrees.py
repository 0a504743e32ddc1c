"""docker-compose.yml and ``scripts/cluster`` (deploy/cluster.py) describe one deployment: the same
nginx template, the same node settings by name, the same node naming and count, the same
upstream lines. Parsed statically (docker compose is not installed here)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.support import ROOT


def _cluster_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_cluster", ROOT / "deploy" / "cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("deploy_cluster", module)
    spec.loader.exec_module(module)
    return module


cluster = _cluster_module()


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


def _nodes(services: dict[str, Any]) -> list[str]:
    return sorted((n for n in services if re.fullmatch(r"app\d+", n)), key=lambda n: int(n[3:]))


def _default_nodes() -> int:
    parser_default = re.search(r'"--nodes", type=int, default=(\d+)', (ROOT / "deploy" / "cluster.py").read_text())
    assert parser_default
    return int(parser_default.group(1))


def test_same_node_count_and_names() -> None:
    services = _services()
    nodes = _nodes(services)
    assert nodes == [cluster.node_name(i) for i in range(1, _default_nodes() + 1)]
    for name in nodes:
        assert services[name]["environment"]["NODE_ID"] == name


def test_same_settings_by_name() -> None:
    services = _services()
    for name in _nodes(services):
        assert set(services[name]["environment"]) == set(cluster.NODE_SETTINGS), name
    env = cluster.node_env({"SHELL_THING": "kept", "DEMO_ON_EMPTY": "1", "DATABASE_URL": "ignored"},
                           name="app1", database_url="postgresql+asyncpg://x@/db", redis_url="redis://r:1/0",
                           data_dir=Path("/d"), metrics_port=9464)
    assert {k for k in env if k in cluster.NODE_SETTINGS} == set(cluster.NODE_SETTINGS)
    assert env["SHELL_THING"] == "kept" and "DEMO_ON_EMPTY" not in env
    assert env["DATABASE_URL"] == "postgresql+asyncpg://x@/db"
    # metrics on a listener of their own in both (compose: port 9464 on the private network)
    compose_metrics = services["app1"]["environment"]["METRICS"]
    assert re.fullmatch(r"[\d.]+:\d+", compose_metrics) and re.fullmatch(r"127\.0\.0\.1:\d+", env["METRICS"])


def test_same_proxy_config() -> None:
    services = _services()
    proxy = services["proxy"]
    [mount] = [v for v in proxy["volumes"] if ":/etc/nginx/templates/" in v]
    assert (ROOT / mount.split(":")[0]).resolve() == cluster.TEMPLATE.resolve()
    nodes = _nodes(services)
    port = {str(p) for n in nodes for p in services[n]["expose"]} & {"8000"}
    assert port == {"8000"}
    expected = cluster.proxy_variables("80", [f"{n}:8000" for n in nodes])
    assert {k: str(v) for k, v in proxy["environment"].items()} == expected
    assert set(proxy["depends_on"]) == set(nodes)
    template = cluster.TEMPLATE.read_text()
    assert set(re.findall(r"\$\{(\w+)\}", template)) == set(expected)


def test_the_rendered_config_routes_sockets_without_stickiness() -> None:
    conf = cluster.render(cluster.TEMPLATE.read_text(),
                          cluster.proxy_variables("127.0.0.1:8000", ["127.0.0.1:9001", "127.0.0.1:9002"]))
    upstream = re.search(r"upstream scriptorium \{(.*?)\}", conf, re.S)
    assert upstream
    body = upstream.group(1)
    assert "least_conn;" in body
    assert not re.search(r"\b(ip_hash|hash|sticky)\b", body)
    assert re.findall(r"server (\S+) max_fails=\d+ fail_timeout=\d+s;", body) == ["127.0.0.1:9001", "127.0.0.1:9002"]
    # WebSocket upgrade on every path (/ws, /collab/lessons/<id>, a future /collab endpoint)
    assert re.search(r"location / \{[^}]*proxy_set_header Upgrade \$http_upgrade;[^}]*"
                     r"proxy_set_header Connection \$connection_upgrade;", conf, re.S)
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", conf)
    assert read_timeout and int(read_timeout.group(1)) >= 3600
