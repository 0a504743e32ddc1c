"""Pure CRDT logic of suggested edits and version restore, on real pycrdt documents."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from collab import suggestions, versions

ALPHABET = "ab \n😀é中𝄞"


def new_doc(body: str, title: str = "T") -> Doc:
    doc: Doc = Doc()
    doc.get("title", type=Text).insert(0, title)
    doc.get("body", type=Text).insert(0, body)
    return doc


def peer_of(doc: Doc) -> Doc:
    peer: Doc = Doc()
    peer.apply_update(doc.get_update())
    return peer


def sync(a: Doc, b: Doc) -> None:
    a.apply_update(b.get_update(a.get_state()))
    b.apply_update(a.get_update(b.get_state()))


def insert_cp(doc: Doc, index: int, value: str, field: str = "body") -> None:
    text = doc.get(field, type=Text)
    text.insert(suggestions.utf8_offset(str(text), index), value)


def delete_cp(doc: Doc, start: int, end: int, field: str = "body") -> None:
    text = doc.get(field, type=Text)
    cur = str(text)
    del text[suggestions.utf8_offset(cur, start):suggestions.utf8_offset(cur, end)]


def test_emoji_positions_are_code_points() -> None:
    doc = new_doc("Hi 😀 there 𝄞 end")
    payload = suggestions.anchor(doc, "body", [{"index": 5, "delete": 5, "insert": "🎉you"},
                                               {"index": 13, "delete": 0, "insert": "!"}],
                                 base_version="3", comment="nicer")
    assert [c["original"] for c in payload["changes"]] == ["there", ""]
    assert payload["field"] == "body" and payload["base_version"] == "3" and payload["comment"] == "nicer"
    assert suggestions.apply(doc, payload) == "Hi 😀 🎉you 𝄞 !end"


def test_accept_keeps_concurrent_edits_elsewhere() -> None:
    server = new_doc("The quick brown fox 😀 jumps")
    payload = suggestions.anchor(server, "body", [{"index": 10, "delete": 5, "insert": "red"}],
                                 base_version="1", comment=None)
    editor = peer_of(server)
    insert_cp(editor, 0, "中文 ")        # before the span: shifts it
    insert_cp(editor, len(str(editor.get("body", type=Text))), " high")  # after it
    insert_cp(editor, 18, "!")          # right after "brown", outside the span
    sync(server, editor)
    assert suggestions.apply(server, payload) == "中文 The quick red! fox 😀 jumps high"
    sync(server, editor)
    assert str(editor.get("body", type=Text)) == str(server.get("body", type=Text))


def test_changed_span_conflicts_with_current_span_and_changes_nothing() -> None:
    server = new_doc("one two three")
    payload = suggestions.anchor(server, "body", [{"index": 4, "delete": 3, "insert": "2"}],
                                 base_version="1", comment=None)
    editor = peer_of(server)
    delete_cp(editor, 4, 7)
    insert_cp(editor, 4, "TWO")
    sync(server, editor)
    with pytest.raises(suggestions.AnchorConflict) as info:
        suggestions.apply(server, payload)
    assert info.value.current_text == "TWO"
    assert str(server.get("body", type=Text)) == "one TWO three"


def test_out_of_range_and_overlap_are_refused() -> None:
    doc = new_doc("abc😀")
    with pytest.raises(suggestions.SuggestionError) as info:
        suggestions.anchor(doc, "body", [{"index": 5, "delete": 0, "insert": "x"}], base_version="1", comment=None)
    assert info.value.loc[-1] == "index"
    with pytest.raises(suggestions.SuggestionError):
        suggestions.anchor(doc, "body", [{"index": 3, "delete": 2, "insert": ""}], base_version="1", comment=None)
    with pytest.raises(suggestions.SuggestionError):
        suggestions.anchor(doc, "body", [{"index": 0, "delete": 2, "insert": "x"},
                                         {"index": 1, "delete": 1, "insert": "y"}], base_version="1", comment=None)
    # index == len is fine (append), and the whole emoji is one position
    payload = suggestions.anchor(doc, "body", [{"index": 4, "delete": 0, "insert": "!"},
                                               {"index": 3, "delete": 1, "insert": "🙂"}], base_version="1",
                                 comment=None)
    assert suggestions.apply(doc, payload) == "abc🙂!"


def test_title_field_and_reset_document_falls_back_to_text() -> None:
    doc = new_doc("body", title="Old title")
    payload = suggestions.anchor(doc, "title", [{"index": 0, "delete": 3, "insert": "New"}],
                                 base_version="1", comment=None)
    other = new_doc("body", title="Old title")  # unrelated history, same text
    assert suggestions.apply(other, payload) == "New title"


@settings(max_examples=150, deadline=None)
@given(
    base=st.text(ALPHABET, min_size=6, max_size=30),
    data=st.data(),
)
def test_random_concurrent_edits_outside_the_span_survive(base: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(base) - 2))
    end = data.draw(st.integers(start + 1, min(len(base), start + 4)))
    insert = data.draw(st.text(ALPHABET, max_size=4))
    server = new_doc(base)
    payload = suggestions.anchor(server, "body", [{"index": start, "delete": end - start, "insert": insert}],
                                 base_version="1", comment=None)
    editor = peer_of(server)
    # model: left part, span, right part; edits only strictly outside the span
    left, span, right = base[:start], base[start:end], base[end:]
    for _ in range(data.draw(st.integers(1, 4))):
        value = data.draw(st.text(ALPHABET, min_size=1, max_size=3))
        if data.draw(st.booleans()) and left:
            k = data.draw(st.integers(0, len(left) - 1))
            if data.draw(st.booleans()):
                insert_cp(editor, k, value)
                left = left[:k] + value + left[k:]
            else:
                delete_cp(editor, k, k + 1)
                left = left[:k] + left[k + 1:]
        else:
            # strictly after the span's last character: at least one character into `right`
            pos = data.draw(st.integers(1, len(right))) if right else 0
            if not right:
                continue
            insert_cp(editor, len(left) + len(span) + pos, value)
            right = right[:pos] + value + right[pos:]
        assert str(editor.get("body", type=Text)) == left + span + right
    sync(server, editor)
    assert suggestions.apply(server, payload) == left + insert + right
    sync(server, editor)
    assert str(editor.get("body", type=Text)) == left + insert + right


@settings(max_examples=150, deadline=None)
@given(current=st.text(ALPHABET, max_size=40), target=st.text(ALPHABET, max_size=40))
def test_restore_makes_the_text_equal_with_minimal_edits(current: str, target: str) -> None:
    doc = new_doc(current)
    versions.set_text(doc, "body", target)
    assert str(doc.get("body", type=Text)) == target


def test_restore_preserves_a_concurrent_edit_and_shared_text() -> None:
    server = new_doc("Intro 😀\nMiddle part\nOutro", title="v2 title")
    editor = peer_of(server)
    edits = versions.diff(str(server.get("body", type=Text)), "Intro 😀\nMiddle\nOutro")
    assert edits == [versions.Edit(14, 19, "")]  # only " part" goes
    versions.restore(server, title="v1 title", body="Intro 😀\nMiddle\nOutro")
    insert_cp(editor, len("Intro 😀\nMiddle part\nOutro"), " (edited)")  # typed concurrently at the end
    sync(server, editor)
    expected = "Intro 😀\nMiddle\nOutro (edited)"
    assert str(server.get("body", type=Text)) == expected == str(editor.get("body", type=Text))
    assert str(editor.get("title", type=Text)) == "v1 title"


def test_rebase_from_the_row_text_onto_a_live_text_that_moved_on() -> None:
    seen = "alpha beta 😀 gamma"
    live = "Zero alpha beta 😀 gamma delta"
    changes = suggestions.parse_changes(seen, [{"index": 6, "delete": 4, "insert": "BETA"},
                                               {"index": 13, "delete": 0, "insert": "!"}])
    rebased = suggestions.rebase(seen, live, changes)
    assert rebased == [{"index": 11, "delete": 4, "insert": "BETA"}, {"index": 18, "delete": 0, "insert": "!"}]
    # The live text changed the very span: no rebase (the client gets a 409 with the live text).
    assert suggestions.rebase(seen, "alpha BETTA 😀 gamma", changes) is None
    # Something typed exactly where an insertion goes is ambiguous: refuse.
    assert suggestions.rebase(seen, "alpha beta 😀 ?gamma", changes) is None


def test_an_anchored_span_deleted_entirely_conflicts_with_empty_text() -> None:
    server = new_doc("keep this; drop that")
    payload = suggestions.anchor(server, "body", [{"index": 16, "delete": 4, "insert": "THAT"}],
                                 base_version="1", comment=None)
    delete_cp(server, 10, 20)
    with pytest.raises(suggestions.AnchorConflict) as info:
        suggestions.apply(server, payload)
    assert info.value.current_text == ""
    assert str(server.get("body", type=Text)) == "keep this;"
