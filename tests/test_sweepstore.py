"""Sweeps on disk: a sweep survives a restart or a kill, and broken folders never pass for sweeps."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lrcore import TrainConfig, load_dataset
from lrcore.checkpoint import load_checkpoint
from lrcore.evaluate import evaluate_model, split_data
from lrcore.runstore import RunStore, RunStoreError
from lrcore.sweep import SweepWorker, sweep_configs
from lrcore.sweepstore import SweepStore, SweepStoreError, default_sweeps_dir, member_checkpoint_bytes

ROOT = Path(__file__).resolve().parents[1]
# 300 training images in 5 batches per epoch: a whole sweep takes well under a second
SMALL = TrainConfig(epochs=2, batch_size=60, per_class_limit=30)


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("mnist-sample")


def recorded_sweep(store: SweepStore, configs, dataset, **options):
    worker = SweepWorker(configs, dataset, listeners=[store.listener()], **options)
    worker.run()  # synchronously; the listener waits for the files at the end
    return worker.snapshot()


LOAD_IN_NEW_PROCESS = """
    import json, sys
    from lrcore.sweepstore import SweepStore
    store = SweepStore(sys.argv[1])
    out = []
    for summary in store.list_sweeps():
        record = store.load(summary.sweep_id)
        out.append({"sweep_id": record.sweep_id, "status": record.status, "message": record.message,
                    "best_label": summary.best_label, "best": summary.best_validation_accuracy,
                    "members": [{"status": m.status, "message": m.message, "epochs": m.epochs, "final": m.final,
                                 "steps": m.batch_steps, "smoothed": m.batch_smoothed,
                                 "weight_sum": None if m.weight is None else float(m.weight.double().sum())}
                                for m in record.members]})
    print(json.dumps({"sweeps": out, "skipped": store.skipped}))
"""


def in_new_process(code: str, sweeps_dir: Path) -> dict:
    """Run `code` in a fresh interpreter (a server restart); it prints one JSON line last."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(sweeps_dir)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_default_sweeps_dir_is_inside_the_runs_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LRCORE_RUNS_DIR", str(tmp_path / "runs"))
    assert default_sweeps_dir() == tmp_path / "runs" / "sweeps"


def test_finished_sweep_survives_a_server_restart(tmp_path, dataset):
    configs = sweep_configs(SMALL, [0.05, 0.5, 100.0])  # 100 diverges
    record = recorded_sweep(SweepStore(tmp_path), configs, dataset)
    seen = in_new_process(LOAD_IN_NEW_PROCESS, tmp_path)
    assert seen["skipped"] == []
    [sweep] = seen["sweeps"]
    assert sweep["sweep_id"] == record.sweep_id and sweep["status"] == "done"
    for stored, member in zip(sweep["members"], record.members):
        assert stored["status"] == member.status and stored["message"] == member.message
        assert stored["epochs"] == [{name: row[name] for name in stored["epochs"][0]} for row in member.epochs]
        assert [row["epoch"] for row in stored["epochs"]] == [row["epoch"] for row in member.epochs]
        assert stored["final"] == pytest.approx(member.final, nan_ok=True)
        assert stored["steps"] == member.batch_steps and stored["smoothed"] == pytest.approx(member.batch_smoothed)
        assert stored["weight_sum"] == pytest.approx(float(member.weight.double().sum()))
    assert [m["status"] for m in sweep["members"]] == ["done", "done", "diverged"]
    best = record.best()
    assert sweep["best_label"] == best.label and sweep["best"] == pytest.approx(best.validation_accuracy)


def test_loaded_sweep_ranks_and_opens_like_the_live_one(tmp_path, dataset):
    configs = sweep_configs(SMALL, [0.05, 0.5], batch_sizes=[60, 100])
    record = recorded_sweep(SweepStore(tmp_path), configs, dataset)
    loaded = SweepStore(tmp_path).load(record.sweep_id)
    assert [m.label for m in loaded.ranked()] == [m.label for m in record.ranked()]
    assert loaded.groups == record.groups and loaded.class_names == record.class_names
    assert loaded.train_size == record.train_size and not loaded.active
    for stored, member in zip(loaded.members, record.members):
        assert stored.config == member.config and torch.equal(stored.weight, member.weight)


SLOW_SWEEP = """
    import signal, sys
    from lrcore import TrainConfig, load_dataset
    from lrcore import events
    from lrcore.sweep import SweepWorker, sweep_configs
    from lrcore.sweepstore import SweepStore
    store = SweepStore(sys.argv[1])
    def pause_in_epoch_3(worker, indices, event):
        if isinstance(event, events.GroupBatchProgress) and event.epoch == 3:
            signal.pause()  # the test kills the process here
    configs = sweep_configs(TrainConfig(epochs=100, batch_size=60, per_class_limit=30), [0.05, 0.5])
    worker = SweepWorker(configs, load_dataset("mnist-sample"), batch_event_seconds=0,
                         listeners=[store.listener(), pause_in_epoch_3])
    print(worker.sweep_id, flush=True)
    worker.run()
"""


