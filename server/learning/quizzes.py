"""Quizzes: question validation, what learners may see, grading of attempts."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.errors import Conflict, ValidationFailed, field_error
from server.learning.models import Quiz, QuizAttempt

# Every part of a quiz and of an attempt is bounded (attempts are stored, one row each, so an
# unbounded answer was up to 1 MiB of storage per request). Documented in the README.
MAX_QUESTIONS = 200
MAX_OPTIONS = 20
MAX_OPTION_CHARS = 500
MAX_PROMPT_CHARS = 2000
MAX_ACCEPTED = 20  # accepted spellings of one short answer
MAX_SHORT_ANSWER_CHARS = 1000  # also the longest accepted spelling
MAX_QUESTION_ID_CHARS = 100
MAX_QUIZZES_PER_LESSON = 50

Text = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
Option = Annotated[str, Field(min_length=1, max_length=MAX_OPTION_CHARS)]


class _Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_ID_CHARS)]
    prompt: Text


class SingleChoice(_Question):
    kind: Literal["single"]
    options: Annotated[list[Option], Field(min_length=2, max_length=MAX_OPTIONS)]
    answer: StrictInt

    @model_validator(mode="after")
    def _answer_in_range(self) -> SingleChoice:
        if not 0 <= self.answer < len(self.options):
            raise ValueError("answer must be the index of one of the options")
        return self


class MultipleChoice(_Question):
    kind: Literal["multiple"]
    options: Annotated[list[Option], Field(min_length=2, max_length=MAX_OPTIONS)]
    answer: Annotated[list[StrictInt], Field(min_length=1, max_length=MAX_OPTIONS)]

    @model_validator(mode="after")
    def _answers_in_range(self) -> MultipleChoice:
        if len(set(self.answer)) != len(self.answer):
            raise ValueError("answer must not repeat an index")
        if any(not 0 <= i < len(self.options) for i in self.answer):
            raise ValueError("answer must be indexes of the options")
        return self


class ShortAnswer(_Question):
    kind: Literal["short"]
    accepted: Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_SHORT_ANSWER_CHARS)]],
                        Field(min_length=1, max_length=MAX_ACCEPTED)]


Question = Annotated[SingleChoice | MultipleChoice | ShortAnswer, Field(discriminator="kind")]


def _unique_ids(questions: list[Any]) -> None:
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise ValueError("question ids must be unique")


class QuizCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(min_length=1, max_length=300)]
    pass_score: Annotated[float, Field(ge=0, le=1)] = 0.7
    questions: Annotated[list[Question], Field(min_length=1, max_length=MAX_QUESTIONS)]

    @model_validator(mode="after")
    def _check(self) -> QuizCreate:
        _unique_ids(self.questions)
        return self


class QuizPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    pass_score: Annotated[float, Field(ge=0, le=1)] | None = None
    questions: Annotated[list[Question], Field(min_length=1, max_length=MAX_QUESTIONS)] | None = None

    @model_validator(mode="after")
    def _check(self) -> QuizPatch:
        if self.questions is not None:
            _unique_ids(self.questions)
        return self


class AttemptBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answers: Annotated[dict[
        Annotated[str, Field(max_length=MAX_QUESTION_ID_CHARS)],
        StrictInt
        | Annotated[list[StrictInt], Field(max_length=MAX_OPTIONS)]
        | Annotated[StrictStr, Field(max_length=MAX_SHORT_ANSWER_CHARS)],
    ], Field(max_length=MAX_QUESTIONS)]


HIDDEN = ("answer", "accepted")


def quiz_payload(quiz: Quiz, *, staff: bool) -> dict[str, Any]:
    """The whole quiz for staff; learners never see ``answer`` nor ``accepted``."""
    questions = quiz.questions if staff else [
        {k: v for k, v in q.items() if k not in HIDDEN} for q in quiz.questions
    ]
    return {"id": quiz.id, "lesson_id": quiz.lesson_id, "title": quiz.title, "pass_score": quiz.pass_score,
            "questions": questions, "created_at": quiz.created_at, "updated_at": quiz.updated_at}


def dump_questions(questions: list[Any]) -> list[dict[str, Any]]:
    return [q.model_dump() for q in questions]


async def check_room_for_quiz(session: AsyncSession, lesson_id: uuid.UUID) -> None:
    """409 when the lesson already has :data:`MAX_QUIZZES_PER_LESSON` quizzes."""
    count = (await session.execute(
        select(func.count()).select_from(Quiz).where(Quiz.lesson_id == lesson_id)
    )).scalar_one()
    if count >= MAX_QUIZZES_PER_LESSON:
        raise Conflict(f"A lesson has at most {MAX_QUIZZES_PER_LESSON} quizzes.")


async def lesson_quizzes(session: AsyncSession, lesson_id: uuid.UUID) -> list[Quiz]:
    return list((await session.execute(
        select(Quiz).where(Quiz.lesson_id == lesson_id).order_by(Quiz.created_at, Quiz.id)
    )).scalars())


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def grade(questions: list[dict[str, Any]], answers: dict[str, Any]) -> dict[str, bool]:
    """``{question id: correct}``; 422 for an unknown question, a wrong kind or an index out of range."""
    by_id = {q["id"]: q for q in questions}
    errors = []
    for qid, given in answers.items():
        question = by_id.get(qid)
        loc = f"answers.{qid}"
        if question is None:
            errors.append(field_error(loc, "no such question in this quiz"))
            continue
        kind = question["kind"]
        n = len(question.get("options", []))
        if kind == "single":
            if not isinstance(given, int) or isinstance(given, bool):
                errors.append(field_error(loc, "a single-choice answer is one option index"))
            elif not 0 <= given < n:
                errors.append(field_error(loc, f"option index out of range 0..{n - 1}"))
        elif kind == "multiple":
            if not isinstance(given, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in given):
                errors.append(field_error(loc, "a multiple-choice answer is a list of option indexes"))
            elif any(not 0 <= i < n for i in given):
                errors.append(field_error(loc, f"option index out of range 0..{n - 1}"))
        elif not isinstance(given, str):
            errors.append(field_error(loc, "a short answer is a string"))
    if errors:
        raise ValidationFailed("The answers do not fit the quiz.", errors=errors)
    results = {}
    for question in questions:
        given = answers.get(question["id"])
        kind = question["kind"]
        if given is None:
            correct = False
        elif kind == "single":
            correct = given == question["answer"]
        elif kind == "multiple":
            correct = set(given) == set(question["answer"])
        else:
            correct = _normalise(given) in {_normalise(a) for a in question["accepted"]}
        results[question["id"]] = correct
    return results


async def record_attempt(
    session: AsyncSession, *, quiz: Quiz, user_id: str, answers: dict[str, Any]
) -> tuple[QuizAttempt, dict[str, bool]]:
    results = grade(quiz.questions, answers)
    score = sum(results.values()) / len(results) if results else 0.0
    attempt = QuizAttempt(quiz_id=quiz.id, user_id=user_id, answers=answers, score=score,
                          passed=score >= quiz.pass_score)
    session.add(attempt)
    await session.flush()
    return attempt, results
