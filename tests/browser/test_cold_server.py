"""A class arriving at once: many sessions opening pages of a just-started server.

The first import of the page helpers used to raise Streamlit's rerun in the middle of the
import (to leave the legacy `pages/` mode), and the sessions racing it got
`ImportError: cannot import name 'common' from 'pages'` until they reloaded.
"""
from __future__ import annotations

from tests.browser.conftest import start_streamlit, stop

SESSIONS = 16  # browser tabs opened together; each is its own Streamlit session
PAGES = ["train", "weights", "draw", "runs"]


def test_many_sessions_on_a_cold_server_see_no_exception(browser, tmp_path):
    process, url = start_streamlit(tmp_path / "data", tmp_path / "streamlit.log")
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    try:
        tabs = [context.new_page() for _ in range(SESSIONS)]
        for index, tab in enumerate(tabs):  # all requests go out before any page has rendered
            tab.goto(f"{url}/{PAGES[index % len(PAGES)]}", wait_until="commit")
        problems = []
        for index, tab in enumerate(tabs):
            # A page that failed has an exception box instead of its title.
            tab.wait_for_selector('h1, [data-testid="stException"]', timeout=180_000)
            tab.wait_for_function(
                "() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')", timeout=180_000)
            errors = tab.locator('[data-testid="stException"]')
            if errors.count():
                problems.append(f"{PAGES[index % len(PAGES)]}: {errors.first.inner_text()[:300]}")
            sidebar = tab.locator('[data-testid="stSidebar"]').text_content()
            if "Device:" not in sidebar:
                problems.append(f"{PAGES[index % len(PAGES)]}: rendered without the dashboard's frame")
            elif "CPU (1 thread)" not in sidebar and "GPU" not in sidebar:  # the frame sets it per script thread
                problems.append(f"{PAGES[index % len(PAGES)]}: page thread not limited to one CPU thread")
        assert not problems, "\n".join(problems)
    finally:
        context.close()
        stop(process)
