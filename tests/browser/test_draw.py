"""The Draw page in headless Chromium: train a quick model, draw with the mouse, undo, clear, upload.

streamlit-drawable-canvas renders in the page itself (no iframe, an open shadow root that
Playwright's selectors go through): its Fabric.js upper canvas takes the mouse events, so
real mouse strokes go through the whole path (browser PNG -> server -> preprocessing ->
model) exactly as a user's would.
"""
from __future__ import annotations

import re

import torch
from playwright.sync_api import expect

from lrcore import TrainConfig, train
from lrcore.checkpoint import save_checkpoint
from lrcore.data import Normalizer
from lrcore.model import LogisticRegression
from tests.browser.conftest import screenshot, wait_for_app

SEVEN = [(0.25, 0.22), (0.75, 0.22), (0.45, 0.82)]  # fractions of the canvas: the bar, then the stem
ONE = [(0.5, 0.15), (0.5, 0.85)]
CORNER = [(0.78, 0.02), (0.9, 0.02), (0.84, 0.1)]  # a small 7 in the top-right corner, inside the top 30 px
PREDICTION = '[data-testid="stMain"] .st-key-draw_prediction'
CANVAS = '[data-testid="stMain"] canvas.upper-canvas'  # Fabric's input layer
HTML_NAME = "<a href=x style=position:fixed>X</a>"
MARKDOWN_NAME = "[link](http://x) ![i](http://x/i.png)"
# Every word of every visible button, radio option and widget label: each on one line (a
# word split over two lines has two client rects), and no button cut off.
LABEL_PROBLEMS_JS = """() => {
  const problems = [];
  const labels = document.querySelectorAll('[data-testid="stMain"] button, [data-testid="stMain"] label, '
                                           + '[data-testid="stMain"] [data-testid="stMetricLabel"]');
  for (const element of labels) {
    if (!element.offsetParent) continue;  // not shown
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    for (let node; (node = walker.nextNode());) {
      let at = 0;
      for (const part of node.textContent.split(/(\\s+)/)) {
        if (part.trim()) {
          const range = document.createRange();
          range.setStart(node, at);
          range.setEnd(node, at + part.length);
          if (range.getClientRects().length > 1) problems.push(`"${part}" broken in "${element.innerText}"`);
        }
        at += part.length;
      }
    }
    for (const inner of [element, ...element.querySelectorAll('*')]) {
      const clips = getComputedStyle(inner).overflow !== 'visible' && inner.clientWidth > 2;  // not a hidden input
      if (clips && inner.scrollWidth > inner.clientWidth + 1) {
        problems.push(`cut off: "${element.innerText}"`);
        break;
      }
    }
  }
  return problems;
}"""


def open_draw(page, url: str) -> None:
    page.goto(f"{url}/draw")
    page.get_by_role("heading", name="Draw").wait_for(timeout=90_000)  # first load imports torch: slow
    wait_for_app(page)


def open_draw_with_a_model(page, url: str) -> None:
    """Open Draw in a new session, which has no model yet: train the quick one."""
    open_draw(page, url)
    train = page.get_by_role("button", name=re.compile("Train a quick model"))
    train.wait_for()  # the page's first run may still be going after the title shows
    train_quick_model(page)


def train_quick_model(page) -> None:
    page.get_by_role("button", name=re.compile("Train a quick model")).click()
    page.locator(CANVAS).wait_for(timeout=120_000)  # trained (a few seconds), then the page reruns itself
    wait_for_app(page)


def tall_screenshot(page, name: str) -> None:
    """Streamlit scrolls inside its main block, so show the whole page by making the window tall."""
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": 1900})
    page.wait_for_timeout(500)
    screenshot(page, name)
    page.set_viewport_size(size)


