"""The schema: migrations round-trip, models agree with them, FKs are indexed, constraints bite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db import make_engine
from server.migrate import current_revision, downgrade, head_revision, upgrade
from server.models import metadata
from tests.support import Postgres

SEED_TABLES = {
    "users", "user_streaks", "login_days", "learning_goals", "notifications", "user_achievements",
    "courses", "units", "lessons", "media", "quizzes", "user_courses", "user_progress", "forum_posts",
    "forum_replies", "forum_post_likes", "forum_reply_likes", "collaborators", "suggested_edits",
    "course_feedback", "feedback_upvotes", "achievements", "flashcard_sets", "flashcards",
    "user_flashcard_progress", "tags", "course_tags", "languages",
}


@pytest.fixture(scope="module")
async def scratch(postgres: Postgres) -> AsyncIterator[str]:
    url = await postgres.create_database("scr_schema")
    yield url
    await postgres.drop_database(url)


async def test_upgrade_downgrade_upgrade(scratch: str) -> None:
    await upgrade(scratch)
    assert await current_revision(scratch) == head_revision()
    await downgrade(scratch, "base")
    assert await current_revision(scratch) is None
    engine = make_engine(scratch)
    async with engine.connect() as conn:
        left = (await conn.execute(text(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema='public' "
            "AND table_name <> 'alembic_version'"))).scalar()
    await engine.dispose()
    assert left == 0
    await upgrade(scratch)
    assert await current_revision(scratch) == head_revision()


async def test_models_and_migrations_agree(db: AsyncEngine) -> None:
    def diff(sync_conn: object) -> list[object]:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(ctx, metadata))

    async with db.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []


async def test_all_seed_tables_exist_with_uuid_ids_and_timestamps(db: AsyncEngine) -> None:
    async with db.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT table_name, column_name, data_type, column_default FROM information_schema.columns "
            "WHERE table_schema = 'public'"))).all()
    columns: dict[str, dict[str, tuple[str, str | None]]] = {}
    for table, column, dtype, default in rows:
        columns.setdefault(table, {})[column] = (dtype, default)
    assert SEED_TABLES <= set(columns)
    for table in SEED_TABLES:
        assert columns[table]["id"][0] == "uuid", table
        assert "gen_random_uuid()" in (columns[table]["id"][1] or ""), table
        assert columns[table]["created_at"][0] == "timestamp with time zone", table
        assert columns[table]["updated_at"][0] == "timestamp with time zone", table


async def test_every_foreign_key_column_leads_an_index(db: AsyncEngine) -> None:
    query = text("""
        SELECT c.conrelid::regclass::text AS tbl, a.attname AS col
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'f'
          AND NOT EXISTS (
            SELECT 1 FROM pg_index i
            WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])
    """)
    async with db.connect() as conn:
        unindexed = (await conn.execute(query)).all()
        fk_count = (await conn.execute(text("SELECT count(*) FROM pg_constraint WHERE contype='f'"))).scalar()
    assert fk_count and fk_count >= 40
    assert unindexed == []


async def test_updated_at_is_kept_current_by_raw_sql(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO tags (name) VALUES ('trigger-check')"))
        before = (await conn.execute(text("SELECT updated_at FROM tags WHERE name='trigger-check'"))).scalar()
    async with db.begin() as conn:
        await conn.execute(text("UPDATE tags SET name='trigger-check-2' WHERE name='trigger-check'"))
        after = (await conn.execute(text("SELECT updated_at FROM tags WHERE name='trigger-check-2'"))).scalar()
        await conn.execute(text("DELETE FROM tags WHERE name='trigger-check-2'"))
    assert after > before


async def test_default_achievement_catalogue_is_seeded(db: AsyncEngine) -> None:
    async with db.connect() as conn:
        names = set((await conn.execute(text("SELECT name FROM achievements"))).scalars())
    assert {"First lesson", "Ten lessons", "First course", "Week streak", "Month streak", "First post",
            "Liked", "Card shark"} <= names


# Each case: setup statements, then one statement the database must reject.
FIXTURE_SQL = """
INSERT INTO users (clerk_id, email) VALUES ('ck_a', 'a@x.test'), ('ck_b', 'b@x.test');
INSERT INTO languages (id, code, name) VALUES ('00000000-0000-0000-0000-0000000000a1', 'xx', 'Xish');
INSERT INTO tags (id, name) VALUES ('00000000-0000-0000-0000-0000000000b1', 'ck-tag');
INSERT INTO courses (id, author_id, title) VALUES ('00000000-0000-0000-0000-000000000c01', 'ck_a', 'C');
INSERT INTO units (id, course_id, title) VALUES ('00000000-0000-0000-0000-000000000d01',
  '00000000-0000-0000-0000-000000000c01', 'U');
