"""Suggested edits anchored to a lesson's CRDT document (pure logic on a ``pycrdt.Doc``).

A suggestion is a list of ``changes`` ``{index, delete, insert}`` counted in Unicode code points
(Python ``str``) against the text of one field (``"title"`` or ``"body"``) as its author saw it.
All indexes refer to that same base text (not to the text after the previous change); the
changes must not overlap.

Anchoring. pycrdt's Text positions are UTF-8 byte offsets, and its ``StickyIndex`` does not
convert offsets for non-BMP text (y-crdt/pycrdt#382: wrong positions and panics with emoji), so
the anchor here is the CRDT state itself: at creation we store the document's encoded state
(``anchor.state``, base64 of a Yjs v1 update). On accept, a scratch document is loaded from that
state and the live document's changes since then (``doc.get_update(scratch_state_vector)``) are
applied to it; the resulting Y.Text delta (retain/delete/insert, in UTF-8 byte units) is exactly
what happened to the field since creation, as the CRDT merged it. Each span is carried through
that delta like a sticky index (start sticks to the character after it, end to the character
before it), then verified: if the span's text is no longer what it was, :class:`AnchorConflict`
carries the span as it is now. All changes are applied in one transaction, from the last to the
first, as Y.Text delete/insert operations, so concurrent edits elsewhere are preserved.

Depends on pycrdt only.
"""

from __future__ import annotations

import base64
import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pycrdt import Doc, Text, TextEvent

FIELDS = ("title", "body")
ANCHOR_KIND = "yjs-state-v1"
# The same state, zlib-compressed before base64: every suggestion stores the whole document, and a
# lesson's state (mostly its text) shrinks several times over. Rows of the older kind still resolve.
ANCHOR_KIND_ZLIB = "yjs-state-v1+zlib"


class SuggestionError(ValueError):
    """A change list that does not fit the text: ``loc`` names the offending field."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


class AnchorConflict(Exception):
    """The anchored text of a change was modified since the suggestion was made."""

    def __init__(self, current_text: str, change: int) -> None:
        super().__init__("the suggested span changed since the suggestion was made")
        self.current_text = current_text
        self.change = change


@dataclass(frozen=True)
class Change:
    index: int
    delete: int
    insert: str


def utf8_offset(text: str, index: int) -> int:
    """Code-point ``index`` into ``text`` → the UTF-8 byte offset pycrdt's Text expects."""
    return len(text[:index].encode("utf-8"))


def field_text(doc: Doc[Any], field: str) -> Text:
    text: Text = doc.get(field, type=Text)
    return text


def parse_changes(text: str, raw: Sequence[dict[str, Any]]) -> list[Change]:
    """Validate ``raw`` against ``text`` (code points); sorted, non-overlapping, in range."""
    if not raw:
        raise SuggestionError(["body", "changes"], "at least one change is required")
    changes: list[tuple[int, Change]] = []
    for n, item in enumerate(raw):
        index, delete, insert = item.get("index"), item.get("delete", 0), item.get("insert", "")
        loc: list[str | int] = ["body", "changes", n]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise SuggestionError([*loc, "index"], "must be a non-negative integer")
        if not isinstance(delete, int) or isinstance(delete, bool) or delete < 0:
            raise SuggestionError([*loc, "delete"], "must be a non-negative integer")
        if not isinstance(insert, str):
            raise SuggestionError([*loc, "insert"], "must be a string")
        if index > len(text):
            raise SuggestionError([*loc, "index"], f"is past the end of the text (length {len(text)})")
        if index + delete > len(text):
            raise SuggestionError([*loc, "delete"], f"runs past the end of the text (length {len(text)})")
        if delete == 0 and insert == "":
            raise SuggestionError(loc, "a change must delete or insert something")
        changes.append((n, Change(index, delete, insert)))
    changes.sort(key=lambda c: (c[1].index, c[1].index + c[1].delete))
    for (_, prev), (n, cur) in itertools.pairwise(changes):
        if cur.index < prev.index + prev.delete or (cur.index == prev.index and prev.delete == 0 == cur.delete):
            raise SuggestionError(["body", "changes", n], "changes overlap")
    return [c for _, c in changes]


