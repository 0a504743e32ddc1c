"""The rows a flush writes to a lesson's log (collab.persistence.log_rows): a writer's consecutive
updates of one lesson share a row, nothing else changes, and the log replays to the same text."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pycrdt import Doc, Text

import collab.room as room_module
from collab.persistence import log_rows
from collab.room import MERGE_MAX_UPDATES, replay
from collab.store import PendingUpdate

A, B = str(uuid.uuid4()), str(uuid.uuid4())


class Writer:
    """A client typing into a shared document: each call is one update, as a keystroke sends."""

    def __init__(self, doc: Doc[Any]) -> None:
        self.doc = doc

    def type(self, text: str) -> bytes:
        before = self.doc.get_state()
        body = self.doc.get("body", type=Text)
        body.insert(len(body), text)
        return self.doc.get_update(before)


def body_of(updates: list[bytes]) -> str:
    doc = replay(updates)
    assert doc is not None
    return str(doc.get("body", type=Text))


def test_a_writers_run_shares_a_row_and_another_writer_ends_it() -> None:
    shared: Doc[Any] = Doc()  # ann and bob type into one document, in turn
    ann, bob = Writer(shared), Writer(shared)
    other = Writer(Doc())  # lesson B, in between
    batch = [PendingUpdate(A, ann.type("a1 "), "ann"), PendingUpdate(B, other.type("x "), "ann"),
             PendingUpdate(A, ann.type("a2 "), "ann"), PendingUpdate(A, bob.type("b1 "), "bob"),
             PendingUpdate(A, ann.type("a3 "), "ann"), PendingUpdate(A, ann.type("a4 "), "ann")]
    rows = log_rows(batch)
    assert [(row.lesson_id, row.actor) for row in rows] == [(A, "ann"), (B, "ann"), (A, "bob"), (A, "ann")]
    lesson_a = [row.update for row in rows if row.lesson_id == A]
    # each row after the rows it builds on: replayed in order, the same text
    assert body_of(lesson_a) == body_of([item.update for item in batch if item.lesson_id == A]) == "a1 a2 b1 a3 a4 "


def test_rows_are_bounded_in_updates_and_a_batch_without_runs_is_written_as_it_came() -> None:
    writer = Writer(Doc())
    batch = [PendingUpdate(A, writer.type(f"{i} "), "ann") for i in range(MERGE_MAX_UPDATES + 1)]
    rows = log_rows(batch)
    assert len(rows) == 2
    assert body_of([row.update for row in rows]) == "".join(f"{i} " for i in range(MERGE_MAX_UPDATES + 1))
    alone = [PendingUpdate(A, b"\x00\x00", "ann"), PendingUpdate(B, b"\x00\x00", "ann")]
    assert log_rows(alone) is alone


def test_a_run_that_does_not_merge_is_written_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    class PanicException(BaseException):
        pass

    def panics(*updates: bytes) -> bytes:
        raise PanicException("merge panicked")

    monkeypatch.setattr(room_module, "merge_updates", panics)
    writer = Writer(Doc())
    batch = [PendingUpdate(A, writer.type("a"), "ann"), PendingUpdate(A, writer.type("b"), "ann")]
    assert log_rows(batch) == batch


def test_updates_of_a_lesson_other_nodes_write_keep_a_row_each() -> None:
    writer = Writer(Doc())
    relayed = [PendingUpdate(A, writer.type(f"{i} "), "ann", mergeable=False) for i in range(3)]
    after = [PendingUpdate(A, writer.type(f"{i} "), "ann") for i in range(3, 6)]  # alone again
    rows = log_rows(relayed + after)
    assert rows[:3] == relayed and len(rows) == 4
    assert body_of([row.update for row in rows]) == "0 1 2 3 4 5 "
