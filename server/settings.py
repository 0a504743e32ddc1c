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

AuthMode = Literal["clerk", "dev"]

_LOG_LEVELS = {"debug", "info", "warning", "error"}


class SettingsError(ValueError):
    """A setting has a value the server cannot run with."""


def _split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    # Connections per worker process (keep workers × (size + overflow) under max_connections).
    db_pool_size: int = 10
    db_max_overflow: int = 20
    redis_url: str | None = None
    redis_prefix: str = "scriptorium"
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
    body_max_bytes: int = 1024 * 1024
    node_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    demo_on_empty: bool = False
    # Tests and benchmarks: count SQL statements per request into an ``X-SQL-Statements`` header.
    sql_statement_header: bool = False
    # Live event history per channel (§7): at least this many events, and all of the last
    # ``event_history_seconds``; the outbox keeps published rows as long.
    event_history: int = 1000
    event_history_seconds: int = 24 * 3600
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
        data_dir = Path(env.get("DATA_DIR") or ".data")
        media_dir = Path(env.get("MEDIA_DIR") or (data_dir / "media"))
        jwt_key = env.get("CLERK_JWT_KEY") or None
        if jwt_key and "\\n" in jwt_key:
            jwt_key = jwt_key.replace("\\n", "\n")
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
            demo_on_empty=(env.get("DEMO_ON_EMPTY", "").lower() in ("1", "true", "yes")),
            sql_statement_header=(env.get("SQL_STATEMENT_HEADER", "").lower() in ("1", "true", "yes")),
            event_history=_int(env, "EVENT_HISTORY", 1000),
            event_history_seconds=_int(env, "EVENT_HISTORY_SECONDS", 24 * 3600),
            version_keep_days=_int(env, "VERSION_KEEP_DAYS", 30),
            version_keep_older=_int(env, "VERSION_KEEP_OLDER", 50),
            version_max_per_lesson=_int(env, "VERSION_MAX_PER_LESSON", 500),
        )
        if env.get("NODE_ID"):
            kwargs["node_id"] = env["NODE_ID"]
        return cls(**kwargs)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)
