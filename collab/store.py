"""What the rooms need from storage, as a small interface the server implements (PostgreSQL);
no dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PendingUpdate:
    """One update to append to a lesson's log; ``actor`` is the writer's clerk id (None: server).
    ``mergeable``: it may share a row with the same writer's next updates (collab.persistence
    .log_rows); not one of a lesson other nodes also write, whose log may need replaying update by
    update (a row that breaks the document on load is skipped whole: room.replay_skipping)."""

    lesson_id: str
    update: bytes
    actor: str | None
    mergeable: bool = True


@dataclass(frozen=True)
class LoadedDocument:
    """A lesson's stored document: the snapshot (if any) first, then log entries in id order."""

    updates: list[bytes]
    log_rows: int
    # The lesson row's title and body when the document was read (None: not known). A room whose
    # text equals them has nothing to materialise until it changes (no lease, no query for it).
    stored_text: tuple[str, str] | None = None


class LessonGone(LookupError):
    """The lesson does not exist (any more)."""


@dataclass(frozen=True)
class Fence:
    """A lease on a lesson's shared-row duties: the holding node and its fencing token."""

    node: str
    token: int


class StaleLease(RuntimeError):
    """A fenced write found its lease lost (expired, or taken by another node): nothing written."""


@dataclass(frozen=True)
class LeaseAnswer:
    """The answer to a lease request: the token when granted, else how long the holder's lasts."""

    token: int | None
    remaining: float = 0.0
    previous: str | None = None  # who held it before (granted): another node's lease was taken over


# Compaction's merge: the stored updates (snapshot first) -> (merged update, its state vector).
# Awaited: the merge of a log runs in a worker process (collab/persistence.py), never on the loop.
Merge = Callable[[list[bytes]], Awaitable[tuple[bytes, bytes]]]


class Store(Protocol):
    async def load(self, lesson_id: str, seed: Callable[[str, str], bytes]) -> LoadedDocument:
        """The stored document; a lesson without one is first seeded, exactly once across nodes,
        with ``seed(title, body)`` written as the first log entry. Raises :class:`LessonGone`."""
        ...

    async def append(self, batch: Sequence[PendingUpdate]) -> None:
        """Append updates of any lessons to their logs, in one statement."""
        ...

    async def compact(self, lesson_id: str, merge: Merge, *, fence: Fence | None = None) -> int:
        """Merge the snapshot and the log rows read into a new snapshot (``merge`` returns the
        merged update and its state vector, computed off the event loop), deleting exactly the
        rows merged. Returns how many.
        A ``fence`` (see :class:`LeaseStore`) is checked first."""
        ...

    async def materialise(self, lesson_id: str, title: str, body: str, *, fence: Fence | None = None) -> bool:
        """Write the text into the lesson row (bumping its revision) when it differs."""
        ...

    async def record_version(self, lesson_id: str, *, title: str, body: str, state: bytes,
                             contributors: list[str], reason: str, fence: Fence | None = None) -> str:
        """Record a version; returns its id."""
        ...


class LeaseStore(Protocol):
    """Leases on lessons' shared-row duties (a store of several nodes; see ``PgLeases``). A write
    given a ``fence`` above raises :class:`StaleLease` unless that lease is still the valid one,
    checked in the write's own transaction."""

    async def acquire_lease(self, lesson_id: str, node: str, ttl: float) -> LeaseAnswer:
        """Take (or keep) the lease of ``lesson_id`` for ``ttl`` seconds unless another node holds
        a valid one. Raises :class:`LessonGone`."""
        ...

    async def renew_leases(self, node: str, held: dict[str, int], ttl: float) -> set[str]:
        """Extend the still-valid leases of ``held`` (lesson id -> token); the lessons renewed."""
        ...

    async def release_lease(self, lesson_id: str, fence: Fence) -> None:
        """Give the lease up now (another node may take it at once)."""
        ...
