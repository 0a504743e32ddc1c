"""Catalogue reads: languages, tags, course payloads, the catalogue's pages, outlines, lessons and
collaborators, most built as JSON by PostgreSQL in one statement.

The route's policy (``server.access``, enforced by the router) has decided the caller's access
before any of these runs; none of them checks it again. Writes are in ``server.catalog.service``.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.access import OutlineAccess, visible_courses
from server.auth import Principal
from server.catalog.content import render_content
from server.catalog.models import Collaborator, Course, CourseTag, Language, Lesson, Tag, Unit
from server.catalog.outline_cache import OutlineCache
from server.errors import NotFound, validation
from server.feedback.models import CourseFeedback
from server.http import encode_cursor
from server.learning.models import UserCourse, UserProgress
from server.users.models import User

DIFFICULTIES = ("beginner", "intermediate", "advanced")

# --- languages and tags ------------------------------------------------------------------


async def list_languages(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(Language.code, Language.name).order_by(Language.name))).all()
    return [{"code": code, "name": name} for code, name in rows]


async def list_tags(session: AsyncSession, *, limit: int, after: str | None) -> list[dict[str, Any]]:
    usage = (select(func.count()).select_from(CourseTag).where(CourseTag.tag_id == Tag.id)
             .scalar_subquery())
    stmt = select(Tag.id, Tag.name, usage.label("course_count")).order_by(Tag.name).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(Tag.name > after)
    rows = (await session.execute(stmt)).all()
    return [{"id": r.id, "name": r.name, "course_count": r.course_count} for r in rows]


# --- course payloads (built as JSON by PostgreSQL: one statement for any number of courses) ------


def _key(name: str) -> Any:
    """A JSON key written into the SQL (a constant, so it is not sent as a parameter each time)."""
    assert name.replace("_", "").isalnum()
    return literal_column(f"'{name}'")


def rfc3339(column: Any) -> Any:
    """A timestamptz as the API writes it (UTC, ``Z``), formatted by PostgreSQL."""
    return func.to_char(func.timezone(literal_column("'UTC'"), column),
                        literal_column("""'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""))


def course_json() -> Any:
    """The course payload as a JSON text column; select it from ``course_from()``.

    ``{id, title, description, difficulty, language{code,name}|null, tags[], author{clerk_id,name},
    is_published, published_at, rating_avg|null, rating_count, enrolled_count, lesson_count,
    created_at, updated_at}`` — every count is an aggregate subquery, so a page of N courses is still
    one statement.
    """
    tags = (select(func.json_agg(aggregate_order_by(Tag.name, Tag.name)))
            .select_from(CourseTag).join(Tag, Tag.id == CourseTag.tag_id)
            .where(CourseTag.course_id == Course.id).scalar_subquery())
    rating_avg = (select(cast(func.avg(CourseFeedback.rating), Float(precision=53)))
                  .where(CourseFeedback.course_id == Course.id).scalar_subquery())
    rating_count = (select(func.count()).select_from(CourseFeedback)
                    .where(CourseFeedback.course_id == Course.id).scalar_subquery())
    enrolled_count = (select(func.count()).select_from(UserCourse)
                      .where(UserCourse.course_id == Course.id).scalar_subquery())
    lesson_count = (select(func.count()).select_from(Lesson).join(Unit, Unit.id == Lesson.unit_id)
                    .where(Unit.course_id == Course.id).scalar_subquery())
    language = case((Language.id.is_(None), null()),
                    else_=func.json_build_object(_key("code"), Language.code, _key("name"), Language.name))
    return cast(func.json_build_object(
        _key("id"), Course.id, _key("title"), Course.title, _key("description"), Course.description,
        _key("difficulty"), Course.difficulty, _key("language"), language,
        _key("tags"), func.coalesce(tags, literal_column("'[]'::json")),
        _key("author"), func.json_build_object(_key("clerk_id"), Course.author_id, _key("name"), User.name),
        _key("is_published"), Course.is_published, _key("published_at"), rfc3339(Course.published_at),
        _key("rating_avg"), rating_avg, _key("rating_count"), rating_count, _key("enrolled_count"), enrolled_count,
        _key("lesson_count"), lesson_count, _key("created_at"), rfc3339(Course.created_at),
        _key("updated_at"), rfc3339(Course.updated_at),
    ), Text)


