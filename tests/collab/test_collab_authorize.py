"""Authorising collab documents in bulk (server/editing/live.py): a Hocuspocus socket opening 50
documents with one token resolves its user once (within the access re-check's window), and the
rights of documents authorised together are decided in one statement."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from collab.access import Denied, Grant
from server.auth import Principal
from server.editing import live
from wire.websocket import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND


def principal(sub: str) -> Principal:
    return Principal(clerk_id=sub, id=str(uuid.uuid4()), email=None, name=sub, image_url=None,
                     role="member", timezone="UTC")


class FakeAuth:
    """Tokens are "token-<sub>"; counts the users-row reads (resolve_user) and sign-in hooks."""

    def __init__(self) -> None:
        self.resolved: list[str] = []
        self.signed_in_calls = 0

    async def claims_of(self, conn: Any, *, websocket: bool = False) -> dict[str, Any] | None:
        header = conn.headers.get("authorization", "")
        return {"sub": header.removeprefix("Bearer token-")} if header else None

    async def resolve_user(self, claims: dict[str, Any]) -> Principal:
        self.resolved.append(claims["sub"])
        return principal(claims["sub"])

    async def signed_in(self, who: Principal) -> None:
        self.signed_in_calls += 1


class FakeServices:
    def __init__(self) -> None:
        self.auth = FakeAuth()


def scope_of(token: str, socket: dict[str, Any]) -> dict[str, Any]:
    """A document's scope as a Hocuspocus socket builds it: a copy of the socket's, with the
    document's token (collab.hocuspocus.Session._document_scope)."""
    scope = dict(socket)
    scope["headers"] = [(b"authorization", f"Bearer {token}".encode())]
    return scope


async def test_one_token_over_many_documents_resolves_its_user_once(monkeypatch: pytest.MonkeyPatch) -> None:
    statements: list[list[tuple[str, str]]] = []

    def fake_recheck_many(svc: Any) -> Any:
        async def decide_many(pairs: list[tuple[str, Grant]]) -> list[bool | Denied]:
            statements.append([(lesson, grant.user_id) for lesson, grant in pairs])
            return [True for _ in pairs]
        return decide_many

    monkeypatch.setattr(live, "make_recheck_many", fake_recheck_many)
    svc = FakeServices()
    authorize = live.make_authorize(svc)  # type: ignore[arg-type]
    socket: dict[str, Any] = {"type": "websocket", "headers": []}
    lessons = [str(uuid.uuid4()) for _ in range(50)]
    # the first document is admitted alone and what it noted becomes the socket's (Session._admit)
    first = scope_of("token-ada", socket)
    assert (await authorize(first, lessons[0])).user_id == "ada"
    socket.update({key: value for key, value in first.items() if key not in socket})
    grants = await asyncio.gather(*(authorize(scope_of("token-ada", socket), lesson) for lesson in lessons[1:]))
    assert all(grant.user_id == "ada" and grant.can_write for grant in grants)
    assert svc.auth.resolved == ["ada"] and svc.auth.signed_in_calls == 1
    # 49 documents authorised together: one statement
    assert [len(batch) for batch in statements] == [1, 49]

    # another user's token on the same socket is that user's own
    assert (await authorize(scope_of("token-bob", socket), lessons[0])).user_id == "bob"
    assert svc.auth.resolved == ["ada", "bob"]
    # past the window the user is read again (a role change or deletion shows at once)
    memo = socket[live.PRINCIPAL_MEMO]
    memo.at -= live.PRINCIPAL_MEMO_S
    await authorize(scope_of("token-bob", socket), lessons[1])
    assert svc.auth.resolved == ["ada", "bob", "bob"]
    # no token: refused, whatever the memo holds
    with pytest.raises(Denied):
        await authorize(scope_of("", socket) | {"headers": []}, lessons[2])


async def test_decisions_taken_together_answer_each_document() -> None:
    calls: list[int] = []

    async def decide_many(pairs: list[tuple[str, Grant]]) -> list[bool | Denied]:
        calls.append(len(pairs))
        answers: dict[str, bool | Denied] = {"w": True, "r": False, "x": Denied(CLOSE_FORBIDDEN, "no"),
                                             "gone": Denied(CLOSE_NOT_FOUND, "No such lesson.")}
        return [answers[lesson] for lesson, _ in pairs]

    decisions = live.Decisions(decide_many)
    who = principal("ada")
    results = await asyncio.gather(*(decisions.decide(lesson, who) for lesson in ("w", "r", "x", "gone", "x")),
                                   return_exceptions=True)
    assert calls == [5]
    assert results[0] is True and results[1] is False
    refused = [r for r in results[2:] if isinstance(r, Denied)]
    assert [r.code for r in refused] == [CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_FORBIDDEN]
    assert refused[0] is not refused[2]  # each waiter raises its own

    async def failing(pairs: list[tuple[str, Grant]]) -> list[bool | Denied]:
        raise ConnectionError("database away")

    with pytest.raises(ConnectionError):
        await live.Decisions(failing).decide("w", who)

    async def short(pairs: list[tuple[str, Grant]]) -> list[bool | Denied]:
        return [True]  # fewer answers than questions: the others are refused, not left waiting

    shortened = live.Decisions(short)
    short_results = await asyncio.wait_for(asyncio.gather(
        *(shortened.decide(lesson, who) for lesson in ("a", "b")), return_exceptions=True), 5)
    assert short_results[0] is True and isinstance(short_results[1], RuntimeError)


async def test_a_large_burst_is_decided_in_bounded_statements() -> None:
    sizes: list[int] = []

    async def decide_many(pairs: list[tuple[str, Grant]]) -> list[bool | Denied]:
        sizes.append(len(pairs))
        return [True for _ in pairs]

    decisions = live.Decisions(decide_many)
    count = live.DECIDE_BATCH_MAX * 2 + 1
    assert all(await asyncio.gather(*(decisions.decide(str(n), principal("ada")) for n in range(count))))
    assert sizes == [live.DECIDE_BATCH_MAX, live.DECIDE_BATCH_MAX, 1]
