"""Hostile input in a real browser: markdown and HTML in class names, file names and URL values stay text.

Nothing from them may become a link, an image or an element; crafted checkpoints get a
message. Screenshots at desktop, laptop and phone sizes land in artifacts/screenshots/.
"""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from lrcore.checkpoint import save_checkpoint
from tests.browser.conftest import open_page_from_home, quick_model, screenshot, wait_for_app
from tests.test_hostile_checkpoints import CRAFTED

NAMES = ("[x](http://e.example)", "![i](http://e.example/i.png)", "<img src=x onerror=alert(1)>", ":red[3]",
         "$4$", "`5`", "**6**", "# 7", "<a href='http://e.example'>8</a>", "9 :material/home:")
SIZES = {"1400": (1400, 1000), "1024": (1024, 768), "390": (390, 844)}
# Links made by markdown or HTML (their text is not the address), images, and GFM's autolinks of a
# bare address (md_escape puts a zero-width space inside them).
INJECTED = """() => {
  const links = [...document.querySelectorAll('a[href*="e.example"]')];
  const bare = links.filter(a => /^(https?:|www[.])/i.test(a.textContent));
  return {links: links.length - bare.length,
          images: [...document.querySelectorAll('img[src*="e.example"], img[src="x"]')].length,
          autolinks: bare.length};
}"""


def injected(page) -> dict:
    found = page.evaluate(INJECTED)
    autolinks = found.pop("autolinks")
    return found | ({"autolinks": autolinks} if autolinks else {})


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    config, event = quick_model()
    named = save_checkpoint(folder / "[x](http:e) ![i](e.png).pt", event.model, config, NAMES, event.normalizer)
    three_classes = folder / "three.pt"
    three_classes.write_bytes(CRAFTED["3 classes for mnist-sample"][0])
    return named, three_classes


def screenshots(page, name: str) -> None:
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(500)
        wait_for_app(page)
        screenshot(page, f"{name}-{size}")
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_evaluate_shows_markdown_class_names_and_file_names_as_text(page, dashboard_url, hostile_files):
    named, three_classes = hostile_files
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_page_from_home(page, dashboard_url, "Evaluate", "No model to evaluate yet")
    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')

    uploader.set_input_files(str(three_classes))
    expect(page.get_by_text("a model for mnist-sample needs 10", exact=False)).to_be_visible()
    wait_for_app(page)
    screenshots(page, "hostile-evaluate-refused")

    uploader.set_input_files(str(named))
    expect(page.get_by_text(f"checkpoint {named.name}", exact=False)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Random images and predictions")).to_be_visible()
    wait_for_app(page)
    heading = page.get_by_text(" images of class ", exact=False).first
    expect(heading).to_be_visible()
    shown = heading.inner_text().replace("\u200b", "")  # zero-width spaces keep addresses from linking
    assert any(name in shown for name in NAMES)  # the literal name, as typed
    found = injected(page)
    assert dialogs == []
    screenshots(page, "hostile-evaluate-names")
    assert found["links"] == 0 and found["images"] == 0
    assert not found.get("autolinks"), f"{found['autolinks']} bare addresses became links"


def test_a_sweep_link_with_markdown_shows_it_as_text(page, dashboard_url):
    value = "[x](http://e.example)![i](http://e.example/i.png)<img src=x onerror=alert(1)>"
    page.goto(dashboard_url)
    page.get_by_text("Device:").wait_for(timeout=90_000)
    wait_for_app(page)
    page.goto(f"{dashboard_url}/sweep?sweep={value.replace('&', '%26')}")
    warning = page.get_by_text("is not in this store", exact=False)
    expect(warning).to_be_visible(timeout=90_000)
    wait_for_app(page)
    assert value in warning.inner_text().replace("\u200b", "")
    found = injected(page)
    screenshots(page, "hostile-sweep-link")
    assert found["links"] == 0 and found["images"] == 0
    assert not found.get("autolinks"), f"{found['autolinks']} bare addresses became links"
