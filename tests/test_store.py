"""The SQL run store (lrcore.store): every case on SQLite and on a real PostgreSQL server.

A run read back equals the live record it was written from; a killed writer, a silent host, a full
or failing database never lose what was saved nor stop training; old run folders are imported once.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch
from sqlalchemy import exc as sa_exc

from lrcore import events as ev
from lrcore import record as record_module
from lrcore import store as store_module
from lrcore import store_schema as schema
from lrcore import store_writer
from lrcore.checkpoint import CheckpointError, checkpoint_bytes, load_checkpoint, save_checkpoint
from lrcore.config import TrainConfig
from lrcore.data import Normalizer, load_dataset
from lrcore.jobs import TrainingJob
from lrcore.model import LogisticRegression
from lrcore.record import RunRecord, fold
from lrcore.status import Status
from lrcore.store import Store, StoreError, StoreFullError, describe_write_error, store_limit_mb
from lrcore.store_import import _insert

from .postgres_server import postgres_server  # noqa: F401  (the session fixture)

ROOT = Path(__file__).resolve().parents[1]
# 300 training images in 5 batches: a whole run takes well under a second
SMALL = TrainConfig(epochs=3, learning_rate=0.5, batch_size=60, per_class_limit=30)


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("mnist-sample")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A new, empty store's URL: an SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        url = str(tmp_path / "store" / "lrcore.db")
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    yield url
    forget_engine(url)


def forget_engine(url: str) -> None:
    """Drop this process's cached engine for `url` (a 'restart' of the store, or the end of a test)."""
    key = store_module._url(url).render_as_string(hide_password=False)
    with store_module._ENGINES_LOCK:
        engine = store_module._ENGINES.pop(key, None)
    store_module._IMPORTED.pop(key, None)
    if engine is not None:
        engine.dispose()


@pytest.fixture
def store(store_url):
    store = Store(store_url)
    yield store
    store.close()


# ---------------------------------------------------------------- helpers

def same(stored: RunRecord, live: RunRecord, weights: bool = True, batches: bool = True) -> None:
    """`stored` (read back) equals `live` (folded from the events) in everything a page reads
    (a summary: without batch losses and weights)."""
    as_json = lambda value: json.dumps(value, sort_keys=True)  # NaN == NaN here  # noqa: E731
    assert (stored.run_id, stored.name, stored.status, stored.message) == (live.run_id, live.name, live.status,
                                                                             live.message)
    assert stored.config == live.config and stored.class_names == live.class_names
    assert (stored.train_size, stored.validation_size, stored.batches_per_epoch, stored.device) == \
        (live.train_size, live.validation_size, live.batches_per_epoch, live.device)
    assert as_json(stored.epochs) == as_json(live.epochs)
    if batches:
        assert stored.batch_steps == live.batch_steps and as_json(stored.batch_losses) == as_json(live.batch_losses)
    assert (stored.batch_stride, as_json(stored.batch_block)) == (live.batch_stride, as_json(live.batch_block))
    assert stored.lr_changes == live.lr_changes and as_json(stored.final) == as_json(live.final)
    assert stored.progress == live.progress and stored.learning_rate == live.learning_rate
    assert stored.elapsed == live.elapsed and stored.created == live.created
    if weights:
        assert [s[0] for s in stored.snapshots] == [s[0] for s in live.snapshots]
        assert stored.snapshot_stride == live.snapshot_stride
        for (_, w1, b1), (_, w2, b2) in zip(stored.snapshots, live.snapshots):
            assert torch.equal(w1, w2) and torch.equal(b1, b2)
    if weights and live.normalizer is not None:
        assert stored.normalizer.kind == live.normalizer.kind
        for name in ("mean", "std"):
            a, b = getattr(stored.normalizer, name), getattr(live.normalizer, name)
            assert (a is None and b is None) or torch.equal(a, b)


def hand_made_events(config: TrainConfig, epochs: int, batches: int = 4, seed: int = 0, stop_at: int | None = None,
                     diverge: bool = False):
    """The events of one run, made by hand: pause, resume and a learning-rate change in epoch 1,
    a NaN and an inf loss in the last epoch when `diverge`, and a stop inside epoch `stop_at`."""
    generator = torch.Generator().manual_seed(seed)
    normalizer = Normalizer("standardize", torch.rand(784, generator=generator),
                            torch.rand(784, generator=generator) + 0.5)
    yield ev.RunStarted(0, config, tuple("0123456789"), 300, 60, 100, batches, "cpu", normalizer)
    step, rate, elapsed = 0, config.learning_rate, 0.0
    weight, bias = torch.zeros(10, 784), torch.zeros(10)
    for epoch in range(epochs + 1):
        if epoch:
            for batch in range(1, batches + 1):
                step += 1
                elapsed += 0.01
                loss = 2.3 / step
                if diverge and epoch == epochs and batch == batches - 1:
                    loss = math.inf
                if diverge and epoch == epochs and batch == batches:
                    loss = math.nan
                yield ev.BatchProgress(0, epoch, batch, batches, step, (loss,), rate, elapsed, 1.0)
                if epoch == 1 and batch == 2:
                    yield ev.Paused(0, step)
                    yield ev.Resumed(0, step)
                    yield ev.LearningRateChanged(0, step, epoch, rate, rate / 2)
                    rate /= 2
                if stop_at == epoch and batch == 2:
                    break
            if stop_at == epoch:
                break
            weight = weight + torch.randn(10, 784, generator=generator)
            bias = bias + torch.randn(10, generator=generator)
        nan = diverge and epoch == epochs
        yield ev.EpochEnd(0, epoch, epochs, step, math.nan if nan else 1.0 / (epoch + 1), 0.5, math.inf if nan else 0.9,
                          0.4 + epoch / 100, rate, 0.01 * batches, elapsed, weight.clone(), bias.clone())
    if diverge:
        yield ev.Diverged(0, epochs, step, rate, math.nan, "the loss became NaN at step 9 (lr too high)")
    status = Status.DIVERGED if diverge else Status.STOPPED if stop_at else Status.DONE
    model = LogisticRegression.from_tensors(weight + (1.0 if stop_at else 0.0), bias)
    yield ev.Finished(0, status, epochs if stop_at is None else stop_at - 1, model, normalizer, tuple("0123456789"),
                      0.3, 0.91, 0.35, math.nan if diverge else 0.9, elapsed, 0.2, 0.95, step, batches)


