"""Restoring a lesson version as a minimal CRDT change (pure logic on a ``pycrdt.Doc``).

The difference between the field's current text and the version's text is computed on code
points with :mod:`difflib` and applied as Y.Text delete/insert operations (converted to pycrdt's
UTF-8 byte offsets), last hunk first, inside the caller's transaction. Text that both share is
never touched, so connected editors' cursors and concurrent edits elsewhere survive; nothing is
reset.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Text


@dataclass(frozen=True)
class Edit:
    start: int  # code points in the current text
    end: int
    insert: str


def diff(current: str, target: str) -> list[Edit]:
    """Minimal-ish edits turning ``current`` into ``target`` (ascending, non-overlapping)."""
    if current == target:
        return []
    # Trim the common prefix and suffix first: cheap, and keeps difflib's work small.
    prefix = 0
    limit = min(len(current), len(target))
    while prefix < limit and current[prefix] == target[prefix]:
        prefix += 1
    suffix = 0
    while (suffix < limit - prefix and current[len(current) - 1 - suffix] == target[len(target) - 1 - suffix]):
        suffix += 1
    a = current[prefix:len(current) - suffix]
    b = target[prefix:len(target) - suffix]
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    edits: list[Edit] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            edits.append(Edit(prefix + i1, prefix + i2, b[j1:j2]))
    return edits


def apply_edits(text: Text, current: str, edits: list[Edit]) -> None:
    """Apply ``edits`` (positions in ``current``, code points) to ``text``, last first."""
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        start = len(current[:edit.start].encode("utf-8"))
        end = len(current[:edit.end].encode("utf-8"))
        if end > start:
            del text[start:end]
        if edit.insert:
            text.insert(start, edit.insert)


def set_text(doc: Doc[Any], field: str, target: str) -> int:
    """Make ``doc``'s Y.Text ``field`` read ``target`` with minimal operations; how many edits."""
    with doc.transaction():
        text = doc.get(field, type=Text)
        current = str(text)
        edits = diff(current, target)
        apply_edits(text, current, edits)
        return len(edits)


def restore(doc: Doc[Any], *, title: str, body: str) -> int:
    """Bring ``title`` and ``body`` back to a version's text in one transaction; edits made."""
    with doc.transaction():
        return set_text(doc, "title", title) + set_text(doc, "body", body)
