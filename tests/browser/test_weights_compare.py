"""Weights page comparing two runs in headless Chromium: a default run trained on the Train page
against a weight-decay run already in the run store, on one colour scale with each class's norm.
Also screenshots Home (the learning-rate cards) at three window sizes.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from lrcore.naming import default_run_name, defaults_for
from lrcore.store import Store
from tests.store_helpers import record_run
from tests.browser.conftest import screenshot, wait_for_app

SIZES = [(1400, 1000), (1024, 768), (390, 844)]
COMPARED = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const grids = plots.filter(p => p.data && p.data.some(trace => trace.type === 'heatmap'));
  const norms = plots.find(p => p.layout && p.layout.title && String(p.layout.title.text).includes('Weight norm'));
  if (grids.length !== 2 || !norms) return null;
  return {ranges: grids.map(p => [p.layout.coloraxis.cmin, p.layout.coloraxis.cmax]),
          maps: grids.map(p => p.data.filter(trace => trace.type === 'heatmap').length),
          norms: norms.data.map(trace => ({name: trace.name, y: Array.from(trace.y)}))};
}"""


@pytest.fixture(scope="module")
def decay_run_name(dashboard_data_dir) -> str:
    """A weight-decay run put in the server's store (another process writing it, as the CLI would)."""
    config = defaults_for("mnist-sample").replace(weight_decay=0.01)
    store = Store(dashboard_data_dir / "runs" / "lrcore.db")
    record_run(store, config)
    store.close()
    return default_run_name(config)


def go_to(page, title: str) -> None:
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=title, exact=True).click()
    wait_for_app(page)


def main_area(page):
    return page.locator('[data-testid="stMain"]')


def no_broken_labels(page) -> None:
    """Buttons and card titles on one line each, nothing cut off with an ellipsis."""
    cut = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stMain"] button')]
        .filter(b => b.offsetParent && b.scrollWidth > b.clientWidth + 1).map(b => b.innerText)""")
    assert not cut, f"button labels cut off: {cut}"


def test_weights_compare_a_weight_decay_run_with_a_default_run(page, dashboard_url, decay_run_name):
    assert decay_run_name == "SGD lr=0.5 wd=0.01"  # the name says what differs
    page.goto(f"{dashboard_url}/train")
    page.get_by_label("Exact learning rate", exact=True).wait_for(timeout=90_000)
    wait_for_app(page)
    main_area(page).get_by_role("button", name=re.compile("Start$")).click()
    expect(page.get_by_text(re.compile(r"test accuracy", re.I)).first).to_be_visible(timeout=90_000)
    go_to(page, "Weights")
    page.get_by_test_id("stSelectbox").filter(has_text="Compare with another run").click()
    page.get_by_role("option", name=re.compile("^" + re.escape(decay_run_name) + " ·")).click()
    shown = page.wait_for_function(COMPARED, timeout=30_000).json_value()
    wait_for_app(page)
    assert shown["maps"] == [10, 10]
    (low, high), other = shown["ranges"][0], shown["ranges"][1]
    assert low == -high and [low, high] == other  # one symmetric scale for both
    ours, theirs = shown["norms"]
    assert [ours["name"], theirs["name"]] == ["A: this run", "B: compared"]
    assert all(b < a for a, b in zip(ours["y"], theirs["y"]))  # weight decay: every class's norm is smaller
    expect(page.get_by_text(f"run “{decay_run_name}”", exact=False)).to_be_visible()
    expect(page.get_by_text("Whole weight matrix norm", exact=False)).to_be_visible()
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(800)
        no_broken_labels(page)
        screenshot(page, f"weights-compare-{width}x{height}")


def test_home_learning_rate_cards(page, dashboard_url):
    page.goto(dashboard_url)
    page.get_by_text("Learning rate just right").wait_for(timeout=90_000)
    wait_for_app(page)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(800)
        no_broken_labels(page)
        screenshot(page, f"home-{width}x{height}")
    page.set_viewport_size({"width": 1400, "height": 1000})
    main_area(page).get_by_role("button", name=re.compile("Open in Sweep")).click()
    expect(page.get_by_label("Lowest learning rate", exact=True)).to_have_value("0.005", timeout=30_000)
    expect(page.get_by_label("Highest learning rate", exact=True)).to_have_value("50")
    expect(page.get_by_text("learning rates 0.005, 0.5, 50", exact=False)).to_be_visible()