def write_all(store: Store, record: RunRecord, events, on_error=None, check=None):
    """Fold and write every event, as a job's listener does; `check(writer)` after each EpochEnd."""
    writer = store.writer(record, on_error)
    for event in events:
        fold(record, event)
        writer.write(record, event)
        if check is not None and isinstance(event, ev.EpochEnd):
            check(writer)
    return writer


def new_record(run_id: str = "run-1", name: str = "a run", config: TrainConfig = SMALL, **values) -> RunRecord:
    return RunRecord(run_id, name, config, **values)


# ---------------------------------------------------------------- reading back what was written

def test_a_training_job_reads_back_equal_to_its_live_record(store, dataset):
    job = TrainingJob([SMALL], dataset, names=["lr 0.5"], listeners=[store.listener()],
                      batch_event_seconds=0).start()
    job.join(120)
    [live] = job.records()
    assert live.status == Status.DONE and not live.save_error
    run = store.load(live.run_id)
    same(run, live)
    assert [row["epoch"] for row in run.epochs] == [0, 1, 2, 3] and len(run.batch_losses) == 15
    [summary] = store.list_runs()
    same(summary, live, weights=False, batches=False)
    assert summary.batch_losses == [] and summary.snapshots == [] and store.get(live.run_id).epochs == live.epochs
    assert summary.stored_snapshots == len(live.snapshots) and summary.has_weights
    checkpoint = store.checkpoint(live.run_id)
    assert torch.equal(checkpoint.model.linear.weight, live.snapshots[-1][1])
    assert checkpoint.metrics["test_accuracy"] == pytest.approx(live.final["test_accuracy"])


def test_every_kind_of_event_reads_back_equal_at_every_epoch(store):
    """Pause, resume, lr change, NaN/inf losses, divergence; committed at once at each epoch."""
    record = new_record()

    def check(writer):  # each epoch is committed at once: another reader sees it
        store.flush()
        same(store.load("run-1"), record)

    write_all(store, record, hand_made_events(SMALL, epochs=3, diverge=True), check=check)
    run = store.load("run-1")
    same(run, record)
    assert run.status == Status.DIVERGED and math.isnan(run.epochs[-1]["train_loss"])
    assert math.isinf(run.epochs[-1]["validation_loss"]) and math.isnan(run.batch_losses[-1])
    assert math.isinf(run.batch_losses[-2]) and math.isnan(run.final["validation_accuracy"])
    assert run.lr_changes == [{"step": 2, "epoch": 1, "old": 0.5, "new": 0.25}]


def test_stopped_inside_an_epoch_keeps_both_snapshots_of_that_epoch(store):
    record = new_record()
    write_all(store, record, hand_made_events(SMALL, epochs=3, stop_at=2))
    run = store.load("run-1")
    same(run, record)
    assert [s[0] for s in run.snapshots] == [0, 1, 1]  # epoch 1, then the kept weights after it
    assert torch.equal(store.checkpoint("run-1").model.linear.weight, record.snapshots[-1][1])


def test_thinned_snapshots_and_batch_losses_read_back_equal(store, monkeypatch):
    monkeypatch.setattr(record_module, "MAX_SNAPSHOTS", 5)
    monkeypatch.setattr(record_module, "MAX_BATCH_VALUES", 16)
    record = new_record(config=SMALL.replace(epochs=40))
    writer = store.writer(record)
    for number, event in enumerate(hand_made_events(record.config, epochs=40, batches=3)):
        fold(record, event)
        writer.write(record, event, flush=number % 7 == 0 or None)  # flushes between thinnings too
    run = store.load("run-1")
    same(run, record)
    assert record.batch_stride > 1 and len(run.batch_losses) <= 16 and len(run.snapshots) <= 5
    assert run.snapshots[0][0] == 0 and run.snapshots[-1][0] == 40
    with store.engine.connect() as connection:  # the thinned-away rows are gone
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.Snapshot)).scalar() == \
            len(run.snapshots)
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.BatchLoss)).scalar() == \
            len(run.batch_losses)


