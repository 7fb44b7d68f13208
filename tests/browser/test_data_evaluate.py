"""Data and Evaluate pages in headless Chromium against the real dashboard server.

Look at the data (class-count chart, example grid), then upload a checkpoint made here
with lrcore through the Evaluate page's file uploader, check the accuracy it shows, and
open confusion-matrix cells by clicking the heatmap and through the selectboxes.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from lrcore import load_dataset
from lrcore.checkpoint import save_checkpoint
from lrcore.evaluate import evaluate_model
from tests.browser.conftest import open_page_from_home, quick_model, screenshot, wait_for_app

COUNT_BARS = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const chart = plots.find(p => p.data && p.data.length === 2 && p.data.every(t => t.type === 'bar'));
  return chart ? chart.data.map(t => [t.name, t.x.length, t.y.reduce((a, b) => a + b, 0)]) : null;
}"""
# Scroll the confusion chart into view and return its plot area on screen, to click the centre of a cell.
PLOT_AREA = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const chart = plots.find(p => p.data && p.data.some(t => t.type === 'heatmap'));
  if (!chart) return null;
  chart.scrollIntoView({block: 'center', behavior: 'instant'});
  const box = chart.querySelector('.nsewdrag').getBoundingClientRect();
  return {x: box.x, y: box.y, width: box.width, height: box.height, classes: chart.data[0].z.length};
}"""


@pytest.fixture(scope="module")
def checkpoint_files(tmp_path_factory):
    """A quick model saved with lrcore, its test accuracy as evaluate_model computes it, and a bad file."""
    folder = tmp_path_factory.mktemp("checkpoints")
    config, event = quick_model()
    good = save_checkpoint(folder / "quick.pt", event.model, config, event.class_names, event.normalizer)
    bad = folder / "notes.pt"
    bad.write_bytes(b"this is not a checkpoint")
    sample = load_dataset("mnist-sample")
    result = evaluate_model(event.model, event.normalizer, sample.test_images, sample.test_labels)
    return good, bad, result


def test_data_page_shows_class_counts_and_examples(page, dashboard_url):
    open_page_from_home(page, dashboard_url, "Data", "Random examples")
    bars = page.wait_for_function(COUNT_BARS).json_value()
    assert bars == [["train + validation pool", 10, 8000], ["test split", 10, 2000]]
    expect(page.get_by_text("Mean image of each class")).to_be_visible()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stMain\"] img').length >= 54")
    before = page.locator('[data-testid="stMain"] img').first.get_attribute("src")
    screenshot(page, "data")

    page.get_by_role("button", name=re.compile("New sample")).click()
    page.wait_for_function("(before) => document.querySelector('[data-testid=\"stMain\"] img').src !== before",
                           arg=before)
    wait_for_app(page)

    # a dataset this server does not have: the page says how to get it, nothing breaks
    page.get_by_text("MNIST (70,000 digits) — not on this machine").click()
    expect(page.get_by_text("is not on this machine", exact=False).first).to_be_visible()
    expect(page.get_by_text("train-images-idx3-ubyte.gz", exact=False).first).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)


def choose(page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_app(page)


def test_evaluate_a_checkpoint_and_open_confusion_cells(page, dashboard_url, checkpoint_files):
    good, bad, result = checkpoint_files
    open_page_from_home(page, dashboard_url, "Evaluate", "No model to evaluate yet")
    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')

    uploader.set_input_files(str(bad))
    expect(page.get_by_text("“notes.pt” was not loaded: not a checkpoint", exact=False)).to_be_visible()

    uploader.set_input_files(str(good))
    expect(page.get_by_text(f"{result.accuracy:.2%}", exact=True)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("checkpoint quick.pt", exact=False)).to_be_visible()
    expect(page.get_by_text(re.compile(r"\d+ of 32 right"))).to_be_visible()  # the last section
    wait_for_app(page)
    screenshot(page, "evaluate")

    # click a heatmap cell that is not the one picked at first
    first_pick = result.most_confused(1)[0][:2]
    true_class, predicted_class = next((t, p) for t, p, _ in result.most_confused(4) if (t, p) != first_pick)
    page.wait_for_function(PLOT_AREA)
    area = page.evaluate(PLOT_AREA)
    cell_width, cell_height = area["width"] / area["classes"], area["height"] / area["classes"]
    page.mouse.click(area["x"] + (predicted_class + 0.5) * cell_width, area["y"] + (true_class + 0.5) * cell_height)
    count = len(result.cell(true_class, predicted_class))
    expect(page.get_by_text(f"{count} images of class {true_class} predicted as {predicted_class}",
                            exact=False)).to_be_visible()
    wait_for_app(page)

    # and the fallback: the two selectboxes
    true_class, predicted_class = 9, 4
    choose(page, "True class", str(true_class))
    choose(page, "Predicted class", str(predicted_class))
    count = len(result.cell(true_class, predicted_class))
    heading = page.get_by_text(f"{count} images of class {true_class} predicted as {predicted_class}", exact=False)
    expect(heading).to_be_visible()
    cell_images = page.evaluate("""() => {
      const lists = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"]')]
        .map(img => img.parentElement).filter((v, i, a) => a.indexOf(v) === i);
      return lists[0].querySelectorAll('img').length;
    }""")
    assert cell_images == min(count, 40)
    heading.scroll_into_view_if_needed()
    screenshot(page, "evaluate-cell")
    expect(page.get_by_test_id("stException")).to_have_count(0)
