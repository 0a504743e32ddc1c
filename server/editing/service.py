"""Version history and suggested edits of lessons (docs/API.md §5, §6) on top of the live rooms.

The live document is reached only through the room API on ``services.rooms``
(``apply`` / ``read`` / ``record_version`` / ``materialise``); the CRDT logic is in
``collab.suggestions`` and ``collab.versions``.

Who may read or change what is the route's policy (server/access.py: ``member_of(via="lesson")``,
``edit_course``, ``suggester_or_team``, ``suggestion_deciders``, ``suggester_of``), checked
before the handler runs; these functions trust their caller and receive what the policy learned.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from pycrdt import Doc
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from collab import suggestions, versions
from collab.manager import RoomManager
from collab.room import TEXT_LIMITS, TextTooLong
from server.access import CourseAccess, Role, visible_courses
from server.auth import Principal
from server.catalog.models import Collaborator, Course, Lesson, Unit
from server.editing.models import LessonVersion, SuggestedEdit
from server.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed, field_error
from server.http import page, parse_datetime, parse_uuid
from server.notifications.service import notify
from server.users.models import User

STATUSES = ("open", "accepted", "rejected", "withdrawn")


def lesson_text(lesson: Lesson, field: str) -> str:
    """The field's text as REST readers see it (``GET /lessons/{id}``)."""
    if field == "title":
        return lesson.title
    body = (lesson.content or {}).get("body")
    return body if isinstance(body, str) else ""


def too_long(refused: TextTooLong, change: str) -> ValidationFailed:
    """422 for a server change the live document's limits refused (the room undid it)."""
    return ValidationFailed(
        f"{change} would make the lesson {refused.field} longer than {refused.limit:,} characters "
        "(docs/API.md §5); nothing was changed.",
        errors=[field_error(refused.field, f"at most {refused.limit} characters")])


def require_rooms(rooms: RoomManager | None) -> RoomManager:
    if rooms is None:
        raise ServiceUnavailable("Live editing is not running on this server.")
    return rooms


# --- versions ---------------------------------------------------------------------------------


def version_item(v: LessonVersion) -> dict[str, Any]:
    return {"id": str(v.id), "created_at": v.created_at, "contributors": list(v.contributors or []),
            "reason": v.reason}


def version_detail(v: LessonVersion) -> dict[str, Any]:
    return version_item(v) | {"lesson_id": str(v.lesson_id), "title": v.title, "body": v.body}


# Whoever can read the lesson can read its history (the routes' policy): every version's text
# was the lesson's readable text once (the live text is materialised into the lesson within seconds).


async def list_versions(session: AsyncSession, lesson_id: uuid.UUID, *, limit: int,
                        cursor: list[Any] | None) -> dict[str, Any]:
    query = select(LessonVersion).where(LessonVersion.lesson_id == lesson_id)
    if cursor is not None:
        try:
            at, vid = parse_datetime(cursor[0]), uuid.UUID(str(cursor[1]))
        except (ValueError, IndexError, TypeError):
            raise ValidationFailed("Invalid query.", errors=[field_error("query.cursor", "malformed cursor")]) from None
        query = query.where(or_(LessonVersion.created_at < at,
                                and_(LessonVersion.created_at == at, LessonVersion.id < vid)))
    rows = (await session.execute(
        query.order_by(LessonVersion.created_at.desc(), LessonVersion.id.desc()).limit(limit + 1)
    )).scalars().all()
    result = page(list(rows), limit, lambda v: [v.created_at, str(v.id)])
    result["items"] = [version_item(v) for v in result["items"]]
    return result


async def get_version(session: AsyncSession, lesson_id: uuid.UUID, version_id: uuid.UUID) -> LessonVersion:
    version = await session.get(LessonVersion, version_id)
    if version is None or version.lesson_id != lesson_id:
        raise NotFound("No such version.")
    return version


