"""Bounds on the length in characters of a room's limited text fields, kept from Text events.

pycrdt measures a Text in UTF-8 bytes (O(1)); the limits are in characters, and counting them
is O(n) (``len(str(text))``: 1.8 ms for a 600 KB body, which made every keystroke in a long
CJK lesson cost that twice). The bounds follow each change in O(change): an insert adds its
characters exactly; a delete is counted in bytes, so it removes between a quarter of that and
all of it. Characters also lie between bytes/4 and bytes. An exact count is needed only when
the bounds straddle the limit, and it makes the bounds exact again.

Depends on pycrdt only.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pycrdt import Doc, Text, TextEvent


class CharBounds:
    """Lower and upper bounds of each tracked field's length in characters, for one document.

    :meth:`close` it when the document is let go: pycrdt's ``observe`` stores, inside the Rust
    document, a callback holding the Python ``Doc`` (and here this object, which holds it too), a
    cycle through Rust that Python's collector cannot see. Unclosed, every room ever unloaded or
    rebuilt kept its whole document in memory (the soak's steady RSS growth, ~0.6 MiB a minute)."""

    __slots__ = ("bounds", "doc", "subscriptions")

    def __init__(self, doc: Doc[Any], texts: dict[str, Text]) -> None:
        self.doc = doc
        self.bounds: dict[str, list[int]] = {}
        self.subscriptions: list[tuple[Text, Any]] = []
        for name, text in texts.items():
            size = len(text)
            self.bounds[name] = [(size + 3) // 4, size]
            self.subscriptions.append((text, text.observe(partial(self._changed, name))))

    def close(self) -> None:
        """Drop the observers (idempotent): the document can be freed."""
        subscriptions, self.subscriptions = self.subscriptions, []
        for text, subscription in subscriptions:
            text.unobserve(subscription)

    def _changed(self, name: str, event: TextEvent) -> None:
        bound = self.bounds[name]
        delta: list[dict[str, Any]] = event.delta  # type: ignore[attr-defined]
        for op in delta:
            inserted = op.get("insert")
            if inserted is not None:
                size = len(inserted) if isinstance(inserted, str) else 1
                bound[0] += size
                bound[1] += size
            deleted = op.get("delete")
            if deleted is not None:  # UTF-8 bytes: 1 to 4 per character
                bound[0] -= deleted
                bound[1] -= (deleted + 3) // 4

    def get(self, name: str, text: Text) -> tuple[int, int]:
        """The bounds, narrowed by the byte length (O(1))."""
        bound = self.bounds[name]
        size = len(text)
        bound[0] = max(bound[0], (size + 3) // 4)
        bound[1] = min(bound[1], size)
        return bound[0], bound[1]

    def exact(self, name: str, text: Text) -> int:
        """Count the characters (O(n)) and make the bounds exact."""
        count = len(str(text))
        self.bounds[name] = [count, count]
        return count
