"""The run store on a full or read-only disk, and what one run and the whole store may keep.

A full disk and a read-only folder are simulated in-process (the tests run as root, where
permission bits stop nothing, and cannot count on mounting a small tmpfs): every write under
the store's folder goes through a fake that raises OSError(ENOSPC) once a byte budget is spent,
or OSError(EROFS) at once, as the kernel would.
"""
from __future__ import annotations

import builtins
import errno
import json
import logging
import os
from pathlib import Path

import pytest
import torch

from lrcore import events as ev
from lrcore import runstore
from lrcore.checkpoint import checkpoint_bytes
from lrcore.config import TrainConfig
from lrcore.data import load_dataset
from lrcore.runstore import MAX_SNAPSHOTS, RunStore, RunStoreError, StoreFullError, folder_size
from lrcore.train import train
from lrcore.worker import RunRegistry, TrainingWorker

SMALL = TrainConfig(epochs=2, learning_rate=0.5, batch_size=60, per_class_limit=30)


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("mnist-sample")


class _Budgeted:
    """A file whose writes raise ENOSPC once the shared budget is spent (as on a full disk)."""

    def __init__(self, real, disk: "FakeDisk"):
        self._real, self._disk = real, disk

    def write(self, data):
        size = len(data.encode() if isinstance(data, str) else data)
        if self._disk.budget is not None and size > self._disk.budget:
            self._disk.budget = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self._disk.budget is not None:
            self._disk.budget -= size
        return self._real.write(data)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._real.close()


class FakeDisk:
    """Makes the folder `root` behave like a full disk (after `budget` bytes) or a read-only mount."""

    def __init__(self, monkeypatch, root: Path, budget: int | None = None, read_only: bool = False):
        self.root, self.budget, self.read_only = str(root.resolve()), budget, read_only
        real_open, real_fdopen, real_os_open = builtins.open, os.fdopen, os.open
        real_mkdir = os.mkdir

        def inside(path) -> bool:
            try:
                return os.path.abspath(os.fspath(path)).startswith(self.root)
            except TypeError:
                return False

        def refuse():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        def fake_open(file, mode="r", *args, **kwargs):
            writing = any(flag in mode for flag in "wax+")
            if writing and inside(file):
                if self.read_only:
                    refuse()
                return _Budgeted(real_open(file, mode, *args, **kwargs), self)
            return real_open(file, mode, *args, **kwargs)

        def fake_fdopen(fd, mode="r", *args, **kwargs):
            handle = real_fdopen(fd, mode, *args, **kwargs)
            if any(flag in mode for flag in "wax+") and inside(os.readlink(f"/proc/self/fd/{fd}")):
                return _Budgeted(handle, self)
            return handle

        def fake_os_open(path, flags, *args, **kwargs):
            if self.read_only and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
                refuse()
            return real_os_open(path, flags, *args, **kwargs)

        def fake_mkdir(path, *args, **kwargs):
            if self.read_only and inside(path):
                if os.path.isdir(path):
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
                refuse()
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(os, "fdopen", fake_fdopen)
        monkeypatch.setattr(os, "open", fake_os_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)
        for name in ("replace", "rename", "unlink", "rmdir"):
            real = getattr(os, name)

            def guarded(*args, _real=real, **kwargs):
                if self.read_only and inside(args[0]):
                    refuse()
                return _real(*args, **kwargs)

            monkeypatch.setattr(os, name, guarded)


def store_log_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name.startswith("lrcore") and record.levelno >= logging.WARNING]


# ---------------------------------------------------------------- full disk

def test_full_disk_mid_run_ends_done_with_a_save_error_logged_once(tmp_path, dataset, monkeypatch, caplog):
    store = RunStore(tmp_path)
    # meta, normaliser and a few epochs' weights (31 KB each), then the disk is full
    FakeDisk(monkeypatch, tmp_path, budget=120_000)
    worker = TrainingWorker(SMALL.replace(epochs=30), dataset, name="filled the disk",
                            listeners=[store.listener()], batch_event_seconds=0).start()
    worker.join(120)
    record = worker.snapshot()
    # the page's view: the run is done, usable in memory, and says it could not be saved
    assert record.status == "done" and record.epochs_done == 30 and record.latest_model() is not None
    assert record.save_error == "the disk is full (No space left on device)"
    # one log line for the whole run, no traceback
    lines = store_log_lines(caplog)
    assert len(lines) == 1 and "No space left on device" in lines[0], lines
    assert all(r.exc_info is None for r in caplog.records if r.name.startswith("lrcore"))
    # the store: no 'training' ghost; the run is listed as it ended, with the reason
    [run] = store.list_runs()
    assert run.status == "done" and not run.active and run.save_error == record.save_error
    assert 0 < run.epochs_done < 30
    assert not any(key.endswith(run.run_id) for key in runstore._LIVE)


