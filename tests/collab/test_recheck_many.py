"""The rooms' access re-check in batches (one statement for many (lesson, user) pairs) decides
exactly as the per-user re-check does, and the rooms apply its answers per user."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from collab.access import Denied, Grant, recheck_rooms
from collab.room import Peer, Room
from collab.throttle import AnswerBudget
from server.db import make_sessionmaker
from server.editing import live
from server.editing.live import make_recheck, make_recheck_many
from tests.support.collab import make_lesson
from tests.support.motivation import make_user
from wire.websocket import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_UNAUTHORIZED


def _answer(value: bool | Denied) -> Any:
    return (value.code, value.reason) if isinstance(value, Denied) else value


async def test_a_batch_decides_as_one_check_per_user_does(db: AsyncEngine) -> None:
    author, editor, viewer, learner, stranger, admin, deleted = [
        await make_user(db, role="admin" if n == 5 else "member") for n in range(7)]
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET deleted_at = now() WHERE clerk_id = :c"), {"c": deleted})
    draft = await make_lesson(db, author, editors=(editor,), viewers=(viewer,), learners=(learner,))
    published = await make_lesson(db, author, published=True, viewers=(viewer,), learners=(learner,))
    svc = SimpleNamespace(engine=db, sessions=make_sessionmaker(db))
    one, many = make_recheck(svc), make_recheck_many(svc)  # type: ignore[arg-type]
    pairs = [(str(lesson), Grant(user, can_write=True))
             for lesson in (draft.id, published.id, uuid.uuid4())
             for user in (author, editor, viewer, learner, stranger, admin, deleted, "user_never_seen")]
    pairs.append(("not-a-uuid", Grant(author, can_write=True)))

    expected = []
    for lesson_id, grant in pairs:
        try:
            expected.append(_answer(await one(lesson_id, grant)))
        except Denied as denied:
            expected.append(_answer(denied))
    got = [_answer(answer) for answer in await many(pairs)]
    assert got == expected
    # and the decisions are the ones the contract names (docs/API.md §5)
    decided = dict(zip([(lesson, grant.user_id) for lesson, grant in pairs], got, strict=True))
    assert decided[(str(draft.id), author)] is True
    assert decided[(str(draft.id), editor)] is True
    assert decided[(str(draft.id), admin)] is True
    assert decided[(str(draft.id), viewer)] is False
    assert decided[(str(draft.id), learner)][0] == CLOSE_NOT_FOUND  # a draft is hidden from learners
    assert decided[(str(published.id), learner)][0] == CLOSE_FORBIDDEN
    assert decided[(str(published.id), deleted)][0] == CLOSE_UNAUTHORIZED
    assert decided[(str(published.id), "user_never_seen")][0] == CLOSE_FORBIDDEN


async def test_a_users_lessons_of_one_course_are_decided_once_and_a_moved_lesson_anew(
        db: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    author, editor, stranger = [await make_user(db) for _ in range(3)]
    first = await make_lesson(db, author, editors=(editor,))
    other = await make_lesson(db, stranger)  # another course, where the editor is nobody
    async with db.begin() as conn:
        unit = (await conn.execute(text("SELECT unit_id FROM lessons WHERE id = :l"), {"l": first.id})).scalar_one()
        more = [uuid.uuid4() for _ in range(9)]
        for lesson in more:
            await conn.execute(text("INSERT INTO lessons (id, unit_id, title, content_type, content) "
                                    "VALUES (:l, :u, 'L', 'text', '{}')"), {"l": lesson, "u": unit})
    lessons = [str(first.id), *(str(lesson).upper() for lesson in more)]  # (any spelling of a UUID)
    svc = SimpleNamespace(engine=db, sessions=make_sessionmaker(db))
    many = make_recheck_many(svc)  # type: ignore[arg-type]
    decisions: list[str] = []
    statements: list[str] = []

    def counted(clerk_id: str, *facts: Any) -> bool | Denied:
        decisions.append(clerk_id)
        return recheck_answer(clerk_id, *facts)

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append(statement)

    recheck_answer = live._recheck_answer
    monkeypatch.setattr(live, "_recheck_answer", counted)
    event.listen(db.sync_engine, "before_cursor_execute", count)
    try:
        pairs = [(lesson, Grant(user, can_write=False)) for lesson in lessons for user in (author, editor, stranger)]
        got = [_answer(answer) for answer in await many(pairs)]
    finally:
        event.remove(db.sync_engine, "before_cursor_execute", count)
    assert got == [answer for _ in lessons for answer in (True, True, (CLOSE_NOT_FOUND, "No such lesson."))]
    # 30 pairs in one course: one statement, three decisions (one per user)
    assert len(statements) == 1 and sorted(decisions) == sorted([author, editor, stranger])

    # a lesson moved into another course is decided by that course at the next round
    async with db.begin() as conn:
        await conn.execute(text("UPDATE lessons SET unit_id = (SELECT unit_id FROM lessons WHERE id = :o) "
                                "WHERE id = :l"), {"o": other.id, "l": more[0]})
    moved = await many([(str(more[0]), Grant(editor, can_write=True)), (lessons[2], Grant(editor, can_write=True))])
    assert [_answer(answer) for answer in moved] == [(CLOSE_NOT_FOUND, "No such lesson."), True]


class _Link:
    def __init__(self) -> None:
        self.closed = False
        self.close_code: int | None = None

    def push(self, frame: bytes, message: Any = None, wire: Any = None) -> None:
        pass

    def close(self, code: int, reason: str = "") -> None:
        self.closed, self.close_code = True, code


async def test_rooms_apply_each_users_answer_and_a_failed_batch_changes_nothing() -> None:
    def peer(user: str) -> Peer:
        return Peer(Grant(user, can_write=True), _Link(), AnswerBudget(1, 1.0, 0.0))

    rooms = [Room("l1", None), Room("l2", None)]  # type: ignore[arg-type]
    rooms[0].peers = [peer("ann"), peer("ann"), peer("bob")]
    rooms[1].peers = [peer("ann")]
    asked: list[list[tuple[str, str]]] = []

    async def recheck_many(pairs: list[tuple[str, Grant]]) -> list[bool | Denied]:
        asked.append([(lesson, grant.user_id) for lesson, grant in pairs])
        in_l1: dict[str, bool | Denied] = {"ann": False, "bob": Denied(4404, "gone")}
        return [in_l1[grant.user_id] if lesson == "l1" else True for lesson, grant in pairs]

    await recheck_rooms(rooms, recheck_many)
    assert asked == [[("l1", "ann"), ("l1", "bob"), ("l2", "ann")]]  # once per user and room, one call
    assert [p.can_write for p in rooms[0].peers[:2]] == [False, False]
    assert rooms[0].peers[2].sender.close_code == 4404  # type: ignore[attr-defined]
    assert rooms[1].peers[0].can_write is True

    async def failing(pairs: list[tuple[str, Grant]]) -> list[bool | Denied]:
        raise OSError("database unreachable")

    await recheck_rooms(rooms, failing)  # logged, nothing changed
    assert rooms[1].peers[0].can_write is True and not rooms[1].peers[0].sender.closed
