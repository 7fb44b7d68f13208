"""Shared helpers for the AppTest page tests."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

APP = "../dashboard.py"  # AppTest resolves this relative to this file


def open_page(page: str, query: dict | None = None, session: dict | None = None) -> AppTest:
    """Run the dashboard on `page` with URL query parameters and session state; fail on an exception."""
    at = AppTest.from_file(APP, default_timeout=60)
    for name, value in (query or {}).items():
        at.query_params[name] = value
    for name, value in (session or {}).items():
        at.session_state[name] = value
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)
