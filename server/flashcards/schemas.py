"""Response models of flashcard sets, cards, reviews and stats (published in /openapi.json)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from server.schemas import Out


class FlashcardSetOut(Out):
    id: uuid.UUID
    title: str
    description: str | None
    course_id: uuid.UUID | None
    is_public: bool
    owner_id: str
    user_id: str = Field(description="same as owner_id (kept for older clients)")
    card_count: int
    created_at: datetime
    updated_at: datetime


class FlashcardOut(Out):
    """A card: Markdown ``front``/``back`` and their sanitised HTML render."""

    id: uuid.UUID
    set_id: uuid.UUID
    front: str
    back: str
    front_html: str
    back_html: str
    position: int
    created_at: datetime
    updated_at: datetime


class DueFlashcardOut(Out):
    """A card due for the caller (a never-reviewed card is due now: ``reviewed`` false)."""

    id: uuid.UUID
    set_id: uuid.UUID
    front: str
    back: str
    front_html: str
    back_html: str
    due_at: datetime
    mastery_level: Annotated[int, Field(ge=0, le=5)]
    reviewed: bool


class FlashcardReviewOut(Out):
    """The caller's next review of a card as FSRS scheduled it."""

    flashcard_id: uuid.UUID
    due_at: datetime
    mastery_level: Annotated[int, Field(ge=0, le=5)]
    state: Literal["learning", "review", "relearning"]
    stability: float | None
    difficulty: float | None
    review_count: int


class ReviewsByRating(Out):
    again: int
    hard: int
    good: int
    easy: int


class FlashcardStatsOut(Out):
    days: int
    reviews: int
    by_rating: ReviewsByRating
    retention: Annotated[float, Field(ge=0, le=1)] | None = Field(description="null without reviews")
    cards_studied: int
    due_now: int
    mastery_avg: Annotated[float, Field(ge=0, le=5)]
