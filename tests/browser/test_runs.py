"""Runs in headless Chromium: a run keeps training across a refresh and is listed on the Runs
page; two finished runs overlay their curves; checkpoints download and upload again.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.test_layout import CHECKED, LAYOUT_PROBLEMS
from tests.browser.conftest import screenshot, start_streamlit, stop, wait_for_app

ROW_HEIGHT = 35  # st.dataframe's default row height (the header row is as tall)
CHART_LEGENDS = """() => Object.fromEntries([...document.querySelectorAll('.js-plotly-plot')]
  .filter(p => p.layout && p.layout.title)
  .map(p => [String(p.layout.title.text).replace(/<[^>]+>/g, ''), p.data.filter(t => t.showlegend !== false).map(t => t.name)]))"""
SHORT_RUN = "epochs=3&batch_size=60&per_class=30"
expect.set_options(timeout=30_000)  # the shared CI machine can be slow to rerun a page


def start_run(page, url: str, settings: str) -> str:
    """Start a run from the Train page with settings from the URL; returns its run id."""
    page.goto(f"{url}/train?{settings}")
    wait_for_app(page)
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r"[?&]run="))
    return re.search(r"[?&]run=([^&]+)", page.url).group(1)


def open_runs_page(page, url: str) -> None:
    page.goto(f"{url}/runs")  # a new browser session: only what the run store keeps can show up
    page.get_by_role("heading", name=re.compile("Runs")).wait_for()
    page.locator('[data-testid="stDataFrame"]').wait_for()
    wait_for_app(page)


def table_names(page) -> list[str]:
    """The Name column, read from the grid's accessibility table (cells are drawn on a canvas)."""
    return page.locator('[data-testid="stDataFrame"] td[aria-colindex="1"]').all_inner_texts()


def tick_row(page, name: str) -> None:
    """Click the selection checkbox of the row named `name`."""
    row = table_names(page).index(name)
    box = page.locator('[data-testid="stDataFrame"]').bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + ROW_HEIGHT * (row + 1) + ROW_HEIGHT / 2)
    page.wait_for_timeout(300)
    wait_for_app(page)


def upload(page, file, name: str, kept: bool = True) -> None:
    """Put `file` in the checkpoint uploader (a bad file is refused and the uploader emptied).

    Tried again if the page was still replacing the uploader when the file went in.
    """
    chip = page.locator('[data-testid="stFileChipName"]', has_text=name)
    for attempt in range(3):
        wait_for_app(page)
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(file)
        if not kept:
            break
        try:
            chip.wait_for(timeout=10_000)
            break
        except Exception:
            if attempt == 2:
                raise
    wait_for_app(page)


def test_refresh_keeps_the_run_training_and_the_runs_page_lists_it(page, dashboard_url):
    run_id = start_run(page, dashboard_url, "lr=0.1&epochs=1000&batch_size=20")  # minutes: stopped below
    progress = page.get_by_text(re.compile(r"Epoch \d+ of 1000"))
    progress.wait_for(timeout=60_000)

    page.reload()  # the browser's refresh button: a new session, the same URL
    wait_for_app(page)
    assert f"run={run_id}" in page.url, page.url
    expect(page.get_by_text(re.compile(r"Epoch \d+ of 1000"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"Run: training epoch \d+ of 1000"))).to_be_visible()
    position = """() => { const m = document.body.innerText.match(/Epoch (\\d+) of 1000 · batch (\\d+) of/);
                         return m ? Number(m[1]) * 100000 + Number(m[2]) : null; }"""
    first = page.evaluate(position)
    assert first is not None
    page.wait_for_function(f"() => ({position})() > {first}")  # still training after the refresh

    # Moving to another page with the sidebar clears the URL's parameters; a refresh there
    # must still find the run (the pages put `run` back into the URL).
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Weights").click()
    page.get_by_role("heading", name="Weights").first.wait_for(timeout=30_000)
    wait_for_app(page)
    page.reload()
    wait_for_app(page)
    assert f"run={run_id}" in page.url, page.url
    expect(page.get_by_text(re.compile(r"Run: training epoch \d+ of 1000"))).to_be_visible(timeout=30_000)

    open_runs_page(page, dashboard_url)
    name = table_names(page)[0]
    assert name.startswith("SGD lr=0.1 bs=20"), name  # run names name what differs from the defaults
    status = page.locator('[data-testid="stDataFrame"] td[aria-colindex="3"]').first  # Name, Started, Status
    expect(status).to_contain_text(re.compile(r"training \(epoch \d+ of 1000\)"))
    tick_row(page, name)
    expect(page.get_by_role("button", name="Delete")).to_be_disabled()  # stop it first
    expect(page.get_by_text("Loss per epoch").first).to_be_visible()
    screenshot(page, "runs")

    page.goto(f"{dashboard_url}/train?run={run_id}")  # stop it, so the next test has the CPU
    wait_for_app(page)
    page.locator('[data-testid="stMain"]').get_by_role("button", name="Stop").click()
    page.get_by_text(re.compile("Stopped; the weights it reached are kept")).wait_for(timeout=30_000)