def test_full_disk_then_delete_works_and_frees_the_store(tmp_path, dataset, monkeypatch, caplog):
    store = RunStore(tmp_path)
    FakeDisk(monkeypatch, tmp_path, budget=60_000)
    worker = TrainingWorker(SMALL.replace(epochs=10), dataset, listeners=[store.listener()]).start()
    worker.join(120)
    [run] = store.list_runs()
    assert run.status == "done" and run.save_error.startswith("the disk is full")
    store.delete(run.run_id)  # not refused as 'still training'
    assert store.list_runs() == [] and store.skipped == []
    assert len(store_log_lines(caplog)) == 1


def test_final_status_in_memory_when_even_the_last_meta_cannot_be_written(tmp_path, dataset, monkeypatch):
    """The disk fills during the run and stays full: the folder's meta still says running, but this
    process lists the run as it ended (not as training, not as 'the process ended')."""
    store = RunStore(tmp_path)
    disk = FakeDisk(monkeypatch, tmp_path, budget=10**9)
    writer = store.writer(SMALL.replace(epochs=3), name="stuck")
    events = list(train(SMALL.replace(epochs=3), dataset))
    for event in events[:4]:
        writer.record(event)
    disk.budget = 0  # full from now on
    for event in events[4:]:
        writer.record(event)
    assert writer.error.startswith("the disk is full") and writer.errors == 1
    assert json.loads((tmp_path / writer.run_id / "meta.json").read_text())["status"] == "running"
    run = store.get(writer.run_id)
    assert run.status == "done" and run.save_error == writer.error and run.final["test_accuracy"] > 0.5
    store.delete(writer.run_id)
    assert store.list_runs() == []


def test_writer_close_that_raises_still_leaves_the_live_list(tmp_path, dataset, monkeypatch):
    store = RunStore(tmp_path)
    writer = store.writer(SMALL)

    class Broken:
        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    writer._handles = (Broken(), *writer._handles)
    for event in train(SMALL, dataset):
        writer.record(event)
    assert writer._key not in runstore._LIVE
    assert store.get(writer.run_id).status == "done"


# ---------------------------------------------------------------- read-only folder

def test_read_only_runs_folder_keeps_training_and_says_why(tmp_path, dataset, monkeypatch, caplog):
    root = tmp_path / "runs"
    RunStore(root).writer(SMALL).crash("an earlier run")  # one run is there already
    store = RunStore(root)
    FakeDisk(monkeypatch, root, read_only=True)
    assert store.write_problem() == "the runs folder is on a read-only file system (Read-only file system)"
    worker = TrainingWorker(SMALL, dataset, listeners=[store.listener()]).start()
    worker.join(60)
    record = worker.snapshot()
    assert record.status == "done" and record.save_error.startswith("the runs folder is on a read-only")
    assert len(store_log_lines(caplog)) == 1
    [earlier] = store.list_runs()  # what is there is still listed
    assert earlier.status == "crashed" and store.problem == ""
    with pytest.raises(OSError) as raised:  # the Runs page shows this as an error, not a traceback
        store.import_checkpoint(checkpoint_bytes(record.latest_model(), SMALL, record.class_names,
                                                 record.normalizer, {}))
    assert raised.value.errno == errno.EROFS
    deleted, problems = store.delete_many([earlier.run_id])
    assert deleted == [] and "read-only" in problems[0]


def test_store_folder_that_cannot_be_created(tmp_path, dataset):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = RunStore(blocker / "runs")
    assert store.list_runs() == [] and store.problem == "the folder cannot be read (Not a directory)"
    later = RunStore(tmp_path / "not yet")
    assert later.list_runs() == [] and later.problem == ""  # not made yet: no runs, and nothing wrong
    assert store.write_problem().startswith("the runs folder could not be written to (Not a directory)")
    worker = TrainingWorker(SMALL, dataset, listeners=[store.listener()]).start()
    worker.join(60)
    assert worker.snapshot().status == "done" and "Not a directory" in worker.snapshot().save_error


def test_registry_lists_the_runs_that_could_not_be_saved(tmp_path, dataset):
    blocker = tmp_path / "file"
    blocker.write_text("")
    registry = RunRegistry()
    saved = registry.start(SMALL, dataset, listeners=[RunStore(tmp_path / "ok").listener()])
    unsaved = registry.start(SMALL, dataset, listeners=[RunStore(blocker / "runs").listener()])
    saved.join(60)
    unsaved.join(60)
    assert registry.unsaved() == [unsaved]


# ---------------------------------------------------------------- what one run keeps

