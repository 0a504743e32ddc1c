"""Response models of the catalogue routes (docs/API.md §4 Catalogue/Structure).

Most of these bodies are built as JSON by PostgreSQL (server/catalog/queries.py): the fields here
follow those ``json_build_object`` calls one for one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import ConfigDict

from server.schemas import Out, Page

Difficulty = Literal["beginner", "intermediate", "advanced"]
ContentType = Literal["video", "text", "audio", "exercise"]
LessonStatus = Literal["not_started", "in_progress", "completed"]
CollaboratorRole = Literal["editor", "viewer"]


class LanguageOut(Out):
    code: str
    name: str


class TagOut(Out):
    id: uuid.UUID
    name: str
    course_count: int


class AuthorOut(Out):
    clerk_id: str
    name: str | None  # null once the user is deleted (anonymised)


class CourseOut(Out):
    id: uuid.UUID
    title: str
    description: str | None
    difficulty: Difficulty | None
    language: LanguageOut | None
    tags: list[str]
    author: AuthorOut
    is_published: bool
    published_at: datetime | None
    rating_avg: float | None
    rating_count: int
    enrolled_count: int
    lesson_count: int
    created_at: datetime
    updated_at: datetime


class OutlineLesson(Out):
    id: uuid.UUID
    title: str
    content_type: ContentType
    position: int
    status: LessonStatus | None = None  # only for a caller enrolled in the course


class OutlineUnit(Out):
    id: uuid.UUID
    title: str
    position: int
    lessons: list[OutlineLesson]


class OutlineOut(Out):
    course: CourseOut
    units: list[OutlineUnit]


class UnitOut(Out):
    id: uuid.UUID
    course_id: uuid.UUID
    title: str
    description: str | None
    position: int
    created_at: datetime
    updated_at: datetime


class UnitList(Out):
    items: list[UnitOut]


class LessonContent(Out):
    """Stored content (server/catalog/content.py, per ``content_type``) with its rendered ``html``.

    Other keys a client stored are kept and returned as they were (the contract's content is an
    object the client owns beyond these), so this model alone allows extra fields."""

    model_config = ConfigDict(extra="allow")

    body: str
    html: str
    video_url: str | None = None
    audio_url: str | None = None
    media_id: uuid.UUID | None = None
    duration_s: float | None = None
    instructions: str | None = None


class LessonOut(Out):
    id: uuid.UUID
    unit_id: uuid.UUID
    course_id: uuid.UUID
    title: str
    content_type: ContentType
    content: LessonContent
    position: int
    version: str  # the lesson's revision, a decimal string (docs/API.md §3: opaque to clients)
    created_at: datetime
    updated_at: datetime


class LessonSummary(Out):
    id: uuid.UUID
    title: str
    content_type: ContentType
    position: int


class LessonList(Out):
    items: list[LessonSummary]


class CollaboratorOut(Out):
    clerk_id: str
    name: str | None
    role: CollaboratorRole
    created_at: datetime


LanguagePage = Page[LanguageOut]
TagPage = Page[TagOut]
CoursePage = Page[CourseOut]
CollaboratorPage = Page[CollaboratorOut]


# --- live events (channel ``course:<id>``) -----------------------------------------------------


class OutlineEvent(Out):
    """``outline.updated``: the course's units or lessons changed (added, renamed, moved, reordered,
    deleted); clients refetch ``GET /courses/{id}/outline``. A lesson rename carries the lesson's id
    and new title (the outline may show the old title for up to 2 s while a live editing room holds
    the text: the room writes it to the row when it materialises)."""

    course_id: uuid.UUID
    lesson_id: uuid.UUID | None
    title: str | None


EVENTS: dict[str, type[Out]] = {"outline.updated": OutlineEvent}
