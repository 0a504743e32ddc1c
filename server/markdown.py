"""Markdown to safe HTML: markdown-it-py renders, nh3 sanitises (scripts, handlers, js: links go)."""

from __future__ import annotations

import html as html_escape
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

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
# padding every row 1.8 KB into 663 KB (x368); this README and API.md render at x1.2.
MAX_GROWTH = 20
MAX_SLACK = 64 * 1024


def plain_html(body: str) -> str:
    """``body`` escaped, its blank-line-separated blocks as paragraphs. Linear and safe."""
    blocks = [b for b in (body or "").replace("\r\n", "\n").split("\n\n") if b.strip()]
    return "".join(f"<p>{html_escape.escape(b).replace(chr(10), '<br>' + chr(10))}</p>\n" for b in blocks)


def render_markdown(body: str) -> str:
    """Render ``body`` and sanitise the result; safe to embed in any page."""
    html = _parser().render(body or "")
    if len(html) > MAX_GROWTH * len(body or "") + MAX_SLACK:
        return plain_html(body)  # checked before nh3, which would spend seconds on the megabytes
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
