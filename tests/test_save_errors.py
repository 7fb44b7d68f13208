"""Where a user sees that a run could not be saved: the CLI, the Train and Sweep pages.

The store's own failure handling (a full or read-only database mid-run, the size limit, thinning)
is tested in tests/test_store.py; here a real read-only SQLite store stands in for a read-only
mount, as a user would meet it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from lrcore.store import Store
from tests.apptest_helpers import open_page


def read_only_store_url(folder: Path) -> str:
    """A store that exists but cannot be written (SQLite's read-only mode, as on a read-only mount)."""
    Store(folder / "lrcore.db").close()
    return f"sqlite:///file:{folder / 'lrcore.db'}?mode=ro&uri=true"


@pytest.fixture
def read_only_store(tmp_path, monkeypatch) -> str:
    url = read_only_store_url(tmp_path)
    monkeypatch.setenv("LRCORE_STORE_URL", url)
    return url


def test_cli_refuses_to_start_a_run_it_cannot_record_and_says_how_to_train_anyway(read_only_store, capsys):
    from lrcore.cli import main

    assert main(["train", "--epochs", "1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m lrcore train: the run store is read-only (attempt to write a readonly database)")
    assert "Traceback" not in err
    assert main(["train", "--epochs", "1", "--quiet", "--no-record"]) == 0  # trains without the store


def test_train_page_says_a_run_could_not_be_saved(read_only_store, request):
    from ui import common

    at = open_page("pages/train.py", query={"epochs": "2", "per_class": "30", "batch_size": "60"})
    next(button for button in at.button if button.label == "Start").click()
    at.run()
    worker = common.get_jobs().live_run(at.session_state["run_id"])
    worker.join(60)
    request.addfinalizer(lambda: common.get_jobs().remove(worker.job.job_id))  # the registry is server-wide
    at.run()
    assert not at.exception
    warning = next(w.value for w in at.warning if w.value.startswith("This run could not be saved"))
    assert "read\\-only" in warning and "download its checkpoint from the Runs page" in warning
    assert any(s.value.startswith("Done: test accuracy") for s in at.success)  # and it is still usable
    runs = open_page("pages/runs.py")
    assert any("“" in e.value and "could not be saved" in e.value for e in runs.error)  # listed under Not saved
    assert not runs.get("download_button")[0].disabled
