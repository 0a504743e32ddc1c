"""The one place that decides who may read or change what.

Roles on a course, strongest first: admin, author, editor, viewer, learner (enrolled), member
(signed in), anonymous. Drafts are invisible (404) to anyone below viewer.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth import Principal
from server.catalog.models import Collaborator, Course, Lesson, Unit
from server.errors import Forbidden, NotFound
from server.learning.models import UserCourse


class Role(enum.IntEnum):
    ANONYMOUS = 0
    MEMBER = 1
    LEARNER = 2
    VIEWER = 3
    EDITOR = 4
    AUTHOR = 5
    ADMIN = 6


@dataclass(frozen=True)
class CourseAccess:
    course_id: uuid.UUID
    author_id: str
    is_published: bool
    role: Role

    @property
    def can_read(self) -> bool:
        return self.is_published or self.role >= Role.VIEWER

    @property
    def can_see_drafts(self) -> bool:
        return self.role >= Role.VIEWER

    @property
    def can_edit(self) -> bool:
        """Change structure and content, co-edit lessons, decide suggestions."""
        return self.role >= Role.EDITOR

    @property
    def is_staff(self) -> bool:
        """Moderate the course forum (lock, pin, delete others' content)."""
        return self.role >= Role.EDITOR

    @property
    def can_manage(self) -> bool:
        """Delete the course, manage collaborators, publish (author and admins)."""
        return self.role >= Role.AUTHOR


async def course_role(session: AsyncSession, course: Course, user: Principal | None) -> Role:
    if user is None:
        return Role.ANONYMOUS
    if user.is_admin:
        return Role.ADMIN
    if course.author_id == user.clerk_id:
        return Role.AUTHOR
    collaborator = (await session.execute(
        select(Collaborator.role).where(Collaborator.course_id == course.id,
                                        Collaborator.user_id == user.clerk_id)
    )).scalar_one_or_none()
    if collaborator == "editor":
        return Role.EDITOR
    if collaborator == "viewer":
        return Role.VIEWER
    enrolled = (await session.execute(
        select(UserCourse.id).where(UserCourse.course_id == course.id, UserCourse.user_id == user.clerk_id)
    )).first()
    return Role.LEARNER if enrolled else Role.MEMBER


async def course_access(session: AsyncSession, course_id: uuid.UUID, user: Principal | None) -> CourseAccess:
    """Access to a course the caller can read; 404 if it does not exist or is a hidden draft."""
    course = await session.get(Course, course_id)
    if course is None:
        raise NotFound("No such course.")
    access = CourseAccess(course.id, course.author_id, course.is_published,
                          await course_role(session, course, user))
    if not access.can_read:
        raise NotFound("No such course.")
    return access


async def lesson_course_id(session: AsyncSession, lesson_id: uuid.UUID) -> uuid.UUID:
    course_id = (await session.execute(
        select(Unit.course_id).join(Lesson, Lesson.unit_id == Unit.id).where(Lesson.id == lesson_id)
    )).scalar_one_or_none()
    if course_id is None:
        raise NotFound("No such lesson.")
    return course_id


async def lesson_access(session: AsyncSession, lesson_id: uuid.UUID, user: Principal | None) -> CourseAccess:
    """Access to the course of a lesson; 404 when the lesson is unknown or hidden."""
    try:
        return await course_access(session, await lesson_course_id(session, lesson_id), user)
    except NotFound:
        raise NotFound("No such lesson.") from None


def require(allowed: bool, detail: str = "You may not do this.") -> None:
    """403 for a signed-in caller who can see the resource but not change it."""
    if not allowed:
        raise Forbidden(detail)


async def is_enrolled(session: AsyncSession, course_id: uuid.UUID, user: Principal | None) -> bool:
    """Whether ``user`` is enrolled in the course (collaborators and admins are not, unless they enrolled)."""
    if user is None:
        return False
    found = (await session.execute(
        select(UserCourse.id).where(UserCourse.course_id == course_id, UserCourse.user_id == user.clerk_id)
    )).first()
    return found is not None
