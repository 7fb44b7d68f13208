"""The run store: runs survive restarts and kills, broken folders never pass for runs."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lrcore import events as ev
from lrcore.checkpoint import CheckpointError, checkpoint_bytes, load_checkpoint
from lrcore.config import TrainConfig
from lrcore.data import load_dataset
from lrcore.runstore import RunStore, RunStoreError, default_runs_dir, epochs_csv
from lrcore.train import train
from lrcore.worker import TrainingWorker

ROOT = Path(__file__).resolve().parents[1]
# 300 training images in 5 batches: a whole run takes well under a second
SMALL = TrainConfig(epochs=2, learning_rate=0.5, batch_size=60, per_class_limit=30)


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("mnist-sample")


def record_run(store: RunStore, config: TrainConfig, dataset, name: str | None = None) -> str:
    with store.writer(config, name=name) as writer:
        for event in train(config, dataset):
            writer.record(event)
    return writer.run_id


def in_new_process(code: str, runs_dir: Path, timeout: float = 120) -> dict:
    """Run `code` (which prints one JSON line last) in a fresh interpreter: a server restart."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LRCORE_RUNS_DIR": str(runs_dir)}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


LIST_IN_NEW_PROCESS = """
    import json
    from lrcore.runstore import RunStore
    store = RunStore()
    out = []
    for summary in store.list_runs():
        run = store.load(summary.run_id)
        out.append({"run_id": run.run_id, "name": run.name, "status": run.status, "message": run.message,
                    "epochs": [row["epoch"] for row in run.epochs], "snapshots": [s[0] for s in run.snapshots],
                    "batch_losses": len(run.batch_losses), "final": run.final,
                    "checkpoint": str(run.checkpoint) if run.checkpoint else None,
                    "checkpoint_epochs": store.checkpoint(run.run_id).metrics.get("epochs_completed")})
    print(json.dumps({"runs": out, "skipped": store.skipped}))
"""


