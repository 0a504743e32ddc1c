"""Flashcard sets, cards and spaced repetition with FSRS (PyPI ``fsrs``).

Each user's schedule of a card is one ``user_flashcard_progress`` row: the FSRS card state as
JSON (``fsrs.Card.to_dict()``), ``due_at`` (indexed with ``user_id``) and a ``mastery_level``.
Every review also appends a ``flashcard_reviews`` row (rating, time, resulting state), so
retention can be shown over time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import fsrs
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth import Principal
from server.errors import NotFound
from server.flashcards.models import Flashcard, FlashcardReview, FlashcardSet, UserFlashcardProgress
from server.gamification.service import record_action

RATINGS = {"again": fsrs.Rating.Again, "hard": fsrs.Rating.Hard, "good": fsrs.Rating.Good,
           "easy": fsrs.Rating.Easy}
STATE_NAMES = {fsrs.State.Learning: "learning", fsrs.State.Review: "review",
               fsrs.State.Relearning: "relearning"}
# Stability (days until recall probability falls to 90 %) thresholds for mastery 2..5 in Review.
MASTERY_STABILITY_DAYS = (3.0, 10.0, 30.0)


@lru_cache(maxsize=1)
def scheduler() -> fsrs.Scheduler:
    # No fuzzing: the same history gives the same schedule (reproducible, testable).
    return fsrs.Scheduler(enable_fuzzing=False)


def new_card() -> fsrs.Card:
    # An explicit card_id: fsrs otherwise derives one from the clock and sleeps a millisecond.
    return fsrs.Card(card_id=0)


def mastery_level(card: fsrs.Card | None) -> int:
    """0 never reviewed; 1 (re)learning; in review 2..5 by stability (< 3 d, < 10 d, < 30 d, more).

    Monotone in what a rating does: "again" sends a card to (re)learning (1) and lowers its
    stability, "easy" keeps or moves it to review (≥ 2) with more stability, so mastery after
    "easy" is never below mastery after "again" from the same state.
    """
    if card is None or card.last_review is None:
        return 0
    if card.state != fsrs.State.Review:
        return 1
    stability = card.stability or 0.0
    return 2 + sum(stability >= t for t in MASTERY_STABILITY_DAYS)


def review(state: dict[str, Any] | None, rating: str, now: datetime) -> fsrs.Card:
    """The card after ``rating`` at ``now``, from a stored state (None: never reviewed). Pure."""
    card = fsrs.Card.from_dict(state) if state else new_card()  # type: ignore[arg-type]
    reviewed, _ = scheduler().review_card(card, RATINGS[rating], review_datetime=now.astimezone(UTC))
    return reviewed


# --- access -----------------------------------------------------------------------------------


async def the_set(session: AsyncSession, set_id: uuid.UUID) -> FlashcardSet:
    """The route's set (its policy, ``read_flashcard_set`` or ``own_flashcard_set``, checked the
    caller's rights); 404 if it was deleted since."""
    card_set = await session.get(FlashcardSet, set_id)
    if card_set is None:
        raise NotFound("No such flashcard set.")
    return card_set


async def the_card(session: AsyncSession, card_id: uuid.UUID) -> Flashcard:
    """The route's card (its policy checked the caller's rights); 404 if it was deleted since."""
    card = await session.get(Flashcard, card_id)
    if card is None:
        raise NotFound("No such flashcard.")
    return card


# --- reviews ----------------------------------------------------------------------------------


async def review_card(session: AsyncSession, *, card_id: uuid.UUID, user: Principal, rating: str,
                      now: datetime) -> dict[str, Any]:
    """Schedule the caller's next review of a card; returns ``{due_at, mastery_level, state}``.

    The progress row is locked, so two reviews of one card by one user apply one after the other.
    The route's policy (``read_flashcard``) checked that the caller can read the card's set.
    """
    await session.execute(insert(UserFlashcardProgress).values(user_id=user.clerk_id, flashcard_id=card_id)
                          .on_conflict_do_nothing(index_elements=["user_id", "flashcard_id"]))
    progress = (await session.execute(
        select(UserFlashcardProgress).where(UserFlashcardProgress.user_id == user.clerk_id,
                                            UserFlashcardProgress.flashcard_id == card_id)
        .with_for_update()
    )).scalar_one()
    card = review(progress.state or None, rating, now)
    state: dict[str, Any] = dict(card.to_dict())
    progress.state = state
    progress.due_at = card.due
    progress.mastery_level = mastery_level(card)
    progress.last_reviewed_at = now
    progress.review_count = progress.review_count + 1
    session.add(FlashcardReview(user_id=user.clerk_id, flashcard_id=card_id, rating=rating, reviewed_at=now,
                                due_at=card.due, state=state))
    await session.flush()
    await record_action(session, user_id=user.clerk_id, keys={"flashcards_reviewed"}, now=now)
    return {"flashcard_id": card_id, "due_at": card.due, "mastery_level": progress.mastery_level,
            "state": STATE_NAMES.get(card.state, "learning"), "stability": card.stability,
            "difficulty": card.difficulty, "review_count": progress.review_count}


_STATS = text("""
SELECT
  (SELECT count(*) FROM flashcard_reviews WHERE user_id = :uid AND reviewed_at >= :since) AS reviews,
  (SELECT count(*) FROM flashcard_reviews WHERE user_id = :uid AND reviewed_at >= :since AND rating = 'again') AS again,
  (SELECT count(*) FROM flashcard_reviews WHERE user_id = :uid AND reviewed_at >= :since AND rating = 'hard') AS hard,
  (SELECT count(*) FROM flashcard_reviews WHERE user_id = :uid AND reviewed_at >= :since AND rating = 'good') AS good,
  (SELECT count(*) FROM flashcard_reviews WHERE user_id = :uid AND reviewed_at >= :since AND rating = 'easy') AS easy,
  (SELECT count(*) FROM user_flashcard_progress WHERE user_id = :uid) AS cards_studied,
  (SELECT count(*) FROM user_flashcard_progress WHERE user_id = :uid AND due_at <= :now) AS due_now,
  (SELECT coalesce(avg(mastery_level), 0) FROM user_flashcard_progress WHERE user_id = :uid) AS mastery_avg
""")


async def review_stats(session: AsyncSession, *, user_id: str, since: datetime, now: datetime) -> dict[str, Any]:
    """Retention over a window: one query over the review history and the schedules."""
    row = (await session.execute(_STATS, {"uid": user_id, "since": since, "now": now})).mappings().one()
    reviews = int(row["reviews"])
    return {
        "reviews": reviews,
        "by_rating": {k: int(row[k]) for k in RATINGS},
        "retention": None if reviews == 0 else round((reviews - int(row["again"])) / reviews, 4),
        "cards_studied": int(row["cards_studied"]),
        "due_now": int(row["due_now"]),
        "mastery_avg": round(float(row["mastery_avg"]), 2),
    }
