"""The achievement requirement grammar of §9, validated with pydantic, and its evaluation.

    requirement := {"<key>": n} | {"all": [requirement, ...]} | {"any": [requirement, ...]}
    key         := lessons_completed | courses_completed | streak_days | forum_posts
                 | likes_received | flashcards_reviewed

A count is a JSON integer ≥ 1 (booleans and negative numbers are refused); an object has exactly
one key; ``all``/``any`` lists are non-empty; nesting is limited to :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from server.errors import ValidationFailed, field_error

COUNT_KEYS = ("lessons_completed", "courses_completed", "streak_days", "forum_posts", "likes_received",
              "flashcards_reviewed")
MAX_DEPTH = 5


class Requirement(BaseModel):
    """One node of a requirement: exactly one of the count keys, ``all`` or ``any``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lessons_completed: StrictInt | None = Field(default=None, ge=1)
    courses_completed: StrictInt | None = Field(default=None, ge=1)
    streak_days: StrictInt | None = Field(default=None, ge=1)
    forum_posts: StrictInt | None = Field(default=None, ge=1)
    likes_received: StrictInt | None = Field(default=None, ge=1)
    flashcards_reviewed: StrictInt | None = Field(default=None, ge=1)
    all: list[Requirement] | None = Field(default=None, min_length=1, max_length=20)
    any: list[Requirement] | None = Field(default=None, min_length=1, max_length=20)

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValueError("a requirement must be a JSON object")
        if len(data) != 1:
            raise ValueError("a requirement must have exactly one key (use 'all' or 'any' to combine)")
        for key, value in data.items():
            if value is None:
                raise ValueError(f"'{key}' must not be null")
        return data

    @model_validator(mode="after")
    def _depth(self) -> Requirement:
        if self.depth() > MAX_DEPTH:
            raise ValueError(f"a requirement may nest at most {MAX_DEPTH} levels")
        return self

    def depth(self) -> int:
        children = self.all or self.any
        return 1 + max((c.depth() for c in children), default=0) if children else 1

    # --- evaluation ---------------------------------------------------------------------

    def count(self) -> tuple[str, int] | None:
        for key in COUNT_KEYS:
            value = getattr(self, key)
            if value is not None:
                return key, int(value)
        return None

    def keys(self) -> frozenset[str]:
        """The count keys this requirement depends on."""
        leaf = self.count()
        if leaf is not None:
            return frozenset({leaf[0]})
        return frozenset().union(*(c.keys() for c in (self.all or self.any or [])))

    def met(self, counts: Mapping[str, int]) -> bool:
        leaf = self.count()
        if leaf is not None:
            return counts.get(leaf[0], 0) >= leaf[1]
        if self.all is not None:
            return all(c.met(counts) for c in self.all)
        return any(c.met(counts) for c in self.any or [])

    def progress(self, counts: Mapping[str, int]) -> float:
        """0–100: a count's share of its target; ``all`` the mean of its parts, ``any`` the best."""
        leaf = self.count()
        if leaf is not None:
            return min(100.0, 100.0 * counts.get(leaf[0], 0) / leaf[1])
        if self.all is not None:
            return sum(c.progress(counts) for c in self.all) / len(self.all)
        return max(c.progress(counts) for c in self.any or [])

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def parse_requirement(raw: Any, *, loc: str = "requirement") -> Requirement:
    """A valid requirement, else 422 with one error per problem (``loc`` prefixes the paths)."""
    try:
        return Requirement.model_validate(raw)
    except ValidationError as exc:
        errors = [field_error([loc, *[str(p) for p in e["loc"]]], e["msg"], e["type"]) for e in exc.errors()]
        raise ValidationFailed("The achievement requirement is invalid.", errors=errors) from None
