"""REST: /api/flashcard-sets, /api/flashcards (cards, due lists, FSRS reviews)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, func, literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from server.access import (
    SIGNED_IN,
    course_access,
    own_flashcard,
    own_flashcard_set,
    read_flashcard,
    read_flashcard_set,
)
from server.auth import current_user, require_user
from server.errors import NotFound, validation
from server.flashcards import service
from server.flashcards.models import Flashcard, FlashcardSet, UserFlashcardProgress
from server.flashcards.schemas import (
    DueFlashcardOut,
    FlashcardOut,
    FlashcardReviewOut,
    FlashcardSetOut,
    FlashcardStatsOut,
)
from server.http import (
    decode_cursor,
    encode_cursor,
    json_response,
    no_content,
    page_limit,
    parse_datetime,
    parse_uuid,
    path_id,
    read_json,
)
from server.markdown import render, stored_html
from server.routing import Api
from server.schemas import Page
from server.state import services

api = Api("flashcards")

# Never-reviewed cards sort first in a due list (they are due now).
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


class SetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    course_id: uuid.UUID | None = None
    is_public: bool = False


class SetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    course_id: uuid.UUID | None = None
    is_public: bool | None = None


# flashcards.position is an int4 column: a larger value failed in the driver as a 500.
MAX_POSITION = 2**31 - 1


class CardCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    front: str = Field(min_length=1, max_length=20_000)
    back: str = Field(min_length=1, max_length=20_000)
    position: int | None = Field(default=None, ge=0, le=MAX_POSITION)


class CardPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    front: str | None = Field(default=None, min_length=1, max_length=20_000)
    back: str | None = Field(default=None, min_length=1, max_length=20_000)
    position: int | None = Field(default=None, ge=0, le=MAX_POSITION)


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Literal["again", "hard", "good", "easy"]


def set_payload(s: FlashcardSet, card_count: int) -> dict[str, Any]:
    return {"id": s.id, "title": s.title, "description": s.description, "course_id": s.course_id,
            "is_public": s.is_public, "owner_id": s.user_id, "user_id": s.user_id, "card_count": card_count,
            "created_at": s.created_at, "updated_at": s.updated_at}


def card_payload(c: Flashcard) -> dict[str, Any]:
    return {"id": c.id, "set_id": c.set_id, "front": c.front, "back": c.back,
            "front_html": stored_html(c.front_html, c.front), "back_html": stored_html(c.back_html, c.back),
            "position": c.position, "created_at": c.created_at, "updated_at": c.updated_at}


def _card_count(set_id: Any) -> Any:
    return select(func.count()).select_from(Flashcard).where(Flashcard.set_id == set_id).scalar_subquery()


async def _check_course(session: AsyncSession, course_id: uuid.UUID | None, request: Request) -> None:
    if course_id is None:
        return
    try:
        await course_access(session, course_id, await current_user(request))
    except NotFound:
        raise validation("body.course_id", "no such course") from None


# --- sets -------------------------------------------------------------------------------------


@api.get("/flashcard-sets", access=SIGNED_IN, response=Page[FlashcardSetOut],
         query={"course_id": "only sets of this course", "mine": "true: only your own sets",
                "limit": "page size", "cursor": "from next_cursor"})
async def list_sets(request: Request) -> Response:
    """Your sets and everyone's public sets, newest first."""
    me = await current_user(request)
    limit = page_limit(request)
    cursor = decode_cursor(request)
    visible: Any = FlashcardSet.is_public.is_(True)
    if me is not None:
        visible = or_(visible, FlashcardSet.user_id == me.clerk_id)
    query = select(FlashcardSet, _card_count(FlashcardSet.id)).where(visible)
    if request.query_params.get("mine") in ("1", "true"):
        query = query.where(FlashcardSet.user_id == (me.clerk_id if me else None))
    raw_course = request.query_params.get("course_id")
    if raw_course:
        course_id = parse_uuid(raw_course)
        if course_id is None:
            raise validation("query.course_id", "must be a UUID")
        query = query.where(FlashcardSet.course_id == course_id)
    if cursor:
        try:
            at, after_id = parse_datetime(cursor[0]), uuid.UUID(str(cursor[1]))
        except (ValueError, IndexError):
            raise validation("query.cursor", "malformed cursor") from None
        query = query.where(tuple_(FlashcardSet.created_at, FlashcardSet.id) < tuple_(at, after_id))
    query = query.order_by(FlashcardSet.created_at.desc(), FlashcardSet.id.desc()).limit(limit + 1)
    async with services(request).sessions() as session:
        rows = (await session.execute(query)).all()
    items = [set_payload(s, n) for s, n in rows[:limit]]
    more = len(rows) > limit
    return json_response({"items": items,
                          "next_cursor": encode_cursor([items[-1]["created_at"], items[-1]["id"]]) if more else None})


