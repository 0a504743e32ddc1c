"""Markdown rendering that freezes the event loop: ``![`` repeated costs markdown-it-py ~23 µs a
character (0.9 s for 40,000). It was rendered on every read (listing 20 flashcards of 10,000 ×
``![`` took 14-19 s, anonymous), and on the loop on write. Now: rendered once on write, in a
worker process when long, under a CPU budget (server/markdown.py); reads serve the stored HTML."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.markdown import _render_in_worker, plain_html, render_markdown
from server.migrate import backfill_html
from tests.adversarial.probe import AttackWatch
from tests.support import ServerProcess, dev_user
from tests.support.catalog import build_course, ok
from tests.support.collab import make_lesson
from tests.support.forum import create_post, make_course

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)

FRONT = "![" * 9_999  # 19,998 characters (+ a digit), at the card limit


def test_the_worker_stops_rendering_at_its_budget() -> None:
    assert _render_in_worker("**bold**", 1.0) == render_markdown("**bold**")
    started = time.process_time()
    assert _render_in_worker("![a" * 100_000, 0.05) is None
    assert time.process_time() - started < 0.5
    assert plain_html("a <script>\n\nb & c") == "<p>a &lt;script&gt;</p>\n<p>b &amp; c</p>\n"


async def test_a_public_flashcard_set_of_pathological_cards(server: ServerProcess, client: httpx.AsyncClient) -> None:
    owner, reader = await dev_user(client, "Owner"), await dev_user(client, "Reader")
    card_set = ok(await client.post("/api/flashcard-sets", json={"title": "Bangs", "is_public": True},
                                    headers=owner.headers), 201)
    slowest_read = 0.0
    async with AttackWatch(server) as watch:
        for n in range(10):  # writing them must not hold the loop either
            ok(await client.post(f"/api/flashcard-sets/{card_set['id']}/cards",
                                 json={"front": FRONT + str(n), "back": "**back**"}, headers=owner.headers), 201)
        for _ in range(5):  # another user's reads: the stored HTML, no rendering
            started = time.perf_counter()
            cards = ok(await client.get(f"/api/flashcard-sets/{card_set['id']}/cards",
                                        headers=reader.headers))["items"]
            slowest_read = max(slowest_read, time.perf_counter() - started)
    assert len(cards) == 10
    assert cards[0]["front_html"].startswith("<p>![![") and cards[0]["back_html"] == "<p><strong>back</strong></p>\n"
    assert slowest_read < 0.5, f"listing 10 cards took {slowest_read:.2f} s"
    print(f"slowest list {slowest_read * 1000:.0f} ms, RSS growth {watch.rss_growth / 2**20:.1f} MiB")
    assert watch.rss_growth < 64 * 2**20, f"RSS grew {watch.rss_growth / 2**20:.0f} MiB"
    watch.assert_unharmed()


async def test_one_account_cannot_monopolise_the_render_worker(server: ServerProcess,
                                                              client: httpx.AsyncClient) -> None:
    attacker, innocent = await dev_user(client, "Attacker"), await dev_user(client, "Innocent")
    attacker_set = ok(await client.post("/api/flashcard-sets", json={"title": "Flood"}, headers=attacker.headers), 201)
    card = ok(await client.post(f"/api/flashcard-sets/{attacker_set['id']}/cards", json={"front": "a", "back": "b"},
                                headers=attacker.headers), 201)
    innocent_set = ok(await client.post("/api/flashcard-sets", json={"title": "Mine"}, headers=innocent.headers), 201)
    async with AttackWatch(server) as watch:
        flood = [asyncio.create_task(client.patch(f"/api/flashcards/{card['id']}", headers=attacker.headers,
                                                  json={"front": FRONT + str(n % 10)})) for n in range(20)]
        await asyncio.wait(flood, return_when=asyncio.FIRST_COMPLETED)  # the flood is under way
        started = time.perf_counter()
        ok(await client.post(f"/api/flashcard-sets/{innocent_set['id']}/cards",
                             json={"front": "long *and* honest " * 200, "back": "b"}, headers=innocent.headers), 201)
        innocent_wait = time.perf_counter() - started
        statuses = [(await task).status_code for task in flood]
    print(f"innocent long card {innocent_wait * 1000:.0f} ms; flood {statuses.count(200)}x200 {statuses.count(429)}x429")
    assert set(statuses) <= {200, 429} and statuses.count(429) >= 10, statuses
    assert innocent_wait < 2.5, f"the innocent user's card waited {innocent_wait:.1f} s behind the flood"
    watch.assert_unharmed()


async def test_forum_posts_of_pathological_markdown(server: ServerProcess, client: httpx.AsyncClient,
                                                    db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    course = await make_course(db, author)
    content = "![" * 24_999  # 49,998 characters (+ a digit), at the post limit
    slowest_read = 0.0
    async with AttackWatch(server) as watch:
        posts = [await create_post(client, course, author, content=content + str(n)) for n in range(4)]
        reply = ok(await client.post(f"/api/forum/posts/{posts[0]['id']}/replies", headers=author.headers,
                                     json={"content": "![" * 10_000}), 201)
        for _ in range(5):
            started = time.perf_counter()
            listed = ok(await client.get(f"/api/courses/{course.id}/forum/posts"))["items"]
            ok(await client.get(f"/api/forum/posts/{posts[0]['id']}"))
            replies = ok(await client.get(f"/api/forum/posts/{posts[0]['id']}/replies"))["items"]
            slowest_read = max(slowest_read, time.perf_counter() - started)
    assert {p["id"] for p in posts} <= {p["id"] for p in listed}
    assert all(p["html"].startswith("<p>![![") for p in listed)
    assert replies[0]["id"] == reply["id"] and replies[0]["html"] == reply["html"]
    print(f"slowest forum read {slowest_read * 1000:.0f} ms, RSS growth {watch.rss_growth / 2**20:.1f} MiB")
    assert slowest_read < 0.5, f"reading the forum took {slowest_read:.2f} s"
    watch.assert_unharmed()


async def test_a_lesson_of_pathological_markdown(server: ServerProcess, client: httpx.AsyncClient) -> None:
    author = await dev_user(client, "Author")
    course = await build_course(client, author)
    lesson_url = f"/api/lessons/{course.first_lesson}"
    body = "![" * 40_000  # 80,000 characters: ~2 s to render on the loop before
    slowest_read = 0.0
    async with AttackWatch(server) as watch:
        ok(await client.patch(lesson_url, json={"content": {"body": body}}, headers=author.headers))
        for _ in range(5):
            started = time.perf_counter()
            lesson = ok(await client.get(lesson_url))
            slowest_read = max(slowest_read, time.perf_counter() - started)
    assert lesson["content"]["body"] == body and lesson["content"]["html"].startswith("<p>![![")
    print(f"slowest lesson read {slowest_read * 1000:.0f} ms")
    assert slowest_read < 0.5, f"reading the lesson took {slowest_read:.2f} s"
    watch.assert_unharmed()


async def test_past_the_render_budget_the_text_is_shown_escaped(database_url: str, data_dir: Path) -> None:
    proc = ServerProcess(database_url=database_url, data_dir=data_dir,
                         env={"RATE_LIMIT_PER_MINUTE": "0", "MARKDOWN_RENDER_BUDGET_MS": "100"}).start()
    try:
        async with httpx.AsyncClient(base_url=proc.base_url, timeout=30) as client:
            author = await dev_user(client, "Author")
            course = await build_course(client, author)
            lesson_url = f"/api/lessons/{course.first_lesson}"
            body = "![a <b>" * 20_000  # 140,000 characters: seconds of markdown-it
            async with AttackWatch(proc) as watch:
                started = time.perf_counter()
                ok(await client.patch(lesson_url, json={"content": {"body": body}}, headers=author.headers))
                elapsed = time.perf_counter() - started
            lesson = ok(await client.get(lesson_url))
            assert lesson["content"]["html"] == plain_html(body)
            assert "<b>" not in lesson["content"]["html"]
            print(f"over-budget write {elapsed * 1000:.0f} ms")
            assert elapsed < 1.5, f"the write took {elapsed:.2f} s"
            watch.assert_unharmed()
    finally:
        proc.stop()


async def test_rows_stored_before_html_was_get_it_once_at_migration(server: ServerProcess, client: httpx.AsyncClient,
                                                                    db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    course = await make_course(db, author)
    post = await create_post(client, course, author, content="![" * 5_000)
    async with db.begin() as conn:  # as written before migration 0007
        await conn.execute(text("UPDATE forum_posts SET html = NULL WHERE id = :id"), {"id": post["id"]})
    # Meanwhile a read shows it escaped rather than rendering 10,000 characters on the loop.
    legacy = ok(await client.get(f"/api/forum/posts/{post['id']}"))
    assert legacy["html"] == plain_html("![" * 5_000)
    async with db.begin() as conn:
        assert await backfill_html(conn) >= 1
    again = ok(await client.get(f"/api/forum/posts/{post['id']}"))
    assert again["html"] == post["html"] == render_markdown("![" * 5_000)
    assert again["updated_at"] == legacy["updated_at"]  # not an edit
    async with db.begin() as conn:
        assert await backfill_html(conn) == 0
    # A lesson created over REST before: content without html (the test helper writes such rows).
    lesson = await make_lesson(db, author.clerk_id, body="*old*")
    async with db.begin() as conn:
        assert await backfill_html(conn) == 1
    async with db.connect() as conn:
        stored = (await conn.execute(text("SELECT content FROM lessons WHERE id = :id"),
                                     {"id": lesson.lesson_id})).scalar_one()
    assert stored == {"body": "*old*", "keep": 1, "html": "<p><em>old</em></p>\n"}


def _render_workers(server: ServerProcess) -> list[psutil.Process]:
    assert server.proc is not None
    return [p for p in psutil.Process(server.proc.pid).children(recursive=True)
            if "spawn_main" in " ".join(p.cmdline())]  # not the resource tracker


async def test_the_render_worker_leaves_with_the_server(database_url: str, data_dir: Path) -> None:
    for kill in (False, True):
        proc = ServerProcess(database_url=database_url, data_dir=data_dir, env={"RATE_LIMIT_PER_MINUTE": "0"}).start()
        workers: list[psutil.Process] = []
        try:
            async with httpx.AsyncClient(base_url=proc.base_url, timeout=30) as client:
                author = await dev_user(client, "Author")
                course = await build_course(client, author)
                ok(await client.patch(f"/api/lessons/{course.first_lesson}",
                                      json={"content": {"body": "word " * 1000}}, headers=author.headers))
            workers = _render_workers(proc)
            assert len(workers) == 1, workers
            assert proc.proc is not None
            # The server process alone goes (not its process group, as a supervisor might do it).
            os.kill(proc.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            proc.proc.wait(15)
            _, alive = psutil.wait_procs(workers, timeout=5)
            assert not alive, f"the render worker outlived the {'killed' if kill else 'stopped'} server"
        finally:
            for worker in workers:
                with contextlib.suppress(psutil.NoSuchProcess):
                    worker.kill()
            proc.stop()
