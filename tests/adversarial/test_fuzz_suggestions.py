"""Accepting a suggestion applies exactly its changes (found by the suggestion fuzz target).

``apply`` replayed the spans from the end with a stable sort on their start: an insertion and a
deletion at the same index (allowed: they do not overlap) ran insertion first, and the deletion,
measured on the text before it, then removed the inserted text instead of the original.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from collab import suggestions as s

texts = st.text(alphabet=st.sampled_from("ab é🙂\n"), max_size=12)


def _expected(text: str, changes: list[s.Change]) -> str:
    out, pos = [], 0
    for c in changes:  # sorted, non-overlapping (parse_changes)
        out += [text[pos:c.index], c.insert]
        pos = c.index + c.delete
    return "".join([*out, text[pos:]])


@given(text=texts, data=st.data())
@example(text="abcdef", data=None)
@settings(max_examples=300, derandomize=True, database=None, deadline=None)
def test_apply_equals_applying_to_the_string(text: str, data: Any) -> None:
    if data is None:
        raw = [{"index": 1, "delete": 0, "insert": "X"}, {"index": 1, "delete": 2, "insert": ""}]
    else:
        change = st.fixed_dictionaries({"index": st.integers(0, len(text)), "delete": st.integers(0, 3),
                                        "insert": st.text(alphabet=st.sampled_from("XY🙃"), max_size=2)})
        raw = data.draw(st.lists(change, min_size=1, max_size=3))
    try:
        changes = s.parse_changes(text, raw)
    except s.SuggestionError:
        return
    doc: Doc[Any] = Doc()
    doc["body"] = body = Text()
    body += text
    payload = s.anchor(doc, "body", raw, base_version="1", comment=None)
    assert s.apply(doc, payload) == _expected(text, changes)