def course_from(stmt: Any) -> Any:
    """Add the joins ``course_json()`` needs (author, language) to a select over ``courses``."""
    return (stmt.select_from(Course).join(User, User.clerk_id == Course.author_id)
            .outerjoin(Language, Language.id == Course.language_id))


@cache
def _course_statement() -> Any:
    """Built once: the course payload by ``:course_id``."""
    return course_from(select(course_json())).where(Course.id == bindparam("course_id", type_=PgUUID(as_uuid=True)))


async def course_text(conn: AsyncSession | AsyncConnection, course_id: uuid.UUID) -> str:
    """One course payload as JSON text (ready to send); the caller's access is already decided."""
    found = (await conn.execute(_course_statement(), {"course_id": course_id})).scalar()
    if found is None:
        raise NotFound("No such course.")
    return str(found)


async def get_course(session: AsyncSession, course_id: uuid.UUID) -> dict[str, Any]:
    """One course payload as a dict (for other domains that embed it)."""
    loaded: dict[str, Any] = json.loads(await course_text(session, course_id))
    return loaded


@cache
def _list_statement(viewer: str, q: bool, tag: bool, language: bool, difficulty: bool, author: bool,
                    after: bool) -> Any:
    """Built once per shape: a page of course payloads (``viewer`` is anonymous, member or admin)."""
    sample = None if viewer == "anonymous" else Principal(
        clerk_id="", id="", email=None, name=None, image_url=None,
        role="admin" if viewer == "admin" else "member", timezone="UTC")
    visible = visible_courses(sample, bindparam("clerk_id", type_=Text))
    stmt = course_from(select(course_json().label("payload"), Course.id)).where(visible)
    if tag:
        stmt = stmt.where(
            select(CourseTag.id).join(Tag, Tag.id == CourseTag.tag_id)
            .where(CourseTag.course_id == Course.id, Tag.name == bindparam("tag", type_=Text)).exists()
        )
    if language:
        stmt = stmt.where(Language.code == bindparam("language", type_=Text))
    if difficulty:
        stmt = stmt.where(Course.difficulty == bindparam("difficulty", type_=Text))
    if author:
        stmt = stmt.where(Course.author_id == bindparam("author", type_=Text))
    key: Any
    if q:
        query = func.websearch_to_tsquery(literal_column("'english'::regconfig"), bindparam("q", type_=Text))
        # float8 so the cursor's value compares exactly with the recomputed rank.
        key = cast(func.ts_rank(Course.search, query), Float(precision=53))
        stmt = stmt.where(Course.search.op("@@")(query))
    else:
        key = Course.created_at
    stmt = stmt.add_columns(key.label("sort_key"))
    if after:
        stmt = stmt.where(tuple_(key, Course.id) < tuple_(bindparam("after_key", type_=key.type),
                                                          bindparam("after_id", type_=PgUUID(as_uuid=True))))
    return stmt.order_by(key.desc(), Course.id.desc()).limit(bindparam("limit", type_=Integer))