def test_batch_progress_is_buffered_and_epochs_are_committed_at_once(store):
    record = new_record()
    writer = store.writer(record)
    events = list(hand_made_events(SMALL, epochs=2))
    for event in events[:2]:  # RunStarted, EpochEnd 0: committed at once
        fold(record, event)
        writer.write(record, event)
    deadline = time.time() + 30
    while store.load("run-1").epochs_done != 0 or not store.load("run-1").epochs:
        assert time.time() < deadline
    fold(record, events[2])
    writer.write(record, events[2], flush=False)  # a batch, not due yet
    fold(record, events[3])
    writer.write(record, events[3], flush=True)  # due: both batches go
    deadline = time.time() + 30
    while len(store.load("run-1").batch_losses) < 2:
        assert time.time() < deadline, "the flushed batches never arrived"
        time.sleep(0.01)
    assert store.load("run-1").batch_steps == [1, 2]


def test_an_idle_store_thread_never_commits_a_round_twice(store, monkeypatch):
    """The store thread wakes every HEARTBEAT_SECONDS when idle: such a wake-up must not re-commit the
    previous round (a paused run, silent for 5 s, then its next epoch failed with a duplicate row)."""
    import queue
    import threading

    monkeypatch.setattr(store_writer, "HEARTBEAT_SECONDS", 0.02)
    record, errors = new_record(), []
    writer = store.writer(record, on_error=errors.append)
    idle = {"count": 0, "event": threading.Event()}

    class CountingQueue(queue.Queue):
        def get(self, block=True, timeout=None):
            try:
                return super().get(block, timeout)
            except queue.Empty:
                if timeout is not None:  # an idle wake-up, not the drain after a get
                    idle["count"] += 1
                    if idle["count"] >= 3:
                        idle["event"].set()
                raise

    events = list(hand_made_events(SMALL, epochs=2))
    fold(record, events[0])
    writer.write(record, events[0])
    store.flush()
    thread = store._thread
    pending = thread.queue
    thread.queue = CountingQueue()
    while not pending.empty():
        thread.queue.put(pending.get_nowait())
    for event in events[1:3]:
        fold(record, event)
        writer.write(record, event, flush=True)
    store.flush()
    assert idle["event"].wait(30), "the store thread never woke up idle"
    for event in events[3:]:
        fold(record, event)
        writer.write(record, event)
    assert errors == [] and writer.error is None
    assert store.load("run-1").epochs == record.epochs


# ---------------------------------------------------------------- sweeps (groups)

def test_a_64_run_group_reads_back_with_every_run_in_order(store, dataset):
    configs = [SMALL.replace(epochs=2, per_class_limit=10, batch_size=50, learning_rate=10 ** (-3 + i / 16))
               for i in range(64)]
    job = TrainingJob(configs, dataset, group_id="sweep-1", listeners=[store.listener()])
    store.create_group("sweep-1", "64 learning rates", {"low": 1e-3, "high": 10.0}, job.run_ids)
    job.start().join(300)
    group, runs = store.load_group("sweep-1")
    assert group.name == "64 learning rates" and group.params == {"low": 1e-3, "high": 10.0}
    assert [run.run_id for run in runs] == job.run_ids == group.run_ids
    assert group.status == Status.DONE and sum(group.statuses.values()) == 64
    for run, live in zip(runs, job.records()):
        same(run, live, weights=False)
    [listed] = store.list_groups()
    assert listed.statuses == group.statuses and listed.group_id == "sweep-1"
    assert len(store.list_runs("sweep-1")) == 64 and store.list_runs("") == []
    store.delete_group("sweep-1")
    assert store.list_runs() == [] and store.list_groups() == []
    with pytest.raises(StoreError, match="no sweep with id sweep-1"):
        store.load_group("sweep-1")


def test_a_group_still_training_cannot_be_deleted(store):
    record = new_record("g-01", group_id="g")
    store.create_group("g", "a sweep", {}, ["g-01"])
    writer = store.writer(record)
    assert store.list_groups()[0].status == Status.STARTING or store.list_groups()[0].active
    with pytest.raises(StoreError, match="still training; stop it before deleting it"):
        store.delete_group("g")
    for event in hand_made_events(SMALL, epochs=1):
        fold(record, event)
        writer.write(record, event)
    store.delete_group("g")
    assert store.list_groups() == []


# ---------------------------------------------------------------- liveness

KILLED_TRAINER = """
    import sys
    from lrcore.config import TrainConfig
    from lrcore.data import load_dataset
    from lrcore.jobs import TrainingJob
    from lrcore.store import Store
    store = Store(sys.argv[1])
    config = TrainConfig(epochs=1000, learning_rate=0.5, batch_size=60, per_class_limit=30)
    # two batch sizes: two groups, trained one after the other; the second waits its turn
    job = TrainingJob([config, config.replace(batch_size=30)], load_dataset("mnist-sample"), group_id="sweep-k",
                      source="cli", listeners=[store.listener()])
    store.create_group("sweep-k", "killed sweep", {}, job.run_ids)
    print(job.run_ids[0], flush=True)
    job.start().join()
"""


