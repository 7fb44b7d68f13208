"""Training on Ray actors (`lrcore.workers_ray`, LRCORE_COMPUTE=ray) and the compute setting (`lrcore.compute`).

A local Ray of 2 CPUs and a pool of two actors are shared by the module (Ray and an actor take seconds to
start on this machine); every test leaves the actors idle again. The kill test replaces its actor, as the
pool does by itself. The setting's tests need no Ray.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

import pytest

from lrcore import compute
from lrcore.config import TrainConfig
from lrcore.jobs import JobRegistry, LiveRun, TrainingJob
from lrcore.lr_finder import RangeTestJob
from lrcore.status import Status
from lrcore.store import Store
from lrcore.workers import WorkerPool
from tests.apptest_helpers import wait_for_run
# the local pool's helpers; its `jobs` fixture takes this module's `pool` (the Ray one)
from tests.test_workers import (finished, jobs, pause_resume_learning_rate_and_stop, run_of, start,  # noqa: F401
                                started_pool, wait_until)

TIMEOUT = 120  # seconds: a loaded 2-core machine, an actor to (re)start
SMALL = TrainConfig(epochs=2, per_class_limit=30)
LONG = TrainConfig(epochs=1000)  # far longer than any test waits: ended by a stop or a kill


@pytest.fixture(scope="module")
def workers_ray():
    pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-ray.txt)")
    import ray

    from lrcore import workers_ray

    # From a thread that ends at once, as a Streamlit script thread does (whose end killed Ray's processes)
    started = threading.Thread(target=workers_ray.connect, kwargs={"num_cpus": 2, "log_to_driver": False})
    started.start()
    started.join()
    assert ray.is_initialized()
    yield workers_ray
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(workers_ray):
    with started_pool(2, worker_factory=workers_ray.RayWorker) as pool:
        yield pool


def events_of(jobs: JobRegistry, config: TrainConfig) -> tuple[list, list]:
    """The run's record and its events, BatchProgress left out (how many there are depends on speed)."""
    seen = []
    job = start(jobs, [config], listeners=[lambda _job, _record, event: seen.append(event)])
    record = finished(job)[0]
    return record, [event for event in seen if type(event).__name__ != "BatchProgress"]


def epoch_numbers(events: list) -> list:
    return [(e.epoch, e.step, e.train_loss, e.train_accuracy, e.validation_loss, e.validation_accuracy)
            for e in events if type(e).__name__ == "EpochEnd"]


def test_a_run_on_ray_trains_as_in_a_local_worker(jobs):
    record, events = events_of(jobs, SMALL)
    assert record.status == Status.DONE and record.epochs_done == 2, record.message
    local_pool = WorkerPool(1, warm=False)
    try:
        assert local_pool.wait_ready(TIMEOUT), local_pool.problem
        local_record, local_events = events_of(JobRegistry(local_pool), SMALL)
    finally:
        local_pool.close()
    assert local_record.status == Status.DONE
    assert [type(e).__name__ for e in events] == [type(e).__name__ for e in local_events]
    assert [type(e).__name__ for e in events][:1] == ["RunStarted"] and len(epoch_numbers(events)) == 3
    assert epoch_numbers(events) == epoch_numbers(local_events)  # same seed: the same numbers, exactly
    assert record.final["test_accuracy"] == local_record.final["test_accuracy"]
    assert len(record.snapshots) == 3 and record.normalizer is not None and record.class_names


def test_pause_resume_learning_rate_and_stop_reach_the_actor(jobs):
    pause_resume_learning_rate_and_stop(jobs, LONG)


def test_a_sweep_of_two_groups_trains_them_on_two_actors(jobs, pool):
    configs = [SMALL.replace(learning_rate=lr) for lr in (0.1, 0.4)] + [SMALL.replace(batch_size=64)]
    job = start(jobs, configs, group_id="sweep-ray")
    records = finished(job)
    assert all(r.status == Status.DONE and r.epochs_done == 2 for r in records), [r.message for r in records]
    assert len({r.final["test_accuracy"] for r in records}) > 1
    # the batch-64 group borrowed the idle actor (tests/test_sweep_split.py checks the local pool's in depth)
    assert len(set(job.workers_used)) == 2 and set(job.workers_used) <= {actor.pid for actor in pool.workers()}


