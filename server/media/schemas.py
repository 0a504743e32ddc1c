"""Response models of lesson media (published in /openapi.json)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from server.schemas import Out


class MediaOut(Out):
    """An uploaded file (``url`` is ``/media/<name>``) or a linked external URL."""

    id: uuid.UUID
    lesson_id: uuid.UUID
    url: str
    media_type: Literal["image", "audio", "video", "document", "link"]
    mime_type: str | None
    size_bytes: int | None
    created_at: datetime


class LessonRef(Out):
    id: uuid.UUID
    title: str


class CourseMediaOut(MediaOut):
    """A media item of a course's library: the lesson it was added to and the lessons whose body
    references its ``url``."""

    lesson_title: str
    used_in: list[LessonRef]