@api.post("/flashcard-sets", access=SIGNED_IN, status=201, body=SetCreate, response=FlashcardSetOut)
async def create_set(request: Request) -> Response:
    """Create a flashcard set (private unless `is_public`; optionally about a course)."""
    me = await require_user(request)
    body = await read_json(request, SetCreate)
    async with services(request).sessions.begin() as session:
        await _check_course(session, body.course_id, request)
        card_set = FlashcardSet(user_id=me.clerk_id, title=body.title, description=body.description,
                                course_id=body.course_id, is_public=body.is_public)
        session.add(card_set)
        await session.flush()
        await session.refresh(card_set)
        payload = set_payload(card_set, 0)
    return json_response(payload, 201)


@api.get("/flashcard-sets/{id}", access=read_flashcard_set("id"), response=FlashcardSetOut)
async def get_set(request: Request) -> Response:
    """A flashcard set (a private set is 404 to everyone but its owner)."""
    async with services(request).sessions() as session:
        card_set = await service.the_set(session, path_id(request, "id"))
        count = (await session.execute(select(_card_count(card_set.id)))).scalar_one()
    return json_response(set_payload(card_set, int(count)))


@api.patch("/flashcard-sets/{id}", access=own_flashcard_set("id"), body=SetPatch, response=FlashcardSetOut)
async def patch_set(request: Request) -> Response:
    """Change a set you own."""
    body = await read_json(request, SetPatch)
    changes = body.model_dump(exclude_unset=True)
    for key in ("title", "is_public"):
        if key in changes and changes[key] is None:
            raise validation(f"body.{key}", "must not be null")
    async with services(request).sessions.begin() as session:
        card_set = await service.the_set(session, path_id(request, "id"))
        if changes.get("course_id") is not None:
            await _check_course(session, changes["course_id"], request)
        for key, value in changes.items():
            setattr(card_set, key, value)
        await session.flush()
        await session.refresh(card_set)
        count = (await session.execute(select(_card_count(card_set.id)))).scalar_one()
        payload = set_payload(card_set, int(count))
    return json_response(payload)


@api.delete("/flashcard-sets/{id}", access=own_flashcard_set("id"), status=204)
async def delete_set(request: Request) -> Response:
    """Delete a set you own, with its cards and everyone's progress on them."""
    async with services(request).sessions.begin() as session:
        card_set = await service.the_set(session, path_id(request, "id"))
        await session.delete(card_set)
    return no_content()


# --- cards ------------------------------------------------------------------------------------


@api.get("/flashcard-sets/{id}/cards", access=read_flashcard_set("id"), response=Page[FlashcardOut],
         query={"limit": "page size", "cursor": "from next_cursor"})
async def list_cards(request: Request) -> Response:
    """The cards of a set, in order."""
    set_id = path_id(request, "id")
    limit = page_limit(request)
    cursor = decode_cursor(request)
    async with services(request).sessions() as session:
        query = select(Flashcard).where(Flashcard.set_id == set_id)
        if cursor:
            try:
                after_pos, after_id = int(cursor[0]), uuid.UUID(str(cursor[1]))
            except (ValueError, IndexError, TypeError):
                raise validation("query.cursor", "malformed cursor") from None
            query = query.where(tuple_(Flashcard.position, Flashcard.id) > tuple_(after_pos, after_id))
        query = query.order_by(Flashcard.position, Flashcard.id).limit(limit + 1)
        cards = list((await session.execute(query)).scalars())
    items = [card_payload(c) for c in cards[:limit]]
    more = len(cards) > limit
    return json_response({"items": items,
                          "next_cursor": encode_cursor([items[-1]["position"], items[-1]["id"]]) if more else None})


@api.post("/flashcard-sets/{id}/cards", access=own_flashcard_set("id"), status=201, body=CardCreate,
          response=FlashcardOut)
async def create_card(request: Request) -> Response:
    """Add a card (front and back are Markdown; `front_html`/`back_html` are the sanitised render)."""
    me = await require_user(request)
    body = await read_json(request, CardCreate)
    # Rendered once, here, before the transaction (a long text renders in the worker process).
    front_html, back_html = await render(body.front, me.clerk_id), await render(body.back, me.clerk_id)
    async with services(request).sessions.begin() as session:
        card_set = await service.the_set(session, path_id(request, "id"))
        position = body.position
        if position is None:
            last = (await session.execute(
                select(func.max(Flashcard.position)).where(Flashcard.set_id == card_set.id)
            )).scalar_one_or_none()
            # Cards share the last position once it is the largest (order is then by id).
            position = 0 if last is None else min(last + 1, MAX_POSITION)
        card = Flashcard(set_id=card_set.id, front=body.front, back=body.back, front_html=front_html,
                         back_html=back_html, position=position)
        session.add(card)
        await session.flush()
        await session.refresh(card)
        payload = card_payload(card)
    return json_response(payload, 201)