async def list_courses(
    conn: AsyncSession | AsyncConnection,
    *,
    user: Principal | None,
    limit: int,
    cursor: list[Any] | None,
    q: str | None = None,
    tag: str | None = None,
    language: str | None = None,
    difficulty: str | None = None,
    author: str | None = None,
) -> str:
    """A keyset page (``{items, next_cursor}`` as JSON text) of the courses ``user`` may see.

    Newest first, or by relevance (``ts_rank``) when ``q`` is given; the cursor is (sort key, id).
    """
    params: dict[str, Any] = {"limit": limit + 1, "clerk_id": user.clerk_id if user else None, "q": q,
                              "tag": tag, "language": language, "difficulty": difficulty, "author": author}
    if cursor is not None:
        try:
            raw_key, raw_id = cursor
            params["after_id"] = uuid.UUID(str(raw_id))
            params["after_key"] = (float(raw_key) if q
                                   else datetime.fromisoformat(str(raw_key).replace("Z", "+00:00")))
        except (ValueError, TypeError):
            raise validation("query.cursor", "malformed cursor") from None
    viewer = "anonymous" if user is None else "admin" if user.is_admin else "member"
    stmt = _list_statement(viewer, bool(q), bool(tag), bool(language), bool(difficulty), bool(author),
                           cursor is not None)
    wanted = {"limit", "clerk_id" if viewer == "member" else "", "q" if q else "", "tag" if tag else "",
              "language" if language else "", "difficulty" if difficulty else "", "author" if author else "",
              "after_key" if cursor is not None else "", "after_id" if cursor is not None else ""}
    used = {name: value for name, value in params.items() if name in wanted}
    rows = (await conn.execute(stmt, used)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor([rows[-1].sort_key, rows[-1].id]) if more and rows else None
    return '{"items":[' + ",".join(r.payload for r in rows) + '],"next_cursor":' + json.dumps(next_cursor) + "}"


# --- units and lessons ---------------------------------------------------------------------


def unit_payload(unit: Unit) -> dict[str, Any]:
    return {"id": unit.id, "course_id": unit.course_id, "title": unit.title, "description": unit.description,
            "position": unit.position, "created_at": unit.created_at, "updated_at": unit.updated_at}


async def lesson_payload(lesson: Lesson, course_id: uuid.UUID) -> dict[str, Any]:
    return {
        "id": lesson.id, "unit_id": lesson.unit_id, "course_id": course_id, "title": lesson.title,
        "content_type": lesson.content_type, "content": await render_content(lesson.content or {}),
        "position": lesson.position, "version": str(lesson.revision),
        "created_at": lesson.created_at, "updated_at": lesson.updated_at,
    }


@cache
def _lesson_read_statement() -> Any:
    lesson_id = bindparam("lesson_id", type_=PgUUID(as_uuid=True))
    return (select(Lesson.id, Lesson.unit_id, Unit.course_id, Lesson.title, Lesson.content_type, Lesson.content,
                   Lesson.position, Lesson.revision, Lesson.created_at, Lesson.updated_at)
            .select_from(Lesson).join(Unit, Unit.id == Lesson.unit_id).where(Lesson.id == lesson_id))


async def read_lesson(conn: AsyncSession | AsyncConnection, lesson_id: uuid.UUID) -> dict[str, Any]:
    """``GET /lessons/{id}``: the payload (the route's policy has decided access)."""
    row = (await conn.execute(_lesson_read_statement(), {"lesson_id": lesson_id})).one_or_none()
    if row is None:
        raise NotFound("No such lesson.")
    return {
        "id": row.id, "unit_id": row.unit_id, "course_id": row.course_id, "title": row.title,
        "content_type": row.content_type, "content": await render_content(row.content or {}),
        "position": row.position, "version": str(row.revision),
        "created_at": row.created_at, "updated_at": row.updated_at,
    }


# --- outline -----------------------------------------------------------------------------


@cache
def _outline_statement(with_status: bool) -> Any:
    """Built once: course payload + units + lessons (+ an enrolled caller's status) as JSON by ``:course_id``."""
    course_id = bindparam("course_id", type_=PgUUID(as_uuid=True))
    lesson_fields: list[Any] = [_key("id"), Lesson.id, _key("title"), Lesson.title,
                                _key("content_type"), Lesson.content_type, _key("position"), Lesson.position]
    lessons_from: Any = Lesson
    if with_status:
        lesson_fields += [_key("status"), func.coalesce(UserProgress.status, literal_column("'not_started'"))]
        lessons_from = Lesson.__table__.outerjoin(
            UserProgress, and_(UserProgress.lesson_id == Lesson.id,
                               UserProgress.user_id == bindparam("clerk_id", type_=Text)))
    lesson = func.json_strip_nulls(func.json_build_object(*lesson_fields))  # compact, as the outline always was
    lessons = (select(func.json_agg(aggregate_order_by(lesson, Lesson.position, Lesson.id)))
               .select_from(lessons_from).where(Lesson.unit_id == Unit.id).scalar_subquery())
    unit = func.json_build_object(_key("id"), Unit.id, _key("title"), Unit.title, _key("position"), Unit.position,
                                  _key("lessons"), func.coalesce(lessons, literal_column("'[]'::json")))
    units = (select(func.json_agg(aggregate_order_by(unit, Unit.position, Unit.id)))
             .where(Unit.course_id == Course.id).scalar_subquery())
    return course_from(select(
        course_json(), cast(func.coalesce(units, literal_column("'[]'::json")), Text), Course.outline_version,
    )).where(Course.id == course_id)


async def outline_text(conn: AsyncSession | AsyncConnection, course_id: uuid.UUID, enrolled: str | None) -> str:
    """``{"course": {...}, "units": [...]}`` as JSON text, in ONE statement.

    ``enrolled``: the clerk_id of an enrolled caller, whose ``status`` each lesson then carries.
    """
    params: dict[str, Any] = {"course_id": course_id}
    if enrolled is not None:
        params["clerk_id"] = enrolled
    row = (await conn.execute(_outline_statement(enrolled is not None), params)).one_or_none()
    if row is None:
        raise NotFound("No such course.")
    return _outline_payload(row)


def _outline_payload(row: Any) -> str:
    return '{"course":' + str(row[0]) + ',"units":' + str(row[1]) + "}"


async def outline_bytes(conn: AsyncSession | AsyncConnection, granted: OutlineAccess, user: Principal | None,
                        cache: OutlineCache) -> bytes:
    """The outline as ``outline_text`` renders it, served from ``cache`` when it is current.

    ``granted``: the caller's access and the outline's version, read by the route's policy
    (``read_outline``): NO other statement when cached. Enrolled callers (status per lesson)
    always get ``outline_text``.
    """
    course_id = granted.access.course_id
    if granted.access.enrolled and user is not None:
        return (await outline_text(conn, course_id, user.clerk_id)).encode()
    found = cache.get(course_id, granted.outline_version)
    if found is not None:
        return found
    # Every caller who is not enrolled gets the same bytes, with the version of the very snapshot
    # the statement read.
    row = (await conn.execute(_outline_statement(False), {"course_id": course_id})).one_or_none()
    if row is None:
        raise NotFound("No such course.")
    payload = _outline_payload(row).encode()
    cache.put(course_id, int(row[2]), payload)
    return payload


# --- collaborators -----------------------------------------------------------------------


def collaborator_payload(row: Any) -> dict[str, Any]:
    return {"clerk_id": row.user_id, "name": row.name, "role": row.role, "created_at": row.created_at}


async def list_collaborators(session: AsyncSession, course_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = (await session.execute(
        select(Collaborator.user_id, User.name, Collaborator.role, Collaborator.created_at)
        .join(User, User.clerk_id == Collaborator.user_id)
        .where(Collaborator.course_id == course_id).order_by(Collaborator.created_at, Collaborator.id)
    )).all()
    return [collaborator_payload(r) for r in rows]


async def get_collaborator(session: AsyncSession, course_id: uuid.UUID, clerk_id: str) -> dict[str, Any]:
    row = (await session.execute(
        select(Collaborator.user_id, User.name, Collaborator.role, Collaborator.created_at)
        .join(User, User.clerk_id == Collaborator.user_id)
        .where(Collaborator.course_id == course_id, Collaborator.user_id == clerk_id)
    )).one_or_none()
    if row is None:
        raise NotFound("No such collaborator.")
    return collaborator_payload(row)
