"""A sweep's groups (one per batch size or dataset) split over idle workers (`TrainingJob._train_groups`):
real worker processes, a pool of two shared by the module (a worker takes seconds to start here); every
test leaves both idle again. Each group is still trained stacked, on one worker."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from lrcore.config import TrainConfig
from lrcore.jobs import LiveRun
from lrcore.status import Status
from lrcore.store import Store
from tests.apptest_helpers import wait_for_run
# the local pool's helpers; its `jobs` fixture takes this module's `pool` (of two workers)
from tests.test_workers import finished, jobs, start, started_pool, wait_until  # noqa: F401

TIMEOUT = 120  # seconds: a loaded 2-core machine, a worker to (re)start
LONG = TrainConfig(epochs=1000)  # ended by a stop or a kill


@pytest.fixture(scope="module")
def pool():
    with started_pool(2) as pool:
        yield pool


@pytest.fixture(autouse=True)
def both_given_back(pool):
    yield
    assert wait_until(lambda: len(pool._idle) == 2), "a worker was not given back"


class Timeline:
    """A listener noting, per run, when each of its epochs ended (seconds on one clock)."""

    def __init__(self):
        self.epochs: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def __call__(self, _job, record, event) -> None:
        if type(event).__name__ == "EpochEnd":
            with self.lock:
                self.epochs.setdefault(record.run_id, []).append(time.monotonic())


def two_groups(config: TrainConfig) -> list[TrainConfig]:
    """Two learning rates at batch size 100, two at 50: two groups, each of two stacked runs."""
    return [config.replace(batch_size=batch, learning_rate=lr) for batch in (100, 50) for lr in (0.1, 0.3)]


def test_a_sweep_of_two_groups_trains_them_side_by_side_on_two_workers(jobs, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    timeline = Timeline()
    job = start(jobs, two_groups(TrainConfig(epochs=8)), group_id="split", listeners=[store.listener(), timeline])
    records = finished(job)
    assert all(r.status == Status.DONE and r.epochs_done == 8 for r in records), [r.message for r in records]
    assert len(set(job.workers_used)) == 2 and set(job.workers_used) <= {w.pid for w in jobs.pool.workers()}
    first, second = (timeline.epochs[job.run_ids[i]] for i in (0, 2))  # a run of each group
    assert second[0] < first[-1] and first[0] < second[-1], "the two groups did not train at the same time"
    # every run saved whole, though two threads of the job wrote to the store at once
    store.flush()
    for record in records:
        stored = store.load(record.run_id)
        assert stored.status == Status.DONE and len(stored.epochs) == 9 and stored.group_id == "split"
    store.close()


def test_pause_learning_rate_and_stop_reach_every_worker_of_the_sweep(jobs):
    job = start(jobs, two_groups(LONG), group_id="split-control")
    for run_id in job.run_ids:
        wait_for_run(LiveRun(job, run_id), lambda r: r.epochs_done >= 1, "an epoch of every run")
    assert job.control.connections == 2
    job.control.pause()
    for run_id in job.run_ids:
        wait_for_run(LiveRun(job, run_id), lambda r: r.status == Status.PAUSED, "every run to pause")
    job.scale_learning_rates(0.5)
    job.control.resume()
    for run_id, rate in zip(job.run_ids, (0.05, 0.15, 0.05, 0.15)):
        record = wait_for_run(LiveRun(job, run_id), lambda r: r.lr_changes and r.status == Status.TRAINING,
                              "the scaled rate")
        assert record.lr_changes[-1]["new"] == pytest.approx(rate)
    job.stop()
    assert {r.status for r in finished(job)} == {Status.STOPPED}


def test_a_borrowed_worker_goes_back_to_a_job_that_queued(jobs):
    # three groups on two workers: the borrowed one gives its worker to the lone run queued meanwhile,
    # which then trains beside the sweep's last group instead of after the whole sweep
    sweep_timeline, lone_timeline = Timeline(), Timeline()
    configs = [TrainConfig(epochs=6, batch_size=batch) for batch in (100, 50, 25)]
    sweep = start(jobs, configs, group_id="split-fair", listeners=[sweep_timeline])
    assert wait_until(lambda: len(sweep.workers_used) == 2)
    lone = start(jobs, [TrainConfig(epochs=2)], listeners=[lone_timeline])
    wait_for_run(LiveRun(lone, lone.run_ids[0]), lambda r: r.status == Status.QUEUED or r.epochs_done, "queued")
    lone_record = finished(lone)[0]
    records = finished(sweep)
    assert lone_record.status == Status.DONE and all(r.status == Status.DONE for r in records)
    assert len(sweep.workers_used) == 2, "the sweep borrowed a worker while a job waited"
    last_group = sweep_timeline.epochs[sweep.run_ids[2]]
    assert lone_timeline.epochs[lone.run_ids[0]][0] < last_group[-1], "the lone run waited for the whole sweep"


def test_a_killed_borrowed_worker_crashes_its_group_only(jobs, pool):
    job = start(jobs, two_groups(LONG), group_id="split-kill")
    for run_id in job.run_ids:
        wait_for_run(LiveRun(job, run_id), lambda r: r.epochs_done >= 1, "an epoch of every run")
    victim = next(w for w in pool.workers() if w.pid == job.workers_used[1])  # the borrowed one: group 2
    os.kill(victim.pid, signal.SIGKILL)
    for run_id in job.run_ids[2:]:
        record = wait_for_run(LiveRun(job, run_id), lambda r: not r.active, "the killed group to end")
        assert record.status == Status.CRASHED and "ended unexpectedly" in record.message and record.epochs_done >= 1
    assert all(r.status == Status.TRAINING for r in job.records()[:2])  # the other group trains on
    job.stop()
    assert [r.status for r in finished(job)][:2] == [Status.STOPPED] * 2
    assert wait_until(lambda: len(pool.workers()) == 2 and victim not in pool.workers()), "no new worker"


def test_a_worker_that_frees_up_while_a_group_trains_takes_the_next_group(jobs):
    lone = start(jobs, [LONG])
    wait_for_run(LiveRun(lone, lone.run_ids[0]), lambda r: r.epochs_done >= 1, "the lone run to train")
    job = start(jobs, two_groups(LONG), group_id="split-late")
    wait_for_run(LiveRun(job, job.run_ids[0]), lambda r: r.epochs_done >= 1, "the first group to train")
    assert len(job.workers_used) == 1 and job.records()[2].status == Status.WAITING  # no idle worker yet
    lone.stop()
    for run_id in job.run_ids[2:]:
        wait_for_run(LiveRun(job, run_id), lambda r: r.epochs_done >= 1, "the second group on the freed worker")
    assert len(set(job.workers_used)) == 2 and job.records()[0].status == Status.TRAINING  # side by side
    job.stop()
    assert {r.status for r in finished(job)} == {Status.STOPPED}