def test_a_range_test_runs_on_the_actor(jobs):
    tester = RangeTestJob(TrainConfig(), None, num_batches=40)
    jobs.add(tester)
    tester.start().join(TIMEOUT)
    record = tester.snapshot()
    assert record.status == Status.DONE and len(record.learning_rates) == len(record.losses) > 10
    assert record.result is not None and record.result.learning_rates == record.learning_rates


def test_bad_settings_fail_with_the_actor_message(jobs):
    record = finished(start(jobs, [TrainConfig(batch_size=7000)]))[0]  # larger than the training split
    assert record.status == Status.FAILED and "batch_size" in record.message


def test_a_killed_actor_crashes_its_runs_keeps_their_epochs_and_is_replaced(jobs, pool, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    job = start(jobs, [LONG], listeners=[store.listener()])
    wait_for_run(run_of(job), lambda r: r.epochs_done >= 2, "two epochs")
    victim = next(actor for actor in pool.workers() if actor.pid == job.workers_used[0])
    os.kill(victim.pid, signal.SIGKILL)
    record = finished(job)[0]
    assert record.status == Status.CRASHED and "Ray actor ended unexpectedly" in record.message
    assert record.epochs_done >= 2 and record.snapshots  # the completed epochs are kept
    store.flush()
    stored = store.load(record.run_id)
    assert stored.status == Status.CRASHED and stored.epochs_done >= 2
    store.close()
    after = finished(start(jobs, [SMALL]))[0]  # on the other actor, while the pool starts a new one
    assert after.status == Status.DONE, after.message
    assert victim not in pool.workers() and not victim.alive
    assert wait_until(lambda: len(pool.workers()) == 2), "no new actor took its place"


def test_ray_pool_is_as_large_as_the_cluster_unless_told(workers_ray, monkeypatch):
    monkeypatch.setenv("LRCORE_COMPUTE", "ray")
    monkeypatch.delenv("LRCORE_WORKERS", raising=False)
    pool = compute.make_pool(warm=False)
    try:
        assert pool.size == 2 and all(isinstance(w, workers_ray.RayWorker) for w in pool.workers())
    finally:
        pool.close()
    monkeypatch.setenv("LRCORE_WORKERS", "0")
    with pytest.raises(compute.ComputeError, match="LRCORE_WORKERS=0 .* not on Ray"):
        compute.make_pool()


# -- the setting (no Ray needed)

def test_a_wrong_compute_setting_names_the_setting_and_the_allowed_values(monkeypatch):
    monkeypatch.setenv("LRCORE_COMPUTE", "gpu-farm")
    with pytest.raises(compute.ComputeError) as raised:
        compute.make_pool()
    assert "LRCORE_COMPUTE='gpu-farm'" in str(raised.value)
    assert "local" in str(raised.value) and "ray" in str(raised.value)
    monkeypatch.setenv("LRCORE_COMPUTE", " Local ")
    monkeypatch.setenv("LRCORE_WORKERS", "0")
    assert compute.backend() == "local" and compute.make_pool() is None  # threads, as before


def test_ray_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setenv("LRCORE_COMPUTE", "ray")
    monkeypatch.setitem(sys.modules, "ray", None)  # what a machine without the wheel sees
    with pytest.raises(compute.ComputeError, match=r"pip install -r requirements-ray\.txt"):
        compute.make_pool()


def test_an_unreachable_cluster_names_the_address(monkeypatch):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-ray.txt)")
    from lrcore import workers_ray

    def refuse(address):
        raise ConnectionError(f"could not connect to {address}")

    monkeypatch.setattr(workers_ray, "connect", refuse)
    monkeypatch.setenv("LRCORE_COMPUTE", "ray")
    monkeypatch.setenv("LRCORE_RAY_ADDRESS", "ray://nowhere:10001")
    with pytest.raises(compute.ComputeError, match="LRCORE_RAY_ADDRESS='ray://nowhere:10001'"):
        compute.make_pool()


def test_the_dashboard_shows_a_wrong_setting_instead_of_a_traceback(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.apptest_helpers import APP
    from ui import common

    monkeypatch.setenv("LRCORE_COMPUTE", "gpu-farm")
    common.get_pool.clear()
    common.get_jobs.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=60).run()
        assert not at.exception, at.exception
        assert any("LRCORE_COMPUTE='gpu-farm'" in e.value for e in at.error), [e.value for e in at.error]
    finally:
        common.get_pool.clear()
        common.get_jobs.clear()
