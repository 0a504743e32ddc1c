"""Catalogue and course building: courses, units, lessons, tags, languages, collaborators.

Plain functions with an explicit session; access is decided by ``server.access`` in the API layer
(the few helpers here that need the caller's role take a ``CourseAccess``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    literal_column,
    null,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by, insert
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.access import access_from, role_columns, visible_courses
from server.auth import Principal
from server.catalog.content import Prerendered, render_content, validate_content, with_html
from server.catalog.models import Collaborator, Course, CourseTag, Language, Lesson, Tag, Unit
from server.catalog.outline_cache import OutlineCache
from server.errors import Conflict, NotFound, validation
from server.feedback.models import CourseFeedback
from server.http import encode_cursor
from server.learning.models import UserCourse, UserProgress
from server.learning.service import recompute_course_progress
from server.media.models import Media
from server.notifications.service import notify
from server.users.models import User

DIFFICULTIES = ("beginner", "intermediate", "advanced")
_UUIDS = ARRAY(PgUUID(as_uuid=True))

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


async def language_id(session: AsyncSession, code: str | None, *, loc: str = "language") -> uuid.UUID | None:
    if code is None:
        return None
    found = (await session.execute(select(Language.id).where(Language.code == code))).scalar_one_or_none()
    if found is None:
        raise validation(loc, f"unknown language code {code!r} (see GET /api/languages)")
    return found


def clean_tags(names: Sequence[str]) -> list[str]:
    """Trimmed, de-duplicated tag names, first occurrence wins."""
    seen: dict[str, None] = {}
    for name in names:
        cleaned = " ".join(name.split())
        if cleaned:
            seen.setdefault(cleaned, None)
    return list(seen)


async def set_course_tags(session: AsyncSession, course_id: uuid.UUID, names: Sequence[str]) -> None:
    """Replace the course's tags; unknown tag names are created on demand."""
    names = clean_tags(names)
    await session.execute(delete(CourseTag).where(CourseTag.course_id == course_id))
    if not names:
        return
    await session.execute(insert(Tag).values([{"name": n} for n in names]).on_conflict_do_nothing())
    await session.execute(
        insert(CourseTag).from_select(
            ["course_id", "tag_id"],
            select(literal(course_id, PgUUID(as_uuid=True)), Tag.id).where(Tag.name.in_(names)),
        ).on_conflict_do_nothing()
    )


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
def _course_statement(checked: bool) -> Any:
    """Built once: the course payload by ``:course_id``, with the caller's role facts unless ``checked``."""
    course_id = bindparam("course_id", type_=PgUUID(as_uuid=True))
    if checked:
        return course_from(select(course_json())).where(Course.id == course_id)
    collaborator, enrolled = role_columns(course_id, bindparam("clerk_id", type_=Text))
    return course_from(select(Course.is_published, Course.author_id, collaborator, enrolled, course_json())
                       ).where(Course.id == course_id)


async def course_text(conn: AsyncSession | AsyncConnection, course_id: uuid.UUID, *,
                      user: Principal | Literal[False] | None = False) -> str:
    """One course payload as JSON text (ready to send).

    With ``user`` (None for anonymous) the caller's access is checked in the same statement (404 when
    hidden); without it the caller has already been checked.
    """
    if user is False:
        found = (await conn.execute(_course_statement(True), {"course_id": course_id})).scalar()
        if found is None:
            raise NotFound("No such course.")
        return str(found)
    row = (await conn.execute(_course_statement(False), {
        "course_id": course_id, "clerk_id": user.clerk_id if user else None})).one_or_none()
    if row is None:
        raise NotFound("No such course.")
    access_from(course_id, row[1], row[0], row[2], bool(row[3]), user)
    return str(row[4])


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


async def create_course(
    session: AsyncSession, *, author: Principal, title: str, description: str | None,
    difficulty: str | None, language: str | None, tags: Sequence[str],
) -> uuid.UUID:
    course = Course(author_id=author.clerk_id, title=title, description=description, difficulty=difficulty,
                    language_id=await language_id(session, language))
    session.add(course)
    await session.flush()
    if tags:
        await set_course_tags(session, course.id, tags)
    return course.id


async def update_course(session: AsyncSession, course_id: uuid.UUID, changes: dict[str, Any]) -> None:
    values: dict[str, Any] = {}
    for name in ("title", "description", "difficulty"):
        if name in changes:
            values[name] = changes[name]
    if "language" in changes:
        values["language_id"] = await language_id(session, changes["language"])
    if values:
        await session.execute(update(Course).where(Course.id == course_id).values(**values))
    if "tags" in changes:
        await set_course_tags(session, course_id, changes["tags"] or [])


