"""seed the languages a course can be written in

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-25

Data only (no schema change): ``POST /api/courses`` refuses unknown language codes (422), so the
catalogue needs its languages from the start. Existing rows (e.g. from the demo) are kept.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0004'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LANGUAGES = [
    ("en", "English"), ("de", "German"), ("fr", "French"), ("es", "Spanish"), ("it", "Italian"),
    ("pt", "Portuguese"), ("nl", "Dutch"), ("pl", "Polish"), ("sv", "Swedish"), ("ru", "Russian"),
    ("uk", "Ukrainian"), ("tr", "Turkish"), ("ar", "Arabic"), ("he", "Hebrew"), ("hi", "Hindi"),
    ("zh", "Chinese"), ("ja", "Japanese"), ("ko", "Korean"), ("vi", "Vietnamese"), ("id", "Indonesian"),
]


def upgrade() -> None:
    values = ", ".join(f"('{code}', '{name}')" for code, name in LANGUAGES)
    op.execute(f"INSERT INTO languages (code, name) VALUES {values} ON CONFLICT DO NOTHING")


def downgrade() -> None:
    codes = ", ".join(f"'{code}'" for code, _ in LANGUAGES)
    op.execute(f"DELETE FROM languages WHERE code IN ({codes}) AND NOT EXISTS "
               "(SELECT 1 FROM courses WHERE courses.language_id = languages.id)")