async def restore_version(sessions: async_sessionmaker[AsyncSession], rooms: RoomManager | None, lesson_id: uuid.UUID,
                          version_id: uuid.UUID, user: Principal) -> dict[str, Any]:
    """Record the current text as a version, then apply the difference to the live document.

    Both are committed before the answer: the saved version first (its own transaction), then the
    restoring change (``RoomManager.apply`` returns once it is in the update log). A failure in
    between leaves an extra saved version and the text unchanged, and no 2xx."""
    async with sessions() as session:
        version = await session.get(LessonVersion, version_id)
        if version is None or version.lesson_id != lesson_id:
            raise NotFound("No such version.")
        title, body = version.title, version.body
    # The result is exactly the version's text: refuse one over a limit (a version recorded
    # before the limits) before recording the current text, so a refusal leaves no trace.
    for name, text in (("title", title), ("body", body)):
        limit = dict(TEXT_LIMITS)[name]
        if len(text) > limit:
            raise too_long(TextTooLong(name, limit), "Restoring this version")
    rooms = require_rooms(rooms)
    key = str(lesson_id)
    saved = await rooms.record_version(key, "restore")
    # Diff off the event loop on plain strings (bounded, but tens of ms on 200,000 characters);
    # the edits are applied on the loop, re-diffed there only if the text moved meanwhile.
    live = await rooms.texts(key)
    planned = {"title": await asyncio.to_thread(versions.plan, live["title"], title),
               "body": await asyncio.to_thread(versions.plan, live["body"], body)}

    def change(doc: Doc[Any]) -> int:
        return versions.restore(doc, title=title, body=body, planned=planned)

    try:
        edits = await rooms.apply(key, change, actor=user.clerk_id, enforce_limits=True)
    except TextTooLong as refused:
        raise too_long(refused, "Restoring this version") from None
    await rooms.materialise(key)
    return {"restored": str(version_id), "saved_version_id": str(saved) if saved else None,
            "edits": edits, "title": title, "body": body}


# --- suggested edits ----------------------------------------------------------------------------


def suggestion_payload(s: SuggestedEdit) -> dict[str, Any]:
    data = s.payload or {}
    return {
        "id": str(s.id), "lesson_id": str(s.lesson_id), "user_id": s.user_id, "status": s.status,
        "field": data.get("field"), "base_version": data.get("base_version"), "comment": data.get("comment"),
        "changes": [{k: c.get(k) for k in ("index", "delete", "insert", "original")}
                    for c in data.get("changes", [])],
        "decided_by": s.decided_by, "decided_at": s.decided_at, "created_at": s.created_at,
    }


def _unprocessable(err: suggestions.SuggestionError) -> ValidationFailed:
    return ValidationFailed("The suggested changes do not fit the text.",
                            errors=[field_error([str(p) for p in err.loc], err.msg)])


