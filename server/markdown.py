"""Markdown to safe HTML: markdown-it-py renders, nh3 sanitises (scripts, handlers, js: links go).

Rendering is linear but slow and input-dependent: measured 7 µs a character on plain paragraphs,
23 µs on ``![`` repeated (0.9 s for 40,000 characters) and 19 µs on ``![a``. So HTML is
rendered on write and stored (docs/API.md §3), and :func:`render` keeps the event loop free: texts of
up to ``inline_chars`` (about 40 ms at worst) render in place, longer ones in a worker process
(no GIL shared with the loop) under a CPU-time budget; past the budget the text is shown
escaped, as plain paragraphs, and the worker is free again for the next one.
"""

from __future__ import annotations

import html
import logging
import math
import signal
from collections.abc import AsyncIterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from types import FrameType
from typing import TYPE_CHECKING

import nh3
from markdown_it import MarkdownIt

from server.errors import RateLimited
from wire.worker import WorkerProcess

if TYPE_CHECKING:
    from server.state import Services

log = logging.getLogger("scriptorium.markdown")

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody",
    "td", "th", "thead", "tr", "ul", "span", "div",
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "code": {"class"},
    "th": {"align"},
    "td": {"align"},
    "ol": {"start"},
}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


# Rendered HTML is stored and sent on every read: past MAX_GROWTH times the Markdown (plus
# MAX_SLACK) the text is shown escaped instead. Reference links defined once with a long URL and
# used thousands of times turned 181 KB into 31 MB (x176), a table header of hundreds of columns
# padding every row 1.8 KB into 663 KB (x368); this README and docs/API.md render at x1.2.
MAX_GROWTH = 20
MAX_SLACK = 64 * 1024


def render_markdown(body: str) -> str:
    """Render ``body`` and sanitise the result; safe to embed in any page. Unbounded: on the
    event loop only for short texts (see :func:`render`)."""
    rendered = _parser().render(body or "")
    if len(rendered) > MAX_GROWTH * len(body or "") + MAX_SLACK:
        return plain_html(body)  # checked before nh3, which would spend seconds on the megabytes
    return nh3.clean(
        rendered,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def plain_html(body: str) -> str:
    """``body`` escaped, its blank-line-separated blocks as paragraphs: what a reader sees when
    the Markdown took too long to render. Linear and safe."""
    blocks = [b for b in (body or "").replace("\r\n", "\n").split("\n\n") if b.strip()]
    return "".join(f"<p>{html.escape(b).replace(chr(10), '<br>' + chr(10))}</p>\n" for b in blocks)


class _OverBudget(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _OverBudget


def _render_in_worker(body: str, budget: float) -> str | None:
    """Runs in the worker process's main thread: a timer signal interrupts markdown-it (pure
    Python) once ``budget`` seconds of CPU are spent; None then."""
    signal.signal(signal.SIGPROF, _alarm)
    try:
        signal.setitimer(signal.ITIMER_PROF, budget)
        try:
            return render_markdown(body)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except _OverBudget:  # also when it fires just as the render ends, before the timer stops
        return None


def render_bounded(body: str, budget: float) -> str:
    """:func:`render_markdown` within ``budget`` seconds of CPU, else :func:`plain_html`; for
    the main thread of a process without an event loop to keep (the migrate command)."""
    rendered = _render_in_worker(body, budget)
    return rendered if rendered is not None else plain_html(body)


def _warm() -> None:
    _parser()


@dataclass
class Renderer:
    """Where long texts are rendered: one worker process, started with the app."""

    inline_chars: int = 2_000
    budget: float = 2.0
    # Long renders one account may have queued or running at once: the worker is shared, so
    # without this one account's flood would delay everyone's long texts (429 past it).
    per_owner: int = 2
    worker: WorkerProcess = field(default_factory=lambda: WorkerProcess("markdown", warm=_warm))
    _pending: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        self.worker.start()  # the first long text then does not wait for the import

    def stop(self) -> None:
        self.worker.stop()

    async def render(self, body: str, owner: str | None = None) -> str:
        """Sanitised HTML of ``body``; never holds the event loop for long (module docstring).

        ``owner``: the account whose write this is; past ``per_owner`` long renders of theirs
        at once, :class:`RateLimited`.
        """
        body = body or ""
        if len(body) <= self.inline_chars:
            return render_markdown(body)
        if owner is None:
            return await self._render_long(body)
        if self._pending.get(owner, 0) >= self.per_owner:
            raise RateLimited(math.ceil(self.budget), "Your previous long texts are still being rendered.")
        self._pending[owner] = self._pending.get(owner, 0) + 1
        try:
            return await self._render_long(body)
        finally:
            left = self._pending.pop(owner) - 1
            if left:
                self._pending[owner] = left

    async def _render_long(self, body: str) -> str:
        try:
            rendered = await self.worker.run(_render_in_worker, body, self.budget)
        except BrokenProcessPool:  # died twice (wire/worker.py retries once on a fresh one)
            log.warning("markdown render worker died; shown escaped")
            rendered = None
        except Exception:  # e.g. the budget's signal landing after the function returned
            log.warning("markdown render failed in the worker; shown escaped", exc_info=True)
            rendered = None
        return rendered if rendered is not None else plain_html(body)


def stored_html(html: str | None, body: str) -> str:
    """The HTML stored with a row; for rows written before HTML was stored on write: rendered in
    place when short, shown escaped when long (a read never starts a long render)."""
    if html is not None:
        return html
    body = body or ""
    return render_markdown(body) if len(body) <= renderer.inline_chars else plain_html(body)


# One per process: rendering is reached from services that do not carry the app's state (the
# live document store, payload helpers); configured and started by :func:`component`.
renderer = Renderer()


async def render(body: str, owner: str | None = None) -> str:
    """Sanitised HTML of ``body``, rendered in place when short, in the worker when long
    (at most ``per_owner`` long ones of one ``owner`` at once, else 429)."""
    return await renderer.render(body, owner)


@asynccontextmanager
async def component(svc: Services) -> AsyncIterator[None]:
    """The renderer of this process, configured from settings, for the app's lifetime."""
    renderer.inline_chars = svc.settings.markdown_inline_chars
    renderer.budget = svc.settings.markdown_render_budget_ms / 1000
    renderer.per_owner = svc.settings.markdown_renders_per_user
    renderer.start()
    try:
        yield
    finally:
        renderer.stop()