async def course_media_paths(session: AsyncSession, *conditions: ColumnElement[bool]) -> list[str]:
    stmt = (select(Media.storage_path).join(Lesson, Lesson.id == Media.lesson_id)
            .join(Unit, Unit.id == Lesson.unit_id).where(Media.storage_path.is_not(None), *conditions))
    return [p for p in (await session.execute(stmt)).scalars() if p]


async def delete_course(session: AsyncSession, course_id: uuid.UUID) -> list[str]:
    """Delete a course and everything under it; returns the media files to remove after commit."""
    paths = await course_media_paths(session, Unit.course_id == course_id)
    await session.execute(delete(Course).where(Course.id == course_id))
    return paths


async def set_published(session: AsyncSession, course_id: uuid.UUID, published: bool) -> None:
    if published:
        has_lessons = (await session.execute(
            select(Lesson.id).join(Unit, Unit.id == Lesson.unit_id).where(Unit.course_id == course_id).limit(1)
        )).first()
        if has_lessons is None:
            raise Conflict("A course without any lesson cannot be published.")
        await session.execute(
            update(Course).where(Course.id == course_id)
            .values(is_published=True, published_at=func.coalesce(Course.published_at, func.now()))
        )
    else:
        await session.execute(update(Course).where(Course.id == course_id).values(is_published=False))


def remove_media_files(media_dir: Path, paths: Sequence[str]) -> None:
    """Delete uploaded files (after commit); never outside ``media_dir``."""
    root = media_dir.resolve()
    for rel in paths:
        target = (root / rel).resolve()
        if target.is_relative_to(root) and target != root:
            target.unlink(missing_ok=True)


# --- positions ---------------------------------------------------------------------------
# Children of a course (units) and of a unit (lessons) carry dense positions 0..n-1. Every change to
# a course's structure locks the course row first (SELECT ... FOR UPDATE): concurrent creates,
# moves, deletes and reorders serialise, and the progress recompute that follows them never
# deadlocks against another one on the same course.


async def lock_course(session: AsyncSession, course_id: uuid.UUID) -> None:
    await session.execute(select(Course.id).where(Course.id == course_id).with_for_update())


def _clamp(position: int | None, count: int) -> int:
    return count if position is None else max(0, min(position, count))


async def _open_gap(session: AsyncSession, model: type[Unit] | type[Lesson], parent: ColumnElement[bool],
                    position: int) -> None:
    await session.execute(update(model).where(parent, model.position >= position)
                          .values(position=model.position + 1))


async def _close_gap(session: AsyncSession, model: type[Unit] | type[Lesson], parent: ColumnElement[bool],
                     position: int) -> None:
    await session.execute(update(model).where(parent, model.position > position)
                          .values(position=model.position - 1))


async def _apply_order(session: AsyncSession, model: type[Unit] | type[Lesson], parent: ColumnElement[bool],
                       current: list[uuid.UUID], wanted: list[uuid.UUID], loc: str) -> None:
    if len(wanted) != len(set(wanted)) or set(wanted) != set(current):
        raise validation(loc, "must list every item exactly once (the full new order)")
    await session.execute(
        update(model).where(parent, model.id == func.any(literal(wanted, _UUIDS)))
        .values(position=func.array_position(literal(wanted, _UUIDS), model.id) - 1)
    )


# --- units -------------------------------------------------------------------------------


def unit_payload(unit: Unit) -> dict[str, Any]:
    return {"id": unit.id, "course_id": unit.course_id, "title": unit.title, "description": unit.description,
            "position": unit.position, "created_at": unit.created_at, "updated_at": unit.updated_at}


async def create_unit(session: AsyncSession, course_id: uuid.UUID, *, title: str, description: str | None,
                      position: int | None) -> Unit:
    await lock_course(session, course_id)
    count = (await session.execute(select(func.count()).where(Unit.course_id == course_id))).scalar_one()
    at = _clamp(position, count)
    if at < count:
        await _open_gap(session, Unit, Unit.course_id == course_id, at)
    unit = Unit(course_id=course_id, title=title, description=description, position=at)
    session.add(unit)
    await session.flush()
    await session.refresh(unit)
    return unit


