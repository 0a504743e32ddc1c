"""Response models of the web shell's routes (its config and the caller's access)."""

from __future__ import annotations

import uuid
from typing import Literal

from server.schemas import Out


class ConfigOut(Out):
    auth_mode: Literal["dev", "clerk"]
    clerk_publishable_key: str | None  # only with auth_mode "clerk"


class AccessOut(Out):
    """The caller's role in a course (server/access.py ``Role``) and what it allows."""

    course_id: uuid.UUID
    role: Literal["anonymous", "member", "learner", "viewer", "editor", "author", "admin"]
    can_read: bool
    can_edit: bool
    can_manage: bool
    can_see_drafts: bool
    is_staff: bool
