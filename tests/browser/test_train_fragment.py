"""Start, Pause, Resume and Stop on Train rerun the run's part of the page (a fragment), not the settings.

A whole-page run at Start had the browser redraw every setting while the run's first epochs
trained; on a teacher's laptop, browser and training share the cores (issue #13). The settings
stay widgets of the whole page: changing one, or Reset, reruns it all.
"""
from __future__ import annotations

import re
import time

from tests.browser.conftest import open_train, wait_for_app
from tests.browser.script_runs import EARLY, FRAGMENT, FULL, ScriptRuns

MAIN = '[data-testid="stMain"]'
SIDEBAR_RUN = '[data-testid="stSidebarUserContent"]'
# The live charts' ECharts instances: the same ids while the browser keeps the charts, new ones when it builds them
CHART_IDS = """() => [...document.querySelectorAll('[data-testid="stMain"] [_echarts_instance_]')]
  .map(chart => chart.getAttribute('_echarts_instance_'))"""


def runs_after(page, runs: ScriptRuns, mark: int, until, timeout: float = 60.0) -> list[int]:
    """The statuses of the script runs that ended after `mark`, once `until()` holds and the app is idle."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"the page did not get there; runs since: {runs.since(mark)}"
        page.wait_for_timeout(50)
    wait_for_app(page)
    return runs.since(mark)


def button(page, name: str):
    return page.locator(MAIN).get_by_role("button", name=name, exact=True)


def test_start_pause_and_stop_rerun_the_run_part_alone(page, dashboard_url):
    runs = ScriptRuns(page)
    open_train(page, f"{dashboard_url}/train?dataset=mnist-sample&epochs=1000")
    assert runs.count(FULL) >= 1
    assert "Run: idle" in page.locator(SIDEBAR_RUN).inner_text()
    page.wait_for_function(f"({CHART_IDS})().length === 3")  # the three empty charts, drawn before Start
    charts = page.evaluate(CHART_IDS)

    mark = runs.mark()
    button(page, "Start").click()
    statuses = runs_after(page, runs, mark, lambda: button(page, "Stop").is_enabled()
                          and page.get_by_label("Change the learning rate now", exact=True).count() == 1
                          and "Run: idle" not in page.locator(SIDEBAR_RUN).inner_text())
    assert FULL not in statuses and FRAGMENT in statuses, statuses
    # everything the click changed is drawn: the buttons, the note under the settings, the live part
    assert not button(page, "Start").is_enabled() and button(page, "Pause").is_enabled()
    assert page.get_by_text("A run is training: these settings are for the next run").is_visible()
    # and it polls: the progress comes in (a worker process that is still starting first says the run is queued)
    page.get_by_text(re.compile(r"Epoch \d+ of 1000 · batch")).first.wait_for(timeout=90_000)
    # the same charts, filled in: the browser kept them (a chart drawn anew costs ~100 ms of its time)
    assert page.evaluate(CHART_IDS) == charts
    # the settings are still on the page, untouched
    assert page.get_by_label("Epochs", exact=True).input_value() == "1000"
    assert page.locator('[data-testid="stException"]').count() == 0

    mark = runs.mark()
    button(page, "Pause").click()
    statuses = runs_after(page, runs, mark, lambda: button(page, "Resume").count() == 1)
    assert FULL not in statuses, statuses
    page.locator(SIDEBAR_RUN).get_by_text("Run: paused", exact=False).wait_for(timeout=10_000)
    mark = runs.mark()
    button(page, "Resume").click()
    statuses = runs_after(page, runs, mark, lambda: button(page, "Pause").count() == 1)
    assert FULL not in statuses, statuses

    mark = runs.mark()
    button(page, "Stop").click()
    statuses = runs_after(page, runs, mark, lambda: button(page, "Start").is_enabled())
    assert FULL in statuses, statuses  # the run's end redraws the page: polling off, Start back
    page.get_by_text("Stopped; the weights it reached are kept").wait_for()
    assert page.evaluate(CHART_IDS) == charts  # the run's end redraws the page, not the charts
    assert page.get_by_label("Change the learning rate now", exact=True).count() == 0
    assert page.get_by_text("A run is training: these settings are for the next run").count() == 0
    # drawn before the page, the sidebar can still say training at that run; its own poll follows within 2 s
    page.locator(SIDEBAR_RUN).get_by_text("Run: stopped", exact=False).wait_for(timeout=10_000)


def test_reset_in_the_run_part_puts_the_settings_back_on_the_whole_page(page, dashboard_url):
    runs = ScriptRuns(page)
    open_train(page, f"{dashboard_url}/train?dataset=mnist-sample&epochs=7")
    assert page.get_by_label("Epochs", exact=True).input_value() == "7"

    mark = runs.mark()
    button(page, "Reset").click()
    statuses = runs_after(page, runs, mark, lambda: page.get_by_label("Epochs", exact=True).input_value() == "10")
    assert statuses[0] in (FRAGMENT, EARLY) and FULL in statuses, statuses  # the button's fragment, then the page
    assert "epochs=10" in page.url