async def get_unit(session: AsyncSession, unit_id: uuid.UUID) -> Unit:
    unit = await session.get(Unit, unit_id, populate_existing=True)
    if unit is None:
        raise NotFound("No such unit.")
    return unit


async def unit_course_id(session: AsyncSession, unit_id: uuid.UUID) -> uuid.UUID:
    found = (await session.execute(select(Unit.course_id).where(Unit.id == unit_id))).scalar_one_or_none()
    if found is None:
        raise NotFound("No such unit.")
    return found


async def update_unit(session: AsyncSession, unit_id: uuid.UUID, changes: dict[str, Any]) -> Unit:
    unit = await get_unit(session, unit_id)
    if "position" in changes and changes["position"] is not None:
        await lock_course(session, unit.course_id)
        unit = await get_unit(session, unit_id)
        order = list((await session.execute(
            select(Unit.id).where(Unit.course_id == unit.course_id).order_by(Unit.position, Unit.id)
        )).scalars())
        order.remove(unit.id)
        order.insert(_clamp(changes["position"], len(order)), unit.id)
        await _apply_order(session, Unit, Unit.course_id == unit.course_id, order, order, "position")
    values = {k: changes[k] for k in ("title", "description") if k in changes}
    if values:
        await session.execute(update(Unit).where(Unit.id == unit_id).values(**values))
    return await get_unit(session, unit_id)


async def delete_unit(session: AsyncSession, unit_id: uuid.UUID) -> list[str]:
    course_id = await unit_course_id(session, unit_id)
    await lock_course(session, course_id)
    unit = await get_unit(session, unit_id)
    paths = await course_media_paths(session, Unit.id == unit_id)
    await session.execute(delete(Unit).where(Unit.id == unit_id))
    await _close_gap(session, Unit, Unit.course_id == course_id, unit.position)
    await recompute_course_progress(session, course_id)
    return paths


async def reorder_units(session: AsyncSession, course_id: uuid.UUID, unit_ids: list[uuid.UUID]) -> list[Unit]:
    await lock_course(session, course_id)
    current = list((await session.execute(select(Unit.id).where(Unit.course_id == course_id))).scalars())
    await _apply_order(session, Unit, Unit.course_id == course_id, current, unit_ids, "unit_ids")
    return list((await session.execute(
        select(Unit).where(Unit.course_id == course_id).order_by(Unit.position)
        .execution_options(populate_existing=True)
    )).scalars())


# --- lessons -----------------------------------------------------------------------------


async def lesson_payload(lesson: Lesson, course_id: uuid.UUID) -> dict[str, Any]:
    return {
        "id": lesson.id, "unit_id": lesson.unit_id, "course_id": course_id, "title": lesson.title,
        "content_type": lesson.content_type, "content": await render_content(lesson.content or {}),
        "position": lesson.position, "version": str(lesson.revision),
        "created_at": lesson.created_at, "updated_at": lesson.updated_at,
    }


@cache
def _lesson_read_statement(signed_in: bool) -> Any:
    lesson_id = bindparam("lesson_id", type_=PgUUID(as_uuid=True))
    collaborator, enrolled = role_columns(Unit.course_id,
                                          bindparam("clerk_id", type_=Text) if signed_in else None)
    return (select(Lesson.id, Lesson.unit_id, Unit.course_id, Lesson.title, Lesson.content_type, Lesson.content,
                   Lesson.position, Lesson.revision, Lesson.created_at, Lesson.updated_at,
                   Course.is_published, Course.author_id, collaborator.label("collaborator"),
                   enrolled.label("enrolled"))
            .select_from(Lesson).join(Unit, Unit.id == Lesson.unit_id).join(Course, Course.id == Unit.course_id)
            .where(Lesson.id == lesson_id))


async def read_lesson(conn: AsyncSession | AsyncConnection, lesson_id: uuid.UUID,
                      user: Principal | None) -> dict[str, Any]:
    """``GET /lessons/{id}``: the payload, access-checked (404 when unknown or hidden), in one statement."""
    params: dict[str, Any] = {"lesson_id": lesson_id}
    if user is not None:
        params["clerk_id"] = user.clerk_id
    row = (await conn.execute(_lesson_read_statement(user is not None), params)).one_or_none()
    if row is None:
        raise NotFound("No such lesson.")
    try:
        access_from(row.course_id, row.author_id, row.is_published, row.collaborator, bool(row.enrolled), user)
    except NotFound:
        raise NotFound("No such lesson.") from None
    return {
        "id": row.id, "unit_id": row.unit_id, "course_id": row.course_id, "title": row.title,
        "content_type": row.content_type, "content": await render_content(row.content or {}),
        "position": row.position, "version": str(row.revision),
        "created_at": row.created_at, "updated_at": row.updated_at,
    }