def test_default_runs_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LRCORE_RUNS_DIR", raising=False)
    monkeypatch.setenv("LRCORE_DATA_DIR", str(tmp_path / "data"))
    assert default_runs_dir() == tmp_path / "data" / "runs"
    monkeypatch.setenv("LRCORE_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert default_runs_dir() == tmp_path / "elsewhere"
    assert RunStore().root == tmp_path / "elsewhere"


def test_finished_run_survives_a_server_restart(tmp_path, dataset):
    store = RunStore(tmp_path)
    run_id = record_run(store, SMALL, dataset, name="first try")
    seen = in_new_process(LIST_IN_NEW_PROCESS, tmp_path)
    assert seen["skipped"] == []
    [run] = seen["runs"]
    assert run["run_id"] == run_id and run["name"] == "first try" and run["status"] == "done"
    assert run["epochs"] == [0, 1, 2] and run["snapshots"] == [0, 1, 2]
    assert run["batch_losses"] == 2 * 5
    assert run["final"]["epochs_completed"] == 2 and 0.5 < run["final"]["test_accuracy"] <= 1
    assert Path(run["checkpoint"]).name == "model.pt" and run["checkpoint_epochs"] == 2


def test_full_record_matches_the_training_events(tmp_path, dataset):
    store = RunStore(tmp_path)
    events = list(train(SMALL, dataset))
    with store.writer(SMALL) as writer:
        for event in events:
            writer.record(event)
    run = store.load(writer.run_id)
    epoch_events = [e for e in events if isinstance(e, ev.EpochEnd)]
    assert [row["validation_accuracy"] for row in run.epochs] == [e.validation_accuracy for e in epoch_events]
    assert run.best_validation_accuracy == max(e.validation_accuracy for e in epoch_events)
    batch_losses = [loss for e in events if isinstance(e, ev.BatchProgress) for loss in e.losses]
    assert run.batch_losses == batch_losses and run.batch_steps == list(range(1, len(batch_losses) + 1))
    for (epoch, weight, bias), event in zip(run.snapshots, epoch_events):
        assert epoch == event.epoch and torch.equal(weight, event.weight) and torch.equal(bias, event.bias)
    finished = events[-1]
    checkpoint = load_checkpoint(run.checkpoint)
    assert torch.equal(checkpoint.model.linear.weight, finished.model.linear.weight)
    assert checkpoint.config == SMALL and run.source == "cli"
    assert run.duration == pytest.approx(finished.elapsed)
    csv_lines = epochs_csv(run).splitlines()
    assert csv_lines[0].startswith("epoch,step,train_loss,train_accuracy,validation_loss,validation_accuracy")
    assert len(csv_lines) == 1 + len(epoch_events) and csv_lines[1].startswith("0,0,")


KILLED_TRAINER = """
    import signal
    from lrcore import events
    from lrcore.config import TrainConfig
    from lrcore.runstore import RunStore
    from lrcore.train import train
    config = TrainConfig(epochs=1000, learning_rate=0.5, batch_size=60, per_class_limit=30)
    with RunStore().writer(config, name="killed", source="cli") as writer:
        print(writer.run_id, flush=True)
        for event in train(config, batch_event_seconds=0):
            writer.record(event)
            if isinstance(event, events.BatchProgress) and event.epoch == 3:
                signal.pause()  # in the middle of epoch 3: the test kills it here
"""


def test_run_killed_mid_training_keeps_its_epochs_and_shows_crashed(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LRCORE_RUNS_DIR": str(tmp_path)}
    trainer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_TRAINER)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, text=True)
    try:
        run_id = trainer.stdout.readline().strip()
        epochs_file, meta_file = tmp_path / run_id / "epochs.jsonl", tmp_path / run_id / "meta.json"

        def epoch_two_written() -> bool:
            """epochs 0, 1, 2 in epochs.jsonl and meta.json says so (the writer thread writes it after)."""
            if not epochs_file.exists() or len(epochs_file.read_text().splitlines()) < 3:
                return False
            return json.loads(meta_file.read_text()).get("epochs_done") == 2  # replaced atomically
        deadline = time.time() + 120
        while not epoch_two_written():
            assert trainer.poll() is None, "the trainer ended before it could be killed"
            assert time.time() < deadline, "epoch 2 was never written"
            time.sleep(0.05)
        # While it trains, another process (this one: not the writer) sees it running.
        [running] = RunStore(tmp_path).list_runs()
        assert running.status == "running" and running.epochs_done == 2 and running.source == "cli"
    finally:
        trainer.kill()  # SIGKILL: no cleanup code runs
        trainer.wait()
    seen = in_new_process(LIST_IN_NEW_PROCESS, tmp_path)
    [run] = seen["runs"]
    assert run["status"] == "crashed" and "ended without finishing" in run["message"]
    assert run["epochs"] == [0, 1, 2] and run["snapshots"] == [0, 1, 2]
    assert run["batch_losses"] >= 2 * 5  # the batches of epoch 3 written before the kill are kept too
    assert run["checkpoint"] is None  # no final checkpoint, but the last epoch's weights load as one
    assert run["checkpoint_epochs"] == max(run["snapshots"])
    # the crash is written down, so it no longer depends on the pid
    meta = json.loads((tmp_path / run_id / "meta.json").read_text())
    assert meta["status"] == "crashed"


