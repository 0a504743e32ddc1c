"""What the rooms need from storage, as a small interface the server implements (PostgreSQL);
no dependencies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PendingUpdate:
    """One update to append to a lesson's log; ``actor`` is the writer's clerk id (None: server)."""

    lesson_id: str
    update: bytes
    actor: str | None


@dataclass(frozen=True)
class LoadedDocument:
    """A lesson's stored document: the snapshot (if any) first, then log entries in id order."""

    updates: list[bytes]
    log_rows: int


class LessonGone(LookupError):
    """The lesson does not exist (any more)."""


class Store(Protocol):
    async def load(self, lesson_id: str, seed: Callable[[str, str], bytes]) -> LoadedDocument:
        """The stored document; a lesson without one is first seeded, exactly once across nodes,
        with ``seed(title, body)`` written as the first log entry. Raises :class:`LessonGone`."""
        ...

    async def append(self, batch: Sequence[PendingUpdate]) -> None:
        """Append updates of any lessons to their logs, in one statement."""
        ...

    async def compact(self, lesson_id: str, merge: Callable[[list[bytes]], tuple[bytes, bytes]]) -> int:
        """Merge the snapshot and the log rows read into a new snapshot (``merge`` returns the
        merged update and its state vector), deleting exactly the rows merged. Returns how many."""
        ...

    async def materialise(self, lesson_id: str, title: str, body: str) -> bool:
        """Write the text into the lesson row (bumping its revision) when it differs."""
        ...

    async def record_version(self, lesson_id: str, *, title: str, body: str, state: bytes,
                             contributors: list[str], reason: str) -> str:
        """Record a version; returns its id."""
        ...
