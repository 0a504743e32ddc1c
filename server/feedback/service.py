"""Course feedback: one review per learner and course, upvotes by others."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from sqlalchemy import delete, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.errors import validation
from server.feedback.models import CourseFeedback, FeedbackUpvote
from server.http import parse_datetime
from server.notifications.service import notify
from server.outbox.emit import emit

Sort = Literal["upvotes", "recent"]

_LIST = """
SELECT * FROM (
    SELECT f.id, f.course_id, f.user_id, f.rating, f.comment, f.created_at, f.updated_at,
           u.name AS author_name, u.image_url AS author_image_url,
           (SELECT count(*) FROM feedback_upvotes v WHERE v.feedback_id = f.id) AS upvotes,
           EXISTS (SELECT 1 FROM feedback_upvotes v
                   WHERE v.feedback_id = f.id AND v.user_id = CAST(:me AS text)) AS upvoted_by_me
    FROM course_feedback f JOIN users u ON u.clerk_id = f.user_id
    WHERE f.course_id = :course_id {only}
) AS page
{after}
ORDER BY {order}
LIMIT :limit
"""

_ORDERS = {
    "upvotes": ("upvotes DESC, created_at DESC, id DESC",
                "WHERE (upvotes, created_at, id) < (:k_upvotes, :k_created, :k_id)"),
    "recent": ("created_at DESC, id DESC", "WHERE (created_at, id) < (:k_created, :k_id)"),
}


def _payload(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "course_id": row.course_id, "rating": row.rating, "comment": row.comment,
        "author": {"clerk_id": row.user_id, "name": row.author_name, "image_url": row.author_image_url},
        "upvotes": int(row.upvotes), "upvoted_by_me": bool(row.upvoted_by_me),
        "created_at": row.created_at, "updated_at": row.updated_at,
    }


def cursor_of(item: dict[str, Any], sort: Sort) -> list[Any]:
    if sort == "upvotes":
        return [item["upvotes"], item["created_at"], item["id"]]
    return [item["created_at"], item["id"]]


async def list_feedback(
    session: AsyncSession, *, course_id: uuid.UUID, me: str | None, sort: Sort, limit: int,
    after: list[Any] | None = None, only_id: uuid.UUID | None = None,
) -> list[dict[str, Any]]:
    """A page of a course's feedback in one statement (``limit + 1`` rows for the next cursor)."""
    order, keyset = _ORDERS[sort]
    params: dict[str, Any] = {"course_id": course_id, "me": me, "limit": limit + 1}
    if after is not None:
        try:
            if sort == "upvotes":
                params["k_upvotes"] = int(after[0])
                after = after[1:]
            params["k_created"], params["k_id"] = parse_datetime(after[0]), uuid.UUID(str(after[1]))
        except (ValueError, TypeError, IndexError):
            raise validation("query.cursor", "malformed cursor") from None
    if only_id is not None:
        params["only_id"] = only_id
    sql = _LIST.format(only="AND f.id = :only_id" if only_id is not None else "",
                       after=keyset if after is not None else "", order=order)
    rows = (await session.execute(text(sql), params)).all()
    return [_payload(row) for row in rows]


async def submit(
    session: AsyncSession, *, course_id: uuid.UUID, author_id: str, user_id: str, user_name: str | None,
    rating: int, comment: str | None,
) -> tuple[dict[str, Any], bool]:
    """Create or update the user's review; returns ``(payload, created)``."""
    stmt = insert(CourseFeedback).values(course_id=course_id, user_id=user_id, rating=rating, comment=comment)
    upsert: Any = stmt.on_conflict_do_update(
        index_elements=["course_id", "user_id"],
        set_={"rating": stmt.excluded.rating, "comment": stmt.excluded.comment, "updated_at": func.now()},
    ).returning(CourseFeedback.id, literal_column("xmax = 0").label("created"))
    row = (await session.execute(upsert)).one()
    item = (await list_feedback(session, course_id=course_id, me=user_id, sort="recent", limit=1,
                                only_id=row.id))[0]
    created = bool(row.created)
    await emit(session, channel=f"course:{course_id}",
               event="feedback.created" if created else "feedback.updated", data=item)
    if created:
        await notify(session, user_id=author_id, type="feedback", actor_id=user_id,
                     title=f"{user_name or 'A learner'} rated your course {rating}/5",
                     body=comment, metadata={"course_id": str(course_id), "feedback_id": str(row.id),
                                             "rating": rating})
    return item, created


async def set_upvote(session: AsyncSession, *, feedback_id: uuid.UUID, user_id: str, on: bool) -> dict[str, Any]:
    """Set the caller's upvote (the route's policy, ``upvote_feedback``, refused the reviewer)."""
    if on:
        await session.execute(
            insert(FeedbackUpvote).values(feedback_id=feedback_id, user_id=user_id)
            .on_conflict_do_nothing(index_elements=["feedback_id", "user_id"])
        )
    else:
        await session.execute(delete(FeedbackUpvote).where(
            FeedbackUpvote.feedback_id == feedback_id, FeedbackUpvote.user_id == user_id))
    count = (await session.execute(
        select(func.count()).select_from(FeedbackUpvote).where(FeedbackUpvote.feedback_id == feedback_id)
    )).scalar_one()
    return {"feedback_id": feedback_id, "upvotes": int(count), "upvoted_by_me": on}
