"""``python -m server serve|migrate|demo|admin grant <clerk_id>``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from server.settings import Settings, SettingsError


def _database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from server.embedded import start_postgres

    url = start_postgres(settings.data_dir / "pg")
    # Workers (and reloads) are separate processes: hand them the same database.
    os.environ["DATABASE_URL"] = url
    return url


async def _is_empty(url: str) -> bool:
    from sqlalchemy import pool, text

    from server.db import make_engine

    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT count(*) FROM courses"))).scalar() == 0
    finally:
        await engine.dispose()


def cmd_migrate(settings: Settings) -> int:
    from server.migrate import run_upgrade

    run_upgrade(_database_url(settings))
    print("database is at the latest schema")
    return 0


def cmd_demo(settings: Settings) -> int:
    from server.demo import load_demo
    from server.migrate import run_upgrade

    url = _database_url(settings)
    run_upgrade(url)
    print(asyncio.run(load_demo(url)))
    return 0


def cmd_admin_grant(settings: Settings, clerk_id: str) -> int:
    from server.db import make_engine, make_sessionmaker
    from server.users.service import grant_admin

    async def run() -> bool:
        engine = make_engine(_database_url(settings))
        try:
            async with make_sessionmaker(engine).begin() as session:
                return await grant_admin(session, clerk_id=clerk_id)
        finally:
            await engine.dispose()

    changed = asyncio.run(run())
    print(f"{clerk_id} is an admin" + ("" if changed else " (already)"))
    return 0


def is_loopback(host: str) -> bool:
    """True only for addresses no other machine can reach; a host name other than localhost
    may resolve to anything, so it counts as the network."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


DEV_AUTH_REFUSED = (
    "configuration error: AUTH_MODE=dev on {host}: anyone who reaches this address can mint a "
    "token for any user, an admin included. Configure Clerk (CLERK_JWKS_URL or CLERK_JWT_KEY), "
    "serve on 127.0.0.1, or set ALLOW_DEV_AUTH_ON_NETWORK=1 if only a loopback-bound proxy "
    "can reach this address."
)

DEV_AUTH_WARNING = (
    "\n" + "!" * 78 + "\n"
    "!! WARNING: AUTH_MODE=dev served on {host} (ALLOW_DEV_AUTH_ON_NETWORK=1).\n"
    "!! POST /api/dev/token mints a token for ANY user, admins included, to anyone who can\n"
    "!! reach this address. Only run it like this behind a proxy published on loopback.\n"
    + "!" * 78 + "\n"
)


def exposure_check(settings: Settings, host: str) -> str | None:
    """Why ``serve`` must not start on ``host`` with these settings (None: it may); warns
    on stderr about an allowed but risky exposure."""
    if settings.auth_mode == "dev" and not is_loopback(host):
        if not settings.allow_dev_auth_on_network:
            return DEV_AUTH_REFUSED.format(host=host)
        print(DEV_AUTH_WARNING.format(host=host), file=sys.stderr, flush=True)
    if settings.metrics == "app" and not is_loopback(host):
        print(f"warning: METRICS=on serves /metrics to anyone who reaches {host}; "
              "METRICS=<internal-host>:<port> serves it apart", file=sys.stderr, flush=True)
    return None


# SIGTERM: the drain (collab rooms saved, their sockets closed 1012) gets this long, uvicorn's graceful
# shutdown (in-flight requests finish, other sockets close 1012) GRACEFUL_SHUTDOWN_S, then the
# lifespan stops the components: the process exits well within 10 s.
DRAIN_TIMEOUT_S = 2.0
GRACEFUL_SHUTDOWN_S = 5


def draining_server(config: Any) -> Any:
    """A ``uvicorn.Server`` whose shutdown (SIGTERM, SIGINT) first stops accepting, then drains
    the app (:func:`server.app.drain`), and only then lets uvicorn close the remaining
    connections: uvicorn alone closes every socket with 1012 before the rooms are saved."""
    import uvicorn

    from wire import grid

    log = logging.getLogger("scriptorium.cli")

    class DrainingServer(uvicorn.Server):
        async def main_loop(self) -> None:
            # uvicorn's own loop (0.54), its 0.1 s tick on the node's timer grid (wire/grid.py):
            # it wakes the event loop with the node's other periodic timers, not on its own.
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 1) % 864000
                await grid.tick(0.1)
                should_exit = await self.on_tick(counter)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for server in self.servers:
                server.close()  # no new connection (uvicorn's shutdown does it again: harmless)
            from server.app import drain

            try:
                await asyncio.wait_for(drain(getattr(self.lifespan, "state", {})), DRAIN_TIMEOUT_S)
            except Exception:
                log.exception("draining the app failed; shutting down anyway")
            await super().shutdown(sockets)

    return DrainingServer(config)