def test_a_sweep_killed_mid_training_reads_back_crashed_with_its_epochs(store, store_url):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    trainer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_TRAINER), store_url], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, text=True)
    try:
        run_id = trainer.stdout.readline().strip()
        deadline = time.time() + 120
        while True:
            assert trainer.poll() is None, "the trainer ended before it could be killed"
            assert time.time() < deadline, "epoch 2 was never written"
            try:
                running = store.get(run_id)
            except StoreError:
                continue
            if running.epochs_done >= 2:
                break
            time.sleep(0.05)
        # while it trains, another process (this one) sees it training: its lock is held
        assert running.status == Status.TRAINING and running.source == "cli"
        assert store.get("sweep-k-02").status == Status.WAITING
    finally:
        trainer.kill()  # SIGKILL: no cleanup runs
        trainer.wait()
    forget_engine(store_url)  # as a restarted server would
    run = Store(store_url).load(run_id)
    assert run.status == Status.CRASHED and "ended without finishing" in run.message
    assert run.epochs_done >= 2 and [row["epoch"] for row in run.epochs] == list(range(run.epochs_done + 1))
    assert [s[0] for s in run.snapshots][-1] == run.epochs_done
    assert store.checkpoint(run_id).metrics["epochs_completed"] == run.epochs_done
    group, runs = store.load_group("sweep-k")
    assert group.status == Status.CRASHED and [r.status for r in runs] == [Status.CRASHED, Status.CRASHED]
    assert runs[1].epochs == [] and "after epoch 0 of 1000" in runs[1].message  # it never got its turn
    with store.engine.connect() as connection:  # written down: no longer depends on the lock
        assert connection.execute(sa.select(schema.Run.status).where(schema.Run.id == run_id)).scalar() == "crashed"


def test_a_run_of_another_host_is_crashed_once_its_heartbeat_is_old(store):
    now = time.time()
    with store.engine.begin() as connection:
        for run_id, beat in (("fresh", now - 60), ("stale", now - store_module.STALE_SECONDS - 1)):
            record = new_record(run_id, status=Status.PAUSED, created=now, updated=beat)
            _insert(connection, record)
            connection.execute(sa.update(schema.Run).where(schema.Run.id == run_id)
                               .values(host="another-host", pid=4242, heartbeat=beat))
    assert store.get("fresh").status == Status.PAUSED  # a paused run elsewhere is not dead
    stale = store.get("stale")
    assert stale.status == Status.CRASHED and "pid 4242 on another-host" in stale.message


def test_a_paused_run_keeps_its_heartbeat_fresh(store, monkeypatch):
    monkeypatch.setattr(store_writer, "HEARTBEAT_SECONDS", 0.05)  # read by the StoreThread
    store.close()  # a new store thread with the short heartbeat
    store._thread = None
    record = new_record()
    writer = store.writer(record)
    for event in list(hand_made_events(SMALL, epochs=1))[:5]:  # ... up to Paused
        fold(record, event)
        writer.write(record, event)
    assert record.status == Status.PAUSED
    with store.engine.connect() as connection:
        first = connection.execute(sa.select(schema.Run.heartbeat).where(schema.Run.id == "run-1")).scalar()
    deadline = time.time() + 30
    while True:
        with store.engine.connect() as connection:
            beat = connection.execute(sa.select(schema.Run.heartbeat).where(schema.Run.id == "run-1")).scalar()
        if beat > first:
            break
        assert time.time() < deadline, "the heartbeat of a paused run never moved"
        time.sleep(0.02)
    writer.write(record, None)


# ---------------------------------------------------------------- changing runs

def test_rename_and_delete(store):
    record = new_record()
    writer = write_all(store, record, list(hand_made_events(SMALL, epochs=1))[:3])
    assert store.rename("run-1", "  lr\n0.5  ") == "lr 0.5"
    fold(record, ev.Paused(0, 0))
    writer.write(record, ev.Paused(0, 0))  # a live writer never overwrites the new name
    assert store.get("run-1").name == "lr 0.5"
    with pytest.raises(StoreError, match="still training; stop it before deleting it"):
        store.delete("run-1")
    for bad, message in (("", "cannot be empty"), ("x" * 101, "at most 100 characters")):
        with pytest.raises(StoreError, match=message):
            store.rename("run-1", bad)
    with pytest.raises(StoreError, match="no run with id nope"):
        store.rename("nope", "x")
    with pytest.raises(StoreError, match="invalid run id"):
        store.get("../etc")
    writer.write(record, None)  # the end (as a job's crash)
    assert store.get("run-1").status == Status.STARTING or not store.get("run-1").active
    store.delete("run-1")
    with pytest.raises(StoreError, match="no run with id run-1"):
        store.get("run-1")
    deleted, problems = store.delete_many(["run-1", "bad id!"])
    assert deleted == [] and len(problems) == 2 and "no run with id run-1" in problems[0]


def test_checkpoint_of_an_unfinished_run_and_of_one_without_weights(store):
    record = new_record()
    writer = store.writer(record)
    with pytest.raises(CheckpointError, match="has no saved weights yet: it is still starting"):
        store.checkpoint("run-1")
    for event in list(hand_made_events(SMALL, epochs=3))[:10]:  # up to epoch 1's end
        fold(record, event)
        writer.write(record, event)
    store.flush()
    checkpoint = store.checkpoint("run-1")
    assert checkpoint.metrics == {"epochs_completed": 1.0}
    assert torch.equal(checkpoint.model.linear.weight, record.snapshots[-1][1])
    assert checkpoint.class_names == tuple("0123456789") and checkpoint.normalizer.kind == "standardize"
    assert load_checkpoint(store.checkpoint_bytes("run-1")).metrics == {"epochs_completed": 1.0}  # for download
    writer.write(record, None)


