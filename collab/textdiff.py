"""The minimal edit that turns one text into another, in pycrdt's index units."""

from __future__ import annotations

from pycrdt import Text


def utf8_offset(text: str, index: int) -> int:
    """pycrdt indexes ``Text`` in UTF-8 bytes; Python in code points."""
    return len(text[:index].encode("utf-8"))


def common_affixes(old: str, new: str) -> tuple[int, int]:
    """Lengths (in code points) of the common prefix and of the common suffix after it."""
    limit = min(len(old), len(new))
    prefix = 0
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    return prefix, suffix


def apply_text(text: Text, new: str) -> bool:
    """Change ``text`` into ``new`` with one delete and one insert around the common affixes.

    Must run inside a transaction of the text's document. Returns whether anything changed.
    """
    old = str(text)
    if old == new:
        return False
    prefix, suffix = common_affixes(old, new)
    start = utf8_offset(old, prefix)
    old_end = utf8_offset(old, len(old) - suffix)
    inserted = new[prefix:len(new) - suffix]
    if old_end > start:
        del text[start:old_end]
    if inserted:
        text.insert(start, inserted)
    return True