def anchor(doc: Doc[Any], field: str, raw_changes: Sequence[dict[str, Any]], *, base_text: str | None = None,
           base_version: str, comment: str | None) -> dict[str, Any]:
    """Anchor ``raw_changes`` (against the field's current text in ``doc``) → ``payload`` JSON.

    ``base_text``, when given, must equal the field's text in ``doc`` (the caller's view).
    """
    if field not in FIELDS:
        raise SuggestionError(["body", "field"], "must be 'title' or 'body'")
    text = str(field_text(doc, field))
    if base_text is not None and base_text != text:
        raise ValueError("base_text differs from the document")
    changes = parse_changes(text, raw_changes)
    return {
        "field": field,
        "base_version": base_version,
        "comment": comment,
        "changes": [
            {"index": c.index, "delete": c.delete, "insert": c.insert,
             "original": text[c.index:c.index + c.delete]}
            for c in changes
        ],
        "anchor": {"kind": ANCHOR_KIND_ZLIB,
                   "state": base64.b64encode(zlib.compress(doc.get_update(), 6)).decode("ascii")},
    }


# --- carrying positions through what happened since ---------------------------------------------

Op = tuple[Literal["retain", "delete", "insert"], int, str]  # (kind, code points, inserted text)


def _delta_in_code_points(base: str, delta: list[dict[str, Any]]) -> list[Op] | None:
    """pycrdt's delta (UTF-8 byte counts) → the same ops in code points; None if it doesn't fit."""
    raw = base.encode("utf-8")
    pos = 0
    ops: list[Op] = []
    for op in delta:
        if "insert" in op:
            value = op["insert"]
            if not isinstance(value, str):
                return None  # embeds are not part of our documents
            ops.append(("insert", len(value), value))
            continue
        kind: Literal["retain", "delete"] = "retain" if "retain" in op else "delete"
        n = int(op[kind])
        try:
            chunk = raw[pos:pos + n].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if len(chunk.encode("utf-8")) != n:
            return None
        ops.append((kind, len(chunk), ""))
        pos += n
    return ops


def _apply_ops(base: str, ops: list[Op]) -> str:
    out: list[str] = []
    pos = 0
    for kind, n, value in ops:
        if kind == "insert":
            out.append(value)
        elif kind == "retain":
            out.append(base[pos:pos + n])
            pos += n
        else:
            pos += n
    out.append(base[pos:])
    return "".join(out)


def map_position(ops: list[Op], p: int, *, stick: Literal["after", "before"]) -> int:
    """Where base position ``p`` is now. ``after``: insertions made exactly at ``p`` end up before
    it (it sticks to the character that followed it); ``before``: they end up after it."""
    old = new = 0
    for kind, n, _ in ops:
        if kind == "insert":
            if old < p or (old == p and stick == "after"):
                new += n
                continue
            return new
        if p < old + n:
            return new + (p - old) if kind == "retain" else new
        old += n
        if kind == "retain":
            new += n
    return new + (p - old)


@dataclass(frozen=True)
class Resolved:
    start: int  # code points in the current text
    end: int
    insert: str


def _delta_since(doc: Doc[Any], field: str, state: bytes) -> tuple[str, list[dict[str, Any]] | None]:
    """The field's text in the anchored state, and the delta from it to ``doc``'s text now."""
    scratch: Doc[Any] = Doc()
    scratch.apply_update(state)
    text = field_text(scratch, field)
    base = str(text)
    deltas: list[list[dict[str, Any]]] = []

    def on_change(event: TextEvent) -> None:
        deltas.append(list(getattr(event, "delta")))  # noqa: B009 (untyped in pycrdt)

    subscription = text.observe(on_change)
    try:
        scratch.apply_update(doc.get_update(scratch.get_state()))
    finally:
        text.unobserve(subscription)
    if len(deltas) > 1:  # one update is one transaction, so one event; never compose guesses
        return base, None
    return base, deltas[0] if deltas else []


