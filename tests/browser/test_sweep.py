"""Sweep page in headless Chromium: a small sweep with overlaid curves, the range test, Open in Train."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, start_streamlit, stop, wait_for_app
from tests.browser.test_layout import settled_layout_problems

# Traces of the chart whose title contains the text, by kind: configuration lines have a name.
CHART_TRACES = """(title) => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const chart = plots.find(p => p.layout && p.layout.title && String(p.layout.title.text).includes(title));
  if (!chart) return null;
  return {all: chart.data.length,
          lines: chart.data.filter(t => t.name && t.x && t.x.length > 1).map(t => t.name),
          colors: [...new Set(chart.data.filter(t => t.name).map(t => t.line && t.line.color))]};
}"""

def set_text(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_for_app(page)


def test_sweep_range_test_and_open_in_train(page, dashboard_url):
    page.goto(f"{dashboard_url}/sweep")
    page.get_by_label("Lowest learning rate", exact=True).wait_for(timeout=90_000)
    wait_for_app(page)
    expect(page.get_by_text("Too low, too high, just right")).to_be_visible()

    set_text(page, "Lowest learning rate", "0.001")
    set_text(page, "Highest learning rate", "100")
    slider = page.get_by_role("slider", name="How many learning rates")
    slider.focus()
    slider.press("Home")  # 3
    slider.press("ArrowRight")  # 4
    slider.press("ArrowRight")  # 5: 0.001, 0.0178, 0.316, 5.62, 100
    wait_for_app(page)
    set_text(page, "Epochs", "3")
    expect(page.get_by_text("5 configurations")).to_be_visible()

    page.get_by_role("button", name="Start sweep").click()
    expect(page.get_by_text("Results, best first")).to_be_visible(timeout=120_000)
    wait_for_app(page)
    accuracy = page.wait_for_function(CHART_TRACES, arg="Validation accuracy per epoch", timeout=30_000).json_value()
    assert accuracy is not None and accuracy["all"] >= 5, accuracy  # 5 lines + the colour bar
    assert len(accuracy["colors"]) == 5  # one colour per learning rate
    # lr 100 diverges in epoch 1 (a single point, marked ✕); the other four have 4 points each
    assert len(accuracy["lines"]) == 4 and "lr 100" not in accuracy["lines"], accuracy
    batches = page.wait_for_function(CHART_TRACES, arg="Training loss per minibatch", timeout=30_000).json_value()
    assert batches is not None and len(batches["lines"]) == 5, batches
    expect(page.get_by_text("diverged (the loss blew up)")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Best: lr \S+ with \d+\.\d% validation accuracy"))).to_be_visible()
    page.mouse.move(0, 0)  # no button tooltip in the screenshot
    screenshot(page, "sweep")
    page.set_viewport_size({"width": 1024, "height": 768})  # a projector: the run actions whole, nothing cut
    page.wait_for_timeout(500)
    assert not settled_layout_problems(page)
    page.set_viewport_size({"width": 1400, "height": 1000})

    page.get_by_role("button", name="Find a learning rate").click()
    expect(page.get_by_text("Suggested learning rate for SGD")).to_be_visible(timeout=60_000)
    wait_for_app(page)
    curve = page.evaluate(CHART_TRACES, "Loss while the learning rate grows")
    assert curve is not None and len(curve["lines"]) == 2, curve  # batch loss and smoothed loss
    page.mouse.move(0, 0)
    screenshot(page, "lr-finder")
    text = page.get_by_text("Suggested learning rate for SGD").inner_text()
    value = re.search(r"batch size 128: ([\d.e+-]+) \(where the smoothed loss falls fastest", text).group(1)

    page.get_by_role("button", name="Use this learning rate in Train").click()
    page.get_by_label("Exact learning rate", exact=True).wait_for(timeout=60_000)
    wait_for_app(page)
    assert f"lr={value}" in page.url and "batch_size=128" in page.url, page.url
    assert float(page.get_by_label("Exact learning rate", exact=True).input_value()) == pytest.approx(float(value))


def test_pause_resume_scale_and_stop_a_sweep(page, dashboard_url):
    """A sweep has what a single run has: pause, resume, a live learning-rate change, stop."""
    page.goto(f"{dashboard_url}/sweep")
    page.get_by_label("Lowest learning rate", exact=True).wait_for(timeout=90_000)
    wait_for_app(page)
    set_text(page, "Lowest learning rate", "0.01")
    set_text(page, "Highest learning rate", "1")
    slider = page.get_by_role("slider", name="How many learning rates")
    slider.focus()
    slider.press("Home")  # 3: 0.01, 0.1, 1
    wait_for_app(page)
    set_text(page, "Epochs", "1000")
    set_text(page, "Batch sizes", "16")  # slow enough to pause, change and stop before it ends (workers are fast)
    main = page.locator('[data-testid="stMain"]')
    main.get_by_role("button", name="Start sweep").click()
    expect(page.get_by_text(re.compile(r"Training 3 runs · epoch \d+ of 1000"))).to_be_visible(timeout=60_000)

    main.get_by_role("button", name=re.compile("Pause$")).click()
    expect(page.get_by_text(re.compile(r"Paused 3 runs"))).to_be_visible(timeout=30_000)
    main.get_by_role("button", name=re.compile("Resume$")).click()
    expect(page.get_by_text(re.compile(r"Training 3 runs"))).to_be_visible(timeout=30_000)
    wait_for_app(page)  # the whole page redrawn: no stale copy of the controls left

    factor = main.get_by_role("spinbutton", name="Multiply by", exact=True)  # not a hidden stale copy
    factor.fill("0.5")
    factor.press("Enter")
    wait_for_app(page)
    main.get_by_role("button", name="Apply", exact=True).click()
    expect(page.get_by_text("Every learning rate ×0.5 from the next batch")).to_be_visible(timeout=30_000)
    factor.fill("1000")  # 1 x 1000 is over the allowed range: a message, nothing changes
    factor.press("Enter")
    wait_for_app(page)
    main.get_by_role("button", name="Apply", exact=True).click()
    expect(page.get_by_text(re.compile("allowed: 1e-06 to 100"))).to_be_visible(timeout=30_000)
    main.get_by_role("radio", name="Set all to").click()
    wait_for_app(page)
    value = main.get_by_role("spinbutton", name="Learning rate", exact=True)
    value.fill("0.2")
    value.press("Enter")
    wait_for_app(page)
    main.get_by_role("button", name="Apply", exact=True).click()
    expect(page.get_by_text("Every run trains with learning rate 0.2 from the next batch")).to_be_visible(timeout=30_000)
    screenshot(page, "sweep-live-controls")
    page.set_viewport_size({"width": 1024, "height": 768})  # the live controls on a projector, nothing cut
    page.wait_for_timeout(500)
    assert not settled_layout_problems(page)

    for _ in range(3):  # a click can land while the polling rerun replaces the button: try again
        main.get_by_role("button", name=re.compile("Stop$")).click()
        try:
            expect(page.get_by_text("Results, best first")).to_be_visible(timeout=30_000)
            break
        except AssertionError:
            pass
    expect(page.get_by_text("Results, best first")).to_be_visible()
    wait_for_app(page)
    expect(page.get_by_text(re.compile(r"Stopped: 3 runs"))).to_be_visible(timeout=30_000)


def test_a_sweep_survives_a_server_restart(browser, tmp_path):
    """Run a sweep, restart the server, open the same link: the curves and results come back from the store."""
    process, url = start_streamlit(tmp_path / "data", tmp_path / "first.log")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/sweep")
        page.get_by_label("Lowest learning rate", exact=True).wait_for(timeout=90_000)
        wait_for_app(page)
        slider = page.get_by_role("slider", name="How many learning rates")
        slider.focus()
        slider.press("Home")  # 3
        slider.press("ArrowRight")  # 4: 0.001, 0.0464, 2.15, 100
        wait_for_app(page)
        set_text(page, "Epochs", "2")
        page.get_by_role("button", name="Start sweep").click()
        expect(page.get_by_text("Results, best first")).to_be_visible(timeout=120_000)
        wait_for_app(page)
        link = page.url
        assert "sweep=sweep-" in link, link
        best = page.get_by_text(re.compile(r"Best: lr \S+ with")).inner_text()
        page.close()
    finally:
        stop(process)

    process, url = start_streamlit(tmp_path / "data", tmp_path / "second.log")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url + link[link.index("/sweep"):])  # the same link on the restarted server
        expect(page.get_by_text("Results, best first")).to_be_visible(timeout=90_000)
        wait_for_app(page)
        assert page.get_by_text(re.compile(r"Best: lr \S+ with")).inner_text() == best
        accuracy = page.wait_for_function(CHART_TRACES, arg="Validation accuracy per epoch",
                                          timeout=30_000).json_value()
        assert accuracy is not None and len(accuracy["lines"]) == 3, accuracy  # lr 100 diverged at once
        expect(page.get_by_text("Earlier sweeps (1)")).to_be_visible()
        page.mouse.move(0, 0)
        screenshot(page, "sweep-after-restart")

        # every run of the sweep is a full run: on Runs with its sweep's name, and its epochs in Weights
        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Runs", exact=True).click()
        wait_for_app(page)
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stDataFrame\"] td')]"
                               ".filter(td => td.innerText.startsWith('4 runs, lr 0.001 to 100')).length === 4",
                               timeout=30_000)
        page.close()
    finally:
        stop(process)
