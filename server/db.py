"""Database plumbing: declarative base, common columns, engine and sessions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names so migrations can refer to them (Alembic's advice).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # Kept current by the ``set_updated_at`` trigger, for raw SQL updates too.
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


def user_fk(ondelete: str, *, nullable: bool = False, index: bool = True) -> Any:
    """A column referencing ``users.clerk_id`` (the seed's choice of user key).

    ``index=False`` only where a composite index already leads with this column.
    """
    from sqlalchemy import ForeignKey, Text

    return mapped_column(
        Text, ForeignKey("users.clerk_id", ondelete=ondelete), nullable=nullable, index=index
    )


def asyncpg_url(url: str) -> str:
    """Normalise a PostgreSQL URL to the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    options: dict[str, Any] = {"pool_pre_ping": True}
    if "poolclass" not in kwargs:
        options.update(pool_size=10, max_overflow=20)
    options.update(kwargs)
    return create_async_engine(asyncpg_url(url), **options)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session inside one transaction: committed on success, rolled back on error."""
    async with sessions() as session, session.begin():
        yield session


def all_models() -> type[Base]:
    """Import every domain's models so ``Base.metadata`` knows all tables."""
    import server.models  # noqa: F401

    return Base


# --- SQL statement counting (opt-in: ``SQL_STATEMENT_HEADER=1``) ------------------------------

# One mutable counter per request; SQLAlchemy's greenlets share the request task's context.
statement_counter: ContextVar[list[int] | None] = ContextVar("statement_counter", default=None)


def _count_statement(*_args: Any, **_kwargs: Any) -> None:
    counter = statement_counter.get()
    if counter is not None:
        counter[0] += 1


def install_statement_counter(engine: AsyncEngine) -> None:
    """Count every statement executed while :data:`statement_counter` holds a counter."""
    event.listen(engine.sync_engine, "before_cursor_execute", _count_statement)