async def get_lesson(session: AsyncSession, lesson_id: uuid.UUID) -> tuple[Lesson, uuid.UUID]:
    row = (await session.execute(
        select(Lesson, Unit.course_id).join(Unit, Unit.id == Lesson.unit_id).where(Lesson.id == lesson_id)
        .execution_options(populate_existing=True)
    )).one_or_none()
    if row is None:
        raise NotFound("No such lesson.")
    return row[0], row[1]


async def create_lesson(session: AsyncSession, unit_id: uuid.UUID, *, title: str, content_type: str,
                        content: dict[str, Any] | None, position: int | None,
                        prerendered: Prerendered | None = None) -> Lesson:
    stored = await with_html(validate_content(content_type, content), prerendered)
    await lock_course(session, await unit_course_id(session, unit_id))
    course_id = await unit_course_id(session, unit_id)  # still there once we hold the lock
    count = (await session.execute(select(func.count()).where(Lesson.unit_id == unit_id))).scalar_one()
    at = _clamp(position, count)
    if at < count:
        await _open_gap(session, Lesson, Lesson.unit_id == unit_id, at)
    lesson = Lesson(unit_id=unit_id, title=title, content_type=content_type, content=stored, position=at)
    session.add(lesson)
    await session.flush()
    await recompute_course_progress(session, course_id)
    await session.refresh(lesson)
    return lesson


def merged_content(lesson: Lesson, content_type: str | None, content: dict[str, Any] | None) -> dict[str, Any]:
    """The lesson's content after a PATCH: given keys replace stored ones (null removes one).

    Changing ``content_type`` keeps only the ``body`` of the old content.
    """
    old = dict(lesson.content or {})
    kind = content_type or lesson.content_type
    base = old if kind == lesson.content_type else {"body": old.get("body", "")}
    merged = {**base, **(content or {})}
    return validate_content(kind, {k: v for k, v in merged.items() if v is not None})


async def update_lesson(session: AsyncSession, lesson_id: uuid.UUID, changes: dict[str, Any],
                        prerendered: Prerendered | None = None) -> None:
    """Apply a validated PATCH (title, content_type, content, position, unit_id) directly to the row.

    ``prerendered``: the new body's HTML, rendered before the transaction (content.prerender).
    """
    lesson, course_id = await get_lesson(session, lesson_id)
    values: dict[str, Any] = {}
    text_changed = False
    if "title" in changes and changes["title"] != lesson.title:
        values["title"] = changes["title"]
        text_changed = True
    if "content" in changes or "content_type" in changes:
        new_content = merged_content(lesson, changes.get("content_type"), changes.get("content"))
        old_content = lesson.content or {}
        if new_content.get("body", "") != old_content.get("body", ""):
            text_changed = True
            values["content"] = await with_html(new_content, prerendered)
        else:
            # Leave ``body`` to whoever owns it now (a live room may be writing it): change only the
            # other keys, in SQL, so a concurrent body write is never overwritten with a stale copy.
            removed = [k for k in old_content if k not in new_content and k not in ("body", "html")]
            delta = {k: v for k, v in new_content.items() if k != "body"}
            values["content"] = (Lesson.content.op("-")(literal(removed, ARRAY(Text)))
                                 .op("||")(cast(literal(json.dumps(delta)), JSONB)))
        if changes.get("content_type"):
            values["content_type"] = changes["content_type"]
    if text_changed:
        values["revision"] = Lesson.revision + 1
    if values:
        await session.execute(update(Lesson).where(Lesson.id == lesson_id).values(**values))
    target_unit = changes.get("unit_id")
    moving = target_unit is not None and target_unit != lesson.unit_id
    if moving or changes.get("position") is not None:
        await lock_course(session, course_id)
        lesson, course_id = await get_lesson(session, lesson_id)  # as it is under the lock
    if moving and target_unit is not None:
        await move_lesson(session, lesson, course_id, target_unit, changes.get("position"))
    elif changes.get("position") is not None:
        order = list((await session.execute(
            select(Lesson.id).where(Lesson.unit_id == lesson.unit_id).order_by(Lesson.position, Lesson.id)
        )).scalars())
        order.remove(lesson.id)
        order.insert(_clamp(changes["position"], len(order)), lesson.id)
        await _apply_order(session, Lesson, Lesson.unit_id == lesson.unit_id, order, order, "position")


