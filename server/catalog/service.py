"""Catalogue writes: courses, units, lessons, tags, collaborators.

Plain functions with an explicit session. Who may call them is decided before they run, by the
route's policy (``server.access``, enforced by the router): they trust their caller and keep only
the checks that depend on the rows' state (a course without lessons cannot be published, ...).
Reads (payloads built as JSON by PostgreSQL) are in ``server.catalog.queries``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth import Principal
from server.catalog.content import Prerendered, validate_content, with_html
from server.catalog.models import Collaborator, Course, CourseTag, Language, Lesson, Tag, Unit
from server.catalog.queries import get_collaborator
from server.errors import Conflict, NotFound, validation
from server.learning.service import recompute_course_progress
from server.media.models import Media
from server.notifications.service import notify
from server.outbox.emit import emit
from server.users.models import User

_UUIDS = ARRAY(PgUUID(as_uuid=True))

# --- languages and tags ------------------------------------------------------------------


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


# --- courses -----------------------------------------------------------------------------


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
    await lock_course(session, course_id)  # the lesson check and the flag change see one course state
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


async def outline_changed(session: AsyncSession, course_id: uuid.UUID, *, lesson_id: uuid.UUID | None = None,
                          title: str | None = None) -> None:
    """Record ``outline.updated`` on ``course:<id>`` (§7) in the writing transaction."""
    await emit(session, channel=f"course:{course_id}", event="outline.updated",
               data={"course_id": course_id, "lesson_id": lesson_id, "title": title})


# --- units -------------------------------------------------------------------------------


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
    await outline_changed(session, course_id)
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
    if values or changes.get("position") is not None:
        await outline_changed(session, unit.course_id)
    return await get_unit(session, unit_id)


async def delete_unit(session: AsyncSession, unit_id: uuid.UUID) -> list[str]:
    course_id = await unit_course_id(session, unit_id)
    await lock_course(session, course_id)
    unit = await get_unit(session, unit_id)
    paths = await course_media_paths(session, Unit.id == unit_id)
    await session.execute(delete(Unit).where(Unit.id == unit_id))
    await _close_gap(session, Unit, Unit.course_id == course_id, unit.position)
    await recompute_course_progress(session, course_id)
    await outline_changed(session, course_id)
    return paths


async def reorder_units(session: AsyncSession, course_id: uuid.UUID, unit_ids: list[uuid.UUID]) -> list[Unit]:
    await lock_course(session, course_id)
    current = list((await session.execute(select(Unit.id).where(Unit.course_id == course_id))).scalars())
    await _apply_order(session, Unit, Unit.course_id == course_id, current, unit_ids, "unit_ids")
    await outline_changed(session, course_id)
    return list((await session.execute(
        select(Unit).where(Unit.course_id == course_id).order_by(Unit.position)
        .execution_options(populate_existing=True)
    )).scalars())


# --- lessons -----------------------------------------------------------------------------


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
    await outline_changed(session, course_id)
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
    await outline_changed(session, course_id)
    return paths


async def reorder_lessons(session: AsyncSession, unit_id: uuid.UUID, lesson_ids: list[uuid.UUID]) -> list[Lesson]:
    await lock_course(session, await unit_course_id(session, unit_id))
    course_id = await unit_course_id(session, unit_id)  # still there once we hold the lock
    current = list((await session.execute(select(Lesson.id).where(Lesson.unit_id == unit_id))).scalars())
    await _apply_order(session, Lesson, Lesson.unit_id == unit_id, current, lesson_ids, "lesson_ids")
    await outline_changed(session, course_id)
    return list((await session.execute(
        select(Lesson).where(Lesson.unit_id == unit_id).order_by(Lesson.position)
        .execution_options(populate_existing=True)
    )).scalars())


# --- collaborators -----------------------------------------------------------------------


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
