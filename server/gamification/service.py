"""Gamification entry points that other domains call after their actions.

The motivation issue fills these in (streaks, goals, the achievements rules engine); the
signatures are the contract the other domains rely on.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

# The keys of §9's requirement grammar; an action names the keys whose counts it may change.
ACTION_KEYS = frozenset({"lessons_completed", "courses_completed", "streak_days", "forum_posts",
                         "likes_received", "flashcards_reviewed"})


async def record_action(session: AsyncSession, *, user_id: str, keys: Iterable[str]) -> None:
    """Evaluate ``user_id``'s achievements and goals touched by ``keys`` in the caller's transaction.

    Called after: a lesson completed (``lessons_completed``), a course completed
    (``courses_completed``), a post or reply created (``forum_posts``), a like received — for the
    liked content's author (``likes_received``), a card reviewed (``flashcards_reviewed``).
    """
    unknown = set(keys) - ACTION_KEYS
    if unknown:
        raise ValueError(f"unknown action keys: {sorted(unknown)}")