def test_half_written_files_never_pass_for_a_run(tmp_path, dataset):
    store = RunStore(tmp_path)
    good = record_run(store, SMALL, dataset)
    meta = (tmp_path / good / "meta.json").read_text()
    # a run whose start was cut off before meta.json was moved into place: only a temp file
    (tmp_path / "20250101-000000-aaaaaa").mkdir()
    (tmp_path / "20250101-000000-aaaaaa" / ".meta.json.x1.tmp").write_text(meta[: len(meta) // 2])
    # a truncated meta (written by something that is not atomic)
    (tmp_path / "20250101-000000-bbbbbb").mkdir()
    (tmp_path / "20250101-000000-bbbbbb" / "meta.json").write_text(meta[: len(meta) // 2])
    # settings that do not validate, and an unrelated JSON file
    (tmp_path / "20250101-000000-cccccc").mkdir()
    (tmp_path / "20250101-000000-cccccc" / "meta.json").write_text(
        meta.replace('"learning_rate": 0.5', '"learning_rate": -1'))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "meta.json").write_text('{"hello": 1}')
    # an import still being staged, a temp file next to the runs
    (tmp_path / ".import-123").mkdir()
    (tmp_path / ".import-123" / "meta.json").write_text(meta)
    (tmp_path / ".meta.json.tmp").write_text("{")
    runs = store.list_runs()
    assert [run.run_id for run in runs] == [good]
    reasons = dict(store.skipped)
    assert set(reasons) == {"20250101-000000-aaaaaa", "20250101-000000-bbbbbb", "20250101-000000-cccccc", "notes"}
    assert "no meta.json" in reasons["20250101-000000-aaaaaa"]
    assert "unreadable" in reasons["20250101-000000-bbbbbb"]
    assert "learning_rate" in reasons["20250101-000000-cccccc"]
    with pytest.raises(RunStoreError, match="no run"):
        store.load("20250101-000000-aaaaaa")


def test_torn_last_lines_and_damaged_weights_are_ignored(tmp_path, dataset):
    store = RunStore(tmp_path)
    run_id = record_run(store, SMALL, dataset)
    folder = tmp_path / run_id
    with open(folder / "epochs.jsonl", "a") as out:
        out.write('{"epoch": 3, "step": 15, "train_lo')  # writer killed mid-line
    with open(folder / "batches.jsonl", "a") as out:
        out.write('{"step": 11, "losses": [0.3, 0.')
    (folder / "weights" / "0002.pt").write_bytes(b"not a torch file")
    run = store.load(run_id)
    assert [row["epoch"] for row in run.epochs] == [0, 1, 2]
    assert len(run.batch_losses) == 10
    assert [snapshot[0] for snapshot in run.snapshots] == [0, 1]


def test_rename_and_delete(tmp_path, dataset):
    store = RunStore(tmp_path)
    run_id = record_run(store, SMALL, dataset, name="before")
    assert store.rename(run_id, "  lr 0.5\n baseline ") == "lr 0.5 baseline"
    assert RunStore(tmp_path).get(run_id).name == "lr 0.5 baseline"
    with pytest.raises(RunStoreError, match="cannot be empty"):
        store.rename(run_id, "   ")
    with pytest.raises(RunStoreError, match="at most 100 characters"):
        store.rename(run_id, "x" * 101)
    with pytest.raises(RunStoreError, match="invalid run id"):
        store.rename("../etc", "x")
    store.delete(run_id)
    assert store.list_runs() == [] and not (tmp_path / run_id).exists()
    assert [p for p in tmp_path.iterdir()] == []  # nothing left behind
    with pytest.raises(RunStoreError, match="no run"):
        store.delete(run_id)


def test_running_run_in_this_process_cannot_be_deleted_and_crash_is_recorded(tmp_path, dataset):
    store = RunStore(tmp_path)
    writer = store.writer(SMALL, name="live")
    events = iter(train(SMALL, dataset))
    writer.record(next(events))  # RunStarted
    writer.record(next(events))  # epoch 0
    [run] = store.list_runs()
    assert run.status == "running" and run.active
    with pytest.raises(RunStoreError, match="still training"):
        store.delete(writer.run_id)
    writer.crash("out of memory")
    run = store.load(writer.run_id)
    assert run.status == "crashed" and run.message == "out of memory"
    assert [row["epoch"] for row in run.epochs] == [0]
    assert store.checkpoint(writer.run_id).metrics["epochs_completed"] == 0
    writer.record(next(events))  # events after the end are ignored
    store.delete(writer.run_id)
    assert store.list_runs() == []


def test_writer_block_that_raises_marks_the_run_crashed(tmp_path, dataset):
    store = RunStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.writer(SMALL) as writer:
            for event in train(SMALL, dataset):
                writer.record(event)
                if isinstance(event, ev.EpochEnd) and event.epoch == 1:
                    raise RuntimeError("disk unplugged")
    run = store.get(writer.run_id)
    assert run.status == "crashed" and "disk unplugged" in run.message and run.epochs_done == 1


def test_owner_liveness_uses_pid_and_process_start(tmp_path, dataset):
    """A 'running' run from another process is running while that process lives, crashed after."""
    store = RunStore(tmp_path)
    run_id = record_run(store, SMALL, dataset)
    meta_path = tmp_path / run_id / "meta.json"
    meta = json.loads(meta_path.read_text())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        owner = {**meta["owner"], "pid": sleeper.pid, "start": start}
        meta_path.write_text(json.dumps({**meta, "status": "running", "owner": owner}))
        assert store.get(run_id).status == "running"
        # same pid, different start time: the pid was reused by another program
        meta_path.write_text(json.dumps({**meta, "status": "running", "owner": {**owner, "start": "1"}}))
        assert store.get(run_id).status == "crashed"
        meta_path.write_text(json.dumps({**meta, "status": "running", "owner": owner}))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert store.get(run_id).status == "crashed"


def test_stopped_and_diverged_runs_keep_a_checkpoint(tmp_path, dataset):
    store = RunStore(tmp_path)
    diverging = SMALL.replace(learning_rate=100.0, epochs=3)
    run_id = record_run(store, diverging, dataset)
    run = store.get(run_id)
    assert run.status == "diverged" and "try a smaller learning rate" in run.message
    checkpoint = store.checkpoint(run_id)
    assert torch.isfinite(checkpoint.model.linear.weight).all()


def test_import_checkpoint(tmp_path, dataset):
    store = RunStore(tmp_path)
    events = list(train(SMALL, dataset))
    done = events[-1]
    data = checkpoint_bytes(done.model, SMALL, done.class_names, done.normalizer,
                            {"test_accuracy": done.test_accuracy})
    run_id = store.import_checkpoint(data, name="from a colleague")
    [run] = store.list_runs()
    assert (run.run_id, run.name, run.status, run.source) == (run_id, "from a colleague", "imported", "upload")
    assert run.test_accuracy == pytest.approx(done.test_accuracy) and run.config == SMALL
    assert torch.equal(store.checkpoint(run_id).model.linear.weight, done.model.linear.weight)
    with pytest.raises(CheckpointError, match="not a PyTorch file"):
        store.import_checkpoint(b"hello, this is not a checkpoint")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    buffer = __import__("io").BytesIO()
    torch.save({"weight": Evil()}, buffer, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError, match="refused"):
        store.import_checkpoint(buffer.getvalue())
    assert [p.name for p in tmp_path.iterdir()] == [run_id]  # failed imports leave nothing behind


def test_listener_records_real_training_workers(tmp_path, dataset):
    store = RunStore(tmp_path)
    worker = TrainingWorker(SMALL, dataset, name="from the page", listeners=[store.listener()]).start()
    worker.join(60)
    record = worker.snapshot()
    run = store.load(worker.run_id)
    assert (run.name, run.status, run.source) == ("from the page", "done", "dashboard")
    assert run.epochs == record.epochs and run.batch_losses == record.batch_losses
    assert [s[0] for s in run.snapshots] == [0, 1, 2]
    assert run.final["test_accuracy"] == record.final["test_accuracy"]

    def stop_after_first_epoch(worker, event):
        if isinstance(event, ev.EpochEnd) and event.epoch == 1:
            worker.control.stop()

    stopped = TrainingWorker(SMALL.replace(epochs=50), dataset, listeners=[store.listener(), stop_after_first_epoch])
    stopped.start().join(60)
    run = store.get(stopped.run_id)
    assert run.status == "stopped" and run.checkpoint is not None and run.epochs_done == 1

    # a config the dataset cannot satisfy crashes the worker before any event: still recorded
    crashing = TrainingWorker(SMALL.replace(batch_size=10_000), dataset, listeners=[store.listener()])
    crashing.start().join(60)
    run = store.get(crashing.run_id)
    assert run.status == "crashed" and "batch_size" in run.message
    assert {r.run_id for r in store.list_runs()} == {worker.run_id, stopped.run_id, crashing.run_id}
