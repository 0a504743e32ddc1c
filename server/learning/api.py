"""REST: enrollment, progress, quizzes and attempts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response

from server.access import SIGNED_IN, CourseAccess, edit_course, edit_quiz, member_of, read_quiz
from server.auth import require_user
from server.db import autocommit
from server.errors import Conflict, NotFound
from server.http import decode_cursor, json_response, no_content, page, page_limit, path_id, read_json
from server.learning import quizzes, service
from server.learning.models import Quiz
from server.learning.schemas import (
    AnyQuizOut,
    AttemptOut,
    CourseProgressOut,
    EnrollmentOut,
    LessonStatusOut,
    MyCourseOut,
    QuizKeyOut,
    QuizPage,
    TeamCourseOut,
)
from server.routing import Api, granted
from server.schemas import Page
from server.state import services

api = Api("learning")


class ProgressBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["not_started", "in_progress", "completed"]


# --- enrollment and progress ----------------------------------------------------------------


@api.put("/courses/{id}/enrollment", access=member_of("id"), response=EnrollmentOut)
async def enroll(request: Request) -> Response:
    """Enroll in a published course (idempotent)."""
    course_id = path_id(request)
    user = await require_user(request)
    access: CourseAccess = granted(request)
    async with services(request).sessions.begin() as session:
        if not access.is_published:
            raise Conflict("Only a published course can be enrolled in.")
        state = await service.enroll(session, course_id=course_id, user_id=user.clerk_id)
    return json_response(state.payload(course_id))


@api.delete("/courses/{id}/enrollment", access=member_of("id"), response=EnrollmentOut)
async def unenroll(request: Request) -> Response:
    """Leave a course (idempotent)."""
    course_id = path_id(request)
    user = await require_user(request)
    async with services(request).sessions.begin() as session:
        state = await service.unenroll(session, course_id=course_id, user_id=user.clerk_id)
    return json_response(state.payload(course_id))


@api.get("/me/courses", access=SIGNED_IN, response=Page[MyCourseOut],
         query={"limit": "page size (1-100)", "cursor": "from next_cursor"})
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


@api.get("/me/team-courses", access=SIGNED_IN, response=Page[TeamCourseOut],
         query={"limit": "page size (1-100)", "cursor": "from next_cursor"})
async def my_team_courses(request: Request) -> Response:
    """The courses I author or collaborate on (drafts included), with my role on each."""
    user = await require_user(request)
    limit, after = page_limit(request), decode_cursor(request)
    async with services(request).sessions() as session:
        items = await service.team_courses(session, user=user, limit=limit, after=after)
    result = page(items, limit, lambda item: item["_cursor"])
    for item in result["items"]:
        item.pop("_cursor")
    return json_response(result)


@api.put("/lessons/{id}/progress", access=member_of("id", via="lesson"), body=ProgressBody,
         response=LessonStatusOut)
async def set_progress(request: Request) -> Response:
    """Set my status of a lesson; returns it with the new course progress."""
    lesson_id = path_id(request)
    user = await require_user(request)
    body = await read_json(request, ProgressBody)

    access: CourseAccess = granted(request)

    # Autocommit: one statement that takes the locks, writes and recomputes (the learner's
    # enrollment lock is never held across a round trip to us).
    async def write() -> service.StatusWrite:
        async with autocommit(services(request).engine) as conn:
            return await service.set_lesson_status(conn, course_id=access.course_id, lesson_id=lesson_id,
                                                   user_id=user.clerk_id, status=body.status)

    written = await service.retrying(write)
    if written.actions:  # a lesson or course newly completed: achievements, in their own transaction
        async with services(request).sessions.begin() as session:
            await service.record_completions(session, user.clerk_id, written.actions)
    return json_response(written.payload)


@api.get("/courses/{id}/progress", access=member_of("id"), response=CourseProgressOut)
async def get_progress(request: Request) -> Response:
    """My progress in a course."""
    course_id = path_id(request)
    user = await require_user(request)
    async with services(request).sessions() as session:
        result = await service.course_progress(session, course_id=course_id, user_id=user.clerk_id)
    return json_response(result)


# --- quizzes ---------------------------------------------------------------------------------


@api.get("/lessons/{id}/quizzes", access=member_of("id", via="lesson"), response=QuizPage)
async def list_quizzes(request: Request) -> Response:
    """The quizzes of a lesson (answers only for its editors)."""
    lesson_id = path_id(request)
    access: CourseAccess = granted(request)
    async with services(request).sessions() as session:
        found = await quizzes.lesson_quizzes(session, lesson_id)
    items = [quizzes.quiz_payload(q, staff=access.can_edit) for q in found]
    return json_response({"items": items, "next_cursor": None})


@api.post("/lessons/{id}/quizzes", status=201, body=quizzes.QuizCreate, response=QuizKeyOut,
          access=edit_course("id", via="lesson", detail="Only the course's editors can add quizzes."))
async def create_quiz(request: Request) -> Response:
    """Add a quiz to a lesson (editors)."""
    lesson_id = path_id(request)
    async with services(request).sessions.begin() as session:
        body = await read_json(request, quizzes.QuizCreate)
        await quizzes.check_room_for_quiz(session, lesson_id)
        quiz = Quiz(lesson_id=lesson_id, title=body.title, pass_score=body.pass_score,
                    questions=quizzes.dump_questions(body.questions))
        session.add(quiz)
        await session.flush()
        await session.refresh(quiz)
    return json_response(quizzes.quiz_payload(quiz, staff=True), 201)


async def _quiz(request: Request, session: Any, *, lock: bool = False) -> Quiz:
    """The route's quiz (its policy checked the caller's rights; 404 if deleted since)."""
    quiz: Quiz | None = await session.get(Quiz, path_id(request), with_for_update=lock)
    if quiz is None:
        raise NotFound("No such quiz.")
    return quiz


@api.get("/quizzes/{id}", access=read_quiz("id"), response=AnyQuizOut)
async def get_quiz(request: Request) -> Response:
    """One quiz (answers only for its editors)."""
    access: CourseAccess = granted(request)
    async with services(request).sessions() as session:
        quiz = await _quiz(request, session)
    return json_response(quizzes.quiz_payload(quiz, staff=access.can_edit))


@api.patch("/quizzes/{id}", access=edit_quiz("id"), body=quizzes.QuizPatch, response=QuizKeyOut)
async def update_quiz(request: Request) -> Response:
    """Change a quiz (editors)."""
    async with services(request).sessions.begin() as session:
        quiz = await _quiz(request, session, lock=True)
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


@api.delete("/quizzes/{id}", access=edit_quiz("id", detail="Only the course's editors can remove quizzes."),
            status=204)
async def delete_quiz(request: Request) -> Response:
    """Remove a quiz (editors)."""
    async with services(request).sessions.begin() as session:
        quiz = await _quiz(request, session)
        await session.delete(quiz)
    return no_content()


@api.post("/quizzes/{id}/attempts", access=read_quiz("id"), body=quizzes.AttemptBody, response=AttemptOut)
async def attempt_quiz(request: Request) -> Response:
    """Submit answers; a passing attempt completes the lesson for an enrolled learner."""
    user = await require_user(request)
    body = await read_json(request, quizzes.AttemptBody)
    services(request).rate_limiter.hit(user.clerk_id, "quiz_attempt")  # each attempt is a stored row
    access: CourseAccess = granted(request)

    async def submit() -> dict[str, Any]:
        async with services(request).sessions.begin() as session:
            quiz = await _quiz(request, session)
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
