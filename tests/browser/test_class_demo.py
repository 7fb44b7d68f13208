"""What a teacher hits in front of a class: a run paused from another tab, and a diverged run's numbers."""
from __future__ import annotations

import re

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.browser.conftest import CHART_TEXTS, screenshot, wait_for_app
from tests.browser.test_layout import settled_layout_problems

MAIN = '[data-testid="stMain"]'


def open_train(page, url: str) -> None:
    page.goto(url)
    page.get_by_label("Exact learning rate", exact=True).wait_for(timeout=90_000)
    wait_for_app(page)


def test_a_run_paused_in_another_tab_shows_resume_on_its_own_page(browser, dashboard_url):
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    teacher, other = context.new_page(), context.new_page()
    try:
        open_train(teacher, f"{dashboard_url}/train?epochs=1000&batch_size=16")
        teacher.locator(MAIN).get_by_role("button", name=re.compile("Start$")).click()
        teacher.get_by_text(re.compile(r"Epoch \d+ of 1000 · batch")).wait_for(timeout=60_000)
        run_id = re.search(r"[?&]run=([^&]+)", teacher.url).group(1)

        open_train(other, f"{dashboard_url}/train?run={run_id}")  # the same run, another session
        other.bring_to_front()
        other.locator(MAIN).get_by_role("button", name=re.compile("Pause$")).click()
        other.locator(MAIN).get_by_role("button", name=re.compile("Resume$")).wait_for(timeout=30_000)

        # The first tab never clicked anything: its polling notices the pause and redraws the buttons.
        # Back in front, as the teacher's projector tab would be: some Chromium builds throttle the
        # timers of a tab that is behind another, which would slow its polling, not stop it.
        teacher.bring_to_front()
        resume = teacher.locator(MAIN).get_by_role("button", name=re.compile("Resume$"))
        resume.wait_for(timeout=60_000)
        expect(teacher.get_by_text(re.compile(r"\(paused\)"))).to_be_visible()
        pause = teacher.locator(MAIN).get_by_role("button", name=re.compile("Pause$"))
        for _ in range(3):  # a click can land while the polling rerun replaces the button: try again
            resume.click()
            try:
                pause.wait_for(timeout=20_000)
                break
            except PlaywrightTimeout:
                screenshot(teacher, "resume-retry")
        pause.wait_for(timeout=10_000)
        stopped = teacher.get_by_text(re.compile("Stopped; the weights it reached are kept"))
        for _ in range(3):  # a click can land while the polling rerun replaces the button: try again
            teacher.locator(MAIN).get_by_role("button", name=re.compile("Stop$")).click()
            try:
                stopped.wait_for(timeout=20_000)
                break
            except PlaywrightTimeout:
                screenshot(teacher, "pause-stop-retry")  # what the page showed when the click was lost
        expect(stopped).to_be_visible()
    finally:
        context.close()


def test_the_too_high_preset_shows_one_set_of_numbers_for_the_kept_weights(page, dashboard_url):
    page.set_viewport_size({"width": 1024, "height": 768})
    page.goto(dashboard_url)
    page.get_by_text("Learning rate too high").wait_for(timeout=90_000)
    wait_for_app(page)
    card = page.locator('[data-testid="stVerticalBlockBorderWrapper"], [data-testid="stVerticalBlock"]',
                        has_text="Learning rate too high").last
    card.get_by_role("button", name=re.compile("Open in Train")).click()
    page.get_by_label("Exact learning rate", exact=True).wait_for(timeout=60_000)
    wait_for_app(page)
    expect(page.get_by_label("Exact learning rate", exact=True)).to_have_value("50")
    page.locator(MAIN).get_by_role("button", name=re.compile("Start$")).click()
    # the Diverged event comes a moment before Finished (which names the weights kept): wait for the latter
    page.get_by_text(re.compile("Training diverged.*from epoch")).wait_for(timeout=60_000)
    wait_for_app(page)
    message = page.get_by_text(re.compile("Training diverged")).inner_text()
    kept = re.search(r"from epoch (\d+), batch (\d+) of (\d+)", message)
    assert kept, message
    # The live row and the final row give the same validation accuracy: one set of weights.
    # Wait for the live fragment's last render to be replaced (a stale "–" row can linger for a moment
    # after the run ends); a row that never goes away fails here.
    rows = page.locator('[data-testid="stMetric"]', has_text="Validation accuracy")
    expect(rows).to_have_count(2, timeout=20_000)
    values = rows.locator('[data-testid="stMetricValue"]').all_inner_texts()
    assert len(values) == 2 and values[0] == values[1], values
    expect(page.get_by_text(f"Every number below is for the weights kept from epoch {kept[1]}, batch {kept[2]} "
                            f"of {kept[3]}.")).to_be_visible()
    assert not settled_layout_problems(page)  # no metric cut short ("epoc…", "239.9…")
    ticks = [text for text in page.evaluate(CHART_TEXTS, "Accuracy per epoch") if text.endswith("%")]
    assert len(ticks) == len(set(ticks)) >= 2, ticks  # no "5.3% 5.3% 5.3%"
    screenshot(page, "train-diverged")

    page.locator('[data-testid="stSidebarNav"] a', has_text="Weights").click()
    page.get_by_role("heading", name="Weights").wait_for(timeout=30_000)
    wait_for_app(page)
    expect(page.get_by_text(f"{kept[1]}, batch {kept[2]} of {kept[3]} (diverged)").first).to_be_visible()
    screenshot(page, "weights-diverged")