def epoch_event(epoch: int, weight: torch.Tensor) -> ev.EpochEnd:
    return ev.EpochEnd(epoch=epoch, epochs=1000, step=epoch, train_loss=1.0, train_accuracy=0.5,
                       validation_loss=1.0, validation_accuracy=0.5, learning_rate=0.1, seconds=0.0,
                       elapsed=float(epoch), weight=weight, bias=torch.zeros(10))


def test_weight_snapshots_are_thinned_evenly_and_every_epochs_metrics_kept(tmp_path):
    store = RunStore(tmp_path)
    writer = store.writer(TrainConfig(epochs=1000))
    weight = torch.zeros(10, 784)
    for epoch in range(0, 1001):
        writer.record(epoch_event(epoch, weight + epoch))
    writer.crash("cut off after epoch 1000")
    run = store.load(writer.run_id)
    kept = [epoch for epoch, _, _ in run.snapshots]
    assert [row["epoch"] for row in run.epochs] == list(range(0, 1001))
    assert len(kept) <= MAX_SNAPSHOTS and kept[0] == 0 and kept[-1] == 1000
    gaps = {b - a for a, b in zip(kept, kept[1:-1])}
    assert len(gaps) == 1, kept  # evenly spread (the newest may come sooner)
    assert all(float(w[0, 0]) == epoch for epoch, w, _ in run.snapshots)  # each file is its epoch's


@pytest.mark.parametrize("epochs", [49, 50, 51, 137])
def test_snapshots_stay_bounded_and_keep_the_first_and_newest(tmp_path, epochs):
    writer = RunStore(tmp_path).writer(TrainConfig(epochs=epochs))
    for epoch in range(0, epochs + 1):
        writer.record(epoch_event(epoch, torch.zeros(10, 784)))
    writer.crash("end")
    names = sorted(p.name for p in (tmp_path / writer.run_id / "weights").glob("*.pt"))
    assert len(names) <= MAX_SNAPSHOTS and names[0] == "0000.pt" and names[-1] == f"{epochs:04d}.pt"
    assert len(names) >= MAX_SNAPSHOTS // 2


def batch_event(first: int, losses: list[float]) -> ev.BatchProgress:
    return ev.BatchProgress(epoch=1, batch=0, batches_per_epoch=10, step=first + len(losses) - 1,
                            losses=tuple(losses), learning_rate=0.1, elapsed=0.0, seconds_left=0.0)


def test_batch_losses_are_averaged_down_to_a_bounded_count(tmp_path, monkeypatch):
    monkeypatch.setattr(runstore, "MAX_BATCH_VALUES", 100)
    store = RunStore(tmp_path)
    writer = store.writer(TrainConfig(epochs=1000))
    losses = [1.0 / (1 + step / 100) for step in range(1, 5001)]
    step = 1
    for size in [1, 7, 64, 3, 500, 17] * 40:
        chunk = losses[step - 1:step - 1 + size]
        if not chunk:
            break
        writer.record(batch_event(step, chunk))
        step += len(chunk)
    writer.crash("end")
    run = store.load(writer.run_id, weights=False)
    assert len(run.batch_losses) <= 100 + 1 and len(run.batch_losses) >= 25
    assert run.batch_steps == sorted(run.batch_steps) and run.batch_steps[-1] == 5000
    # each value is the mean of the steps up to its own: the curve keeps its shape
    for stored_step, value in zip(run.batch_steps, run.batch_losses):
        assert losses[stored_step - 1] <= value <= losses[max(0, stored_step - 1 - 128)] + 1e-9
    on_disk = (tmp_path / writer.run_id / "batches.jsonl").read_text().count(",")
    assert on_disk < 300


def test_a_small_run_keeps_every_batch_loss_and_every_snapshot(tmp_path, dataset):
    store = RunStore(tmp_path)
    events = list(train(SMALL.replace(epochs=5), dataset, batch_event_seconds=0))
    with store.writer(SMALL.replace(epochs=5)) as writer:
        for event in events:
            writer.record(event)
    run = store.load(writer.run_id)
    assert run.batch_losses == [x for e in events if isinstance(e, ev.BatchProgress) for x in e.losses]
    assert [s[0] for s in run.snapshots] == [0, 1, 2, 3, 4, 5]


# ---------------------------------------------------------------- the store's size limit

def test_store_over_its_limit_trains_but_does_not_save_and_says_how_full(tmp_path, dataset, monkeypatch, caplog):
    store = RunStore(tmp_path)
    first = store.writer(SMALL)
    first.crash("kept")
    used = folder_size(tmp_path)
    monkeypatch.setenv("LRCORE_STORE_MAX_MB", str(used / 2 / 1e6))
    problem = store.write_problem()
    assert problem.startswith("the run store is full: it holds") and "LRCORE_STORE_MAX_MB" in problem
    assert "delete old runs" in problem
    with pytest.raises(StoreFullError) as raised:
        store.writer(SMALL)
    assert isinstance(raised.value, OSError) and isinstance(raised.value, RunStoreError)
    worker = TrainingWorker(SMALL, dataset, listeners=[store.listener()]).start()
    worker.join(60)
    record = worker.snapshot()
    assert record.status == "done" and record.save_error == problem
    assert [run.run_id for run in store.list_runs()] == [first.run_id]  # nothing deleted, nothing added
    assert len(store_log_lines(caplog)) == 1
    monkeypatch.setenv("LRCORE_STORE_MAX_MB", "0")  # no limit
    assert store.write_problem() is None