def test_sweep_killed_mid_training_keeps_its_epochs_and_shows_crashed(tmp_path):
    sweeper = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SLOW_SWEEP), str(tmp_path)], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        sweep_id = sweeper.stdout.readline().strip()
        epochs_file = tmp_path / sweep_id / "epochs.jsonl"
        deadline = time.time() + 120
        # epochs 0-2 of both members written
        while not (epochs_file.exists() and len(epochs_file.read_text().splitlines()) >= 2 * 3):
            assert sweeper.poll() is None, "the sweep ended before it could be killed"
            assert time.time() < deadline, "epoch 2 was never written"
            time.sleep(0.05)
        [running] = SweepStore(tmp_path).list_sweeps()  # another process sees it training
        assert running.status == "running"
    finally:
        sweeper.kill()  # SIGKILL: no cleanup code runs
        sweeper.wait()
    [sweep] = in_new_process(LOAD_IN_NEW_PROCESS, tmp_path)["sweeps"]
    assert sweep["status"] == "crashed" and "ended without finishing" in sweep["message"]
    for member in sweep["members"]:
        assert [row["epoch"] for row in member["epochs"]] == [0, 1, 2]
        assert member["status"] == "crashed" and "after epoch 2" in member["message"]
    assert sweep["best"] is not None  # the summary is brought up to date from the epoch lines
    meta = json.loads((tmp_path / sweep_id / "meta.json").read_text())
    assert meta["status"] == "crashed"  # written down: no longer depends on the pid
    # every configuration kept the weights of its last completed epoch (2): each is a usable model
    record = SweepStore(tmp_path).load(sweep_id)
    dataset = load_dataset("mnist-sample")
    for member in record.members:
        checkpoint = load_checkpoint(member_checkpoint_bytes(record, member))
        assert checkpoint.metrics["epochs_completed"] == 2 and checkpoint.config == member.config
        images, labels = split_data(dataset, member.config, "validation")
        accuracy = evaluate_model(checkpoint.model, checkpoint.normalizer, images, labels).accuracy
        assert accuracy == pytest.approx(member.epochs[-1]["validation_accuracy"], abs=1e-6) and accuracy > 0.5


def test_half_written_and_broken_folders_never_pass_for_a_sweep(tmp_path, dataset):
    store = SweepStore(tmp_path)
    record = recorded_sweep(store, sweep_configs(SMALL, [0.1]), dataset)
    (tmp_path / "cut-off").mkdir()  # a start cut off before meta.json was written
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "meta.json").write_text('{"format": "lrcore-sweep", "status": "do')
    (tmp_path / ".meta.json.tmp").write_text("{")  # a temp file is no sweep either
    with open(tmp_path / record.sweep_id / "epochs.jsonl", "a") as out:
        out.write('{"member": 0, "epoch": 3, "step": 15, "train_lo')  # torn last line
    (tmp_path / record.sweep_id / "curves.json").write_text("[{")  # damaged curves
    [summary] = store.list_sweeps()
    assert summary.sweep_id == record.sweep_id
    assert dict(store.skipped).keys() == {"cut-off", "broken"}
    loaded = store.load(record.sweep_id)
    assert [row["epoch"] for row in loaded.members[0].epochs] == [0, 1, 2]
    assert loaded.members[0].batch_steps == []  # no curve, but everything else loads
    with pytest.raises(SweepStoreError, match="no sweep"):
        store.load("cut-off")
    with pytest.raises(SweepStoreError, match="invalid sweep id"):
        store.load("../escape")


def test_delete_and_a_running_sweep_cannot_be_deleted(tmp_path, dataset):
    store = SweepStore(tmp_path)
    worker = SweepWorker(sweep_configs(TrainConfig(epochs=100, batch_size=60, per_class_limit=30), [0.1]), dataset,
                         listeners=[store.listener()]).start()
    try:
        deadline = time.time() + 60
        while not (tmp_path / worker.sweep_id / "meta.json").exists():
            assert time.time() < deadline, "meta.json was never written"
            time.sleep(0.02)
        with pytest.raises(SweepStoreError, match="still training"):
            store.delete(worker.sweep_id)
    finally:
        worker.stop()
        worker.join()
    assert store.load(worker.sweep_id).status == "stopped"
    store.delete(worker.sweep_id)
    assert store.list_sweeps() == [] and not any(tmp_path.iterdir())


def test_a_configuration_becomes_a_run_and_runs_ignore_the_sweeps_folder(tmp_path, dataset, monkeypatch):
    monkeypatch.setenv("LRCORE_RUNS_DIR", str(tmp_path))
    record = recorded_sweep(SweepStore(), sweep_configs(SMALL, [0.05, 0.5]), dataset)
    runs = RunStore()
    assert runs.list_runs() == [] and runs.skipped == []  # the sweeps folder is not a broken run
    loaded = SweepStore().load(record.sweep_id)
    member = loaded.best()
    run_id = runs.import_checkpoint(member_checkpoint_bytes(loaded, member), name=f"sweep: {member.label}",
                                    source="sweep", epochs=member.epochs)
    run = runs.load(run_id)  # its curves come along, for the Runs page's comparisons
    assert [row["validation_accuracy"] for row in run.epochs] == [row["validation_accuracy"] for row in member.epochs]
    assert run.epochs[-1]["elapsed"] == pytest.approx(sum(row["seconds"] for row in member.epochs))
    assert run.best_validation_accuracy == max(row["validation_accuracy"] for row in member.epochs)
    assert run.source == "sweep" and run.epochs_done == SMALL.epochs
    checkpoint = runs.checkpoint(run_id)
    assert torch.equal(checkpoint.model.linear.weight.detach(), member.weight)
    assert checkpoint.config == member.config
    assert checkpoint.metrics["validation_accuracy"] == pytest.approx(member.validation_accuracy)
    with pytest.raises(RunStoreError, match="reserved"):
        runs.writer(SMALL, run_id="sweeps")
