"""The Draw page in headless Chromium: train a quick model, draw with the mouse, clear, upload.

streamlit-drawable-canvas renders in the page itself (no iframe): its Fabric.js upper
canvas takes the mouse events, so real mouse strokes go through the whole path
(browser PNG -> server -> preprocessing -> model) exactly as a user's would.
"""
from __future__ import annotations

import re

from playwright.sync_api import expect

from lrcore import TrainConfig, train
from lrcore.checkpoint import save_checkpoint
from tests.browser.conftest import screenshot, wait_for_app

SEVEN = [(0.25, 0.22), (0.75, 0.22), (0.45, 0.82)]  # fractions of the canvas: the bar, then the stem
ONE = [(0.5, 0.15), (0.5, 0.85)]
PREDICTION = re.compile(r"Prediction:")


def open_draw(page, url: str) -> None:
    page.goto(f"{url}/draw")
    page.get_by_role("heading", name="Draw").wait_for(timeout=90_000)  # first load imports torch: slow
    wait_for_app(page)


def tall_screenshot(page, name: str) -> None:
    """Streamlit scrolls inside its main block, so show the whole page by making the window tall."""
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": 1900})
    page.wait_for_timeout(500)
    screenshot(page, name)
    page.set_viewport_size(size)


def stroke(page, points, steps: int = 12) -> None:
    """One mouse stroke through `points` (fractions of the drawing canvas)."""
    box = page.locator('[data-testid="stMain"] canvas.upper-canvas').bounding_box()  # Fabric's input layer
    assert box and box["width"] >= 200, box
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(xy, xy[1:]):
        for i in range(1, steps + 1):
            page.mouse.move(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps)
    page.mouse.up()


def predicted_label(page) -> str:
    """The class shown big next to "Prediction:", once the page has caught up with the last stroke."""
    page.wait_for_timeout(1_000)  # the canvas sends at most every 200 ms; let its rerun start
    page.get_by_text(PREDICTION).wait_for(timeout=60_000)
    wait_for_app(page)
    return page.locator("span.draw-prediction").inner_text()


def clear(page) -> None:
    """Press Clear and wait for the fresh canvas (a new component replaces the old one)."""
    old = page.locator('[data-testid="stMain"] canvas.upper-canvas').element_handle()
    page.get_by_role("button", name=re.compile("Clear")).click()
    page.wait_for_function("canvas => !canvas.isConnected", arg=old, timeout=60_000)
    page.locator('[data-testid="stMain"] canvas.upper-canvas').wait_for()
    wait_for_app(page)


def no_tracebacks(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


def test_train_a_quick_model_draw_and_clear(page, dashboard_url):
    open_draw(page, dashboard_url)
    expect(page.get_by_text("There is no trained model yet")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Train a quick model"))).to_be_visible()
    expect(page.locator('[data-testid="stFileUploader"]')).to_be_visible()
    wait_for_app(page)
    screenshot(page, "draw-no-model")

    page.get_by_role("button", name=re.compile("Train a quick model")).click()
    canvas = page.locator('[data-testid="stMain"] canvas')
    canvas.last.wait_for(timeout=120_000)  # trained (a few seconds), then the page reruns itself
    wait_for_app(page)
    expect(page.get_by_text(re.compile(r"Draw a digit in the black box"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"quick model \(Draw page\)"))).to_be_visible()
    no_tracebacks(page)
    # On a phone a finger on the canvas draws instead of scrolling the page.
    assert canvas.last.evaluate("c => getComputedStyle(c).touchAction") == "none"
    screenshot(page, "draw-empty")

    stroke(page, ONE)
    assert predicted_label(page) == "1"
    expect(page.get_by_text("What the model sees")).to_be_visible()
    preview = page.locator('[data-testid="stImage"] img').first
    expect(preview).to_be_visible()
    # the 28x28 input, blown up with nearest neighbour
    assert preview.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [196, 196]
    screenshot(page, "draw-one")
    no_tracebacks(page)

    clear(page)
    expect(page.get_by_text(re.compile(r"Draw a digit in the black box"))).to_be_visible()
    expect(page.get_by_text(PREDICTION)).to_have_count(0)

    stroke(page, SEVEN)  # one stroke, as most people draw a 7
    label = predicted_label(page)
    assert label == "7", label
    expect(page.get_by_text(re.compile(r"Why “7” and not “\S+”\?"))).to_be_visible()
    heatmaps = page.wait_for_function("""() => {
        const plots = [...document.querySelectorAll('.js-plotly-plot')];
        return plots.map(p => (p.data || []).filter(t => t.type === 'heatmap').length).find(n => n > 0) || null;
    }""", timeout=30_000).json_value()
    assert heatmaps == 3  # predicted, compared, difference
    no_tracebacks(page)
    tall_screenshot(page, "draw")

    clear(page)
    expect(page.get_by_text(re.compile(r"Draw a digit in the black box"))).to_be_visible()
    expect(page.get_by_text(PREDICTION)).to_have_count(0)


def test_load_a_checkpoint_then_upload_pictures(page, dashboard_url, tmp_path):
    for event in train(TrainConfig(epochs=3)):
        pass
    path = save_checkpoint(tmp_path / "three-epochs.pt", event.model, TrainConfig(epochs=3), event.class_names,
                           event.normalizer, {"test_accuracy": event.test_accuracy})
    open_draw(page, dashboard_url)  # a new browser session: no model yet
    expect(page.get_by_text("There is no trained model yet")).to_be_visible()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(path))
    page.locator('[data-testid="stMain"] canvas').last.wait_for(timeout=30_000)
    wait_for_app(page)
    expect(page.get_by_text(re.compile(r"checkpoint “three-epochs.pt”"))).to_be_visible()

    page.get_by_text("Upload a picture").click()
    expect(page.get_by_text("A picture of one digit")).to_be_visible()
    wait_for_app(page)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("shopping list: milk, eggs")
    page.locator('[data-testid="stMain"] [data-testid="stFileUploader"] input[type="file"]').last \
        .set_input_files(str(not_an_image))
    expect(page.get_by_text(re.compile(r"Can't use “notes.png”: not a PNG or JPEG image"))).to_be_visible(
        timeout=30_000)
    no_tracebacks(page)
    screenshot(page, "draw-upload-error")

    page.get_by_text("Random test image").click()
    expect(page.get_by_role("button", name=re.compile("Another random test image"))).to_be_visible()
    wait_for_app(page)
    expect(page.get_by_text(PREDICTION)).to_be_visible()
    expect(page.get_by_text(re.compile(r"True label:"))).to_be_visible()
    no_tracebacks(page)
    tall_screenshot(page, "draw-random")