def test_import_checkpoint_and_hostile_bytes(store, tmp_path):
    weight = torch.randn(10, 784)
    data = checkpoint_bytes(LogisticRegression.from_tensors(weight, torch.zeros(10)), SMALL, tuple("0123456789"),
                            Normalizer("raw"), {"test_accuracy": 0.9, "epochs_completed": 3})
    run = store.import_checkpoint(data, name="from a friend")
    assert run.status == Status.IMPORTED and run.name == "from a friend" and run.source == "upload"
    assert run.final == {"test_accuracy": 0.9, "epochs_completed": 3.0} and run.snapshots[0][0] == 3
    assert torch.equal(store.checkpoint(run.run_id).model.linear.weight, weight)
    for hostile in (b"", b"not a checkpoint", b"PK\x03\x04" + b"\x00" * 100, data[: len(data) // 2]):
        with pytest.raises(CheckpointError):
            store.import_checkpoint(hostile)
    assert [r.run_id for r in store.list_runs()] == [run.run_id]


def test_listing_is_newest_first_and_prune_candidates_are_old_finished_runs(store):
    now = time.time()
    with store.engine.begin() as connection:
        for number, days in enumerate((40, 10, 1)):
            _insert(connection, new_record(f"r{number}", status=Status.DONE, created=now - days * 86400))
    assert [run.run_id for run in store.list_runs()] == ["r2", "r1", "r0"]
    assert [run.run_id for run in store.older_than(7, now=now)] == ["r1", "r0"]
    assert store.usage() > 0 and store.write_problem() is None


def test_huge_names_and_messages_are_cut_when_read(store):
    with store.engine.begin() as connection:
        _insert(connection, new_record("r", status=Status.DONE))
        connection.execute(sa.update(schema.Run).values(name="n" * 100_000, message="m\n" * 100_000))
    run = store.get("r")
    assert len(run.name) == 100 and run.name.endswith("…") and len(run.message) == 1000


# ---------------------------------------------------------------- limits and failures

def test_store_over_its_limit_trains_but_does_not_save_and_says_how_full(store, dataset, monkeypatch, caplog):
    monkeypatch.setenv("LRCORE_STORE_MAX_MB", "0.000001")
    with pytest.raises(StoreFullError, match="the run store is full: it holds .*, its limit is"):
        store.writer(new_record())
    job = TrainingJob([SMALL], dataset, listeners=[store.listener()]).start()
    job.join(120)
    [live] = job.records()
    assert live.status == Status.DONE and live.save_error.startswith("the run store is full")
    assert store.list_runs() == [] and "delete old runs" in store.write_problem()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("lrcore.store")]
    assert len(lines) == 1 and r"LRCORE_STORE_MAX_MB" in lines[0]


class FailingEngine:
    """An engine whose every transaction fails as a full (or read-only) SQLite database does."""

    def __init__(self, message: str):
        self.message, self.calls = message, 0

    def begin(self):
        self.calls += 1
        raise sa_exc.OperationalError("UPDATE lrcore_runs", {}, Exception(self.message))

    connect = begin


@pytest.mark.parametrize("message, reason", [
    ("database or disk is full", "the disk is full (database or disk is full)"),
    ("attempt to write a readonly database", "the run store is read-only (attempt to write a readonly database)")])
def test_a_failing_database_is_reported_once_and_training_goes_on(store, message, reason, caplog):
    record, errors = new_record(), []
    writer = store.writer(record, on_error=errors.append)
    good, failing = store.engine, FailingEngine(message)
    events = list(hand_made_events(SMALL, epochs=3))
    for event in events[:7]:
        fold(record, event)
        writer.write(record, event)
    store.engine = failing  # the disk fills up, or the store becomes read-only
    for event in events[7:]:
        fold(record, event)
        writer.write(record, event)
    assert errors == [reason] and writer.error == reason and record.status == Status.DONE
    lines = [r for r in caplog.records if r.name.startswith("lrcore.store") and r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].exc_info is None and reason in lines[0].getMessage()
    store.engine = good
    # this process lists it as it ended, with the reason (its row could not be updated)
    run = store.get("run-1")
    assert run.status == Status.DONE and run.save_error == reason and run.epochs_done == 0  # what was saved
    store.delete("run-1")


def test_describe_write_error_and_the_limit_setting(monkeypatch, caplog):
    import errno

    assert describe_write_error(OSError(errno.ENOSPC, "No space left on device")) == \
        "the disk is full (No space left on device)"
    assert describe_write_error(StoreError("no run with id x")) == "no run with id x"
    assert describe_write_error(RuntimeError("boom")) == "an internal error (RuntimeError: boom)"
    monkeypatch.setenv("LRCORE_STORE_MAX_MB", "0")
    assert store_limit_mb() is None
    monkeypatch.setenv("LRCORE_STORE_MAX_MB", "lots")
    assert store_limit_mb() == store_module.DEFAULT_STORE_MAX_MB
    monkeypatch.delenv("LRCORE_STORE_MAX_MB")
    assert store_limit_mb() == store_module.DEFAULT_STORE_MAX_MB


# ---------------------------------------------------------------- schema and old folders

def test_a_store_of_a_newer_schema_is_refused_with_a_clear_message(store, store_url):
    with store.engine.begin() as connection:
        connection.execute(sa.update(schema.Meta).where(schema.Meta.key == "schema_version").values(value="99"))
    forget_engine(store_url)
    with pytest.raises(StoreError, match=r"written by a newer version of lrcore \(schema 99; this version knows "
                                         r"schema 2 and older\): upgrade lrcore"):
        Store(store_url)


def test_a_store_written_by_schema_1_opens_and_gains_owner_and_lesson(tmp_path, monkeypatch):
    """A real schema-1 database (dumped from the previous version): its run reads back nobody's and
    new runs keep their owner and lesson."""
    path = tmp_path / "old" / "lrcore.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as connection:
        connection.executescript((ROOT / "tests" / "store_schema1.sql").read_text())
    store = Store(path)
    try:
        old = store.list_runs()
        assert [(run.run_id, run.owner, run.lesson, run.epochs_done) for run in old] == \
            [("20261130-101010-abc123", "", "", 2)]
        with store.engine.connect() as connection:
            assert connection.execute(sa.select(schema.Meta.value).where(
                schema.Meta.key == "schema_version")).scalar() == "2"
            indexes = {index["name"] for index in sa.inspect(connection).get_indexes("lrcore_runs")}
        assert {"ix_lrcore_runs_owner", "ix_lrcore_runs_lesson"} <= indexes
        write_all(store, new_record("run-1", owner="a" * 16, lesson="l1"), hand_made_events(SMALL, 1)).close()
        assert [(run.run_id, run.owner, run.lesson) for run in store.list_runs(owner="a" * 16)] == \
            [("run-1", "a" * 16, "l1")]
        assert store.next_run_number("a" * 16) == 1 and store.next_run_number("b" * 16) == 1  # no "#n" names yet
    finally:
        store.close()
        forget_engine(str(path))
    Store(path).close()  # opening the upgraded store again changes nothing
    forget_engine(str(path))


def test_an_upgrade_adds_the_columns_on_every_database(store, store_url):
    """The owner and lesson columns dropped again (a schema-1 runs table): reopening adds them back."""
    write_all(store, new_record("run-1"), hand_made_events(SMALL, 1)).close()
    store.close()
    with store.engine.begin() as connection:
        for column in ("owner", "lesson"):
            connection.exec_driver_sql(f"DROP INDEX ix_lrcore_runs_{column}")
            connection.exec_driver_sql(f"ALTER TABLE lrcore_runs DROP COLUMN {column}")
        connection.execute(sa.update(schema.Meta).where(schema.Meta.key == "schema_version").values(value="1"))
    forget_engine(store_url)
    upgraded = Store(store_url)
    try:
        assert [(run.run_id, run.owner) for run in upgraded.list_runs()] == [("run-1", "")]
        write_all(upgraded, new_record("run-2", owner="b" * 16), hand_made_events(SMALL, 1)).close()
        assert [run.run_id for run in upgraded.list_runs(owner="b" * 16)] == ["run-2"]
    finally:
        upgraded.close()


def test_runs_keep_their_owner_and_lesson_and_list_by_them(store, dataset):
    job = TrainingJob([SMALL], dataset, listeners=[store.listener()], batch_event_seconds=0,
                      owner="0123456789abcdef", lesson="lesson-1").start()
    job.join()
    write_all(store, new_record("run-2", owner="fedcba9876543210"), hand_made_events(SMALL, 1)).close()
    assert {run.run_id: (run.owner, run.lesson) for run in store.list_runs()} == {
        job.run_ids[0]: ("0123456789abcdef", "lesson-1"), "run-2": ("fedcba9876543210", "")}
    assert [run.run_id for run in store.list_runs(lesson="lesson-1")] == job.run_ids
    assert [run.run_id for run in store.list_runs(owner="fedcba9876543210")] == ["run-2"]
    assert store.load("run-2").owner == "fedcba9876543210"


def test_display_names_and_teachers_are_remembered_per_owner(store):
    assert store.display_names() == {} and store.teacher_fingerprint("a" * 16) == ""
    assert store.set_display_name("a" * 16, "  Ana\n  María ") == "Ana María"
    store.set_display_name("b" * 16, "Ben")
    store.set_display_name("a" * 16, "Ana")  # typed again: replaced
    store.set_teacher("b" * 16, "f" * 16)
    assert store.display_names() == {"a" * 16: "Ana", "b" * 16: "Ben"}
    assert store.teacher_fingerprint("b" * 16) == "f" * 16 and store.teacher_fingerprint("a" * 16) == ""
    store.set_teacher("c" * 16, "e" * 16)  # a teacher who typed no name has none
    assert "c" * 16 not in store.display_names()
    for bad, message in (("  ", "cannot be empty"), ("x" * 41, "at most 40 characters")):
        with pytest.raises(StoreError, match=message):
            store.set_display_name("a" * 16, bad)
    with pytest.raises(StoreError, match="invalid owner id"):
        store.set_display_name("", "Nobody")


def test_default_url_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LRCORE_STORE_URL", raising=False)
    monkeypatch.setenv("LRCORE_RUNS_DIR", str(tmp_path / "runs"))
    assert store_module.default_store_url() == str(tmp_path / "runs" / "lrcore.db")
    monkeypatch.setenv("LRCORE_STORE_URL", "postgresql://me:secret@db.example/lrcore")
    assert store_module._url(None).drivername == "postgresql+psycopg"
    assert "secret" not in store_module._url(None).render_as_string(hide_password=True)
    # a path: a folder (made if missing) holds lrcore.db; *.db is the file itself
    assert store_module._url(tmp_path / "new").database == str(tmp_path / "new" / "lrcore.db")
    assert store_module._url(tmp_path / "my.db").database == str(tmp_path / "my.db")


def test_a_store_that_cannot_be_opened_says_why(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(StoreError, match=r"the run store sqlite:///.*a-file/runs/lrcore.db cannot be opened: "
                                         r"the run store could not be written to \(Not a directory\)"):
        Store(tmp_path / "a-file" / "runs")
    (tmp_path / "junk.db").write_text("this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot be opened: the database refused the write .*not a database"):
        Store(tmp_path / "junk.db")
    with pytest.raises(StoreError, match="is not a database URL"):
        Store("nonsense://")


def write_old_run(root: Path, run_id: str, status: str = "done", epochs: int = 2) -> None:
    """A run folder as lrcore.runstore wrote it (format lrcore-run, version 1)."""
    folder = root / run_id
    (folder / "weights").mkdir(parents=True)
    rows = [{"epoch": e, "step": 5 * e, "train_loss": 1.0 / (e + 1), "train_accuracy": 0.5, "validation_loss": 0.9,
             "validation_accuracy": 0.5 + e / 10, "learning_rate": 0.5, "seconds": 0.1, "elapsed": 0.1 * e}
            for e in range(epochs + 1)]
    (folder / "epochs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows) + '{"torn')
    (folder / "batches.jsonl").write_text(json.dumps({"step": 1, "losses": [2.0, 1.5, 1.0]}) + "\n")
    for e in range(epochs + 1):
        torch.save({"weight": torch.full((10, 784), float(e)), "bias": torch.zeros(10)},
                   folder / "weights" / f"{e:04d}.pt")
    normalizer = Normalizer("raw")
    torch.save(normalizer.to_dict(), folder / "normalizer.pt")
    if status == "done":
        model = LogisticRegression.from_tensors(torch.full((10, 784), 7.0), torch.zeros(10))
        save_checkpoint(folder / "model.pt", model, SMALL, tuple("0123456789"), normalizer, {"test_accuracy": 0.8})
    meta = {"format": "lrcore-run", "version": 1, "run_id": run_id, "name": f"old {run_id}", "status": status,
            "phase": "", "message": "", "source": "cli", "config": SMALL.to_dict(), "class_names": list("0123456789"),
            "created": 1000.0, "updated": 1001.0, "duration": 3.0, "epochs_done": epochs, "learning_rate": 0.5,
            "progress": {}, "final": {"test_accuracy": 0.8, "epochs_completed": epochs} if status == "done" else {},
            "train_size": 240, "validation_size": 60, "batches_per_epoch": 5, "device": "cpu", "lr_changes": [],
            "owner": {"pid": 1, "host": "old"}}
    (folder / "meta.json").write_text(json.dumps(meta))


def write_old_sweep(root: Path, sweep_id: str) -> None:
    """A sweep folder as lrcore.sweepstore wrote it (runs/sweeps/<id>/)."""
    folder = root / "sweeps" / sweep_id
    (folder / "weights").mkdir(parents=True)
    configs = [SMALL.replace(learning_rate=rate) for rate in (0.1, 1.0)]
    meta = {"format": "lrcore-sweep", "version": 1, "sweep_id": sweep_id, "status": "done", "message": "",
            "source": "dashboard", "created": 2000.0, "updated": 2001.0, "elapsed": 2.0,
            "configs": [c.to_dict() for c in configs], "labels": ["lr=0.1", "lr=1"], "groups": [[0, 1]],
            "members": [{"status": "done", "message": "", "final": {"test_accuracy": 0.7}, "last_step": 15,
                         "epochs_done": 1, "validation_accuracy": 0.7}] * 2,
            "class_names": list("0123456789"), "train_size": 240, "validation_size": 60, "device": "cpu"}
    (folder / "meta.json").write_text(json.dumps(meta))
    rows = [{"member": m, "epoch": e, "step": 5 * e, "train_loss": 1.0, "train_accuracy": 0.5, "validation_loss": 1.0,
             "validation_accuracy": 0.7, "seconds": 0.5} for m in (0, 1) for e in (0, 1)]
    (folder / "epochs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "curves.json").write_text(json.dumps([{"steps": [1, 2], "smoothed": [2.0, 1.0]}] * 2))
    torch.save({"indices": torch.tensor([0, 1]), "epochs": torch.tensor([1, 1]), "weight": torch.randn(2, 10, 784),
                "bias": torch.randn(2, 10)}, folder / "weights" / "group-00.pt")
    torch.save(Normalizer("raw").to_dict(), folder / "normalizer.pt")


def test_old_run_and_sweep_folders_are_imported_once(tmp_path):
    root = tmp_path / "runs"
    write_old_run(root, "20260101-000000-aaaaaa")
    write_old_run(root, "20260101-000001-bbbbbb", status="running")
    write_old_sweep(root, "20260102-000000-cccccc")
    (root / "not-a-run").mkdir()
    store = Store(root)
    try:
        assert store.imported_message == "Imported 2 runs and 1 sweep from the run folders of an earlier version."
        done = store.load("20260101-000000-aaaaaa")
        assert done.status == Status.DONE and done.name == "old 20260101-000000-aaaaaa" and done.source == "cli"
        assert [row["epoch"] for row in done.epochs] == [0, 1, 2] and done.batch_losses == [2.0, 1.5, 1.0]
        assert [s[0] for s in done.snapshots] == [0, 1, 2, 2]  # the kept weights follow the last epoch's
        assert store.checkpoint(done.run_id).model.linear.weight[0, 0] == 7.0
        cut = store.get("20260101-000001-bbbbbb")
        assert cut.status == Status.CRASHED and "when the run folders were imported" in cut.message
        group, runs = store.load_group("20260102-000000-cccccc")
        assert [run.name for run in runs] == ["lr=0.1", "lr=1"] and all(run.status == Status.DONE for run in runs)
        assert runs[1].epochs[-1]["elapsed"] == 1.0 and store.checkpoint(runs[1].run_id).config.learning_rate == 1.0
        assert (root / "20260101-000000-aaaaaa" / "meta.json").is_file()  # old folders stay
        forget_engine(str(root))
        again = Store(root)  # a restart: not imported twice
        assert again.imported_message == "" and len(again.list_runs()) == 4
    finally:
        forget_engine(str(root))


def test_a_store_that_cannot_be_read_lists_nothing_and_says_why(store):
    good = store.engine
    store.engine = FailingEngine("could not connect to server: Connection refused")
    try:
        assert store.list_runs() == []
        assert store.problem.startswith("the run store cannot be read: the database server cannot be reached")
        with pytest.raises(StoreError, match="the run store cannot be read"):
            store.get("run-1")
    finally:
        store.engine = good
    assert store.list_runs() == [] and store.problem == ""


def test_a_same_host_run_without_its_lock_is_judged_by_its_process_then_its_heartbeat(store):
    """A free lock means a dead writer only if its process is gone too (a PostgreSQL store's locks
    live in the temp folder, which a service may have private); a live pid waits for the heartbeat."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    now = time.time()
    with store.engine.begin() as connection:
        for run_id, pid, beat in (("parent", os.getppid(), now), ("gone", int(finished.stdout), now),
                                  ("silent", os.getppid(), now - store_module.STALE_SECONDS - 1)):
            _insert(connection, new_record(run_id, status=Status.TRAINING, created=now))
            connection.execute(sa.update(schema.Run).where(schema.Run.id == run_id)
                               .values(host=store_module.HOST, pid=pid, heartbeat=beat))
    assert store.get("parent").status == Status.TRAINING
    assert store.get("gone").status == Status.CRASHED
    assert store.get("silent").status == Status.CRASHED


def test_an_owners_run_numbers_never_repeat_after_a_delete(store):
    ana, ben = "a" * 16, "b" * 16
    for number in (1, 2, 3):
        write_all(store, new_record(f"run-{number}", name=f"SGD lr=0.5 #{number}", owner=ana),
                  hand_made_events(SMALL, 1)).close()
    write_all(store, new_record("run-ben", name="SGD lr=0.5 #1", owner=ben), hand_made_events(SMALL, 1)).close()
    assert store.next_run_number(ana) == 4 and store.next_run_number(ben) == 2
    store.delete("run-2")  # the count is 2 now; numbering by count would make a second "#3"
    assert store.next_run_number(ana) == 4
    store.rename("run-3", "my best run")  # a name without a number counts for nothing
    assert store.next_run_number(ana) == 2
    assert store.next_run_number("c" * 16) == 1


def test_a_sweep_group_starting_while_another_opens_the_rows_is_saved_whole(tmp_path, monkeypatch):
    # A sweep's groups may train on two workers at once (tests/test_sweep_split.py): the second group's first
    # event came while the first group's was still opening every run's row, and was dropped (its run then
    # missed the RunStarted facts: split sizes, classes, normaliser).
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    configs = [SMALL.replace(batch_size=100), SMALL.replace(batch_size=50)]
    job = TrainingJob(configs, None, group_id="two-groups")
    listener = store.listener()
    opening = store._open_writers

    def slow_open(*args, **kwargs):
        time.sleep(0.5)  # a slow database: the other group's first event arrives meanwhile
        return opening(*args, **kwargs)

    monkeypatch.setattr(store, "_open_writers", slow_open)

    def first_event(run_id: str) -> None:
        record = job.record(run_id)
        event = next(hand_made_events(record.config, epochs=1))
        fold(record, event)
        listener(job, record, event)

    threads = [threading.Thread(target=first_event, args=(run_id,)) for run_id in job.run_ids]
    threads[0].start()
    time.sleep(0.1)
    threads[1].start()
    for thread in threads:
        thread.join(30)
    store.flush()
    for run_id in job.run_ids:
        stored = store.load(run_id)
        assert stored.train_size == 300 and stored.class_names == tuple("0123456789"), run_id
    store.close()


def test_a_store_another_process_is_creating_opens_after_a_retry(tmp_path, monkeypatch):
    # CI's board test opened the SQLite store while the server was creating its tables: "table lrcore_people
    # already exists" ended the test; PostgreSQL's "duplicate" was already retried.
    create_all = schema.Base.metadata.create_all
    calls = []

    def raced(connection, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the other process won the first time
            raise sa_exc.OperationalError("CREATE TABLE lrcore_people", {}, Exception("table lrcore_people already exists"))
        return create_all(connection, *args, **kwargs)

    monkeypatch.setattr(schema.Base.metadata, "create_all", raced)
    store = Store(tmp_path / "raced")
    assert len(calls) == 2 and store.list_runs() == []
    store.close()
