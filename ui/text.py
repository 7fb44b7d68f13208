"""Showing text that came from a user (run names, class names, URL values, file names) safely.

Streamlit renders markdown everywhere (`st.markdown`, `st.caption`, `st.warning`, widget
labels): a run name like `[click](https://evil)` or `![x](https://tracker/x.png)` would
become a live link or load a remote image in every viewer's browser. `md_escape` makes any
text literal; `shorten` keeps a very long value from freezing the page.
"""
from __future__ import annotations

import html
import re

SHOWN_MAX = 120  # characters of a user value shown inline; the rest becomes "…"
# Every ASCII punctuation character may be backslash-escaped in CommonMark, which makes it
# literal: links, images, emphasis, code, headings, HTML, Streamlit's :color[..] and
# :material/..: directives and $math$ all stop working on escaped text.
_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&\"'=/%^])")
_WHITESPACE = re.compile(r"\s+")


def shorten(text: object, limit: int = SHOWN_MAX) -> str:
    """`text` as one line of at most `limit` characters (newlines and tabs become spaces)."""
    line = _WHITESPACE.sub(" ", str(text)).strip()
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


# Streamlit's markdown (GitHub-flavoured) turns bare addresses into links after it has
# resolved the escapes, so a zero-width space goes inside them: "http\u200b://", "www\u200b.",
# "a\u200b@b". Checked in Chromium: none of them renders as a link.
_AUTOLINKS = ((re.compile(r"(?i)\b(https?|ftp|mailto)(\\?:)"), "\\1\u200b\\2"),
              (re.compile(r"(?i)\b(www)(\\?\.)"), "\\1\u200b\\2"),
              (re.compile(r"@"), "\u200b@"))


def md_escape(text: object, limit: int = SHOWN_MAX) -> str:
    """User text made literal for any Streamlit markdown, on one line, shortened to `limit`."""
    escaped = _PUNCTUATION.sub(r"\\\1", shorten(text, limit))
    for pattern, replacement in _AUTOLINKS:
        escaped = pattern.sub(replacement, escaped)
    return escaped


def plot_text(text: object, limit: int | None = None) -> str:
    """User text for a plotly label, legend or hover: plotly renders <a href>, <b>, ... tags in
    text, so they are escaped (it shows the entities as the characters). `limit`: shorten too."""
    return html.escape(str(text) if limit is None else shorten(text, limit))
