"""Issue 12 in headless Chromium: the bundled example folder (two classes, colour), a short training run,
its weights in colour, Predict with an uploaded PNG, Train's from-scratch panel; screenshots of each
at 1400x1000, 1024x768 and 390x844."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.conftest import screenshots_at_sizes, start_streamlit, stop, wait_for_app



@pytest.fixture(scope="module")
def example_server(tmp_path_factory):
    """A dashboard whose data folder holds the imported bundled example (imported before the server starts)."""
    from lrcore.image_folder import EXAMPLE_FOLDER, example_dataset

    data_dir = tmp_path_factory.mktemp("example-data")
    name = example_dataset(data_dir)
    process, url = start_streamlit(data_dir, tmp_path_factory.mktemp("logs") / "streamlit.log")
    yield url, name, EXAMPLE_FOLDER
    stop(process)


def nav(page, title: str, marker) -> None:
    """Switch pages with the sidebar (same session, so the run stays current); wait for `marker`."""
    sidebar = page.get_by_test_id("stSidebarNavItems")
    for _ in range(3):  # collapsed by the phone-sized screenshot; the button is redrawn while the page settles
        if sidebar.is_visible():
            break
        try:
            page.get_by_test_id("stExpandSidebarButton").click(timeout=5_000)
            sidebar.wait_for(timeout=5_000)
        except PlaywrightTimeout:
            pass
    sidebar.get_by_role("link", name=title, exact=True).click()
    marker.wait_for(timeout=90_000)
    wait_for_app(page)


def a_photo(folder) -> tuple[str, bytes]:
    """One of the example's pictures, re-encoded as a bigger PNG (as a phone photo would be bigger)."""
    path = next(p for p in sorted(folder.rglob("*")) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").resize((240, 180)).save(buffer, format="PNG")
    return path.stem + ".png", buffer.getvalue()



def test_train_on_the_example_then_predict_an_uploaded_photo(example_server, page):
    url, name, folder = example_server
    # Raw colour pixels: lr 0.5 diverges. Full batch, as tutorial 002: one step per epoch.
    page.goto(f"{url}/train?dataset={name}&epochs=20&lr=0.005&full_batch=on")
    page.get_by_role("heading", name="Train").wait_for(timeout=90_000)
    wait_for_app(page)
    assert page.get_by_text(re.compile(r"· 1 batch per epoch\. Change the dataset")).is_visible()
    assert "threes vs sevens" in page.get_by_test_id("stSidebar").inner_text()  # the example is the dataset
    page.get_by_role("button", name=re.compile("^Start")).click()
    page.get_by_text(re.compile("Done: test accuracy")).wait_for(timeout=120_000)
    wait_for_app(page)
    assert page.get_by_text(re.compile(r"validation images · 1 batch per epoch · device")).is_visible()
    page.get_by_text("From scratch: the equations").click()
    page.locator('[data-testid="stMain"] .katex').first.wait_for()
    page.get_by_text("One step at the weights after epoch").wait_for()
    page.get_by_text("From scratch: the equations").scroll_into_view_if_needed()
    screenshots_at_sizes(page, "issue12-train-from-scratch", pause_ms=600)

    nav(page, "Weights", page.get_by_text(re.compile("Mid-grey: the pixel is ignored")))
    assert page.get_by_text("A binary model has one 32×32 weight image").is_visible()
    assert not page.get_by_text("Scale each class separately").count()  # one map: nothing to scale apart
    screenshots_at_sizes(page, "issue12-weights-colour", pause_ms=600)
    page.get_by_text("R, G, B channels side by side").click()
    page.get_by_text(re.compile("R, G and B weights side by side, left to right")).wait_for()
    wait_for_app(page)
    screenshots_at_sizes(page, "issue12-weights-channels", pause_ms=600)

    nav(page, "Predict", page.get_by_role("heading", name="Predict"))
    file_name, data = a_photo(folder)
    page.locator('[data-testid="stMain"] [data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(
        files=[{"name": file_name, "mimeType": "image/png", "buffer": data}])
    prediction = page.locator('[data-testid="stMain"] .st-key-predict_prediction')
    prediction.get_by_text("Prediction").wait_for(timeout=60_000)
    wait_for_app(page)
    assert re.search(r"\d+% sure", prediction.inner_text())
    assert page.locator('[data-testid="stMain"] .js-plotly-plot').count() >= 2  # the bars and the map(s)
    assert page.get_by_text("What the model sees").is_visible()
    screenshots_at_sizes(page, "issue12-predict", pause_ms=600)