async def move_lesson(session: AsyncSession, lesson: Lesson, course_id: uuid.UUID, unit_id: uuid.UUID,
                      position: int | None) -> None:
    target_course = (await session.execute(select(Unit.course_id).where(Unit.id == unit_id))).scalar_one_or_none()
    if target_course != course_id:
        raise validation("unit_id", "must be a unit of the same course")
    old_position = (await session.execute(select(Lesson.position).where(Lesson.id == lesson.id))).scalar_one()
    await _close_gap(session, Lesson, Lesson.unit_id == lesson.unit_id, old_position)
    count = (await session.execute(select(func.count()).where(Lesson.unit_id == unit_id))).scalar_one()
    at = _clamp(position, count)
    await _open_gap(session, Lesson, Lesson.unit_id == unit_id, at)
    await session.execute(update(Lesson).where(Lesson.id == lesson.id).values(unit_id=unit_id, position=at))


async def delete_lesson(session: AsyncSession, lesson_id: uuid.UUID) -> list[str]:
    lesson, course_id = await get_lesson(session, lesson_id)
    await lock_course(session, course_id)
    lesson, course_id = await get_lesson(session, lesson_id)  # as it is under the lock
    paths = [p for p in (await session.execute(
        select(Media.storage_path).where(Media.lesson_id == lesson_id, Media.storage_path.is_not(None))
    )).scalars() if p]
    await session.execute(delete(Lesson).where(Lesson.id == lesson_id))
    await _close_gap(session, Lesson, Lesson.unit_id == lesson.unit_id, lesson.position)
    await recompute_course_progress(session, course_id)
    return paths


async def reorder_lessons(session: AsyncSession, unit_id: uuid.UUID, lesson_ids: list[uuid.UUID]) -> list[Lesson]:
    await lock_course(session, await unit_course_id(session, unit_id))
    await unit_course_id(session, unit_id)  # still there once we hold the lock
    current = list((await session.execute(select(Lesson.id).where(Lesson.unit_id == unit_id))).scalars())
    await _apply_order(session, Lesson, Lesson.unit_id == unit_id, current, lesson_ids, "lesson_ids")
    return list((await session.execute(
        select(Lesson).where(Lesson.unit_id == unit_id).order_by(Lesson.position)
        .execution_options(populate_existing=True)
    )).scalars())


# --- outline -----------------------------------------------------------------------------


@cache
def _outline_statement(signed_in: bool) -> Any:
    """Built once: course payload + units + lessons (+ the caller's status) as JSON by ``:course_id``."""
    course_id = bindparam("course_id", type_=PgUUID(as_uuid=True))
    clerk_id = bindparam("clerk_id", type_=Text) if signed_in else None
    collaborator, enrolled = role_columns(course_id, clerk_id)
    lesson_fields: list[Any] = [_key("id"), Lesson.id, _key("title"), Lesson.title,
                                _key("content_type"), Lesson.content_type, _key("position"), Lesson.position]
    lessons_from: Any = Lesson
    if clerk_id is not None:
        # json_strip_nulls drops ``status`` for callers who are not enrolled.
        lesson_fields += [_key("status"), case((enrolled, func.coalesce(UserProgress.status, literal_column("'not_started'"))),
                                         else_=null())]
        lessons_from = Lesson.__table__.outerjoin(
            UserProgress, and_(UserProgress.lesson_id == Lesson.id, UserProgress.user_id == clerk_id))
    lesson = func.json_strip_nulls(func.json_build_object(*lesson_fields))
    lessons = (select(func.json_agg(aggregate_order_by(lesson, Lesson.position, Lesson.id)))
               .select_from(lessons_from).where(Lesson.unit_id == Unit.id).scalar_subquery())
    unit = func.json_build_object(_key("id"), Unit.id, _key("title"), Unit.title, _key("position"), Unit.position,
                                  _key("lessons"), func.coalesce(lessons, literal_column("'[]'::json")))
    units = (select(func.json_agg(aggregate_order_by(unit, Unit.position, Unit.id)))
             .where(Unit.course_id == Course.id).scalar_subquery())
    return course_from(select(
        Course.is_published, Course.author_id, collaborator, enrolled, course_json(),
        cast(func.coalesce(units, literal_column("'[]'::json")), Text), Course.outline_version,
    )).where(Course.id == course_id)