def cmd_serve(settings: Settings, host: str, port: int, workers: int, demo: bool) -> int:
    import uvicorn

    from server import logs
    from server.migrate import run_upgrade
    from server.websocket_protocol import PacedWebSocketProtocol

    logs.configure(settings.log_level)
    url = _database_url(settings)
    run_upgrade(url)
    if demo or settings.demo_on_empty:
        from server.demo import load_demo

        if asyncio.run(_is_empty(url)):
            print(asyncio.run(load_demo(url)))
    metrics = {"off": "off", "app": "/metrics"}.get(settings.metrics, "")
    if settings.metrics_listen:
        metrics = "http://{}:{}/metrics".format(*settings.metrics_listen)
    print(f"Scriptorium on http://{host}:{port}  (auth: {settings.auth_mode}, "
          f"broker: {('redis cluster' if settings.redis_cluster else 'redis') if settings.redis_url else 'in-process'}, metrics: {metrics})", flush=True)
    options: dict[str, Any] = dict(
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        # websockets-sansio, parsing each socket read a bounded slice per loop turn.
        ws=PacedWebSocketProtocol,
        loop="uvloop",
        http="httptools",
        ws_max_size=2 * 1024 * 1024,
        ws_ping_interval=25.0,
        ws_ping_timeout=20.0,
        ws_per_message_deflate=False,
        proxy_headers=True,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    if workers > 1:
        # uvicorn's supervisor builds each worker's server itself (a plain uvicorn.Server closes
        # every socket 1012 before the lifespan saves the rooms): its workers are DrainingProcess.
        import uvicorn.supervisors.multiprocess as multiprocess

        multiprocess.Process = _worker_process_class()  # type: ignore[misc]
        uvicorn.run("server.app:create_app", **options)
        return 0
    config = uvicorn.Config("server.app:create_app", **options)
    server = draining_server(config)
    # uvicorn hands a SIGTERM it handled back to the handler it found (re-raising it): with the
    # default one the process would end "killed by SIGTERM" after a clean drain. A drained
    # shutdown is a success: exit 0.
    signal.signal(signal.SIGTERM, _drained)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 3


def _worker_process_class() -> Any:
    from uvicorn.supervisors.multiprocess import Process

    class DrainingProcess(Process):
        """A ``--workers`` worker whose server drains like the single-process one (SIGTERM from the
        supervisor: stop accepting, save every room, then close its sockets 1012). Pickled to the
        spawned worker by reference, so it is a module attribute."""

        @property
        def server(self) -> Any:
            if self._server is None:
                # Runs in the worker, before its app reads the settings. Workers inherit one
                # NODE_ID, and nodes ignore relay traffic from their own id: each worker is a node.
                if os.environ.get("NODE_ID"):
                    os.environ["NODE_ID"] = f"{os.environ['NODE_ID']}.{os.getpid()}"
                self._server = draining_server(self.config)
            return self._server

    DrainingProcess.__qualname__ = DrainingProcess.__name__ = "DrainingProcess"
    globals()["DrainingProcess"] = DrainingProcess  # one class: pickle checks it is this attribute
    return DrainingProcess


def __getattr__(name: str) -> Any:
    # server.cli.DrainingProcess, built on first use (uvicorn is imported only to serve).
    if name == "DrainingProcess":
        return _worker_process_class()
    raise AttributeError(name)


def _drained(signum: int, frame: object) -> None:
    raise SystemExit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server", description="Scriptorium server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate, then serve HTTP and WebSockets")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--demo", action="store_true", help="load the demo data into an empty database")
    sub.add_parser("migrate", help="create or upgrade the schema and seed the achievement catalogue")
    sub.add_parser("demo", help="load the demo course, users and thread")
    admin = sub.add_parser("admin", help="administration")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    grant = admin_sub.add_parser("grant", help="make a user an admin")
    grant.add_argument("clerk_id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        if args.workers > 1 and not settings.redis_url:
            # Rooms and live channels live in one process without Redis: workers would split them.
            print("configuration error: --workers > 1 needs REDIS_URL (the in-process broker and "
                  "collab relay are single-process)", file=sys.stderr)
            return 2
        refused = exposure_check(settings, args.host)
        if refused:
            print(refused, file=sys.stderr)
            return 2
        return cmd_serve(settings, args.host, args.port, args.workers, args.demo)
    if args.command == "migrate":
        return cmd_migrate(settings)
    if args.command == "demo":
        return cmd_demo(settings)
    if args.command == "admin":
        return cmd_admin_grant(settings, args.clerk_id)
    return 2