async def create_suggestion(sessions: async_sessionmaker[AsyncSession], rooms: RoomManager | None, lesson_id: uuid.UUID,
                            user: Principal, access: CourseAccess, *, field: str, changes: list[dict[str, Any]], base_version: str,
                            comment: str | None) -> dict[str, Any]:
    async with sessions() as session:
        lesson = await session.get(Lesson, lesson_id)
        if lesson is None:
            raise NotFound("No such lesson.")
        current_version = str(lesson.revision)
        seen = lesson_text(lesson, field)
    if base_version != current_version:
        raise Conflict("The lesson changed since that version; rebase onto the current text.",
                       current_version=current_version, current_text=seen)
    try:
        parsed = suggestions.parse_changes(seen, changes)
    except suggestions.SuggestionError as err:
        raise _unprocessable(err) from None
    rooms = require_rooms(rooms)
    # The diff from the row's text to the live text, off the event loop (see rebase below).
    live_before = (await rooms.texts(str(lesson_id)))[field]
    ops = None if live_before == seen else await asyncio.to_thread(suggestions.ops_between, seen, live_before)

    def anchor(doc: Doc[Any]) -> dict[str, Any] | str:
        # The client counted against the lesson row's text; the live document may be ahead of it
        # (materialisation runs within 2 s). Carry the changes onto the live text, or refuse.
        live = str(suggestions.field_text(doc, field))
        rebased = suggestions.rebase(seen, live, parsed, ops=ops if live == live_before else None)
        if rebased is None:
            return live
        try:
            return suggestions.anchor(doc, field, rebased, base_version=base_version, comment=comment)
        except suggestions.SuggestionError:
            return live  # the rebased changes no longer fit together: let the client rebase

    anchored = await rooms.read(str(lesson_id), anchor)
    if isinstance(anchored, str):
        # Bring the lesson row up to the live text now, so the version and text we answer with
        # belong together: a client that rebases onto them is then judged against that text.
        await rooms.materialise(str(lesson_id))
        async with sessions() as session:
            lesson = await session.get(Lesson, lesson_id)
            if lesson is None:
                raise NotFound("No such lesson.")
            raise Conflict("The text you suggest changes was edited meanwhile; rebase onto the current text.",
                           current_version=str(lesson.revision), current_text=lesson_text(lesson, field))
    # Show the indexes as the client sent them (against `seen`); the anchor keeps its own positions.
    anchored["anchor"]["positions"] = [{"index": c["index"], "delete": c["delete"]} for c in anchored["changes"]]
    for stored, client in zip(anchored["changes"], parsed, strict=True):
        stored["index"], stored["delete"] = client.index, client.delete

    async with sessions.begin() as session:
        row = SuggestedEdit(lesson_id=lesson_id, user_id=user.clerk_id, payload=anchored, status="open")
        session.add(row)
        await session.flush()
        await session.refresh(row)
        editors = (await session.execute(
            select(Collaborator.user_id).where(Collaborator.course_id == access.course_id,
                                               Collaborator.role == "editor")
        )).scalars().all()
        recipients = dict.fromkeys([access.author_id, *editors])
        for recipient in recipients:
            await notify(session, user_id=recipient, type="suggestion", actor_id=user.clerk_id,
                         title=f"{user.name or user.clerk_id} suggested an edit to “{lesson.title}”",
                         body=comment,
                         metadata={"lesson_id": str(lesson_id), "course_id": str(access.course_id),
                                   "suggestion_id": str(row.id), "field": field})
        return suggestion_payload(row)


