"""REST: enrollment, progress, quizzes and attempts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response

from server.access import course_access, lesson_access, require
from server.auth import current_user, require_user
from server.db import autocommit
from server.errors import Conflict, NotFound
from server.http import decode_cursor, json_response, no_content, page, page_limit, path_id, read_json
from server.learning import quizzes, service
from server.learning.models import Quiz
from server.routing import Api
from server.state import services

api = Api("learning")


class ProgressBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["not_started", "in_progress", "completed"]


# --- enrollment and progress ----------------------------------------------------------------


@api.put("/courses/{id}/enrollment")
async def enroll(request: Request) -> Response:
    """Enroll in a published course (idempotent)."""
    course_id = path_id(request)
    user = await require_user(request)
    async with services(request).sessions.begin() as session:
        access = await course_access(session, course_id, user)
        if not access.is_published:
            raise Conflict("Only a published course can be enrolled in.")
        state = await service.enroll(session, course_id=course_id, user_id=user.clerk_id)
    return json_response(state.payload(course_id))


@api.delete("/courses/{id}/enrollment")
async def unenroll(request: Request) -> Response:
    """Leave a course (idempotent)."""
    course_id = path_id(request)
    user = await require_user(request)
    async with services(request).sessions.begin() as session:
        await course_access(session, course_id, user)
        state = await service.unenroll(session, course_id=course_id, user_id=user.clerk_id)
    return json_response(state.payload(course_id))


@api.get("/me/courses", query={"limit": "page size (1-100)", "cursor": "from next_cursor"})
async def my_courses(request: Request) -> Response:
    """The courses I am enrolled in, with my progress."""
    user = await require_user(request)
    limit, after = page_limit(request), decode_cursor(request)
    async with services(request).sessions() as session:
        items = await service.my_courses(session, user=user, limit=limit, after=after)
    result = page(items, limit, lambda item: item["_cursor"])
    for item in result["items"]:
        item.pop("_cursor")
    return json_response(result)


@api.put("/lessons/{id}/progress", body=ProgressBody)
async def set_progress(request: Request) -> Response:
    """Set my status of a lesson; returns it with the new course progress."""
    lesson_id = path_id(request)
    user = await require_user(request)
    body = await read_json(request, ProgressBody)

    # Autocommit: the access check, then one statement that takes the locks, writes and
    # recomputes (the learner's enrollment lock is never held across a round trip to us).
    async def write() -> service.StatusWrite:
        async with autocommit(services(request).engine) as conn:
            access = await lesson_access(conn, lesson_id, user)
            return await service.set_lesson_status(conn, course_id=access.course_id, lesson_id=lesson_id,
                                                   user_id=user.clerk_id, status=body.status)

    written = await service.retrying(write)
    if written.actions:  # a lesson or course newly completed: achievements, in their own transaction
        async with services(request).sessions.begin() as session:
            await service.record_completions(session, user.clerk_id, written.actions)
    return json_response(written.payload)


@api.get("/courses/{id}/progress")
async def get_progress(request: Request) -> Response:
    """My progress in a course."""
    course_id = path_id(request)
    user = await require_user(request)
    async with services(request).sessions() as session:
        await course_access(session, course_id, user)
        result = await service.course_progress(session, course_id=course_id, user_id=user.clerk_id)
    return json_response(result)


# --- quizzes ---------------------------------------------------------------------------------


@api.get("/lessons/{id}/quizzes")
async def list_quizzes(request: Request) -> Response:
    """The quizzes of a lesson (answers only for its editors)."""
    lesson_id = path_id(request)
    user = await current_user(request)
    async with services(request).sessions() as session:
        access = await lesson_access(session, lesson_id, user)
        found = await quizzes.lesson_quizzes(session, lesson_id)
    items = [quizzes.quiz_payload(q, staff=access.can_edit) for q in found]
    return json_response({"items": items, "next_cursor": None})


@api.post("/lessons/{id}/quizzes", status=201, body=quizzes.QuizCreate)
async def create_quiz(request: Request) -> Response:
    """Add a quiz to a lesson (editors)."""
    lesson_id = path_id(request)
    user = await require_user(request)
    async with services(request).sessions.begin() as session:
        access = await lesson_access(session, lesson_id, user)
        require(access.can_edit, "Only the course's editors can add quizzes.")
        body = await read_json(request, quizzes.QuizCreate)
        await quizzes.check_room_for_quiz(session, lesson_id)
        quiz = Quiz(lesson_id=lesson_id, title=body.title, pass_score=body.pass_score,
                    questions=quizzes.dump_questions(body.questions))
        session.add(quiz)
        await session.flush()
        await session.refresh(quiz)
    return json_response(quizzes.quiz_payload(quiz, staff=True), 201)


async def _quiz_for(request: Request, session: Any, *, lock: bool = False) -> tuple[Quiz, Any]:
    quiz_id = path_id(request)
    user = await current_user(request)
    quiz = await session.get(Quiz, quiz_id, with_for_update=lock)
    if quiz is None:
        raise NotFound("No such quiz.")
    try:
        access = await lesson_access(session, quiz.lesson_id, user)
    except NotFound:
        raise NotFound("No such quiz.") from None
    return quiz, access


@api.get("/quizzes/{id}")
async def get_quiz(request: Request) -> Response:
    """One quiz (answers only for its editors)."""
    async with services(request).sessions() as session:
        quiz, access = await _quiz_for(request, session)
    return json_response(quizzes.quiz_payload(quiz, staff=access.can_edit))


@api.patch("/quizzes/{id}", body=quizzes.QuizPatch)
async def update_quiz(request: Request) -> Response:
    """Change a quiz (editors)."""
    await require_user(request)
    async with services(request).sessions.begin() as session:
        quiz, access = await _quiz_for(request, session, lock=True)
        require(access.can_edit, "Only the course's editors can change quizzes.")
        body = await read_json(request, quizzes.QuizPatch)
        if body.title is not None:
            quiz.title = body.title
        if body.pass_score is not None:
            quiz.pass_score = body.pass_score
        if body.questions is not None:
            quiz.questions = quizzes.dump_questions(body.questions)
        await session.flush()
        await session.refresh(quiz)
    return json_response(quizzes.quiz_payload(quiz, staff=True))


@api.delete("/quizzes/{id}", status=204)
async def delete_quiz(request: Request) -> Response:
    """Remove a quiz (editors)."""
    await require_user(request)
    async with services(request).sessions.begin() as session:
        quiz, access = await _quiz_for(request, session)
        require(access.can_edit, "Only the course's editors can remove quizzes.")
        await session.delete(quiz)
    return no_content()


@api.post("/quizzes/{id}/attempts", body=quizzes.AttemptBody)
async def attempt_quiz(request: Request) -> Response:
    """Submit answers; a passing attempt completes the lesson for an enrolled learner."""
    user = await require_user(request)
    body = await read_json(request, quizzes.AttemptBody)
    services(request).rate_limiter.hit(user.clerk_id, "quiz_attempt")  # each attempt is a stored row

    async def submit() -> dict[str, Any]:
        async with services(request).sessions.begin() as session:
            quiz, access = await _quiz_for(request, session)
            attempt, results = await quizzes.record_attempt(session, quiz=quiz, user_id=user.clerk_id,
                                                            answers=body.answers)
            lesson: dict[str, Any] | None = None
            if attempt.passed and access.enrolled:
                written = await service.set_lesson_status(
                    session, course_id=access.course_id, lesson_id=quiz.lesson_id, user_id=user.clerk_id,
                    status="completed")
                await service.record_completions(session, user.clerk_id, written.actions)
                lesson = written.payload
        return {
            "id": attempt.id, "quiz_id": quiz.id, "score": attempt.score, "passed": attempt.passed,
            "results": results, "lesson_status": lesson["status"] if lesson else None,
            "progress": lesson["progress"] if lesson else None,
        }

    return json_response(await service.retrying(submit))