@api.patch("/flashcards/{id}", access=own_flashcard("id"), body=CardPatch, response=FlashcardOut)
async def patch_card(request: Request) -> Response:
    """Change a card of a set you own."""
    me = await require_user(request)
    body = await read_json(request, CardPatch)
    changes = body.model_dump(exclude_unset=True)
    for key, value in changes.items():
        if value is None:
            raise validation(f"body.{key}", "must not be null")
    for key in ("front", "back"):
        if key in changes:
            changes[f"{key}_html"] = await render(changes[key], me.clerk_id)
    async with services(request).sessions.begin() as session:
        card = await service.the_card(session, path_id(request, "id"))
        for key, value in changes.items():
            setattr(card, key, value)
        await session.flush()
        await session.refresh(card)
        payload = card_payload(card)
    return json_response(payload)


@api.delete("/flashcards/{id}", access=own_flashcard("id"), status=204)
async def delete_card(request: Request) -> Response:
    """Delete a card of a set you own."""
    async with services(request).sessions.begin() as session:
        card = await service.the_card(session, path_id(request, "id"))
        await session.delete(card)
    return no_content()


# --- studying ---------------------------------------------------------------------------------


@api.get("/flashcard-sets/{id}/due", access=read_flashcard_set("id"), response=Page[DueFlashcardOut],
         query={"limit": "page size", "cursor": "from next_cursor"})
async def due_cards(request: Request) -> Response:
    """Your cards of this set that are due, soonest first (a card you never reviewed is due now)."""
    me = await require_user(request)
    svc = services(request)
    limit = page_limit(request)
    cursor = decode_cursor(request)
    now = svc.clock.now()
    due_key = func.coalesce(UserFlashcardProgress.due_at, literal(NEVER))
    set_id = path_id(request, "id")
    async with svc.sessions() as session:
        query = (
            select(Flashcard, UserFlashcardProgress.due_at, UserFlashcardProgress.mastery_level, due_key)
            .outerjoin(UserFlashcardProgress, and_(UserFlashcardProgress.flashcard_id == Flashcard.id,
                                                   UserFlashcardProgress.user_id == me.clerk_id))
            .where(Flashcard.set_id == set_id, due_key <= now)
        )
        if cursor:
            try:
                after_due, after_pos, after_id = parse_datetime(cursor[0]), int(cursor[1]), uuid.UUID(str(cursor[2]))
            except (ValueError, IndexError, TypeError):
                raise validation("query.cursor", "malformed cursor") from None
            query = query.where(tuple_(due_key, Flashcard.position, Flashcard.id)
                                > tuple_(literal(after_due), after_pos, after_id))
        query = query.order_by(due_key, Flashcard.position, Flashcard.id).limit(limit + 1)
        rows = (await session.execute(query)).all()
    items = [{"id": card.id, "set_id": card.set_id, "front": card.front, "back": card.back,
              "front_html": stored_html(card.front_html, card.front),
              "back_html": stored_html(card.back_html, card.back),
              "due_at": due_at or now, "mastery_level": mastery or 0, "reviewed": due_at is not None}
             for card, due_at, mastery, _ in rows[:limit]]
    next_cursor = None
    if len(rows) > limit and items:
        card, _, _, key = rows[limit - 1]
        next_cursor = encode_cursor([key, card.position, card.id])
    return json_response({"items": items, "next_cursor": next_cursor})


@api.post("/flashcards/{id}/review", access=read_flashcard("id"), body=ReviewBody, response=FlashcardReviewOut)
async def review_card(request: Request) -> Response:
    """Record how well you recalled a card; FSRS schedules your next review."""
    me = await require_user(request)
    body = await read_json(request, ReviewBody)
    svc = services(request)
    async with svc.sessions.begin() as session:
        result = await service.review_card(session, card_id=path_id(request, "id"), user=me, rating=body.rating,
                                           now=svc.clock.now())
    return json_response(result)


@api.get("/me/flashcard-stats", access=SIGNED_IN, response=FlashcardStatsOut,
         query={"days": "look-back window in days (default 30, at most 365)"})
async def flashcard_stats(request: Request) -> Response:
    """Your review history summed up: reviews per rating, retention (share not rated "again"), due now."""
    me = await require_user(request)
    svc = services(request)
    raw = request.query_params.get("days") or "30"
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= 365:  # "²".isdigit()
        raise validation("query.days", "must be an integer from 1 to 365")
    now = svc.clock.now()
    async with svc.sessions() as session:
        stats = await service.review_stats(session, user_id=me.clerk_id, since=now - timedelta(days=int(raw)), now=now)
    return json_response({"days": int(raw), **stats})