def stroke(page, points, steps: int = 12) -> None:
    """One mouse stroke through `points` (fractions of the drawing canvas), pressed at once like a finger."""
    box = page.locator(CANVAS).bounding_box()
    assert box and box["width"] >= 200, box
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(xy, xy[1:]):
        for i in range(1, steps + 1):
            page.mouse.move(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps)
    page.mouse.up()


def predicted_label(page) -> str:
    """The class shown big as the prediction, once the page has caught up with the last stroke."""
    page.wait_for_timeout(1_000)  # the canvas sends at most every 200 ms; let its rerun start
    page.locator(PREDICTION).wait_for(timeout=60_000)
    wait_for_app(page)
    return page.locator(f'{PREDICTION} [data-testid="stMetricValue"]').inner_text()


def ink(page, region=(0.0, 0.0, 1.0, 1.0)) -> int:
    """How many pixels of the drawing layer inside `region` (fractions x0, y0, x1, y1) have ink."""
    return page.locator('[data-testid="stMain"] canvas.dc-canvas.lower-canvas').evaluate("""(canvas, [x0, y0, x1, y1]) => {
        const w = canvas.width, h = canvas.height;
        const data = canvas.getContext('2d').getImageData(x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h).data;
        let n = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] > 128) n++;
        return n;
    }""", list(region))


def new_canvas(page, button: str) -> None:
    """Press Undo or Clear and wait for the fresh canvas (a new component replaces the old one)."""
    old = page.locator(CANVAS).element_handle()
    page.get_by_role("button", name=re.compile(button)).click()
    page.wait_for_function("canvas => !canvas.isConnected", arg=old, timeout=60_000)
    page.locator(CANVAS).wait_for()
    wait_for_app(page)


