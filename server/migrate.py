"""Apply migrations and idempotent seed data (``python -m server migrate``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db import make_engine
from server.gamification.catalogue import DEFAULT_ACHIEVEMENTS

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def head_revision() -> str | None:
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    return script.get_current_head()


def _upgrade(connection: Connection, database_url: str, revision: str) -> None:
    config = alembic_config(database_url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _downgrade(connection: Connection, database_url: str, revision: str) -> None:
    config = alembic_config(database_url)
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def upgrade(database_url: str, revision: str = "head") -> None:
    engine = make_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            # One migrator at a time when several nodes start together.
            await conn.execute(text("SELECT pg_advisory_xact_lock(7261001)"))
            await conn.run_sync(_upgrade, database_url, revision)
        if revision == "head":
            async with engine.begin() as conn:
                await seed_achievements(conn)
            async with engine.begin() as conn:
                await backfill_html(conn)
    finally:
        await engine.dispose()


async def downgrade(database_url: str, revision: str) -> None:
    engine = make_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, database_url, revision)
    finally:
        await engine.dispose()


async def seed_achievements(conn: object) -> None:
    from server.gamification.models import Achievement
    from server.gamification.requirements import parse_requirement

    for entry in DEFAULT_ACHIEVEMENTS:  # the seed obeys the same grammar as any other write
        parse_requirement(entry["requirement"], loc=f"seed.{entry['name']}")
    stmt = insert(Achievement).values(list(DEFAULT_ACHIEVEMENTS)).on_conflict_do_nothing(
        index_elements=["name"]
    )
    await conn.execute(stmt)  # type: ignore[attr-defined]


# Rows whose Markdown was stored before its HTML was (migration 0007; lessons created over
# REST had no content.html): table, then the statements that find them and store the HTML.
_UNRENDERED = [
    ("flashcards", "SELECT id, front AS body FROM flashcards WHERE front_html IS NULL",
     "UPDATE flashcards SET front_html = :html WHERE id = :id"),
    ("flashcards", "SELECT id, back AS body FROM flashcards WHERE back_html IS NULL",
     "UPDATE flashcards SET back_html = :html WHERE id = :id"),
    ("forum_posts", "SELECT id, content AS body FROM forum_posts WHERE html IS NULL",
     "UPDATE forum_posts SET html = :html WHERE id = :id"),
    ("forum_replies", "SELECT id, content AS body FROM forum_replies WHERE html IS NULL",
     "UPDATE forum_replies SET html = :html WHERE id = :id"),
    ("lessons", "SELECT id, content->>'body' AS body FROM lessons "
                "WHERE jsonb_typeof(content->'body') = 'string' AND NOT content ? 'html'",
     "UPDATE lessons SET content = jsonb_set(content, '{html}', to_jsonb(CAST(:html AS text))) "
     "WHERE id = :id AND content->>'body' = :body"),
]


async def backfill_html(conn: AsyncConnection) -> int:
    """Render, once, what was stored before HTML was rendered on write, so that no read has to
    (each text within the render budget, else escaped). Returns how many texts it rendered."""
    from server.markdown import render_bounded, renderer

    done = 0
    for table, find, store in _UNRENDERED:
        rows = (await conn.execute(text(find))).all()
        if not rows:
            continue
        # Not an edit: updated_at (set by the table's trigger) stays as it was.
        await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER trg_{table}_updated_at"))
        for row in rows:
            await conn.execute(text(store), {"id": row.id, "body": row.body,
                                             "html": render_bounded(row.body or "", renderer.budget)})
            done += 1
        await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER trg_{table}_updated_at"))
    return done


async def current_revision(database_url: str) -> str | None:
    engine = make_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()


def run_upgrade(database_url: str) -> None:
    asyncio.run(upgrade(database_url))
