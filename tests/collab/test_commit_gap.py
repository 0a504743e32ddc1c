"""While a "saved" answer or another node waits, the update log is committed at once but at most
once per ``COLLAB_COMMIT_GAP_MS`` (collab.persistence.Persistence.commit_gap): the first update
of a quiet spell is committed at once, the updates of a busy spell share the next commit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from pycrdt import Doc, Text

from collab import protocol as p
from collab.persistence import Persistence
from collab.store import PendingUpdate

LESSON = "00000000-0000-0000-0000-000000000001"


class _Log:
    """A store that only records its commits: (when, updates)."""

    def __init__(self) -> None:
        self.commits: list[tuple[float, list[bytes]]] = []
        self.committed = asyncio.Event()

    async def append(self, batch: Sequence[PendingUpdate]) -> None:
        self.commits.append((time.monotonic(), [item.update for item in batch]))
        self.committed.set()


def _updates(count: int) -> list[bytes]:
    """``count`` real document updates (the relay merges a commit's into one frame)."""
    doc: Doc = Doc()
    text = doc.get("body", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for n in range(count):
        text += f"{n} "
    return updates


async def _next_commit(log: _Log) -> tuple[float, list[bytes]]:
    await asyncio.wait_for(log.committed.wait(), 5)
    log.committed.clear()
    return log.commits[-1]


async def test_a_busy_spell_shares_one_commit_per_gap_and_a_lone_update_is_committed_at_once() -> None:
    log = _Log()
    gap = 0.2
    persistence = Persistence(log, flush_interval=60.0, compact_threshold=500,  # type: ignore[arg-type]
                              commit_gap=gap)
    relayed: list[bytes] = []
    persistence.on_relay = lambda _lesson, frame: relayed.append(frame)
    updates = _updates(12)

    def queue(n: int) -> None:
        persistence.queue_relayed(PendingUpdate(LESSON, updates[n], None, mergeable=False),
                                  p.update_frame(updates[n]))

    task = asyncio.create_task(persistence.flush_forever())
    try:
        started = time.monotonic()
        queue(0)
        first_at, first = await _next_commit(log)
        assert first == updates[:1]
        assert first_at - started < gap / 2  # the flush interval (60 s) is not waited for

        for n in range(1, 11):  # ten updates inside one gap: one commit, after the gap
            queue(n)
            await asyncio.sleep(0)
        second_at, second = await _next_commit(log)
        assert second == updates[1:11]  # (relayed: a row each, see collab.persistence.log_rows)
        assert second_at - first_at >= gap * 0.95
        assert persistence.persisted == persistence.enqueued == 11
        assert len(log.commits) == 2
        assert len(relayed) == 2  # each commit's updates go to the other nodes as one frame

        await asyncio.sleep(gap)  # quiet again: the next lone update goes at once
        quiet = time.monotonic()
        queue(11)
        third_at, third = await _next_commit(log)
        assert third == updates[11:] and third_at - quiet < gap / 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