def no_tracebacks(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


def consistent_why(page) -> None:
    """The "Why … and not …?" heading names the class shown as the prediction; the box says runner-up."""
    label = page.locator(f'{PREDICTION} [data-testid="stMetricValue"]').inner_text()
    heading = page.get_by_text(re.compile(r"^Why “.+” and not “.+”\?$")).inner_text()
    assert heading.startswith(f"Why “{label}” and not"), (heading, label)
    assert page.locator('[data-testid="stSelectbox"] input').input_value() == "the runner-up"


def test_train_a_quick_model_draw_undo_and_clear(page, dashboard_url):
    open_draw(page, dashboard_url)
    expect(page.get_by_text("There is no trained model yet")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Train a quick model"))).to_be_visible()
    expect(page.locator('[data-testid="stFileUploader"]')).to_be_visible()
    wait_for_app(page)
    screenshot(page, "draw-no-model")

    train_quick_model(page)
    expect(page.get_by_text(re.compile(r"Draw a digit in the black box"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"quick model \(Draw page\)"))).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Undo"))).to_be_disabled()
    no_tracebacks(page)
    # On a phone a finger on the canvas draws instead of scrolling the page.
    assert page.locator(CANVAS).evaluate("c => getComputedStyle(c).touchAction") == "none"
    screenshot(page, "draw-empty")

    stroke(page, ONE)
    assert predicted_label(page) == "1"
    # The canvas's 200 ms wait before it sends a stroke was found and skipped (pages/draw.py): if a new
    # streamlit-drawable-canvas sends strokes another way, this says the page no longer shortens it.
    assert page.evaluate("window.lrcoreStrokesSentAtOnce") >= 1
    expect(page.get_by_text("What the model sees")).to_be_visible()
    preview = page.locator('[data-testid="stImage"] img').first
    expect(preview).to_be_visible()
    # the 28x28 input, blown up with nearest neighbour
    assert preview.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [196, 196]
    screenshot(page, "draw-one")
    no_tracebacks(page)

    new_canvas(page, "Clear")
    expect(page.get_by_text(re.compile(r"Draw a digit in the black box"))).to_be_visible()
    expect(page.locator(PREDICTION)).to_have_count(0)
    assert ink(page) == 0

    stroke(page, SEVEN)  # one stroke, as most people draw a 7
    label = predicted_label(page)
    assert label == "7", label
    consistent_why(page)
    heatmaps = page.wait_for_function("""() => {
        const plots = [...document.querySelectorAll('.js-plotly-plot')];
        const n = plots.filter(p => (p.data || []).some(t => t.type === 'heatmap')).length;
        return n || null;
    }""", timeout=30_000).json_value()
    assert heatmaps == 3  # predicted, compared, difference: three figures
    no_tracebacks(page)
    tall_screenshot(page, "draw")

    # A second stroke across the 7, then Undo: the 7 comes back, drawn and predicted.
    before = ink(page)
    stroke(page, [(0.2, 0.55), (0.8, 0.55)])
    predicted_label(page)
    assert ink(page) > before
    new_canvas(page, "Undo")
    assert predicted_label(page) == "7"
    assert ink(page) == before  # the same stroke, redrawn from the canvas's own record
    consistent_why(page)
    new_canvas(page, "Undo")
    expect(page.get_by_text(re.compile(r"Draw a digit in the black box"))).to_be_visible()
    assert ink(page) == 0
    no_tracebacks(page)


def test_a_stroke_in_the_top_right_corner_draws(page, dashboard_url):
    """The canvas's own toolbar, invisible until hovered, used to sit on the top-right corner."""
    open_draw_with_a_model(page, dashboard_url)
    # Like a finger, or a mouse coming from elsewhere: the pointer was not over the canvas before the stroke.
    page.mouse.move(5, 5)
    page.locator('[data-testid="stMain"] .dc-root').evaluate("""root => new Promise(done => {
        const toolbar = root.querySelector('.dc-toolbar');  // hidden, or back at rest where it covers the corner
        const rest = () => toolbar.offsetParent === null || getComputedStyle(toolbar).top === '-16px';
        const wait = () => rest() ? done() : requestAnimationFrame(wait);
        wait();
    })""")
    expect(page.locator('[data-testid="stMain"] .dc-toolbar')).to_be_hidden()
    stroke(page, CORNER, steps=6)
    page.wait_for_function("""canvas => {  // the stroke is on the drawing layer once the mouse is up
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height * 0.15).data;
        for (let i = 0; i < data.length; i += 4) if (data[i] > 128) return true;
        return false;
    }""", arg=page.locator('[data-testid="stMain"] canvas.dc-canvas.lower-canvas').element_handle(), timeout=5_000)
    assert ink(page, (0.7, 0.0, 1.0, 0.15)) > 100
    predicted_label(page)  # a small digit in the corner is still a digit: a prediction appears
    no_tracebacks(page)


def test_another_random_test_image_again_and_again(page, dashboard_url):
    """The reported traceback: the third random image broke the 'Why … and not …?' heading."""
    open_draw_with_a_model(page, dashboard_url)
    page.locator('[data-testid="stRadioOption"]').filter(has_text="Random test image").click()
    another = page.get_by_role("button", name=re.compile("Another random test image"))
    another.wait_for()
    wait_for_app(page)
    shown = set()
    for _ in range(6):
        no_tracebacks(page)
        consistent_why(page)
        shown.add(page.get_by_text(re.compile(r"^Test image #")).inner_text())
        another.click()
        page.wait_for_timeout(300)
        wait_for_app(page)
    no_tracebacks(page)
    consistent_why(page)
    assert len(shown) > 1


def test_layout_on_projectors_and_phones(page, dashboard_url):
    """No cut or broken labels; the prediction on the first screen, on a phone right under the canvas."""
    open_draw_with_a_model(page, dashboard_url)
    for width, height, name in [(1400, 1000, "desktop"), (1280, 720, "projector-1280"),
                                (1024, 768, "projector-1024"), (390, 844, "phone")]:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(800)
        if page.get_by_role("button", name=re.compile("Clear")).is_enabled():
            new_canvas(page, "Clear")
        stroke(page, SEVEN)
        predicted_label(page)
        page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollTo(0, 0)")
        assert page.evaluate(LABEL_PROBLEMS_JS) == [], (width, height)
        value = page.locator(f'{PREDICTION} [data-testid="stMetricValue"]').bounding_box()
        assert value["y"] + value["height"] <= height, (name, value)  # seen without scrolling
        canvas = page.locator(CANVAS).bounding_box()
        if width < 640:  # stacked: the prediction follows the canvas and its buttons closely
            assert value["y"] - (canvas["y"] + canvas["height"]) < 150, (canvas, value)
        no_tracebacks(page)
        screenshot(page, f"draw-{name}-{width}x{height}")


def test_load_a_checkpoint_then_upload_pictures(page, dashboard_url, tmp_path):
    for event in train(TrainConfig(epochs=3)):
        pass
    path = save_checkpoint(tmp_path / "three-epochs.pt", event.model, TrainConfig(epochs=3), event.class_names,
                           event.normalizer, {"test_accuracy": event.test_accuracy})
    open_draw(page, dashboard_url)  # a new browser session: no model yet
    expect(page.get_by_text("There is no trained model yet")).to_be_visible()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(path))
    page.locator(CANVAS).wait_for(timeout=30_000)
    wait_for_app(page)
    expect(page.get_by_text(re.compile(r"checkpoint “three-epochs.pt”"))).to_be_visible()

    page.locator('[data-testid="stRadioOption"]').filter(has_text="Upload").click()
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

    page.locator('[data-testid="stRadioOption"]').filter(has_text="Random test image").click()
    expect(page.get_by_role("button", name=re.compile("Another random test image"))).to_be_visible()
    wait_for_app(page)
    expect(page.locator(PREDICTION)).to_be_visible()
    expect(page.get_by_text(re.compile(r"True label:"))).to_be_visible()
    no_tracebacks(page)
    tall_screenshot(page, "draw-random")


def test_class_names_from_a_checkpoint_are_plain_text(page, dashboard_url, tmp_path):
    """A class name that is a full-screen link, or markdown with a link and a remote image, stays text."""
    names = (HTML_NAME, MARKDOWN_NAME, *[str(c) for c in range(2, 10)])
    model = LogisticRegression.from_tensors(torch.zeros(10, 784), torch.linspace(2, 0, 10))  # 0, then 1
    path = save_checkpoint(tmp_path / "[x](x).pt", model, TrainConfig(), names, Normalizer("raw"), {})
    open_draw(page, dashboard_url)  # a new session: no model yet, so load the checkpoint
    expect(page.get_by_text("There is no trained model yet")).to_be_visible()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(path))
    page.locator(CANVAS).wait_for(timeout=30_000)
    wait_for_app(page)
    page.locator('[data-testid="stRadioOption"]').filter(has_text="Random test image").click()
    page.locator(PREDICTION).wait_for(timeout=30_000)
    wait_for_app(page)
    assert page.locator(f'{PREDICTION} [data-testid="stMetricValue"]').inner_text() == HTML_NAME
    expect(page.get_by_text(f"Runner-up: {MARKDOWN_NAME} (", exact=False)).to_be_visible()
    expect(page.get_by_text("checkpoint “[x](x).pt”", exact=False)).to_be_visible()
    hostile = page.evaluate("""() => [...document.querySelectorAll('*')]
        .filter(e => [...e.attributes].some(a => /href|src/.test(a.name) && /^(x|http:\\/\\/x(\\/i\\.png)?)$/.test(a.value)))
        .map(e => e.outerHTML.slice(0, 120))""")
    assert hostile == []  # no link or image made from a name, in Streamlit's markdown or in plotly's SVG
    assert page.evaluate("""() => [...document.querySelectorAll('[data-testid="stMain"] *')]
        .filter(e => getComputedStyle(e).position === 'fixed').length""") == 0
    no_tracebacks(page)
    screenshot(page, "draw-hostile-names")