INSERT INTO lessons (id, unit_id, title, content_type) VALUES ('00000000-0000-0000-0000-000000000e01',
  '00000000-0000-0000-0000-000000000d01', 'L', 'text');
INSERT INTO forum_posts (id, course_id, user_id, title, content) VALUES
  ('00000000-0000-0000-0000-000000000f01', '00000000-0000-0000-0000-000000000c01', 'ck_a', 'T', 'B');
INSERT INTO forum_replies (id, post_id, user_id, content) VALUES
  ('00000000-0000-0000-0000-000000000f11', '00000000-0000-0000-0000-000000000f01', 'ck_a', 'R');
INSERT INTO course_feedback (id, course_id, user_id, rating) VALUES
  ('00000000-0000-0000-0000-000000000f21', '00000000-0000-0000-0000-000000000c01', 'ck_b', 4);
INSERT INTO achievements (id, name, requirement) VALUES
  ('00000000-0000-0000-0000-000000000f31', 'ck-ach', '{"forum_posts": 1}');
INSERT INTO flashcard_sets (id, user_id, title) VALUES ('00000000-0000-0000-0000-000000000f41', 'ck_a', 'S');
INSERT INTO flashcards (id, set_id, front, back) VALUES
  ('00000000-0000-0000-0000-000000000f51', '00000000-0000-0000-0000-000000000f41', 'f', 'b');