def resolve(doc: Doc[Any], payload: dict[str, Any]) -> list[Resolved]:
    """Where each anchored change applies in ``doc`` now; :class:`AnchorConflict` if its text changed."""
    field = payload["field"]
    current = str(field_text(doc, field))
    changes = payload["changes"]
    ops: list[Op] | None = None
    anchor_data = payload.get("anchor") or {}
    if anchor_data.get("kind") in (ANCHOR_KIND, ANCHOR_KIND_ZLIB):
        state = base64.b64decode(anchor_data["state"])
        if anchor_data["kind"] == ANCHOR_KIND_ZLIB:
            state = zlib.decompress(state)
        base, delta = _delta_since(doc, field, state)
        ops = None if delta is None else _delta_in_code_points(base, delta)
        if ops is not None and _apply_ops(base, ops) != current:
            ops = None  # the anchored state is not an ancestor of this document (e.g. it was reset)
    # Positions in the anchored state (``anchor.positions``) when they differ from the ones shown.
    positions = anchor_data.get("positions") or changes
    resolved: list[Resolved] = []
    for n, change in enumerate(changes):
        original: str = change["original"]
        start_old, end_old = positions[n]["index"], positions[n]["index"] + positions[n]["delete"]
        if ops is None:
            # Not anchorable: accept only if the text at the original place is unchanged.
            start, end = start_old, end_old
            if current[start:end] != original or end > len(current):
                raise AnchorConflict(current[start:end], n)
        else:
            start = map_position(ops, start_old, stick="after")
            end = start if end_old == start_old else max(start, map_position(ops, end_old, stick="before"))
            if current[start:end] != original:
                # Report the span with whatever was typed at its edges (e.g. a replacement of it).
                outer_start = map_position(ops, start_old, stick="before")
                outer_end = map_position(ops, end_old, stick="after")
                raise AnchorConflict(current[outer_start:outer_end], n)
        resolved.append(Resolved(start, end, change["insert"]))
    return resolved


def apply(doc: Doc[Any], payload: dict[str, Any]) -> str:
    """Resolve and apply every change of ``payload`` to ``doc`` in one transaction; the new text.

    Raises :class:`AnchorConflict` before changing anything if an anchored span changed.
    """
    with doc.transaction():
        text = field_text(doc, payload["field"])
        spans = resolve(doc, payload)
        current = str(text)
        # From the end, and at one index the deletion before the insertion: offsets are measured
        # on the text before any change, so an insertion made first would be what gets deleted.
        for span in sorted(spans, key=lambda s: (s.start, s.end), reverse=True):
            b_start, b_end = utf8_offset(current, span.start), utf8_offset(current, span.end)
            if b_end > b_start:
                del text[b_start:b_end]
            if span.insert:
                text.insert(b_start, span.insert)
        return str(text)


# --- rebasing from the text the client saw onto the live text -----------------------------------


def ops_between(old: str, new: str) -> list[Op]:
    """A code-point delta turning ``old`` into ``new`` (minimal diff, bounded work: see
    :func:`collab.versions.diff`)."""
    from collab.versions import diff

    ops: list[Op] = []
    pos = 0
    for edit in diff(old, new):
        if edit.start > pos:
            ops.append(("retain", edit.start - pos, ""))
        if edit.end > edit.start:
            ops.append(("delete", edit.end - edit.start, ""))
        if edit.insert:
            ops.append(("insert", len(edit.insert), edit.insert))
        pos = edit.end
    return ops


def rebase(seen: str, live: str, changes: list[Change], *, ops: list[Op] | None = None) -> list[dict[str, Any]] | None:
    """Carry ``changes`` made against ``seen`` onto ``live`` (the live document moved on before
    the lesson row caught up). None if a change touches text that differs between the two.

    ``ops``: ``ops_between(seen, live)`` if the caller computed it already (off the event loop).
    """
    if seen == live:
        return [{"index": c.index, "delete": c.delete, "insert": c.insert} for c in changes]
    if ops is None:
        ops = ops_between(seen, live)
    out: list[dict[str, Any]] = []
    for c in changes:
        start = map_position(ops, c.index, stick="after")
        end = start if c.delete == 0 else max(start, map_position(ops, c.index + c.delete, stick="before"))
        if live[start:end] != seen[c.index:c.index + c.delete]:
            return None
        if c.delete == 0 and (map_position(ops, c.index, stick="before") != start):
            return None  # something was typed exactly where the insertion goes: ambiguous
        out.append({"index": start, "delete": end - start, "insert": c.insert})
    return out
