"""Training in worker processes (`lrcore.workers`): real spawned processes, waits on events with timeouts.

One pool of one worker is shared by the module (a worker takes seconds to start on this machine);
every test leaves it idle again. The kill -9 test replaces its worker, as the pool does by itself.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Iterator

import pytest

from lrcore import image_folder
from lrcore.config import TrainConfig
from lrcore.jobs import JobRegistry, LiveRun, TrainingJob
from lrcore.lr_finder import RangeTestJob
from lrcore.status import Status
from lrcore.store import Store
from lrcore.workers import RemoteControl, WorkerPool, pool_size
from tests.apptest_helpers import wait_for_run

TIMEOUT = 120  # seconds: a loaded 2-core machine, a worker to (re)start
LONG = TrainConfig(epochs=1000)  # far longer than any test waits: ended by a stop or a kill


@contextlib.contextmanager
def started_pool(size: int, **options) -> Iterator[WorkerPool]:
    """A pool of `size` workers (`options`: WorkerPool's, e.g. Ray actors), every one ready; closed after."""
    pool = WorkerPool(size, **options)
    try:
        assert pool.wait_ready(TIMEOUT), pool.problem or "the workers did not start"
        yield pool
    finally:
        pool.close()


def wait_until(condition, timeout: float = TIMEOUT) -> bool:
    """Whether `condition()` came true within `timeout` (checked every 50 ms: pool state has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def pool():
    with started_pool(1) as pool:
        yield pool


@pytest.fixture
def jobs(pool):
    registry = JobRegistry(pool)
    yield registry
    for job in registry.jobs():  # leave the worker free for the next test
        job.stop()
        job.join(TIMEOUT)
    assert pool.queued() == 0


def start(jobs: JobRegistry, configs, listeners=(), **kwargs) -> TrainingJob:
    job = TrainingJob(configs, None, listeners=listeners, **kwargs)
    jobs.add(job)
    assert job.pool is jobs.pool
    return job.start()


def run_of(job: TrainingJob) -> LiveRun:
    return LiveRun(job, job.run_ids[0])


def finished(job: TrainingJob) -> list:
    job.join(TIMEOUT)
    assert not job.alive, "the job did not end"
    return job.records()


def test_pool_size_setting(monkeypatch):
    monkeypatch.setenv("LRCORE_WORKERS", "3")
    assert pool_size() == 3
    monkeypatch.setenv("LRCORE_WORKERS", "0")
    assert pool_size() == 0
    monkeypatch.setenv("LRCORE_WORKERS", "many")  # a clear log line, and the default
    assert pool_size(default=4) == 4
    monkeypatch.delenv("LRCORE_WORKERS")
    assert pool_size() >= 1


def test_a_run_streams_its_events_to_listeners_and_the_store(jobs, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    seen = []
    job = start(jobs, [TrainConfig(epochs=2)], listeners=[store.listener(), lambda _job, record, event: seen.append(
        (record.status, type(event).__name__))])
    record = finished(job)[0]
    assert record.status == Status.DONE and record.epochs_done == 2 and record.final["test_accuracy"] > 0.8
    kinds = [kind for _, kind in seen]
    assert kinds[0] == "RunStarted" and kinds[-1] == "Finished"
    assert kinds.count("EpochEnd") == 3 and "BatchProgress" in kinds  # epochs 0, 1, 2
    assert len(record.snapshots) == 3 and record.normalizer is not None and record.class_names
    store.flush()
    stored = store.load(record.run_id)
    assert stored.status == Status.DONE and len(stored.epochs) == 3
    assert stored.final["test_accuracy"] == pytest.approx(record.final["test_accuracy"])
    store.close()


def test_pause_resume_learning_rate_and_stop_reach_the_worker(jobs):
    pause_resume_learning_rate_and_stop(jobs, LONG)


def pause_resume_learning_rate_and_stop(jobs: JobRegistry, config: TrainConfig) -> None:
    """Pause, a learning rate set while paused, resume and stop, each seen in the run's record (the Ray
    back end's test runs it on an actor)."""
    job = start(jobs, [config])
    wait_for_run(run_of(job), lambda r: r.epochs_done >= 1, "the first epoch")
    job.control.pause()
    paused = wait_for_run(run_of(job), lambda r: r.status == Status.PAUSED, "the worker to pause")
    job.control.set_learning_rate(0.05)  # taken at the first batch after the resume
    job.control.resume()
    record = wait_for_run(run_of(job), lambda r: r.lr_changes and r.status == Status.TRAINING, "the new learning rate")
    assert record.lr_changes[0]["new"] == 0.05 and record.lr_changes[0]["step"] >= paused.progress.get("step", 0)
    assert record.learning_rate == 0.05
    job.control.stop()
    record = finished(job)[0]
    assert record.status == Status.STOPPED and record.final and record.epochs_done >= 1


def test_a_sweep_trains_its_runs_together_and_scales_their_rates(jobs):
    rates = [0.05, 0.1, 0.2, 0.4]
    configs = [TrainConfig(epochs=3, learning_rate=lr) for lr in rates] + [TrainConfig(epochs=3, batch_size=64)]
    job = start(jobs, configs, group_id="sweep-test")
    records = finished(job)
    assert [r.run_id for r in records] == [f"sweep-test-0{i}" for i in range(1, 6)]
    assert all(r.status == Status.DONE and r.epochs_done == 3 for r in records)  # both passes, one worker
    assert [r.config.learning_rate for r in records[:4]] == rates
    assert len({r.final["test_accuracy"] for r in records}) > 1


def test_scaling_a_sweep_learning_rates_reaches_the_worker(jobs):
    job = start(jobs, [LONG.replace(learning_rate=0.1), LONG.replace(learning_rate=0.2)], group_id="sweep-scale")
    wait_for_run(run_of(job), lambda r: r.epochs_done >= 1, "the first epoch")
    job.scale_learning_rates(0.5)
    for run_id, rate in zip(job.run_ids, (0.05, 0.1)):
        record = wait_for_run(LiveRun(job, run_id), lambda r: r.lr_changes, "the scaled rate")
        assert record.lr_changes[-1]["new"] == pytest.approx(rate)
    job.stop()
    assert {r.status for r in finished(job)} == {Status.STOPPED}


def test_with_every_worker_busy_jobs_queue_in_order_and_a_queued_one_can_be_stopped(jobs):
    first = start(jobs, [LONG])
    wait_for_run(run_of(first), lambda r: r.status == Status.TRAINING, "the first job to train")
    second = start(jobs, [TrainConfig(epochs=1)])
    record = wait_for_run(run_of(second), lambda r: r.status == Status.QUEUED, "the second job to queue")
    assert record.queued_ahead == 1
    assert record.learning_rate == 0.5  # shown (and offered to change) before it starts, not 0
    third = start(jobs, [TrainConfig(epochs=1), TrainConfig(epochs=1, learning_rate=0.1)], group_id="sweep-queued")
    records = [wait_for_run(LiveRun(third, run_id), lambda r: r.status == Status.QUEUED and r.queued_ahead == 2,
                            "the third job to queue behind the second") for run_id in third.run_ids]
    assert all(r.queued_ahead == 2 for r in records)
    third.control.stop()  # what the Stop button does: out of the queue, never trained
    assert all(r.status == Status.STOPPED and not r.epochs and "queued" in r.message for r in finished(third))
    assert second.record(second.run_ids[0]).status == Status.QUEUED  # still waiting for the first
    first.control.stop()
    assert finished(first)[0].status == Status.STOPPED
    record = finished(second)[0]
    assert record.status == Status.DONE and record.epochs_done == 1


def test_a_killed_worker_crashes_its_runs_keeps_their_epochs_and_is_replaced(jobs, pool, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    job = start(jobs, [LONG], listeners=[store.listener()])
    wait_for_run(run_of(job), lambda r: r.epochs_done >= 2, "two epochs")
    victim = pool.workers()[0].process
    os.kill(victim.pid, signal.SIGKILL)
    record = finished(job)[0]
    assert record.status == Status.CRASHED and "worker process ended unexpectedly" in record.message
    assert record.epochs_done >= 2 and record.snapshots  # the completed epochs are kept
    store.flush()
    stored = store.load(record.run_id)
    assert stored.status == Status.CRASHED and stored.epochs_done >= 2
    store.close()
    after = finished(start(jobs, [TrainConfig(epochs=1)]))[0]  # waits in the queue for the new worker
    assert after.status == Status.DONE
    assert victim not in [worker.process for worker in pool.workers()] and len(pool.workers()) == 1


def test_a_folder_dataset_imported_after_the_worker_started_trains_there(jobs, tmp_path, monkeypatch):
    monkeypatch.setenv("LRCORE_DATA_DIR", str(tmp_path))
    name = image_folder.example_dataset()
    record = finished(start(jobs, [TrainConfig.for_dataset(name, epochs=2)]))[0]
    assert record.status == Status.DONE, record.message
    assert len(record.class_names) == 2 and record.final["test_accuracy"] > 0.6


def test_bad_settings_fail_with_the_worker_message(jobs):
    record = finished(start(jobs, [TrainConfig(batch_size=7000)]))[0]  # larger than the training split
    assert record.status == Status.FAILED and "batch_size" in record.message


def test_a_range_test_runs_in_a_worker(jobs):
    tester = RangeTestJob(TrainConfig(), None, num_batches=40)
    jobs.add(tester)
    assert tester.pool is jobs.pool
    tester.start().join(TIMEOUT)
    record = tester.snapshot()
    assert record.status == Status.DONE and len(record.learning_rates) == len(record.losses) > 10
    assert record.result is not None and record.result.learning_rates == record.learning_rates


def test_remote_control_replays_a_pause_and_a_pending_rate_on_connect():
    control, sent = RemoteControl(), []
    control.pause()
    control.set_learning_rate(0.3)
    assert not sent and control.paused
    control.connect(sent.append)
    assert sent == [("pause",), ("set_learning_rate", 0.3)]
    assert control.take_learning_rates([0.1]) is None  # the worker has it now, not a local loop
    control.resume()
    control.disconnect(sent.append)
    control.stop()
    assert sent[-1] == ("resume",) and control.stop_requested


def test_remote_control_reaches_every_worker_of_a_sweep_split_over_several():
    control, first, second = RemoteControl(), [], []
    control.set_learning_rate(0.3)
    control.connect(first.append)
    control.pause()
    control.connect(second.append)  # a later group's worker: told it is paused; the rate change was taken
    assert first == [("set_learning_rate", 0.3), ("pause",)] and second == [("pause",)]
    assert control.connections == 2
    control.scale_learning_rates(0.5)
    control.resume()
    assert first[-2:] == second[-2:] == [("scale_learning_rates", 0.5), ("resume",)]
    control.disconnect(first.append)
    control.stop()
    assert first[-1] == ("resume",) and second[-1] == ("stop",) and control.connections == 1
