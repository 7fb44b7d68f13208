"""Train and Weights pages in headless Chromium against the real dashboard server.

Train a model through the page and read its accuracy from the live chart, stop it,
look at its ten weight heatmaps, and open a share link to find its settings in the widgets.
"""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import CHART_POINTS, CHART_TEXTS, open_train, screenshot, set_number, wait_for_app

# the live accuracy chart's validation curve (in %), read as a screen reader would (conftest.CHART_POINTS)
ACCURACY_REACHED = """(threshold) => {
  const validation = (%s)(['Accuracy per epoch', 'validation']);
  if (!validation || validation.length < 3) return null;  // epoch 0 and at least two trained epochs
  const last = validation[validation.length - 1][1];
  return last > threshold ? {epochs: validation.length - 1, accuracy: last} : null;
}""" % CHART_POINTS
# the learning-rate change's dotted line is labelled in both per-epoch charts and the minibatch chart
LR_MARKED = """(text) => ['Loss per epoch', 'Accuracy per epoch', 'Loss per minibatch'].every(
  title => ((%s)(title) || []).includes(text))""" % CHART_TEXTS
BIASES = """() => {
  const bars = [...document.querySelectorAll('.js-plotly-plot')].flatMap(p => (p.data || []))
    .find(trace => trace.type === 'bar');
  return bars ? bars.x.length : null;
}"""
HEATMAPS = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const maps = plots.find(p => p.data && p.data.filter(trace => trace.type === 'heatmap').length > 0);
  return maps ? maps.data.filter(trace => trace.type === 'heatmap').map(trace => trace.name) : null;
}"""


def main_area(page):
    """The page body (the header has Streamlit's own Stop button while a script runs)."""
    return page.locator('[data-testid="stMain"]')




def go_to(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).click()


def test_train_switch_pages_while_training_stop_and_weights(page, dashboard_url):
    open_train(page, f"{dashboard_url}/train")
    expect(page.get_by_text("Pick the settings above", exact=False)).to_be_visible()
    screenshot(page, "train-before")

    set_number(page, "Exact learning rate", "0.3")
    # the log-scale slider snapped to the nearest grid value. Waited for before typing on: a browser
    # still drawing the page sends the slider's old value with the next change, which moves the
    # learning rate back to it (as a person typing that fast would see too)
    expect(page.get_by_role("slider").first).to_have_attribute("aria-valuetext", "0.2")
    set_number(page, "Epochs", "1000")  # with batch size 16: minutes, so Stop has something to stop
    set_number(page, "Batch size", "16")
    expect(page.get_by_label("Exact learning rate", exact=True)).to_have_value("0.3")
    expect(page.get_by_role("slider").first).to_have_attribute("aria-valuetext", "0.2")

    main_area(page).get_by_role("button", name=re.compile("Start$")).click()
    reached = page.wait_for_function(ACCURACY_REACHED, arg=85, timeout=90_000).json_value()
    assert reached["epochs"] >= 2 and reached["accuracy"] > 85
    expect(page.get_by_text(re.compile(r"Epoch \d+ of 1000 · batch"))).to_be_visible()

    # No wait_for_app while training: the page reruns its live part twice a second.
    live_lr = page.get_by_label("Change the learning rate now", exact=True)
    live_lr.fill("0.1")
    live_lr.press("Enter")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_function(LR_MARKED, arg="lr → 0.1", timeout=30_000)
    # the viewport as a person sees it, scrolled to the charts
    page.locator('[data-testid="stEChartsChart"]').first.scroll_into_view_if_needed()
    screenshot(page, "train-running")

    # Weights while training, then back: the run goes on, the settings are still there.
    go_to(page, "Weights")
    names = page.wait_for_function(HEATMAPS, timeout=30_000).json_value()
    assert names == [f"digit {digit}" for digit in range(10)]
    assert page.wait_for_function(BIASES, timeout=30_000).json_value() == 10
    expect(page.get_by_text(re.compile(r"live, training epoch \d+ of 1000"))).to_be_visible()
    screenshot(page, "weights-live")
    go_to(page, "Train")
    expect(page.get_by_label("Exact learning rate", exact=True)).to_have_value("0.3", timeout=30_000)
    expect(page.get_by_label("Epochs", exact=True)).to_have_value("1000")
    later = page.wait_for_function(ACCURACY_REACHED, arg=85, timeout=30_000).json_value()
    assert later["epochs"] >= reached["epochs"]  # the same run, not restarted
    page.wait_for_function(LR_MARKED, arg="lr → 0.1", timeout=30_000)

    main_area(page).get_by_role("button", name=re.compile("Stop$")).click()
    expect(page.get_by_text(re.compile(r"Stopped; the weights it reached are kept"))).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Test accuracy")).to_be_visible()
    wait_for_app(page)
    screenshot(page, "train-stopped")

    go_to(page, "Weights")
    wait_for_app(page)
    page.wait_for_function(HEATMAPS, timeout=30_000)
    slider = page.get_by_role("slider")  # scrub back to the untrained weights
    slider.focus()
    slider.press("Home")
    wait_for_app(page)
    expect(page.get_by_text("Epoch 0 (untrained)", exact=True)).to_be_visible()  # the heading, not the slider
    screenshot(page, "weights-epoch0")


def test_share_link_opens_the_same_settings(page, dashboard_url):
    open_train(page, f"{dashboard_url}/train?lr=0.02&batch_size=64&epochs=4&optimizer=momentum&momentum=0.8"
                     "&normalization=standardize&per_class=100&seed=7")
    expect(page.get_by_label("Exact learning rate", exact=True)).to_have_value("0.02")
    expect(page.get_by_label("Batch size", exact=True)).to_have_value("64")
    expect(page.get_by_label("Epochs", exact=True)).to_have_value("4")
    expect(page.get_by_label("Images per class", exact=True)).to_have_value("100")
    expect(page.get_by_label("Seed", exact=True)).to_have_value("7")
    expect(page.get_by_role("radio", name="SGD + momentum")).to_be_checked()
    expect(page.get_by_role("radio", name="per-pixel mean/std")).to_be_checked()
    main_area(page).get_by_role("button", name=re.compile("Share")).click()
    link = page.locator('[data-testid="stCode"]').inner_text()
    assert "/train?" in link and "lr=0.02" in link and "optimizer=momentum" in link and "run=" not in link
    screenshot(page, "train-shared")

    open_train(page, f"{dashboard_url}/train?lr=abc&optimizer=adam")
    expect(page.get_by_text("lr must be a number from 1e-06 to 100", exact=False)).to_be_visible()
    expect(page.get_by_text("optimizer must be one of sgd, momentum, adamw", exact=False)).to_be_visible()
    expect(page.get_by_label("Exact learning rate", exact=True)).to_have_value("0.5")
    screenshot(page, "train-bad-link")