def test_compare_two_runs_then_download_and_upload_a_checkpoint(page, dashboard_url, tmp_path):
    for lr in ("0.5", "0.1"):
        start_run(page, dashboard_url, f"lr={lr}&{SHORT_RUN}")
        page.get_by_text("Done: test accuracy").wait_for(timeout=90_000)
    open_runs_page(page, dashboard_url)
    newest, older = table_names(page)[:2]
    assert newest.startswith("SGD lr=0.1 bs=60") and older.startswith("SGD lr=0.5 bs=60"), (newest, older)
    tick_row(page, older)
    tick_row(page, newest)
    page.get_by_role("heading", name="Compare").wait_for()
    page.wait_for_function(f"() => Object.values(({CHART_LEGENDS})()).filter(names => names.length == 2)"
                           ".length == 3")  # the charts of one selected run are replaced
    legends = page.evaluate(CHART_LEGENDS)
    # two curves per chart, in the table's order (newest first), named by the setting that differs
    assert legends.get("Loss per epoch") == ["lr=0.1", "lr=0.5"], legends
    assert legends.get("Accuracy per epoch") == ["lr=0.1", "lr=0.5"], legends
    assert legends.get("Training loss per batch (smoothed)") == ["lr=0.1", "lr=0.5"], legends
    expect(page.get_by_text(re.compile("Same for all: dataset mnist-sample, batch size 60"))).to_be_visible()
    screenshot(page, "runs-compare")

    # the buttons act on the first of the selected runs; its checkpoint and metrics download
    with page.expect_download() as download:
        page.get_by_role("button", name="Checkpoint").click()
    checkpoint = tmp_path / "model.pt"
    download.value.save_as(checkpoint)
    with page.expect_download() as download:
        page.get_by_role("button", name="Metrics CSV").click()
    csv = tmp_path / "epochs.csv"
    download.value.save_as(csv)
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("epoch,step,train_loss") and len(lines) == 1 + 4  # epochs 0..3

    page.get_by_text("Add a checkpoint file").click()
    upload(page, {"name": "notes.pt", "mimeType": "application/octet-stream",
                  "buffer": b"these are my lecture notes"}, "notes.pt", kept=False)
    expect(page.get_by_text(re.compile("“notes.pt” was not added: not a checkpoint"))).to_be_visible()
    expect(page.locator('[data-testid="stFileChipName"]')).to_have_count(0)  # emptied for the next file
    upload(page, str(checkpoint), "model.pt")
    expect(page.get_by_text(re.compile("A valid checkpoint: 10 classes"))).to_be_visible()
    name = page.get_by_label("Name").last
    expect(name).to_have_value("model")  # the file's name, editable
    name.fill("from a colleague")
    name.press("Enter")
    wait_for_app(page)
    page.get_by_role("button", name="Add to runs").click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stDataFrame\"] td')]"
                           ".some(td => td.innerText === 'from a colleague')")
    wait_for_app(page)
    assert table_names(page)[0] == "from a colleague"
    status = page.locator('[data-testid="stDataFrame"] td[aria-colindex="3"]').first  # Name, Started, Status
    expect(status).to_contain_text("uploaded")


