"""My runs stay mine, on a real class server (LRCORE_TEACHER_KEY set) with three browsers: Ana starts a
long run; Ben opens its /train?run= link and finds it read-only (controls disabled, a note why), and neither
his forged clicks on the disabled buttons nor the Runs page let him pause, stop, rename or delete it; the
teacher, once the key is typed, stops it.

The identity is a cookie each browser gets from the page itself (never a URL parameter), so every
browser context here is a different student, and a new page load of the same context is the same one.
"""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from lrcore.store import Store
from tests.browser.conftest import screenshots_at_sizes, start_streamlit, stop, wait_for_app
from tests.browser.test_runs import table_names, tick_row

KEY = "ownership-browser-test-key"
LONG_RUN = "batch_size=1&epochs=1000"  # 6,400 steps an epoch, about 1 s: trains on for the whole test (the teacher stops it)
expect.set_options(timeout=30_000)

# Enable a disabled button in the DOM and click it: what a student with the browser's developer tools tries.
FORCE_CLICK = """(label) => {
  const button = [...document.querySelectorAll('[data-testid="stMain"] button')]
    .find(b => b.innerText.trim().endsWith(label));
  button.disabled = false;
  button.removeAttribute('disabled');
  button.click();
  return true;
}"""


@pytest.fixture
def class_server(tmp_path):
    data = tmp_path / "data"
    process, url = start_streamlit(data, tmp_path / "streamlit.log", {"LRCORE_TEACHER_KEY": KEY})
    yield url, data / "runs" / "lrcore.db"
    stop(process)


def identified(page, url: str, path: str) -> None:
    """Open `path` and wait until the page knows this browser (the sidebar says "You: …")."""
    page.goto(f"{url}{path}")
    page.get_by_test_id("stSidebar").get_by_text(re.compile(r"You: ")).wait_for(timeout=90_000)
    wait_for_app(page)


def main_button(page, name: str):
    return page.get_by_test_id("stMain").get_by_role("button", name=name, exact=True)


def status(store_path, run_id: str) -> str:
    store = Store(store_path)
    try:
        return store.get(run_id).status
    finally:
        store.close()


def wait_for_status(store_path, run_id: str, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while status(store_path, run_id) != wanted:
        assert time.monotonic() < deadline, f"run {run_id} is {status(store_path, run_id)}, not {wanted}"
        time.sleep(0.5)



def test_another_students_run_is_read_only_and_the_teacher_can_stop_it(class_server, new_browser):
    url, store_path = class_server
    ana, ben, teacher = new_browser(), new_browser(), new_browser()

    identified(ana, url, "/train")
    name_box = ana.get_by_label("Your name (the class sees it)", exact=True)
    name_box.fill("Ana")
    name_box.press("Enter")
    ana.get_by_test_id("stSidebar").get_by_text("You: Ana").wait_for()
    identified(ana, url, f"/train?{LONG_RUN}")  # a new page load: the cookie says it is still Ana
    expect(ana.get_by_test_id("stSidebar").get_by_text("You: Ana")).to_be_visible()
    main_button(ana, "Start").click()
    ana.wait_for_url(re.compile(r"[?&]run="))
    run_id = re.search(r"[?&]run=([^&]+)", ana.url).group(1)
    expect(main_button(ana, "Stop")).to_be_enabled()
    assert "lrcore_id" not in ana.url  # the identity is never in the address bar
    wait_for_status(store_path, run_id, "training")

    # Ben opens Ana's link: he watches, he cannot change
    identified(ben, url, f"/train?run={run_id}&{LONG_RUN}")
    note = "This run belongs to Ana: you can watch it, not change it. Start your own with these settings."
    ben.get_by_text(note).wait_for()
    for name in ("Pause", "Stop", "Apply"):
        expect(main_button(ben, name)).to_be_disabled()
    expect(main_button(ben, "Start")).to_be_enabled()
    screenshots_at_sizes(ben, "ownership-train-read-only")
    for name in ("Stop", "Pause"):
        ben.evaluate(FORCE_CLICK, name)
        ben.wait_for_timeout(1500)
        wait_for_app(ben)
    assert status(store_path, run_id) == "training"

    # Ben's Runs page: his own runs (none); the whole class shows Ana's, read-only
    identified(ben, url, "/runs")
    ben.get_by_text("You have no runs yet").wait_for()
    ben.get_by_test_id("stCheckbox").get_by_text("Whole class").click()
    ben.locator('[data-testid="stDataFrame"]').wait_for()
    wait_for_app(ben)
    names = table_names(ben)
    assert len(names) == 1 and names[0].endswith("#1")
    owners = ben.locator('[data-testid="stDataFrame"] td[aria-colindex="2"]').all_inner_texts()
    assert owners == ["Ana"]
    tick_row(ben, names[0])
    ben.get_by_text(note).wait_for()
    expect(ben.get_by_test_id("stMain").get_by_label("Name", exact=True)).to_be_disabled()
    expect(main_button(ben, "Rename")).to_be_disabled()
    expect(main_button(ben, "Delete")).to_be_disabled()
    screenshots_at_sizes(ben, "ownership-runs-whole-class")
    ben.evaluate(FORCE_CLICK, "Delete")
    ben.wait_for_timeout(1500)
    wait_for_app(ben)
    expect(ben.get_by_text("for good?")).to_have_count(0)  # no confirmation offered
    assert status(store_path, run_id) == "training"

    # the teacher types the key and stops Ana's run
    identified(teacher, url, "/runs")
    key_box = teacher.get_by_label("Teacher key", exact=True)
    key_box.fill(KEY)
    key_box.press("Enter")
    teacher.get_by_test_id("stSidebar").get_by_text(re.compile(r"\(teacher\)")).wait_for()
    wait_for_app(teacher)
    # the whole class by default
    expect(teacher.locator('[data-testid="stDataFrame"] td[aria-colindex="1"]')).to_have_text(names)
    screenshots_at_sizes(teacher, "ownership-runs-teacher")
    identified(teacher, url, f"/train?run={run_id}")
    expect(teacher.get_by_text(note)).to_have_count(0)
    expect(main_button(teacher, "Stop")).to_be_enabled()
    wait_for_app(teacher)
    main_button(teacher, "Stop").click(timeout=90_000)  # a loaded machine answers slowly
    wait_for_status(store_path, run_id, "stopped")
