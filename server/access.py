"""The one place that decides who may read or change what.

Roles on a course, strongest first: admin, author, editor, viewer, learner (enrolled), member
(signed in), anonymous. Drafts are invisible (404) to anyone below viewer.

Routes name their policy here and the router enforces it before the handler runs
(``@api.patch("/courses/{id}", access=edit_course("id"))``, see server/routing.py). The policies:

- ``PUBLIC``: anyone; the caller's identity is not read.
- ``VISITOR``: anyone; what they see depends on who they are (drafts, enrolment).
- ``SIGNED_IN``: any signed-in user, acting on their own rows (the handler's queries are scoped
  to the caller: their profile, notifications, goals, cards).
- ``ADMIN``: platform admins.
- ``read_course`` / ``edit_course`` / ``manage_course`` / ``enrolled_in`` (and the unit and
  lesson variants): the caller's role on the course that a path parameter names; 404 when the
  course is hidden from them, 403 when it is visible but the role is too weak.
- ``owned(...)``: the row a path parameter names belongs to the caller (404 otherwise).

A new rule is a new function here, named for what it allows, never a check inside a handler.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Text, bindparam, exists, literal, or_, select, true
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.auth import PRINCIPAL_COLUMNS, Principal
from server.catalog.models import Collaborator, Course, Lesson, Unit
from server.db import autocommit
from server.errors import Forbidden, NotFound
from server.http import parse_uuid, path_id
from server.learning.models import UserCourse
from server.routing import Access
from server.state import services


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
    enrolled: bool = False

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
    collaborator, enrolled = (await session.execute(
        select(_collaborator_role(course.id, user.clerk_id), _enrolled(course.id, user.clerk_id))
    )).one()
    return _role(course.author_id, user, collaborator, enrolled)


def _collaborator_role(course_id: Any, clerk_id: str) -> Any:
    return (select(Collaborator.role)
            .where(Collaborator.course_id == course_id, Collaborator.user_id == clerk_id)
            .scalar_subquery())


def _enrolled(course_id: Any, clerk_id: str) -> Any:
    return exists().where(UserCourse.course_id == course_id, UserCourse.user_id == clerk_id)


def _role(author_id: str, user: Principal | None, collaborator: str | None, enrolled: bool) -> Role:
    if user is None:
        return Role.ANONYMOUS
    if user.is_admin:
        return Role.ADMIN
    if author_id == user.clerk_id:
        return Role.AUTHOR
    if collaborator == "editor":
        return Role.EDITOR
    if collaborator == "viewer":
        return Role.VIEWER
    return Role.LEARNER if enrolled else Role.MEMBER


def access_from(course_id: uuid.UUID, author_id: str, is_published: bool, collaborator: str | None,
                enrolled: bool, user: Principal | None) -> CourseAccess:
    """The policy applied to facts fetched along with other data (see ``role_columns``); 404 if hidden."""
    access = CourseAccess(course_id, author_id, is_published, _role(author_id, user, collaborator, enrolled), enrolled)
    if not access.can_read:
        raise NotFound("No such course.")
    return access


def role_columns(course_id: Any, clerk_id: Any | None) -> tuple[Any, Any]:
    """SQL columns (collaborator role, enrolled) of a user on a course, to select with other data.

    ``course_id`` and ``clerk_id`` may be values or bind parameters; ``clerk_id=None`` is anonymous.
    """
    if clerk_id is None:
        return literal(None), literal(False)
    return _collaborator_role(course_id, clerk_id), _enrolled(course_id, clerk_id)


@cache
def _access_statement(by_lesson: bool, signed_in: bool, for_update: bool) -> Any:
    """Built once per shape (statement construction and its cache key cost more than the query):
    the course's facts with the caller's collaborator role and enrollment, by ``:key``."""
    key = bindparam("key", type_=PgUUID(as_uuid=True))
    course_id: Any = key
    if by_lesson:
        course_id = (select(Unit.course_id).join(Lesson, Lesson.unit_id == Unit.id)
                     .where(Lesson.id == key).scalar_subquery())
    clerk_id = bindparam("clerk_id", type_=Text) if signed_in else None
    collaborator, enrolled = role_columns(Course.id, clerk_id)
    stmt = select(Course.id, Course.author_id, Course.is_published, collaborator, enrolled).where(Course.id == course_id)
    if for_update:
        stmt = stmt.with_for_update(of=Course)
    return stmt


async def _access(session: AsyncSession | AsyncConnection, key: uuid.UUID, user: Principal | None, *, by_lesson: bool,
                  for_update: bool = False) -> CourseAccess:
    params: dict[str, Any] = {"key": key}
    if user is not None:
        params["clerk_id"] = user.clerk_id
    row = (await session.execute(_access_statement(by_lesson, user is not None, for_update), params)).one_or_none()
    if row is None:
        raise NotFound("No such course.")
    return access_from(row[0], row[1], row[2], row[3], bool(row[4]), user)


async def course_access(session: AsyncSession, course_id: uuid.UUID | ColumnElement[Any],
                        user: Principal | None, *, for_update: bool = False) -> CourseAccess:
    """Access to a course the caller can read; 404 if it does not exist or is a hidden draft.

    One statement (the course row with the caller's collaborator role and enrollment).
    ``for_update`` locks the course row (used to serialise changes to its unit order).
    """
    if isinstance(course_id, uuid.UUID):
        return await _access(session, course_id, user, by_lesson=False, for_update=for_update)
    if user is None:
        stmt = select(Course.id, Course.author_id, Course.is_published, literal(None), literal(False))
    else:
        stmt = select(Course.id, Course.author_id, Course.is_published,
                      _collaborator_role(Course.id, user.clerk_id), _enrolled(Course.id, user.clerk_id))
    stmt = stmt.where(Course.id == course_id)
    if for_update:
        stmt = stmt.with_for_update(of=Course)
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        raise NotFound("No such course.")
    return access_from(row[0], row[1], row[2], row[3], bool(row[4]), user)


def visible_courses(user: Principal | None, clerk_id: Any | None = None) -> ColumnElement[bool]:
    """SQL condition on ``courses``: the courses whose existence ``user`` may see in lists.

    ``clerk_id`` may replace the user's id by a bind parameter (for statements built once).
    """
    if user is None:
        return Course.is_published.is_(True)
    if user.is_admin:
        return true()
    me = user.clerk_id if clerk_id is None else clerk_id
    return or_(
        Course.is_published.is_(True),
        Course.author_id == me,
        exists().where(Collaborator.course_id == Course.id, Collaborator.user_id == me),
    )


async def lesson_course_id(session: AsyncSession, lesson_id: uuid.UUID) -> uuid.UUID:
    course_id = (await session.execute(
        select(Unit.course_id).join(Lesson, Lesson.unit_id == Unit.id).where(Lesson.id == lesson_id)
    )).scalar_one_or_none()
    if course_id is None:
        raise NotFound("No such lesson.")
    return course_id


async def lesson_access(session: AsyncSession | AsyncConnection, lesson_id: uuid.UUID, user: Principal | None) -> CourseAccess:
    """Access to the course of a lesson; 404 when the lesson is unknown or hidden (one statement)."""
    try:
        return await _access(session, lesson_id, user, by_lesson=True)
    except NotFound:
        raise NotFound("No such lesson.") from None


async def unit_access(session: AsyncSession, unit_id: uuid.UUID, user: Principal | None) -> CourseAccess:
    """Access to the course of a unit; 404 when the unit is unknown or hidden."""
    course_id = (await session.execute(select(Unit.course_id).where(Unit.id == unit_id))).scalar_one_or_none()
    if course_id is None:
        raise NotFound("No such unit.")
    try:
        return await course_access(session, course_id, user)
    except NotFound:
        raise NotFound("No such unit.") from None


def require(allowed: bool, detail: str = "You may not do this.") -> None:
    """403 for a signed-in caller who can see the resource but not change it."""
    if not allowed:
        raise Forbidden(detail)


# --- route policies (enforced by server/routing.py before the handler runs) -----------------

PUBLIC = Access("public", "none")
VISITOR = Access("visitor", "optional")
SIGNED_IN = Access("signed-in", "user")


async def _admin_only(request: Any, user: Principal | None) -> None:
    require(user is not None and user.is_admin, "Only admins can do this.")


ADMIN = Access("admin", "user", _admin_only)

_Via = Any  # "course" | "unit" | "lesson"


def _on_course(name: str, param: str, via: str, need: Any, detail: str, auth: Any) -> Access:
    lookups: dict[str, Callable[[AsyncConnection, uuid.UUID, Principal | None], Awaitable[CourseAccess]]] = {
        "course": course_access, "unit": unit_access, "lesson": lesson_access}  # type: ignore[dict-item]
    lookup = lookups[via]

    async def check(request: Any, user: Principal | None) -> CourseAccess:
        key = path_id(request, param)
        async with autocommit(services(request).engine) as conn:
            access: CourseAccess = await lookup(conn, key, user)
        if need is not None:
            require(need(access), detail)
        return access

    return Access(f"{name} ({via} {{{param}}})", auth, check)


def read_course(param: str = "id", *, via: str = "course") -> Access:
    """Anyone who can see the course (published, or a collaborator/admin on a draft)."""
    return _on_course("read", param, via, None, "", "optional")


def member_of(param: str = "id", *, via: str = "course") -> Access:
    """A signed-in user who can see the course (e.g. to post in its forum, enrol, review)."""
    return _on_course("signed-in reader", param, via, None, "", "user")


def enrolled_in(param: str = "id", *, via: str = "course",
                detail: str = "Only enrolled learners can do this.") -> Access:
    return _on_course("enrolled", param, via, lambda a: a.enrolled or a.role >= Role.VIEWER, detail, "user")


def edit_course(param: str = "id", *, via: str = "course",
                detail: str = "Only editors may change this course.") -> Access:
    """Editors, the author and admins: structure, content, co-editing, suggestions' decisions."""
    return _on_course("edit", param, via, lambda a: a.can_edit, detail, "user")


def staff_of(param: str = "id", *, via: str = "course",
             detail: str = "Only the course's staff can do this.") -> Access:
    """Course staff (editors and up): forum moderation."""
    return _on_course("staff", param, via, lambda a: a.is_staff, detail, "user")


def manage_course(param: str = "id", *, via: str = "course",
                  detail: str = "Only the author may do this.") -> Access:
    """The author and admins: delete, publish, collaborators."""
    return _on_course("manage", param, via, lambda a: a.can_manage, detail, "user")


def owned(table: str, param: str, owner_column: Any, id_column: Any, *, missing: str = "Not found.") -> Access:
    """The row ``id_column == {param}`` exists and ``owner_column`` is the caller (404 otherwise)."""
    stmt = select(owner_column).where(id_column == bindparam("key"))

    async def check(request: Any, user: Principal | None) -> None:
        assert user is not None
        key = path_id(request, param)
        async with autocommit(services(request).engine) as conn:
            owner = (await conn.execute(stmt, {"key": key})).scalar_one_or_none()
        if owner is None or owner != user.clerk_id:
            raise NotFound(missing)

    return Access(f"owner of the {table} {{{param}}}", "user", check)


# --- forum (posts and replies: server/forum) --------------------------------------------------


@dataclass(frozen=True)
class ForumAccess:
    """What a forum policy learned: the caller's access to the course, the thread, the author of
    the post or reply the path names."""

    access: CourseAccess
    post_id: uuid.UUID
    author_id: str


@cache
def _forum_statement(kind: str, signed_in: bool) -> Any:
    """A live post (or a live reply of a live post) with its course's facts and the caller's role:
    one statement, built once per shape."""
    from server.forum.models import ForumPost, ForumReply  # the forum models import nothing from here

    key = bindparam("key", type_=PgUUID(as_uuid=True))
    clerk_id = bindparam("clerk_id", type_=Text) if signed_in else None
    collaborator, enrolled = role_columns(Course.id, clerk_id)
    item: Any = ForumPost if kind == "post" else ForumReply
    stmt = (select(Course.id, Course.author_id, Course.is_published, collaborator, enrolled,
                   ForumPost.id, item.user_id)
            .select_from(ForumPost).join(Course, Course.id == ForumPost.course_id)
            .where(ForumPost.deleted_at.is_(None)))
    if kind == "reply":
        stmt = stmt.join(ForumReply, ForumReply.post_id == ForumPost.id).where(ForumReply.deleted_at.is_(None))
    return stmt.where(item.id == key)


@cache
def _forum_statement_with_user(kind: str) -> Any:
    """The caller's ``users`` row (``PRINCIPAL_COLUMNS``) with ``_forum_statement``'s columns
    (NULL when the post or reply is not there): no row at all when the user is unknown."""
    from server.users.models import User

    facts = _forum_statement(kind, True).subquery("facts")
    return (select(*PRINCIPAL_COLUMNS, *facts.c).select_from(User).outerjoin(facts, true())
            .where(User.clerk_id == bindparam("clerk_id", type_=Text)))


def _on_forum(kind: str, param: str, auth: Any, need: Callable[[ForumAccess, Principal | None], bool] | None,
              detail: str, name: str) -> Access:
    missing = f"No such {kind}."

    def decide(row: Any, user: Principal | None) -> ForumAccess:
        if row is None or row[0] is None:
            raise NotFound(missing)
        try:
            access = access_from(row[0], row[1], row[2], row[3], bool(row[4]), user)
        except NotFound:
            raise NotFound(missing) from None
        found = ForumAccess(access, row[5], row[6])
        if need is not None:
            require(need(found, user), detail)
        return found

    async def check(request: Any, user: Principal | None) -> ForumAccess:
        key = path_id(request, param)
        params: dict[str, Any] = {"key": key}
        if user is not None:
            params["clerk_id"] = user.clerk_id
        async with autocommit(services(request).engine) as conn:
            row = (await conn.execute(_forum_statement(kind, user is not None), params)).one_or_none()
        return decide(row, user)

    async def fused(request: Any, clerk_id: str) -> tuple[Any, Callable[[Principal], ForumAccess]] | None:
        key = parse_uuid(request.path_params.get(param))
        if key is None:
            return None  # the usual path answers it (401 for a deleted user before this 404)
        async with autocommit(services(request).engine) as conn:
            row = (await conn.execute(_forum_statement_with_user(kind),
                                      {"key": key, "clerk_id": clerk_id})).one_or_none()
        if row is None:
            return None
        width = len(PRINCIPAL_COLUMNS)
        return row[:width], lambda user: decide(row[width:], user)

    return Access(f"{name} ({kind} {{{param}}})", auth, check, fused)


def _author_or_staff(found: ForumAccess, user: Principal | None) -> bool:
    return user is not None and (found.author_id == user.clerk_id or found.access.is_staff)


def read_post(param: str = "id") -> Access:
    """Anyone who can read the post's course (404 for a deleted post or a hidden course)."""
    return _on_forum("post", param, "optional", None, "", "read")


def member_of_post(param: str = "id") -> Access:
    """A signed-in reader of the post's course: reply to it, like it."""
    return _on_forum("post", param, "user", None, "", "signed-in reader")


def member_of_reply(param: str = "id") -> Access:
    """A signed-in reader of the reply's thread: like it."""
    return _on_forum("reply", param, "user", None, "", "signed-in reader")


def post_author_or_staff(param: str = "id", *, detail: str = "Only the author or course staff can edit this post.") -> Access:
    """The post's author, or the course's staff (editors and up): edit or delete the post."""
    return _on_forum("post", param, "user", _author_or_staff, detail, "author or staff")


def reply_author_or_staff(param: str = "id",
                          *, detail: str = "Only the author or course staff can edit this reply.") -> Access:
    """The reply's author, or the course's staff: edit or delete the reply."""
    return _on_forum("reply", param, "user", _author_or_staff, detail, "author or staff")


def require_staff(access: CourseAccess, detail: str = "Only the course's staff can do this.") -> None:
    """For a change whose body asks for more than the route's policy (pinning a post one may edit)."""
    require(access.is_staff, detail)


# --- editing (versions and suggested edits: server/editing) ---------------------------------


@dataclass(frozen=True)
class SuggestionAccess:
    """A suggested edit the caller may see (its suggester, or the course team), and their access."""

    access: CourseAccess
    lesson_id: uuid.UUID
    suggester_id: str


@cache
def _suggestion_statement(signed_in: bool) -> Any:
    from server.editing.models import SuggestedEdit  # the editing models import nothing from here

    key = bindparam("key", type_=PgUUID(as_uuid=True))
    clerk_id = bindparam("clerk_id", type_=Text) if signed_in else None
    collaborator, enrolled = role_columns(Course.id, clerk_id)
    return (select(Course.id, Course.author_id, Course.is_published, collaborator, enrolled,
                   SuggestedEdit.lesson_id, SuggestedEdit.user_id)
            .select_from(SuggestedEdit).join(Lesson, Lesson.id == SuggestedEdit.lesson_id)
            .join(Unit, Unit.id == Lesson.unit_id).join(Course, Course.id == Unit.course_id)
            .where(SuggestedEdit.id == key))


def _on_suggestion(param: str, need: Callable[[SuggestionAccess, Principal], bool] | None, detail: str,
                   name: str) -> Access:
    missing = "No such suggested edit."

    async def check(request: Any, user: Principal | None) -> SuggestionAccess:
        assert user is not None
        key = path_id(request, param)
        async with autocommit(services(request).engine) as conn:
            row = (await conn.execute(_suggestion_statement(True),
                                      {"key": key, "clerk_id": user.clerk_id})).one_or_none()
        if row is None:
            raise NotFound(missing)
        try:
            access = access_from(row[0], row[1], row[2], row[3], bool(row[4]), user)
        except NotFound:
            raise NotFound(missing) from None
        found = SuggestionAccess(access, row[5], row[6])
        # Someone else's suggestion is not theirs to see (§2: 404), whatever they wanted to do.
        if found.suggester_id != user.clerk_id and access.role < Role.VIEWER:
            raise NotFound(missing)
        if need is not None:
            require(need(found, user), detail)
        return found

    return Access(f"{name} (suggested edit {{{param}}})", "user", check)


def suggester_or_team(param: str = "id") -> Access:
    """The suggester, and the course's team (viewers and up); 404 for anyone else."""
    return _on_suggestion(param, None, "", "suggester or team")


def suggestion_deciders(param: str = "id", *,
                      detail: str = "Only the course's author, editors and admins decide suggestions.") -> Access:
    """Accept or reject: the course's editors, its author and admins."""
    return _on_suggestion(param, lambda found, _user: found.access.can_edit, detail, "edit")


def suggester_of(param: str = "id", *,
                        detail: str = "Only the suggester can withdraw a suggestion.") -> Access:
    """Withdraw: the suggester only."""
    return _on_suggestion(param, lambda found, user: found.suggester_id == user.clerk_id, detail, "suggester")
# --- catalogue: courses, units, lessons, collaborators (server/catalog) ----------------------
# The catalogue's routes use read_course / edit_course / manage_course above; only the outline
# needs its own check.


@dataclass(frozen=True)
class OutlineAccess:
    """What the outline's check learned: the caller's access and the outline's current version."""

    access: CourseAccess
    outline_version: int


@cache
def _outline_access_statement(signed_in: bool) -> Any:
    """Built once per shape: the course's facts, the caller's role on it and its outline version."""
    key = bindparam("key", type_=PgUUID(as_uuid=True))
    collaborator, enrolled = role_columns(Course.id, bindparam("clerk_id", type_=Text) if signed_in else None)
    return select(Course.id, Course.author_id, Course.is_published, collaborator, enrolled,
                  Course.outline_version).where(Course.id == key)


def read_outline(param: str = "id") -> Access:
    """Anyone who can see the course (as ``read_course``); the check also reads the outline's
    version, so a cached outline is served with no other statement (1 statement per warm GET)."""

    async def check(request: Any, user: Principal | None) -> OutlineAccess:
        params: dict[str, Any] = {"key": path_id(request, param)}
        if user is not None:
            params["clerk_id"] = user.clerk_id
        async with autocommit(services(request).engine) as conn:
            row = (await conn.execute(_outline_access_statement(user is not None), params)).one_or_none()
        if row is None:
            raise NotFound("No such course.")
        return OutlineAccess(access_from(row[0], row[1], row[2], row[3], bool(row[4]), user), int(row[5]))

    return Access(f"read (course {{{param}}})", "optional", check)


# === learning: quizzes, media, feedback, flashcards, goals, notifications =====================
# (models imported where used: other domains append their sections to this module too)

RowNeed = Callable[[CourseAccess, Any, Principal], bool]


@cache
def _row_course_statement(kind: str) -> Any:
    """The course facts (as ``_access_statement``) of the quiz, media item or review ``:key``, with
    the caller's (``:clerk_id``) collaborator role and enrollment: one statement, built once per
    kind. A review's row also gives its reviewer (column 5)."""
    from server.feedback.models import CourseFeedback
    from server.learning.models import Quiz
    from server.media.models import Media

    key = bindparam("key", type_=PgUUID(as_uuid=True))
    collaborator, enrolled = role_columns(Course.id, bindparam("clerk_id", type_=Text))
    columns: list[Any] = [Course.id, Course.author_id, Course.is_published, collaborator, enrolled]
    if kind == "feedback":
        return (select(*columns, CourseFeedback.user_id)
                .join(CourseFeedback, CourseFeedback.course_id == Course.id).where(CourseFeedback.id == key))
    row: Any = {"quiz": Quiz, "media": Media}[kind]
    return (select(*columns).select_from(row).join(Lesson, Lesson.id == row.lesson_id)
            .join(Unit, Unit.id == Lesson.unit_id).join(Course, Course.id == Unit.course_id)
            .where(row.id == key))


def _on_row_course(name: str, param: str, kind: str, need: RowNeed | None, detail: str, missing: str) -> Access:
    """A signed-in caller who can see the course of the row ``{param}`` (404 ``missing`` otherwise)
    and, with ``need``, whose role on it (and the row) allows the action (403 ``detail``)."""

    async def check(request: Any, user: Principal | None) -> CourseAccess:
        assert user is not None
        params = {"key": path_id(request, param), "clerk_id": user.clerk_id}
        async with autocommit(services(request).engine) as conn:
            row = (await conn.execute(_row_course_statement(kind), params)).one_or_none()
        if row is None:
            raise NotFound(missing)
        try:
            access = access_from(row[0], row[1], row[2], row[3], bool(row[4]), user)
        except NotFound:
            raise NotFound(missing) from None
        if need is not None:
            require(need(access, row, user), detail)
        return access

    return Access(f"{name} ({kind} {{{param}}})", "user", check)


def read_quiz(param: str = "id") -> Access:
    """A signed-in user who can see the quiz's course (quizzes are not part of the public catalogue)."""
    return _on_row_course("signed-in reader", param, "quiz", None, "", "No such quiz.")


def edit_quiz(param: str = "id", *, detail: str = "Only the course's editors can change quizzes.") -> Access:
    """Editors, the author and admins of the quiz's course."""
    return _on_row_course("edit", param, "quiz", lambda a, row, user: a.can_edit, detail, "No such quiz.")


def edit_media(param: str = "id", *, detail: str = "Only the course's editors can remove media.") -> Access:
    """Editors, the author and admins of the course whose lesson shows the media item."""
    return _on_row_course("edit", param, "media", lambda a, row, user: a.can_edit, detail, "No such media.")


def review_course(param: str = "id", *, detail: str = "Only enrolled learners can review a course.") -> Access:
    """Learners enrolled in the course (a collaborator's role alone does not let them review it)."""
    return _on_course("enrolled learner", param, "course", lambda a: a.enrolled, detail, "user")


def upvote_feedback(param: str = "id") -> Access:
    """A signed-in reader of the review's course who did not write the review."""
    return _on_row_course("reader, not the reviewer", param, "feedback",
                          lambda a, row, user: row[5] != user.clerk_id, "You cannot upvote your own feedback.",
                          "No such feedback.")


@cache
def _flashcard_set_statement(by_card: bool) -> Any:
    """The owner and visibility of the set ``:key`` (or of the card ``:key``'s set)."""
    from server.flashcards.models import Flashcard, FlashcardSet

    key = bindparam("key", type_=PgUUID(as_uuid=True))
    stmt = select(FlashcardSet.user_id, FlashcardSet.is_public)
    if by_card:
        return stmt.join(Flashcard, Flashcard.set_id == FlashcardSet.id).where(Flashcard.id == key)
    return stmt.where(FlashcardSet.id == key)


def _on_flashcards(name: str, param: str, by_card: bool, write: bool) -> Access:
    missing = "No such flashcard." if by_card else "No such flashcard set."
    detail = "Only the set's owner can change its cards." if by_card else "Only the owner can change this set."

    async def check(request: Any, user: Principal | None) -> None:
        assert user is not None
        key = path_id(request, param)
        async with autocommit(services(request).engine) as conn:
            row = (await conn.execute(_flashcard_set_statement(by_card), {"key": key})).one_or_none()
        mine = row is not None and (row[0] == user.clerk_id or user.is_admin)
        if row is None or not (mine or row[1]):
            raise NotFound(missing)  # a private set of someone else is hidden like a missing one
        if write:
            require(mine, detail)

    return Access(f"{name} ({'card' if by_card else 'set'} {{{param}}})", "user", check)


def read_flashcard_set(param: str = "id") -> Access:
    """A public set, or a private one of the caller's (admins see all)."""
    return _on_flashcards("flashcard set reader", param, False, False)


def own_flashcard_set(param: str = "id") -> Access:
    """The set's owner (and admins); others who can see it get 403, the rest 404."""
    return _on_flashcards("flashcard set owner", param, False, True)


def read_flashcard(param: str = "id") -> Access:
    """A card of a set the caller can read (to study it)."""
    return _on_flashcards("flashcard set reader", param, True, False)


def own_flashcard(param: str = "id") -> Access:
    """A card of a set the caller owns (and admins)."""
    return _on_flashcards("flashcard set owner", param, True, True)


def own_goal(param: str = "id") -> Access:
    """The caller's own learning goal (404 for anyone else's)."""
    from server.gamification.models import LearningGoal

    return owned("learning goal", param, LearningGoal.user_id, LearningGoal.id, missing="No such goal.")


def own_notification(param: str = "id") -> Access:
    """The caller's own notification (404 for anyone else's)."""
    from server.notifications.models import Notification

    return owned("notification", param, Notification.user_id, Notification.id, missing="No such notification.")