def seed_runs(runs_dir: Path) -> None:
    """Two small finished runs: one 40 days old, one saved only in part (the disk filled up)."""
    from lrcore.config import TrainConfig
    from lrcore.store import Store
    from tests.store_helpers import edit_run, record_run

    store = Store(runs_dir / "lrcore.db")
    for name, age_days, save_error in (("last month's baseline", 40, ""),
                                       ("filled the disk", 0, "the disk is full (No space left on device)")):
        run_id = record_run(store, TrainConfig(epochs=2, batch_size=60, per_class_limit=30), name)
        edit_run(store, run_id, created=store.get(run_id).created - age_days * 86400, save_error=save_error)
    store.close()


@pytest.fixture
def full_store_url(tmp_path):
    """A dashboard of its own whose run store is over its size limit (50 kB)."""
    data_dir = tmp_path / "data"
    seed_runs(data_dir / "runs")
    process, url = start_streamlit(data_dir, tmp_path / "streamlit.log", {"LRCORE_STORE_MAX_MB": "0.05"})
    yield url
    stop(process)


def test_full_store_runs_train_unsaved_and_the_page_says_why(page, full_store_url, tmp_path):
    start_run(page, full_store_url, SHORT_RUN)
    page.get_by_text("Done: test accuracy").wait_for(timeout=90_000)
    open_runs_page(page, full_store_url)
    expect(page.get_by_text(re.compile("New runs are not being saved: the run store is full: it holds"))).to_be_visible()
    unsaved = page.get_by_text(re.compile("“SGD .*” \\(done\\) could not be saved: the run store is full"))
    expect(unsaved).to_be_visible()
    with page.expect_download() as download:  # its checkpoint, from the server's memory
        page.get_by_role("button", name="Checkpoint").first.click()
    checkpoint = tmp_path / "unsaved.pt"
    download.value.save_as(checkpoint)
    assert checkpoint.stat().st_size > 30_000
    assert table_names(page) == ["filled the disk", "last month's baseline"]
    status = page.locator('[data-testid="stDataFrame"] td[aria-colindex="3"]').first  # Name, Started, Status
    expect(status).to_contain_text("done, not fully saved")
    tick_row(page, "filled the disk")
    expect(page.get_by_text(re.compile("This run could not be saved completely: the disk is full"))).to_be_visible()
    # the clean-up controls are open, because the store is over its limit
    prune = page.get_by_role("button", name=re.compile("Delete 1 finished run older than 30 days"))
    expect(prune).to_be_visible()
    prune.click()
    expect(page.get_by_text(re.compile("Delete the runs older than 30 days for good \\(1: “last month's"))
           ).to_be_visible()
    wait_for_app(page)
    layout = []
    for width, height in ((1400, 1000), (1024, 768), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.evaluate("() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; })")
        page.wait_for_timeout(500)
        layout += [f"{width}x{height}: {problem}" for problem in page.evaluate(LAYOUT_PROBLEMS, CHECKED)]
        screenshot(page, f"runs-save-problems-{width}")
    page.set_viewport_size({"width": 1400, "height": 1000})
    assert not layout, "\n".join(layout)  # with a run ticked: the curve controls fit too
    assert "/tmp/" not in page.locator('[data-testid="stMain"]').inner_text()  # no server paths

    # "Add to runs" on a full store: an error, not a traceback
    page.get_by_text("Add a checkpoint file").click()
    upload(page, str(checkpoint), "unsaved.pt")
    page.get_by_role("button", name="Add to runs").click()
    expect(page.get_by_text(re.compile("“unsaved.pt” was not added: it could not be saved, the run store is full"))
           ).to_be_visible()
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)

    page.get_by_role("button", name=re.compile("Yes, delete 1")).click()
    page.get_by_text("Deleted 1 run.").wait_for()
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stDataFrame"] td[aria-colindex="1"]')]
                             .map(td => td.innerText).join('|') === 'filled the disk'""")
