"""Response models of enrollment, progress and quizzes (published in /openapi.json)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from server.schemas import Out, Page

LessonStatus = Literal["not_started", "in_progress", "completed"]
Difficulty = Literal["beginner", "intermediate", "advanced"]
Fraction = Annotated[float, Field(ge=0, le=1)]
Percent = Annotated[float, Field(ge=0, le=100)]


class UserBrief(Out):
    """A user as other people see them (author of a course or of a review)."""

    clerk_id: str
    name: str | None
    image_url: str | None


class EnrollmentOut(Out):
    course_id: uuid.UUID
    enrolled: bool
    progress: Percent
    completed_at: datetime | None


class MyCourseOut(Out):
    """One of my enrollments: the course's summary with my progress."""

    id: uuid.UUID
    title: str
    description: str | None
    difficulty: Difficulty | None
    is_published: bool
    author: UserBrief
    lesson_count: int
    progress: Percent
    completed_at: datetime | None
    enrolled_at: datetime


class TeamCourseOut(Out):
    """A course I author or collaborate on (drafts included), with my role on it."""

    id: uuid.UUID
    title: str
    description: str | None
    difficulty: Difficulty | None
    is_published: bool
    role: Literal["author", "editor", "viewer"]
    lesson_count: int
    created_at: datetime
    updated_at: datetime


class LessonStatusOut(Out):
    """My status of a lesson after a write, with the course progress it makes."""

    lesson_id: uuid.UUID
    course_id: uuid.UUID
    status: LessonStatus
    progress: Percent
    course_completed_at: datetime | None


class CourseProgressOut(Out):
    course_id: uuid.UUID
    enrolled: bool
    progress: Percent
    completed_lessons: int
    total_lessons: int
    completed_at: datetime | None


# --- quizzes ----------------------------------------------------------------------------------


class _QuestionOut(Out):
    id: str
    prompt: str


class SingleChoiceOut(_QuestionOut):
    kind: Literal["single"]
    options: list[str]


class MultipleChoiceOut(_QuestionOut):
    kind: Literal["multiple"]
    options: list[str]


class ShortAnswerOut(_QuestionOut):
    kind: Literal["short"]


class SingleChoiceKeyOut(SingleChoiceOut):
    answer: int = Field(description="index of the right option")


class MultipleChoiceKeyOut(MultipleChoiceOut):
    answer: list[int] = Field(description="indexes of the right options")


class ShortAnswerKeyOut(ShortAnswerOut):
    accepted: list[str] = Field(description="accepted spellings (compared ignoring case and spaces)")


QuestionOut = Annotated[SingleChoiceOut | MultipleChoiceOut | ShortAnswerOut, Field(discriminator="kind")]
QuestionKeyOut = Annotated[SingleChoiceKeyOut | MultipleChoiceKeyOut | ShortAnswerKeyOut,
                           Field(discriminator="kind")]


class _QuizBase(Out):
    id: uuid.UUID
    lesson_id: uuid.UUID
    title: str
    pass_score: Fraction
    created_at: datetime
    updated_at: datetime


class QuizOut(_QuizBase):
    """A quiz as learners see it: without ``answer`` nor ``accepted``."""

    questions: list[QuestionOut]


class QuizKeyOut(_QuizBase):
    """A quiz as the course's editors see it: whole, with the answers."""

    questions: list[QuestionKeyOut]


AnyQuizOut = QuizKeyOut | QuizOut  # which one depends on the caller's role


class QuizPage(Page[AnyQuizOut]):
    """A lesson's quizzes (all of them: ``next_cursor`` is null), whole for its editors."""


class AttemptOut(Out):
    """A graded attempt; a passing one by an enrolled learner completes the lesson."""

    id: uuid.UUID
    quiz_id: uuid.UUID
    score: Fraction
    passed: bool
    results: dict[str, bool]
    lesson_status: LessonStatus | None
    progress: Percent | None


