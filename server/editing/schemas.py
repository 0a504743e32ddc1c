"""Response models of the version history and suggested-edit routes (docs/API.md §5, §6)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from server.schemas import Out, Page


class VersionItem(Out):
    id: uuid.UUID
    created_at: datetime
    contributors: list[str]  # clerk ids of who edited since the previous version
    reason: str  # why it was recorded: "periodic", "restore", ...


class VersionPage(Page[VersionItem]):
    pass


class VersionDetail(VersionItem):
    lesson_id: uuid.UUID
    title: str
    body: str


class Restored(Out):
    restored: uuid.UUID  # the version restored
    saved_version_id: uuid.UUID | None  # the text before, saved as a version (null: nothing new to save)
    edits: int  # changes applied to the live document
    title: str
    body: str


class SuggestedChange(Out):
    index: int
    delete: int
    insert: str
    original: str | None  # the text the change replaces, as it was when suggested


class Suggestion(Out):
    id: uuid.UUID
    lesson_id: uuid.UUID
    user_id: str
    status: Literal["open", "accepted", "rejected", "withdrawn"]
    field: Literal["title", "body"] | None
    base_version: str | None
    comment: str | None
    changes: list[SuggestedChange]
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime
    user_name: str | None = None  # the suggester's display name (in lists of a lesson's suggestions)


class SuggestionPage(Page[Suggestion]):
    pass


class MySuggestion(Suggestion):
    """One of my suggestions, with where it is (for a list across lessons)."""

    lesson_title: str
    course_id: uuid.UUID
    course_title: str


class MySuggestionPage(Page[MySuggestion]):
    pass


class Decided(Suggestion):
    """The suggestion after ``accept`` / ``reject`` / ``withdraw``; ``text``: the field's live
    text once an accepted suggestion is applied (absent otherwise)."""

    text: str | None = None
