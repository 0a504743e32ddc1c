"""Response models: the shapes REST success bodies promise (published in /openapi.json).

Every route declares ``response=`` (server/routing.py); domain models live in
``server/<domain>/schemas.py`` and derive from :class:`Out`. ``extra="forbid"``: a field the
server sends must be declared, so the contract cannot drift silently (tests run the server with
``CHECK_RESPONSES=1``, which validates every JSON success body against its model).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(Out, Generic[T]):
    """A page of a list (docs/API.md §3): ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None
