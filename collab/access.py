"""Who may be in a room: the grant a connection is admitted with, the refusal, and the re-check.

The server supplies the policy as two callables (``authorize`` when a socket joins, ``recheck``
every ``recheck_interval`` seconds for each user in a room, or ``recheck_many`` for the node's
(room, user) pairs in batches); this module only applies their
answers: a :class:`Denied` closes the user's sockets with its code, anything else updates their
read-only flag. Depends on nothing in ``collab`` at run time (rooms only for type checking).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collab.room import Peer, Room

log = logging.getLogger("scriptorium.collab")

Scope = Mapping[str, Any]


class Denied(Exception):
    """A connection is refused (or must go) with a WebSocket close code."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(reason or str(code))
        self.code = code
        self.reason = reason


@dataclass
class Grant:
    """Who is connected and whether they may write; ``subject`` is the server's own data."""

    user_id: str
    can_write: bool
    subject: Any = None
    # the rooms' access epoch when the decision was asked for (RoomManager.admit): a change
    # notified before the peer joins re-checks it
    epoch: int = 0


Authorize = Callable[[Scope, str], Awaitable[Grant]]  # (ASGI scope, lesson id) -> Grant | Denied
Recheck = Callable[[str, Grant], Awaitable[bool]]  # (lesson id, grant) -> can_write | Denied
# Many at once: [(lesson id, grant)] -> for each, can_write or the Denied that ends it (one answer
# per pair, in order; an exception fails the whole batch, which then changes nothing).
RecheckMany = Callable[[list[tuple[str, Grant]]], Awaitable[list[bool | Denied]]]
# Runs for the node's life: calls changed(True) when a fact of the access decision may have
# changed (and once it starts listening), changed(False) when it stops listening.
AccessWatch = Callable[[Callable[[bool], None]], Coroutine[Any, Any, None]]
RECHECK_BATCH = 1000  # (room, user) pairs per RecheckMany call


def _apply(peers: list[Peer], answer: bool | Denied) -> None:
    if isinstance(answer, Denied):
        for peer in peers:
            peer.sender.close(answer.code, answer.reason)
        return
    for peer in peers:
        peer.can_write = answer


async def recheck_rooms(rooms: list[Room], recheck_many: RecheckMany) -> bool:
    """Every user in ``rooms`` re-checked in batches of :data:`RECHECK_BATCH` (room, user)
    pairs, one call each (a node's thousands of rooms cost a few statements a round, not one per
    room and user); a failed batch changes nothing. False when a batch failed."""
    ok = True
    groups: list[tuple[str, Grant, list[Peer]]] = []
    for room in rooms:
        by_user: dict[str, list[Peer]] = {}
        for peer in room.peers:
            by_user.setdefault(peer.grant.user_id, []).append(peer)
        groups.extend((room.lesson_id, peers[0].grant, peers) for peers in by_user.values())
    for start in range(0, len(groups), RECHECK_BATCH):
        batch = groups[start:start + RECHECK_BATCH]
        try:
            answers = await recheck_many([(lesson_id, grant) for lesson_id, grant, _ in batch])
        except Exception:
            log.warning("collab access re-check failed", exc_info=True)
            ok = False
            continue
        for (_, _, peers), answer in zip(batch, answers, strict=True):
            _apply(peers, answer)
    return ok


async def recheck_room(room: Room, recheck: Recheck) -> None:
    """Ask ``recheck`` once per user in ``room``: close their sockets when denied, else set
    whether they may write (a failed check changes nothing)."""
    by_user: dict[str, list[Peer]] = {}
    for peer in room.peers:
        by_user.setdefault(peer.grant.user_id, []).append(peer)
    for peers in by_user.values():
        try:
            can_write = await recheck(room.lesson_id, peers[0].grant)
        except Denied as denied:
            _apply(peers, denied)
            continue
        except Exception:
            log.warning("collab access re-check failed", exc_info=True)
            continue
        _apply(peers, can_write)
