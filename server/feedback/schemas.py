"""Response models of course feedback, and the payload of its live events (published in /openapi.json)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field

from server.learning.schemas import UserBrief
from server.schemas import Out


class FeedbackOut(Out):
    """A review; also the data of the ``feedback.created`` / ``feedback.updated`` events on ``course:<id>``."""

    id: uuid.UUID
    course_id: uuid.UUID
    rating: Annotated[int, Field(ge=1, le=5)]
    comment: str | None
    author: UserBrief
    upvotes: int
    upvoted_by_me: bool
    created_at: datetime
    updated_at: datetime


class UpvoteOut(Out):
    feedback_id: uuid.UUID
    upvotes: int
    upvoted_by_me: bool


# Live events on ``course:<id>`` and their ``data`` (the review as REST returns it).
EVENTS: dict[str, type[Out]] = {"feedback.created": FeedbackOut, "feedback.updated": FeedbackOut}
