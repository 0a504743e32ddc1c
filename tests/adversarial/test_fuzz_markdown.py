"""Markdown whose HTML is far larger than itself is not stored as such (found by the markdown fuzz target).

Rendered HTML is stored with the lesson (and each post, reply and card) and sent on every read.
Two shapes multiply: a reference link defined once with a long URL and used thousands of times
(181 KB of Markdown rendered to 31 MB of HTML, x176, 2.4 s and +170 MB in nh3), and a table
whose header names hundreds of columns, every later row padded to all of them (1.8 KB -> 663 KB,
x368). Bound: the HTML is at most MAX_GROWTH x the Markdown + MAX_SLACK; past it the text is
shown escaped, as plain paragraphs.
"""

from __future__ import annotations

import httpx

from server.markdown import MAX_GROWTH, MAX_SLACK, render_markdown
from tests.fuzz.api_world import seed
from tests.support import ServerProcess

URL = "https://example.com/" + "a" * 1000
REFERENCE_BOMB = f"[a]: {URL}\n\n" + "[a]" * 30_000  # 91 KB, under the 200,000-character body limit
TABLE_BOMB = "|" + "a|" * 300 + "\n|" + "-|" * 300 + "\n" + "x\n" * 300


def test_render_is_bounded_by_the_markdown() -> None:
    for body in (REFERENCE_BOMB, TABLE_BOMB):
        html = render_markdown(body)
        assert len(html) <= MAX_GROWTH * len(body) + MAX_SLACK, (len(body), len(html))
        assert "https://example.com/aaaa" in html or "|a|a|" in html  # the text is still there, escaped


def test_ordinary_markdown_renders_as_markdown() -> None:
    body = "# Title\n\n" + "Some *text* with a [link](https://example.com).\n\n" * 200 + "| a | b |\n|---|---|\n| 1 | 2 |\n"
    html = render_markdown(body)
    assert "<h1>Title</h1>" in html and "<em>text</em>" in html and "<table>" in html


def test_a_lesson_body_bomb_is_stored_bounded(server: ServerProcess) -> None:
    world = seed(server.base_url, tag="mdbomb")
    lesson = world.ids["lessons"][0]
    with httpx.Client(base_url=server.base_url, headers=world.headers("author"), timeout=60) as http:
        response = http.patch(f"/api/lessons/{lesson}", json={"content": {"body": REFERENCE_BOMB}})
        assert response.status_code == 200, response.text[:300]
        got = http.get(f"/api/lessons/{lesson}")
        assert got.status_code == 200
        html = got.json()["content"]["html"]
        assert len(html) <= MAX_GROWTH * len(REFERENCE_BOMB) + MAX_SLACK, len(html)
        assert len(got.content) < 4 * 1024 * 1024, len(got.content)
