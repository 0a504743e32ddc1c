"""Settings, read once from the environment into one immutable object.

Nothing else in the code base reads ``os.environ``: everything that can be
configured is a field here, documented in the README.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from wire.redis import as_cluster_url, is_cluster

AuthMode = Literal["clerk", "dev"]
# Where Prometheus metrics are served: nowhere, as ``/metrics`` of the app's own port, or on a
# listener of their own (``metrics_listen``) that a deployment binds to an internal interface.
MetricsMode = Literal["off", "app", "listen"]

_LOG_LEVELS = {"debug", "info", "warning", "error"}


class SettingsError(ValueError):
    """A setting has a value the server cannot run with."""


def _split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _metrics(raw: str | None) -> tuple[MetricsMode, tuple[str, int] | None]:
    """``METRICS``: ``off`` (default), ``on`` (``/metrics`` on the app's port) or ``host:port``."""
    value = (raw or "off").strip().lower()
    if value in ("off", "0", "false", "no", ""):
        return "off", None
    if value in ("on", "1", "true", "yes"):
        return "app", None
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if sep and host and port.isdigit() and 0 < int(port) < 65536:
        return "listen", (host, int(port))
    raise SettingsError(f"METRICS must be 'off', 'on' or 'host:port', got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc


def _at_most(value: float, limit: float, name: str) -> float:
    if value > limit:
        raise SettingsError(f"{name} must be at most {limit:g}, got {value:g}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc
    if not value >= 0 or value == float("inf"):
        raise SettingsError(f"{name} must be a finite number >= 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    # Connections per worker process (keep workers × (size + overflow) under max_connections).
    db_pool_size: int = 10
    db_max_overflow: int = 20
    # redis+cluster://… (or REDIS_CLUSTER=1 with a redis:// seed node) is a Redis Cluster: see
    # wire/redis.py (hash-tagged keys and channels, sharded pub/sub).
    redis_url: str | None = None
    redis_prefix: str = "scriptorium"
    redis_cluster: bool = False
    auth_mode: AuthMode = "dev"
    clerk_jwt_key: str | None = None
    clerk_jwks_url: str | None = None
    clerk_issuer: str | None = None
    clerk_authorized_parties: tuple[str, ...] = ()
    clerk_webhook_secret: str | None = None
    clerk_publishable_key: str | None = None
    data_dir: Path = Path(".data")
    media_dir: Path = Path(".data/media")
    media_max_bytes: int = 50 * 1024 * 1024
    # Bytes of uploaded files one user may keep (sum of their uploads' sizes); 0 turns it off.
    media_quota_bytes: int = 1024 * 1024 * 1024
    allowed_origins: tuple[str, ...] = ()
    log_level: str = "info"
    rate_limit_per_minute: int = 60
    rate_limit_burst: int = 30
    # Restores write a whole version each time (up to 200,000 characters): a tighter limit per
    # user. RATE_LIMIT_PER_MINUTE=0 turns this one off too.
    restore_rate_per_minute: int = 6
    restore_rate_burst: int = 3
    # Markdown (server/markdown.py): texts up to this many characters render on the event loop
    # (about 40 ms at worst); longer ones in a worker process, for at most this much CPU time,
    # after which the text is shown escaped instead.
    markdown_inline_chars: int = 2_000
    markdown_render_budget_ms: int = 2_000
    # Long renders one account may have waiting for the (shared) worker at once; 429 past it.
    markdown_renders_per_user: int = 2
    body_max_bytes: int = 1024 * 1024
    node_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    demo_on_empty: bool = False
    # Tests and benchmarks: count SQL statements per request into an ``X-SQL-Statements`` header.
    sql_statement_header: bool = False
    # Tests: validate every JSON success body against its route's declared response model
    # (server/routing.py); a mismatch is logged and answered 500.
    check_responses: bool = False
    # Live event history per channel (§7): at least this many events, and all of the last
    # ``event_history_seconds``; the outbox keeps published rows as long.
    event_history: int = 1000
    event_history_seconds: int = 24 * 3600
    # ``serve`` refuses AUTH_MODE=dev on a non-loopback host (anyone reaching it could mint an
    # admin's token) unless this explicit override is set, and then warns loudly.
    allow_dev_auth_on_network: bool = False
    metrics: MetricsMode = "off"
    metrics_listen: tuple[str, int] | None = None
    # /ws inbound frames per socket (§7): a token bucket, a frame costing 1 plus 1 per 16 KiB;
    # past it frames are dropped with ``error rate_limited``. WS_FRAMES_PER_SECOND=0 turns it off.
    ws_frames_per_second: float = 30.0
    ws_frame_burst: float = 300.0
    # How often the rights of open /ws subscriptions are re-checked (§7: within 15 s).
    ws_recheck_seconds: float = 5.0
    ws_sockets_per_user: int = 16
    collab_sockets_per_user: int = 32
    # With Redis both caps above hold across nodes (realtime.caps): a dead node's sockets stop
    # counting this long after it last refreshed them.
    connection_cap_ttl_seconds: float = 30.0
    # Live co-editing (§5), per collab socket: answers to sync step 1 and query-awareness (each
    # encodes the whole document or room awareness) come out of a bucket of ``collab_sync_burst``
    # refilled ``collab_sync_per_second``; more requests wait and coalesce into one answer.
    collab_sync_burst: int = 8
    collab_sync_per_second: float = 2.0
    # Awareness client ids one collab socket may own (y-websocket clients use one), and the
    # largest awareness state kept, in UTF-8 bytes; entries beyond either are dropped.
    collab_awareness_ids: int = 4
    collab_awareness_state_bytes: int = 8 * 1024
    # Awareness frames one collab socket fans out to the room and other nodes: bursts of
    # ``collab_awareness_burst``, then ``collab_awareness_per_second``; more wait and coalesce
    # into one frame of the newest states (a cursor at 10 Hz still looks live).
    collab_awareness_burst: int = 20
    collab_awareness_per_second: float = 10.0
    # Awareness to other nodes: a room's changes coalesced for this long (seconds), then one relay
    # message with the newest state of each changed client (local peers get theirs at once).
    collab_awareness_relay_tick: float = 0.05
    # What one collab socket may make the server read, in bytes a second (bursts of twice that);
    # a frame counts as at least 4 KiB (parsing one costs ~10 us whatever its size: 2,048 tiny
    # frames a second, bursts of 4,096). Over it the socket is not read for a while.
    collab_receive_bytes_per_second: int = 8 * 1024 * 1024
    # Bytes of one room's updates held while they cannot be written (the database unreachable):
    # past it the room's writers are closed 4503 and keep their edits until they reconnect.
    collab_unsaved_max_bytes: int = 8 * 1024 * 1024
    # The node's collab write pace: a room that sent an update less than this long ago holds the
    # next ones for the node's next write, merged (a quiet room's update leaves at the end of the
    # loop turn): collab.sender.Coalescer, collab.room.Room.broadcast_update.
    collab_write_interval_ms: float = 4.0
    # ... but only while the node is busy: from this fraction of one core (its process CPU over
    # 250 ms) until under 0.6 of it; a node with CPU to spare writes every loop turn. 0: always
    # paced.
    collab_write_pace_above: float = 0.7
    # While a "saved" answer or another node waits for updates, a commit of the log starts at once
    # but at most this often; the updates meanwhile share it (collab.persistence.COMMIT_GAP_S).
    collab_commit_gap_ms: float = 20.0
    # A room's update log is compacted into its snapshot (in a worker process) once it holds this
    # many rows; a compaction reads at most 32 MiB of them.
    collab_compact_rows: int = 500
    # With several nodes (Redis), one node at a time materialises, compacts and versions a room:
    # the holder of its lease in PostgreSQL (collab_leases), taken over this long after its holder
    # stops renewing it (died, or paused); renewed every third of it in one statement per node.
    collab_lease_seconds: float = 5.0  # docs/API.md §5: no ownership outlives a dead node by more than 5 s
    # Lesson version history (each version holds the text and the whole document state): every
    # version of the last ``version_keep_days`` days, plus the ``version_keep_older`` newest older
    # ones, and never more than ``version_max_per_lesson`` in all (pruned as versions are recorded).
    version_keep_days: int = 30
    version_keep_older: int = 50
    version_max_per_lesson: int = 500

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        clerk_keys = ("CLERK_JWT_KEY", "CLERK_JWKS_URL", "CLERK_ISSUER", "CLERK_AUTHORIZED_PARTIES",
                      "CLERK_WEBHOOK_SECRET")
        clerk_configured = any(env.get(k) for k in clerk_keys)
        mode_raw = (env.get("AUTH_MODE") or ("clerk" if clerk_configured else "dev")).strip().lower()
        if mode_raw not in ("clerk", "dev"):
            raise SettingsError(f"AUTH_MODE must be 'clerk' or 'dev', got {mode_raw!r}")
        if mode_raw == "dev" and clerk_configured:
            raise SettingsError("AUTH_MODE=dev is refused while CLERK_* settings are present")
        if mode_raw == "clerk" and not (env.get("CLERK_JWT_KEY") or env.get("CLERK_JWKS_URL")):
            raise SettingsError("AUTH_MODE=clerk needs CLERK_JWT_KEY or CLERK_JWKS_URL")
        log_level = (env.get("LOG_LEVEL") or "info").strip().lower()
        if log_level not in _LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL must be one of {sorted(_LOG_LEVELS)}, got {log_level!r}")
        compact_rows = _int(env, "COLLAB_COMPACT_ROWS", 500)
        if compact_rows < 1:
            raise SettingsError("COLLAB_COMPACT_ROWS must be at least 1")
        data_dir = Path(env.get("DATA_DIR") or ".data")
        media_dir = Path(env.get("MEDIA_DIR") or (data_dir / "media"))
        jwt_key = env.get("CLERK_JWT_KEY") or None
        if jwt_key and "\\n" in jwt_key:
            jwt_key = jwt_key.replace("\\n", "\n")
        metrics, metrics_listen = _metrics(env.get("METRICS"))
        kwargs: dict[str, Any] = dict(
            database_url=env.get("DATABASE_URL") or None,
            db_pool_size=_int(env, "DB_POOL_SIZE", 10),
            db_max_overflow=_int(env, "DB_MAX_OVERFLOW", 20),
            redis_url=env.get("REDIS_URL") or None,
            redis_prefix=env.get("REDIS_PREFIX") or "scriptorium",
            auth_mode=mode_raw,
            clerk_jwt_key=jwt_key,
            clerk_jwks_url=env.get("CLERK_JWKS_URL") or None,
            clerk_issuer=env.get("CLERK_ISSUER") or None,
            clerk_authorized_parties=_split(env.get("CLERK_AUTHORIZED_PARTIES")),
            clerk_webhook_secret=env.get("CLERK_WEBHOOK_SECRET") or None,
            clerk_publishable_key=env.get("CLERK_PUBLISHABLE_KEY") or None,
            data_dir=data_dir,
            media_dir=media_dir,
            media_max_bytes=_int(env, "MEDIA_MAX_BYTES", 50 * 1024 * 1024),
            media_quota_bytes=_int(env, "MEDIA_QUOTA_BYTES", 1024 * 1024 * 1024),
            allowed_origins=tuple(o.rstrip("/") for o in _split(env.get("ALLOWED_ORIGINS"))),
            log_level=log_level,
            rate_limit_per_minute=_int(env, "RATE_LIMIT_PER_MINUTE", 60),
            rate_limit_burst=_int(env, "RATE_LIMIT_BURST", 30),
            restore_rate_per_minute=_int(env, "RESTORE_RATE_PER_MINUTE", 6),
            restore_rate_burst=_int(env, "RESTORE_RATE_BURST", 3),
            markdown_inline_chars=_int(env, "MARKDOWN_INLINE_CHARS", 2_000),
            markdown_render_budget_ms=_int(env, "MARKDOWN_RENDER_BUDGET_MS", 2_000),
            markdown_renders_per_user=_int(env, "MARKDOWN_RENDERS_PER_USER", 2),
            demo_on_empty=(env.get("DEMO_ON_EMPTY", "").lower() in ("1", "true", "yes")),
            sql_statement_header=(env.get("SQL_STATEMENT_HEADER", "").lower() in ("1", "true", "yes")),
            check_responses=_flag(env, "CHECK_RESPONSES"),
            event_history=_int(env, "EVENT_HISTORY", 1000),
            event_history_seconds=_int(env, "EVENT_HISTORY_SECONDS", 24 * 3600),
            allow_dev_auth_on_network=_flag(env, "ALLOW_DEV_AUTH_ON_NETWORK"),
            metrics=metrics,
            metrics_listen=metrics_listen,
            ws_frames_per_second=_float(env, "WS_FRAMES_PER_SECOND", 30.0),
            ws_frame_burst=_float(env, "WS_FRAME_BURST", 300.0),
            ws_recheck_seconds=_float(env, "WS_RECHECK_SECONDS", 5.0),
            ws_sockets_per_user=_int(env, "WS_SOCKETS_PER_USER", 16),
            collab_sockets_per_user=_int(env, "COLLAB_SOCKETS_PER_USER", 32),
            connection_cap_ttl_seconds=_float(env, "CONNECTION_CAP_TTL_SECONDS", 30.0),
            collab_sync_burst=_int(env, "COLLAB_SYNC_BURST", 8),
            collab_sync_per_second=_float(env, "COLLAB_SYNC_PER_SECOND", 2.0),
            collab_awareness_ids=_int(env, "COLLAB_AWARENESS_IDS", 4),
            collab_awareness_state_bytes=_int(env, "COLLAB_AWARENESS_STATE_BYTES", 8 * 1024),
            collab_awareness_burst=_int(env, "COLLAB_AWARENESS_BURST", 20),
            collab_awareness_per_second=_float(env, "COLLAB_AWARENESS_PER_SECOND", 10.0),
            collab_awareness_relay_tick=_float(env, "COLLAB_AWARENESS_RELAY_TICK", 0.05),
            collab_receive_bytes_per_second=_int(env, "COLLAB_RECEIVE_BYTES_PER_SECOND", 8 * 1024 * 1024),
            collab_unsaved_max_bytes=_int(env, "COLLAB_UNSAVED_MAX_BYTES", 8 * 1024 * 1024),
            collab_write_interval_ms=_float(env, "COLLAB_WRITE_INTERVAL_MS", 4.0),
            collab_write_pace_above=_float(env, "COLLAB_WRITE_PACE_ABOVE", 0.7),
            collab_commit_gap_ms=_at_most(_float(env, "COLLAB_COMMIT_GAP_MS", 20.0), 1000.0, "COLLAB_COMMIT_GAP_MS"),
            collab_lease_seconds=_float(env, "COLLAB_LEASE_SECONDS", 5.0),
            collab_compact_rows=compact_rows,
            version_keep_days=_int(env, "VERSION_KEEP_DAYS", 30),
            version_keep_older=_int(env, "VERSION_KEEP_OLDER", 50),
            version_max_per_lesson=_int(env, "VERSION_MAX_PER_LESSON", 500),
        )
        if not 0 < kwargs["ws_recheck_seconds"] <= 15:
            raise SettingsError("WS_RECHECK_SECONDS must be in (0, 15] (§7: rights end within 15 s)")
        if kwargs["ws_frames_per_second"] > 0 and kwargs["ws_frame_burst"] < 5:
            raise SettingsError("WS_FRAME_BURST must be at least 5 (a 64 KiB frame costs 5 tokens)")
        if env.get("NODE_ID"):
            kwargs["node_id"] = env["NODE_ID"]
        redis_url = kwargs["redis_url"]
        if _flag(env, "REDIS_CLUSTER"):
            if not redis_url:
                raise SettingsError("REDIS_CLUSTER=1 needs REDIS_URL (a seed node of the cluster)")
            try:
                kwargs["redis_url"] = as_cluster_url(redis_url)
            except ValueError as exc:
                raise SettingsError(f"REDIS_URL: {exc}") from exc
        if "{" in kwargs["redis_prefix"] or "}" in kwargs["redis_prefix"]:
            raise SettingsError("REDIS_PREFIX must not contain braces (they mark Redis Cluster hash tags)")
        kwargs["redis_cluster"] = bool(kwargs["redis_url"]) and is_cluster(kwargs["redis_url"])
        return cls(**kwargs)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)