async def _suggestion(session: AsyncSession, suggestion_id: uuid.UUID, *, lock: bool = False) -> SuggestedEdit:
    query = select(SuggestedEdit).where(SuggestedEdit.id == suggestion_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise NotFound("No such suggested edit.")
    return row


async def get_suggestion(session: AsyncSession, suggestion_id: uuid.UUID) -> dict[str, Any]:
    return suggestion_payload(await _suggestion(session, suggestion_id))


async def list_suggestions(session: AsyncSession, lesson_id: uuid.UUID, user: Principal, access: CourseAccess, *,
                           status: str | None, limit: int, cursor: list[Any] | None) -> dict[str, Any]:
    """The team sees every suggestion on the lesson; anyone else only their own (a filter on what
    a reader of the lesson sees, not a refusal)."""
    _check_status(status)
    query = (select(SuggestedEdit, User.name).outerjoin(User, User.clerk_id == SuggestedEdit.user_id)
             .where(SuggestedEdit.lesson_id == lesson_id))
    if access.role < Role.VIEWER:
        query = query.where(SuggestedEdit.user_id == user.clerk_id)
    if status is not None:
        query = query.where(SuggestedEdit.status == status)
    rows = (await session.execute(
        _after(query, cursor).order_by(SuggestedEdit.created_at.desc(), SuggestedEdit.id.desc()).limit(limit + 1)
    )).all()
    result = page(list(rows), limit, lambda r: [r[0].created_at, str(r[0].id)])
    result["items"] = [suggestion_payload(s) | {"user_name": name} for s, name in result["items"]]
    return result


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise ValidationFailed("Invalid query.", errors=[field_error("query.status", f"must be one of {STATUSES}")])


def _after(query: Any, cursor: list[Any] | None) -> Any:
    if cursor is None:
        return query
    try:
        at, sid = parse_datetime(cursor[0]), parse_uuid(cursor[1])
    except (ValueError, IndexError, TypeError):
        sid = None
    if sid is None:
        raise ValidationFailed("Invalid query.", errors=[field_error("query.cursor", "malformed cursor")])
    return query.where(or_(SuggestedEdit.created_at < at, and_(SuggestedEdit.created_at == at, SuggestedEdit.id < sid)))


async def my_suggestions(session: AsyncSession, user: Principal, *, status: str | None, limit: int,
                         cursor: list[Any] | None) -> dict[str, Any]:
    """The caller's own suggestions across lessons, newest first, with each lesson's and course's
    title (suggestions on a course the caller can no longer see are left out)."""
    _check_status(status)
    query = (select(SuggestedEdit, Lesson.title, Course.id, Course.title)
             .join(Lesson, Lesson.id == SuggestedEdit.lesson_id)
             .join(Unit, Unit.id == Lesson.unit_id)
             .join(Course, Course.id == Unit.course_id)
             .where(SuggestedEdit.user_id == user.clerk_id, visible_courses(user)))
    if status is not None:
        query = query.where(SuggestedEdit.status == status)
    rows = (await session.execute(
        _after(query, cursor).order_by(SuggestedEdit.created_at.desc(), SuggestedEdit.id.desc()).limit(limit + 1)
    )).all()
    result = page(list(rows), limit, lambda r: [r[0].created_at, str(r[0].id)])
    result["items"] = [suggestion_payload(s) | {"lesson_title": lesson_title, "course_id": str(course_id),
                                                 "course_title": course_title}
                       for s, lesson_title, course_id, course_title in result["items"]]
    return result


async def _decide(session: AsyncSession, row: SuggestedEdit, user: Principal, status: str) -> None:
    now = datetime.now(UTC)
    await session.execute(update(SuggestedEdit).where(SuggestedEdit.id == row.id)
                          .values(status=status, decided_by=user.clerk_id, decided_at=now, updated_at=now))
    row.status, row.decided_by, row.decided_at = status, user.clerk_id, now


def _still_open(row: SuggestedEdit) -> None:
    if row.status != "open":
        raise Conflict(f"This suggestion is already {row.status}.", status_value=row.status)


async def decide_suggestion(sessions: async_sessionmaker[AsyncSession], rooms: RoomManager | None, suggestion_id: uuid.UUID,
                            user: Principal, access: CourseAccess, decision: str) -> dict[str, Any]:
    """``accept`` (applies it to the live document), ``reject`` or ``withdraw``; who may is the
    route's policy (``suggestion_deciders`` / ``suggester_of``).

    Order of an accept (a 2xx means both the change and the status are committed): the room
    applies the change and commits it to the update log (``RoomManager.apply`` returns only then),
    and only after that does this transaction mark the suggestion ``accepted``. So the status is
    never committed without its change. The other way round is possible and accepted: if this
    transaction fails (or the node dies) after the live update was committed, the change stays in
    the text and the suggestion stays ``open`` with no 2xx given. The change was broadcast to the
    editors already and they may have built on it; taking it back would need a compensating edit
    that could erase their typing. Accepting it again then answers 409 (its anchored text has
    changed) with the current text, which shows the change."""
    async with sessions.begin() as session:
        row = await _suggestion(session, suggestion_id, lock=True)  # serialises concurrent decisions
        _still_open(row)
        lesson = await session.get(Lesson, row.lesson_id)
        lesson_title = lesson.title if lesson is not None else "a lesson"
        result_text: str | None = None
        if decision == "accept":
            live = require_rooms(rooms)
            payload = dict(row.payload)
            try:
                result_text = await live.apply(str(row.lesson_id), lambda doc: suggestions.apply(doc, payload),
                                               actor=user.clerk_id, enforce_limits=True)
            except TextTooLong as refused:  # undone in the room; the rollback keeps it open
                raise too_long(refused, "Accepting this suggestion") from None
            except suggestions.AnchorConflict as conflict:
                raise Conflict("The suggested text was changed meanwhile; the suggestion stays open.",
                               current_text=conflict.current_text, change=conflict.change) from None
        status = {"accept": "accepted", "reject": "rejected", "withdraw": "withdrawn"}[decision]
        await _decide(session, row, user, status)
        if decision != "withdraw":
            await notify(session, user_id=row.user_id, type="suggestion_decided", actor_id=user.clerk_id,
                         title=f"Your suggested edit to “{lesson_title}” was {status}",
                         metadata={"lesson_id": str(row.lesson_id), "course_id": str(access.course_id),
                                   "suggestion_id": str(row.id), "status": status})
        out = suggestion_payload(row)
    if result_text is not None:
        out["text"] = result_text
        await require_rooms(rooms).materialise(str(row.lesson_id))
    return out
