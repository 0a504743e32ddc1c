"""Database plumbing: declarative base, common columns, engine and sessions.

Below every domain: it imports none (the schema registry is :mod:`server.models`)."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import await_only
from sqlalchemy.util.queue import Empty, Full, QueueCommon

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


def libpq_dsn(url: str) -> str:
    """The URL for ``asyncpg.connect`` (a dedicated connection outside the pool, e.g. to LISTEN)."""
    return asyncpg_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


class FairQueue(QueueCommon[Any]):
    """The pool's idle connections, handed out first come, first served.

    SQLAlchemy's asyncio queue lets a request that arrives just as a connection comes back take it
    before the requests already waiting, and a waiter that lost that race goes to the back of the
    line again: under load (more requests than pooled connections) a few requests wait for many
    turns — a p99 of 250 ms where the median is 20 ms. Here a returned connection goes straight to
    the longest waiter, and nobody takes an idle one while others wait.
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._items: deque[Any] = deque()
        self._waiters: deque[asyncio.Future[Any]] = deque()

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return bool(self.maxsize) and len(self._items) >= self.maxsize

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._items.append(item)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)  # the pool never blocks on a return

    def get_nowait(self) -> Any:
        if not self._items:
            raise Empty()
        return self._items.pop() if self.use_lifo else self._items.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if self._items or not block:
            return self.get_nowait()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await_only(asyncio.wait_for(asyncio.shield(waiter), timeout))
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())  # handed over as we gave up: pass it on
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise Empty() from None
            raise


class FairAsyncQueuePool(AsyncAdaptedQueuePool):
    _queue_class = FairQueue


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # No pre-ping (a round trip per checkout on the hot path): a connection that died is
    # invalidated on its first error, and recycled before servers' idle timeouts anyway.
    # LIFO: the most recently returned idle connection goes out next, so light traffic stays on a
    # few warm sessions (prepared statements, PostgreSQL's per-session caches) and the rest idle.
    # Recycled at two minutes: with LIFO the least used connections can sit idle that long, and a
    # middlebox's idle cutoff (load balancers: 4 minutes and up) must not get to them first.
    options: dict[str, Any] = {"pool_recycle": 120}
    if "poolclass" not in kwargs:
        options.update(pool_size=10, max_overflow=20, poolclass=FairAsyncQueuePool, pool_use_lifo=True)
    options.update(kwargs)
    return create_async_engine(asyncpg_url(url), **options)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session inside one transaction: committed on success, rolled back on error."""
    async with sessions() as session, session.begin():
        yield session


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in autocommit: each statement is its own transaction, with no
    BEGIN/COMMIT round trips (single-statement reads and self-contained writes)."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


@asynccontextmanager
async def driver_autocommit(engine: AsyncEngine) -> AsyncIterator[Any]:
    """A pooled connection's asyncpg connection, outside any transaction (each statement its
    own): for a hot statement run many times a second, where SQLAlchemy's execution machinery
    cost more than the statement (~250 against ~140 µs of CPU for the collab log's append). A
    connection whose statement failed in any way (or was cancelled) is invalidated, so the pool
    does not hand a dead or confused one out again (SQLAlchemy never saw the error): a backend
    killed while idle surfaces as a connection error, an AdminShutdown or asyncpg's "another
    operation is in progress", and a reconnect after a rare SQL error costs little."""
    async with engine.connect() as conn:
        fairy = await conn.get_raw_connection()
        try:
            yield fairy.driver_connection
        except BaseException:
            await conn.invalidate()
            raise


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
