"""Showing text that came from a user (run names, class names, URL values, file names) safely.

Streamlit renders markdown everywhere (`st.markdown`, `st.caption`, `st.warning`, widget
labels): a run name like `[click](https://evil)` or `![x](https://tracker/x.png)` would
become a live link or load a remote image in every viewer's browser. `md_escape` makes any
text literal; `shorten` keeps a very long value from freezing the page.
"""
from __future__ import annotations

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


def md_escape(text: object, limit: int = SHOWN_MAX) -> str:
    """User text made literal for any Streamlit markdown, on one line, shortened to `limit`."""
    return _PUNCTUATION.sub(r"\\\1", shorten(text, limit))