def test_store_limit_setting(monkeypatch, caplog):
    monkeypatch.delenv("LRCORE_STORE_MAX_MB", raising=False)
    assert runstore.store_limit_mb() == 500
    monkeypatch.setenv("LRCORE_STORE_MAX_MB", "2000")
    assert runstore.store_limit_mb() == 2000
    monkeypatch.setenv("LRCORE_STORE_MAX_MB", "0")
    assert runstore.store_limit_mb() is None
    for bad in ("lots", "-5", "nan"):
        monkeypatch.setenv("LRCORE_STORE_MAX_MB", bad)
        assert runstore.store_limit_mb() == 500
        runstore.store_limit_mb()
    assert len([r for r in caplog.records if "LRCORE_STORE_MAX_MB" in r.getMessage()]) == 3  # once per value


def test_prune_finished_runs_older_than_some_days(tmp_path, dataset):
    store = RunStore(tmp_path)
    ids = []
    for age_days in (40, 10, 0):
        writer = store.writer(SMALL)
        writer.crash("made for the test")
        meta_path = tmp_path / writer.run_id / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["created"] -= age_days * 86400
        meta_path.write_text(json.dumps(meta))
        ids.append(writer.run_id)
    live = store.writer(SMALL)  # training: never a candidate
    meta_path = tmp_path / live.run_id / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "created": meta["created"] - 100 * 86400}))
    assert [run.run_id for run in store.older_than(30)] == [ids[0]]
    assert {run.run_id for run in store.older_than(7)} == {ids[0], ids[1]}
    deleted, problems = store.delete_many([run.run_id for run in store.older_than(7)] + [live.run_id])
    assert set(deleted) == {ids[0], ids[1]} and len(problems) == 1 and "still training" in problems[0]
    live.crash("done with it")
    assert {run.run_id for run in store.list_runs()} == {ids[2], live.run_id}


# ---------------------------------------------------------------- what is read back

def test_huge_names_and_messages_in_files_are_cut_when_read(tmp_path):
    store = RunStore(tmp_path)
    writer = store.writer(SMALL)
    writer.crash("short")
    meta_path = tmp_path / writer.run_id / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "name": "n" * 1_000_000, "message": "m\n" * 500_000}))
    run = store.get(writer.run_id)
    assert len(run.name) == 100 and run.name.endswith("…")
    assert len(run.message) <= 1000 and "\n" not in run.message
    (tmp_path / writer.run_id / "name.json").write_text(json.dumps({"name": "x" * 1_000_000}))
    assert len(store.list_runs()[0].name) == 100
    with pytest.raises(RunStoreError, match="no run") as raised:
        store.get("20990101-000000-abcdef")
    assert str(tmp_path) not in str(raised.value)  # no server path in a message a page may show


# ---------------------------------------------------------------- where a user sees a save error

def test_cli_says_when_the_disk_filled_during_the_run(tmp_path, monkeypatch, capsys):
    from lrcore.cli import main

    FakeDisk(monkeypatch, tmp_path, budget=120_000)
    code = main(["train", "--epochs", "30", "--batch-size", "60", "--per-class", "30", "--runs-dir", str(tmp_path),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == ("python -m lrcore train: the run could not be saved in the run store: the disk is full "
                           "(No space left on device); use --save FILE to keep the model")


def test_train_page_says_a_run_could_not_be_saved(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest  # noqa: F401  (AppTest drives the real page)

    from ui import common
    from tests.apptest_helpers import open_page

    monkeypatch.setenv("LRCORE_RUNS_DIR", str(tmp_path))
    FakeDisk(monkeypatch, tmp_path, read_only=True)
    at = open_page("pages/train.py", query={"epochs": "2", "per_class": "30", "batch_size": "60"})
    next(button for button in at.button if button.label == "Start").click()
    at.run()
    worker = common.get_jobs().live_run(at.session_state["run_id"])
    worker.join(60)
    at.run()
    assert not at.exception
    warning = next(w.value for w in at.warning if w.value.startswith("This run could not be saved"))
    assert "read\\-only file system" in warning and "download its checkpoint from the Runs page" in warning
    assert any(s.value.startswith("Done: test accuracy") for s in at.success)  # and it is still usable
