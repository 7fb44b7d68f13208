"""Issue 12 in headless Chromium: upload a zip of two folders of colour pictures on Data, import it, train on
it, predict an uploaded picture; screenshots of the Data page with the imported colour dataset at three sizes."""
from __future__ import annotations

import io
import random
import re
import zipfile

from PIL import Image, ImageDraw

from tests.browser.conftest import screenshots_at_sizes, wait_for_app
from tests.browser.test_predict_photo import nav


def picture(kind: str, seed: int) -> Image.Image:
    """An easy class: a warm disc on light ('suns') or a cool bar on dark ('seas'), jittered."""
    rng = random.Random(seed)
    image = Image.new("RGB", (60, 48), (230, 220, 200) if kind == "suns" else (20, 40, 70))
    draw = ImageDraw.Draw(image)
    x, y = rng.randint(14, 30), rng.randint(10, 20)
    if kind == "suns":
        draw.ellipse((x, y, x + 20, y + 20), fill=(240, rng.randint(120, 180), 20))
    else:
        draw.rectangle((0, y, 60, y + 10), fill=(30, rng.randint(120, 200), 230))
    return image


def a_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for kind in ("seas", "suns"):
            for number in range(16):
                data = io.BytesIO()
                picture(kind, number).save(data, "JPEG" if number % 2 else "PNG")
                archive.writestr(f"sky/{kind}/{number}.{'jpg' if number % 2 else 'png'}", data.getvalue())
        archive.writestr("sky/suns/notes.txt", "not a picture")  # skipped, with why
    return buffer.getvalue()


def test_upload_a_zip_train_on_it_and_predict_a_picture(dashboard_url, page):
    page.goto(f"{dashboard_url}/data")
    page.get_by_role("heading", name="Data").wait_for(timeout=90_000)
    wait_for_app(page)
    page.get_by_text("Your own images", exact=True).first.click()
    page.locator(".st-key-own_zip [data-testid='stFileUploaderDropzoneInput']").set_input_files(
        files=[{"name": "sky.zip", "mimeType": "application/zip", "buffer": a_zip()}])
    page.locator(".st-key-own_zip").get_by_text("sky.zip").wait_for()
    wait_for_app(page)
    page.locator(".st-key-own_load button").click()
    page.get_by_text(re.compile("seas vs suns \\(your images, 32x32 colour\\)")).first.wait_for(timeout=120_000)
    wait_for_app(page)
    assert "seas vs suns" in page.get_by_test_id("stSidebar").inner_text()
    assert page.get_by_text("1 file skipped").is_visible()
    screenshots_at_sizes(page, "issue12-data-own", pause_ms=600)

    # the new dataset is chosen, in the URL too (a share link or a reload keeps it)
    page.wait_for_function("() => /dataset=sky-/.test(window.location.search)", timeout=20_000)
    name = re.search(r"dataset=([^&]+)", page.url).group(1)
    # 26 pictures: smaller batches than the default 128 (the same browser session keeps the upload's choice)
    page.goto(f"{dashboard_url}/train?dataset={name}&batch_size=8&epochs=5")
    page.get_by_role("heading", name="Train").wait_for(timeout=90_000)
    wait_for_app(page)
    page.get_by_role("button", name=re.compile("^Start")).click()
    page.get_by_text(re.compile("Done: test accuracy")).wait_for(timeout=180_000)
    wait_for_app(page)

    nav(page, "Predict", page.get_by_role("heading", name="Predict"))
    data = io.BytesIO()
    picture("suns", 99).resize((240, 192)).save(data, "PNG")
    page.locator('[data-testid="stMain"] [data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(
        files=[{"name": "sun.png", "mimeType": "image/png", "buffer": data.getvalue()}])
    prediction = page.locator('[data-testid="stMain"] .st-key-predict_prediction')
    prediction.get_by_text("Prediction").wait_for(timeout=60_000)
    wait_for_app(page)
    assert re.search(r"\d+% sure", prediction.inner_text())