@cache
def _outline_head_statement(signed_in: bool) -> Any:
    """Built once: what the cached outline needs: its version and the caller's access facts."""
    course_id = bindparam("course_id", type_=PgUUID(as_uuid=True))
    collaborator, enrolled = role_columns(course_id, bindparam("clerk_id", type_=Text) if signed_in else None)
    return select(Course.outline_version, Course.is_published, Course.author_id, collaborator, enrolled
                  ).where(Course.id == course_id)


async def outline_text(conn: AsyncSession | AsyncConnection, course_id: uuid.UUID,
                       user: Principal | None) -> str:
    """``{"course": {...}, "units": [...]}`` as JSON text, access-checked, in ONE statement.

    Each lesson carries the caller's ``status`` only when they are enrolled.
    """
    params: dict[str, Any] = {"course_id": course_id}
    if user is not None:
        params["clerk_id"] = user.clerk_id
    row = (await conn.execute(_outline_statement(user is not None), params)).one_or_none()
    if row is None:
        raise NotFound("No such course.")
    access_from(course_id, row[1], row[0], row[2], bool(row[3]), user)
    return _outline_payload(row)


def _outline_payload(row: Any) -> str:
    return '{"course":' + str(row[4]) + ',"units":' + str(row[5]) + "}"


async def outline_bytes(conn: AsyncSession | AsyncConnection, course_id: uuid.UUID, user: Principal | None,
                        cache: OutlineCache) -> bytes:
    """The outline as ``outline_text`` renders it, served from ``cache`` when it is current.

    ONE statement when cached: the course's ``outline_version`` with the caller's access facts.
    Enrolled callers (status per lesson) always get ``outline_text``.
    """
    params: dict[str, Any] = {"course_id": course_id}
    if user is not None:
        params["clerk_id"] = user.clerk_id
    head = (await conn.execute(_outline_head_statement(user is not None), params)).one_or_none()
    if head is None:
        raise NotFound("No such course.")
    access_from(course_id, head[2], head[1], head[3], bool(head[4]), user)
    if head[4]:
        return (await outline_text(conn, course_id, user)).encode()
    found = cache.get(course_id, head[0])
    if found is not None:
        return found
    # Access is decided; the anonymous statement renders the same bytes as for any caller who is
    # not enrolled, with the version of the very snapshot it read.
    row = (await conn.execute(_outline_statement(False), {"course_id": course_id})).one_or_none()
    if row is None:
        raise NotFound("No such course.")
    payload = _outline_payload(row).encode()
    cache.put(course_id, int(row[6]), payload)
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


async def add_collaborator(session: AsyncSession, course_id: uuid.UUID, *, clerk_id: str, role: str,
                           actor: Principal) -> dict[str, Any]:
    user_exists = (await session.execute(select(User.id).where(User.clerk_id == clerk_id))).first()
    if user_exists is None:
        raise NotFound("No such user.")
    course = (await session.execute(select(Course.author_id, Course.title).where(Course.id == course_id))).one()
    if course.author_id == clerk_id:
        raise Conflict("The author is already in charge of this course.")
    inserted = (await session.execute(
        insert(Collaborator).values(course_id=course_id, user_id=clerk_id, role=role)
        .on_conflict_do_nothing().returning(Collaborator.id)
    )).first()
    if inserted is None:
        raise Conflict("Already a collaborator; PATCH to change the role.")
    await notify(session, user_id=clerk_id, type="collaborator_added",
                 title=f"You were added to “{course.title}” as {role}",
                 metadata={"course_id": str(course_id), "role": role}, actor_id=actor.clerk_id)
    return await get_collaborator(session, course_id, clerk_id)


async def change_collaborator(session: AsyncSession, course_id: uuid.UUID, clerk_id: str, role: str) -> dict[str, Any]:
    done = (await session.execute(
        update(Collaborator).where(Collaborator.course_id == course_id, Collaborator.user_id == clerk_id)
        .values(role=role).returning(Collaborator.id)
    )).first()
    if done is None:
        raise NotFound("No such collaborator.")
    return await get_collaborator(session, course_id, clerk_id)


async def remove_collaborator(session: AsyncSession, course_id: uuid.UUID, clerk_id: str) -> None:
    done = (await session.execute(
        delete(Collaborator).where(Collaborator.course_id == course_id, Collaborator.user_id == clerk_id)
        .returning(Collaborator.id)
    )).first()
    if done is None:
        raise NotFound("No such collaborator.")

