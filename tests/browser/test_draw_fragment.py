"""A stroke on Draw reruns only the drawing part of the page (a fragment), not the whole page.

The whole page's rerun (title, model captions, checkpoint loader, every element resent) was
most of the 0.7-0.8 s between a stroke and its probabilities (issue #13).
"""
from __future__ import annotations

import time

from tests.browser.conftest import wait_for_app
from tests.browser.script_runs import FRAGMENT, FULL, ScriptRuns
from tests.browser.test_draw import ONE, PREDICTION, SEVEN, open_draw_with_a_model, stroke

SURE = f'{PREDICTION} [data-testid="stMetricLabel"]'


def wait_for_runs(page, runs: ScriptRuns, mark: int, timeout: float = 60.0) -> list[int]:
    """The statuses of the runs that ended after `mark`, once the app is idle again after at least one."""
    deadline = time.monotonic() + timeout
    while not runs.since(mark):
        assert time.monotonic() < deadline, "no script run ended after the stroke"
        page.wait_for_timeout(50)
    wait_for_app(page)
    return runs.since(mark)


def test_a_stroke_reruns_the_drawing_fragment_alone(page, dashboard_url):
    runs = ScriptRuns(page)
    open_draw_with_a_model(page, dashboard_url)
    assert runs.count(FULL) >= 1  # the page itself ran whole

    mark = runs.mark()
    stroke(page, ONE)
    page.locator(SURE).wait_for(timeout=60_000)  # the probabilities came, from the stroke alone
    statuses = wait_for_runs(page, runs, mark)
    assert FULL not in statuses and FRAGMENT in statuses, statuses
    first = page.locator(PREDICTION).inner_text()

    mark = runs.mark()
    stroke(page, SEVEN)
    page.wait_for_function("([selector, before]) => { const e = document.querySelector(selector);"
                           " return e && e.innerText !== before; }", arg=[PREDICTION, first], timeout=60_000)
    statuses = wait_for_runs(page, runs, mark)
    assert FULL not in statuses and FRAGMENT in statuses, statuses
    assert page.get_by_role("heading", name="Draw").is_visible()  # the page around it stays
