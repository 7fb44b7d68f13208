"""Training in the real server's worker processes (`lrcore.workers`, the default pool), in Chromium.

A run started on Train trains in a worker process (its CPU time grows, the server's pages stay
live), pauses, resumes and stops; a worker killed with SIGKILL mid-run leaves the run crashed with
its completed epochs, the server up, and the next run trains on a new worker (after waiting in
the queue for one to start).
"""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import CHART_POINTS, screenshot, start_streamlit, stop, wait_for_app
from tests.browser.test_train_weights import main_area, open_train, set_number

EPOCHS_SHOWN = """() => {
  const validation = (%s)(['Accuracy per epoch', 'validation']);
  return validation ? validation.length - 1 : null;
}""" % CHART_POINTS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of its own (its worker processes are killed here), with the default pool."""
    data_dir = tmp_path_factory.mktemp("worker-runs-data")
    process, url = start_streamlit(data_dir, tmp_path_factory.mktemp("logs") / "streamlit.log")
    yield process, url
    stop(process)


def workers_of(pid: int) -> list[int]:
    """The server's worker processes (python -m lrcore.workers_main children)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return [child for child in children if b"lrcore.workers_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def epochs_shown(page, more_than: int = 0, timeout: float = 90_000) -> int:
    return page.wait_for_function(f"() => {{ const n = ({EPOCHS_SHOWN})(); return n > {more_than} ? n : null; }}",
                                  timeout=timeout).json_value()


def test_a_run_trains_in_a_worker_pauses_resumes_stops_and_survives_a_killed_worker(page, server):
    process, url = server
    open_train(page, f"{url}/train")
    workers = workers_of(process.pid)
    assert len(workers) == len(os.sched_getaffinity(0)), workers  # default: one per core, started with the server
    before = {pid: cpu_seconds(pid) for pid in workers}
    set_number(page, "Epochs", "1000")
    set_number(page, "Batch size", "1")  # 6,400 steps an epoch: a worker on a quiet machine did 1000 epochs of 16 in ~15 s
    main_area(page).get_by_role("button", name=re.compile("Start$")).click()
    first = epochs_shown(page, 1)
    expect(page.get_by_text(re.compile(r"Epoch \d+ of 1000 · batch"))).to_be_visible()
    assert max(cpu_seconds(pid) - before[pid] for pid in workers) > 0.2  # the training is a worker's CPU time

    main_area(page).get_by_role("button", name=re.compile("Pause$")).click()
    expect(page.get_by_text(re.compile(r"Epoch \d+ of 1000 · batch .*\(paused\)"))).to_be_visible(timeout=30_000)
    wait_for_app(page)
    paused_at = page.evaluate(EPOCHS_SHOWN)
    screenshot(page, "worker-run-paused")
    main_area(page).get_by_role("button", name=re.compile("Resume$")).click()
    assert epochs_shown(page, max(paused_at, first)) > paused_at  # trains on after the resume
    main_area(page).get_by_role("button", name=re.compile("Stop$")).click()
    expect(page.get_by_text(re.compile(r"Stopped; the weights it reached are kept"))).to_be_visible(timeout=30_000)
    wait_for_app(page)

    # A second run, then its worker killed: crashed with its epochs; the server answers on.
    main_area(page).get_by_role("button", name=re.compile("Start$")).click()
    expect(page.get_by_text(re.compile(r"Stopped; the weights it reached"))).to_have_count(0, timeout=30_000)
    expect(page.get_by_text(re.compile(r"Epoch (?:[3-9]|[1-9]\d+) of 1000 · batch"))).to_be_visible(timeout=90_000)
    killed = workers_of(process.pid)
    for pid in killed:  # the busy one among them (the pool starts new ones)
        os.kill(pid, signal.SIGKILL)
    expect(page.get_by_text(re.compile("worker process ended unexpectedly"))).to_be_visible(timeout=60_000)
    wait_for_app(page)
    screenshot(page, "worker-run-crashed")
    assert epochs_shown(page, 1, timeout=10_000) >= 2  # the completed epochs are kept (waited for: the chart is redrawn)
    assert process.poll() is None

    set_number(page, "Epochs", "2")
    main_area(page).get_by_role("button", name=re.compile("Start$")).click()
    expect(page.get_by_text(re.compile(r"Done: test accuracy"))).to_be_visible(timeout=120_000)  # on a new worker
    assert not set(killed) & set(workers_of(process.pid))


def test_with_one_worker_a_second_run_is_queued_and_a_stop_takes_it_out(browser, tmp_path):
    """Two users, one worker (LRCORE_WORKERS=1): the second run says it is queued until stopped."""
    process, url = start_streamlit(tmp_path / "data", tmp_path / "streamlit.log", {"LRCORE_WORKERS": "1"})
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    try:
        first, second = (context.new_page() for context in contexts)
        for page in (first, second):
            page.set_default_timeout(30_000)
        open_train(first, f"{url}/train")
        set_number(first, "Epochs", "1000")
        set_number(first, "Batch size", "1")  # long enough to queue behind on a quiet machine
        main_area(first).get_by_role("button", name=re.compile("Start$")).click()
        expect(first.get_by_text(re.compile(r"Epoch \d+ of 1000 · batch"))).to_be_visible(timeout=90_000)

        open_train(second, f"{url}/train")
        main_area(second).get_by_role("button", name=re.compile("Start$")).click()
        expect(second.get_by_text("Queued: 1 run ahead: it starts when a worker process is free…")).to_be_visible()
        expect(second.get_by_text("Run: queued: 1 run ahead")).to_be_visible()
        for width, height in ((1400, 1000), (1024, 768), (390, 844)):
            second.set_viewport_size({"width": width, "height": height})
            screenshot(second, f"worker-run-queued-{width}")
        second.set_viewport_size({"width": 1400, "height": 1000})
        main_area(second).get_by_role("button", name=re.compile("Stop$")).click()
        expect(second.get_by_text("Stopped before it started training (it was still queued).")).to_be_visible()
        expect(second.get_by_text("Run: stopped before it started")).to_be_visible()
        wait_for_app(second)
        screenshot(second, "worker-run-queued-stopped")
        expect(first.get_by_text(re.compile(r"Epoch \d+ of 1000 · batch"))).to_be_visible()  # trains on
    finally:
        for context in contexts:
            context.close()
        stop(process)
