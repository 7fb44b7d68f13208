"""ui.text.md_escape: user text shown in Streamlit markdown stays literal text, on one line, short."""
from __future__ import annotations

import re
import string

import pytest

from ui.text import SHOWN_MAX, md_escape, shorten


def unescaped(text: str) -> str:
    """What CommonMark shows for backslash-escaped text (the zero-width spaces are invisible)."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u200b", "")


# No markdown meaning on their own (an entity needs "&", which is escaped).
INERT = ",;?@"


def unescaped_punctuation(text: str) -> list[str]:
    """ASCII punctuation with no backslash before it: what markdown could still act on."""
    marks = "".join(c for c in string.punctuation if c not in INERT + "\\")
    return re.findall(r"(?<!\\)((?:\\\\)*)([" + re.escape(marks) + "])", text)


@pytest.mark.parametrize("text", [
    "[click](https://evil.example)",                       # link
    "![x](https://tracker.example/x.png)",                 # remote image
    "<img src=x onerror=alert(1)>",                        # HTML
    "<a href='https://evil.example'>run</a>",
    ":red[alarm] :material/warning: :blue-background[x]",   # Streamlit directives
    "$E = mc^2$ and $$x$$",                                 # math
    "`code` and ```fence```",                               # backticks
    "**bold** _em_ ~~strike~~ # heading > quote | table |",
    "https://bare.example/autolink www.example.com",
    "1. list\\item \\[already escaped\\]",
    "&amp; &#x3C;script&#x3E; %20 ^ = \" '",
])
def test_markup_becomes_literal_text(text):
    escaped = md_escape(text)
    assert unescaped(escaped) == text  # shown exactly as typed
    assert not unescaped_punctuation(escaped)  # every punctuation character is escaped
    assert "](" not in escaped.replace("\\](", "").replace("\\(", "")


@pytest.mark.parametrize("text, expected", [
    ("[x](http://e)", "\\[x\\]\\(http\u200b\\:\\/\\/e\\)"),  # \u200b: no bare-address link either
    ("![i](http://e/i.png)", "\\!\\[i\\]\\(http\u200b\\:\\/\\/e\\/i\\.png\\)"),
    ("<b>", r"\<b\>"),
    (":red[x]", r"\:red\[x\]"),
    ("$x$", r"\$x\$"),
    ("`x`", r"\`x\`"),
    ("plain words 123", "plain words 123"),
    ("ünïcødé ✓ “quotes”", "ünïcødé ✓ “quotes”"),
])
def test_exact_escaped_forms(text, expected):
    assert md_escape(text) == expected


def test_newlines_and_tabs_become_one_line():
    text = "line one\n\n# not a heading\r\n\tline two"
    escaped = md_escape(text)
    assert "\n" not in escaped and "\r" not in escaped and "\t" not in escaped
    assert unescaped(escaped) == "line one # not a heading line two"


def test_very_long_text_is_shortened():
    text = "a" * 1_000_000
    escaped = md_escape(text)
    assert len(escaped) == SHOWN_MAX and escaped.endswith("…")
    assert len(md_escape(text, 40)) == 40
    assert md_escape("x" * SHOWN_MAX) == "x" * SHOWN_MAX  # at the limit: unchanged


def test_shortening_happens_before_escaping_so_no_escape_is_cut_in_half():
    text = "a" * (SHOWN_MAX - 2) + "[link](http://e)"
    escaped = md_escape(text)
    assert escaped.endswith("\\[…") and not unescaped_punctuation(escaped)


def test_non_strings_are_shown_as_text():
    assert md_escape(3.5) == r"3\.5"
    assert md_escape(ValueError("bad [x](y)")) == r"bad \[x\]\(y\)"
    assert md_escape(None) == "None"


def test_shorten_keeps_short_text_and_strips():
    assert shorten("  hello   world  ") == "hello world"
    assert shorten("abcdef", 4) == "abc…"


@pytest.mark.parametrize("text", ["http://e.example/a", "see www.e.example", "mail me: a.b@e.example"])
def test_bare_addresses_do_not_become_autolinks(text):
    shown = re.sub(r"\\(.)", r"\1", md_escape(text))  # as the renderer's autolinker sees it
    assert not re.search(r"(?i)(https?|ftp)://|\bwww\.|\w@\w", shown)


def test_plot_text_escapes_tags_and_shortens_on_request():
    from ui.text import plot_text

    assert plot_text('<a href="x">y</a>') == "&lt;a href=&quot;x&quot;&gt;y&lt;/a&gt;"
    assert plot_text("a" * 50, limit=10) == "a" * 9 + "…"
