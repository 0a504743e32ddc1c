"""The CLI as an operator uses it: migrate, demo, admin grant, configuration errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import ROOT, Postgres, dev_user, inherited_env


def run_cli(*args: str, database_url: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = inherited_env()  # the shell's settings never leak into the command under test
    full_env.update(DATABASE_URL=database_url, DATA_DIR=str(data_dir), **env)
    return subprocess.run([sys.executable, "-m", "server", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


async def test_admin_grant_takes_effect_on_the_next_request(
    client: httpx.AsyncClient, database_url: str, data_dir: Path
) -> None:
    user = await dev_user(client, "Future Admin")
    assert (await client.get("/api/me", headers=user.headers)).json()["role"] == "member"
    result = run_cli("admin", "grant", user.clerk_id, database_url=database_url, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert "is an admin" in result.stdout
    assert (await client.get("/api/me", headers=user.headers)).json()["role"] == "admin"
    again = run_cli("admin", "grant", user.clerk_id, database_url=database_url, data_dir=data_dir)
    assert again.returncode == 0 and "(already)" in again.stdout


async def test_migrate_and_demo_are_idempotent(postgres: Postgres, data_dir: Path) -> None:
    url = await postgres.create_database("scr_cli")
    try:
        assert run_cli("migrate", database_url=url, data_dir=data_dir).returncode == 0
        assert run_cli("migrate", database_url=url, data_dir=data_dir).returncode == 0
        first = run_cli("demo", database_url=url, data_dir=data_dir)
        assert first.returncode == 0, first.stderr
        assert "demo data loaded" in first.stdout
        second = run_cli("demo", database_url=url, data_dir=data_dir)
        assert "already present" in second.stdout
        from server.db import make_engine

        engine: AsyncEngine = make_engine(url)
        async with engine.connect() as conn:
            counts = (await conn.execute(text(
                "SELECT (SELECT count(*) FROM courses), (SELECT count(DISTINCT content_type) FROM lessons), "
                "(SELECT count(*) FROM forum_replies WHERE parent_reply_id IS NOT NULL), "
                "(SELECT count(*) FROM collaborators), (SELECT count(*) FROM flashcards), "
                "(SELECT count(*) FROM achievements)"))).one()
        await engine.dispose()
        assert counts == (2, 4, 2, 2, 4, 8)
    finally:
        await postgres.drop_database(url)


def test_configuration_error_exits_2_with_a_clear_message(database_url: str, data_dir: Path) -> None:
    result = run_cli("migrate", database_url=database_url, data_dir=data_dir,
                     AUTH_MODE="dev", CLERK_ISSUER="https://clerk.test")
    assert result.returncode == 2
    assert "AUTH_MODE=dev is refused" in result.stderr


def test_several_workers_without_redis_are_refused(database_url: str, data_dir: Path) -> None:
    result = run_cli("serve", "--workers", "2", database_url=database_url, data_dir=data_dir)
    assert result.returncode == 2
    assert "needs REDIS_URL" in result.stderr