"""
C, L, P, R = ("'00000000-0000-0000-0000-000000000c01'", "'00000000-0000-0000-0000-000000000e01'",
              "'00000000-0000-0000-0000-000000000f01'", "'00000000-0000-0000-0000-000000000f11'")
F, A, K = ("'00000000-0000-0000-0000-000000000f21'", "'00000000-0000-0000-0000-000000000f31'",
           "'00000000-0000-0000-0000-000000000f51'")

BAD_ROWS = {
    "rating below 1": f"INSERT INTO course_feedback (course_id, user_id, rating) VALUES ({C}, 'ck_a', 0)",
    "rating above 5": f"UPDATE course_feedback SET rating = 6 WHERE id = {F}",
    "progress above 100": f"INSERT INTO user_courses (user_id, course_id, progress) VALUES ('ck_a', {C}, 101)",
    "progress below 0": f"INSERT INTO user_courses (user_id, course_id, progress) VALUES ('ck_a', {C}, -1)",
    "mastery above 5": f"INSERT INTO user_flashcard_progress (user_id, flashcard_id, mastery_level) "
                       f"VALUES ('ck_a', {K}, 6)",
    "negative streak": "INSERT INTO user_streaks (user_id, current_streak) VALUES ('ck_a', -1)",
    "negative longest streak": "INSERT INTO user_streaks (user_id, longest_streak) VALUES ('ck_a', -1)",
    "content type": "INSERT INTO lessons (unit_id, title, content_type) VALUES "
                    "('00000000-0000-0000-0000-000000000d01', 'x', 'podcast')",
    "progress status": f"INSERT INTO user_progress (user_id, lesson_id, status) VALUES ('ck_a', {L}, 'done')",
    "user role": "UPDATE users SET role = 'owner' WHERE clerk_id = 'ck_a'",
    "collaborator role": f"INSERT INTO collaborators (course_id, user_id, role) VALUES ({C}, 'ck_b', 'owner')",
    "suggestion status": f"INSERT INTO suggested_edits (lesson_id, user_id, payload, status) "
                         f"VALUES ({L}, 'ck_b', '{{}}', 'merged')",
    "achievement progress": f"INSERT INTO user_achievements (user_id, achievement_id, progress) "
                            f"VALUES ('ck_a', {A}, 101)",
    "goal target": "INSERT INTO learning_goals (user_id, title, target_type, target_value, period) "
                   "VALUES ('ck_a', 'g', 'lessons', 0, 'daily')",
    "quiz pass score": f"INSERT INTO quizzes (lesson_id, title, pass_score) VALUES ({L}, 'q', 1.5)",
    "unique email": "INSERT INTO users (clerk_id, email) VALUES ('ck_c', 'a@x.test')",
    "unique clerk id": "INSERT INTO users (clerk_id) VALUES ('ck_a')",
    "unique language code": "INSERT INTO languages (code, name) VALUES ('xx', 'Other')",
    "unique language name": "INSERT INTO languages (code, name) VALUES ('yy', 'Xish')",
    "unique tag": "INSERT INTO tags (name) VALUES ('ck-tag')",
    "one enrollment": f"INSERT INTO user_courses (user_id, course_id) VALUES ('ck_b', {C}), ('ck_b', {C})",
    "one lesson progress": f"INSERT INTO user_progress (user_id, lesson_id) VALUES ('ck_b', {L}), ('ck_b', {L})",
    "one post like": f"INSERT INTO forum_post_likes (post_id, user_id) VALUES ({P}, 'ck_b'), ({P}, 'ck_b')",
    "one reply like": f"INSERT INTO forum_reply_likes (reply_id, user_id) VALUES ({R}, 'ck_b'), ({R}, 'ck_b')",
    "one upvote": f"INSERT INTO feedback_upvotes (feedback_id, user_id) VALUES ({F}, 'ck_a'), ({F}, 'ck_a')",
    "one award": f"INSERT INTO user_achievements (user_id, achievement_id) VALUES ('ck_a', {A}), ('ck_a', {A})",
    "one login day": "INSERT INTO login_days (user_id, day) VALUES ('ck_a', '2026-01-01'), ('ck_a', '2026-01-01')",
    "one collaborator row": f"INSERT INTO collaborators (course_id, user_id) VALUES ({C}, 'ck_b'), ({C}, 'ck_b')",
    "one card progress": f"INSERT INTO user_flashcard_progress (user_id, flashcard_id) VALUES "
                         f"('ck_a', {K}), ('ck_a', {K})",
    "one course tag": f"INSERT INTO course_tags (course_id, tag_id) VALUES "
                      f"({C}, '00000000-0000-0000-0000-0000000000b1'), ({C}, '00000000-0000-0000-0000-0000000000b1')",
    "one review per user": f"INSERT INTO course_feedback (course_id, user_id, rating) VALUES ({C}, 'ck_b', 3)",
    "orphan lesson": "INSERT INTO lessons (unit_id, title, content_type) VALUES (gen_random_uuid(), 'x', 'text')",
    "unknown user": f"INSERT INTO forum_posts (course_id, user_id, title, content) VALUES ({C}, 'nobody', 't', 'c')",
}


@pytest.fixture(scope="module")
async def constraint_db(postgres: Postgres) -> AsyncIterator[AsyncEngine]:
    url = await postgres.create_database("scr_ck")
    await upgrade(url)
    engine = make_engine(url)
    async with engine.begin() as conn:
        for statement in FIXTURE_SQL.strip().split(";\n"):
            if statement.strip():
                await conn.execute(text(statement))
    yield engine
    await engine.dispose()
    await postgres.drop_database(url)


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
async def test_database_rejects_bad_row(constraint_db: AsyncEngine, case: str) -> None:
    with pytest.raises(IntegrityError):
        async with constraint_db.begin() as conn:
            await conn.execute(text(BAD_ROWS[case]))


async def test_deleting_a_course_cascades_to_its_children_but_a_user_keeps_forum_posts(
    constraint_db: AsyncEngine,
) -> None:
    with pytest.raises(IntegrityError):
        async with constraint_db.begin() as conn:
            await conn.execute(text("DELETE FROM users WHERE clerk_id = 'ck_a'"))
    async with constraint_db.connect() as conn:
        trans = await conn.begin()
        await conn.execute(text(f"DELETE FROM courses WHERE id = {C}"))
        left = (await conn.execute(text(
            "SELECT (SELECT count(*) FROM units) + (SELECT count(*) FROM lessons) "
            "+ (SELECT count(*) FROM forum_posts) + (SELECT count(*) FROM course_feedback)"))).scalar()
        await trans.rollback()
    assert left == 0
