"""Two servers on one store: a run trained by server 1 is seen live, and controlled by its owner, on
server 2 (lrcore/store_controls.py, the registry's control thread in lrcore/jobs.py, StoredRun.control).

Each "server" is a `JobRegistry` of this process training in threads (LRCORE_WORKERS=0 style); server
2's pages reach the run only through the store, as `ui.common.run_handle` gives it to them.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from lrcore import classroom
from lrcore import store_schema as schema
from lrcore.classroom import owner_id
from lrcore.config import TrainConfig
from lrcore.data import load_dataset
from lrcore.jobs import JobRegistry, LiveRun, TrainingJob
from lrcore.record import RunRecord
from lrcore.status import Status
from lrcore.store import Store, StoreError
from tests.apptest_helpers import open_page, wait_for_run
from ui import common, identity

from .postgres_server import postgres_server  # noqa: F401  (the session fixture)
from .test_store_controls import store, store_url  # noqa: F401  (a new store, on SQLite and PostgreSQL)

# mnist-sample's 8,000 training images in 63 batches an epoch, 200 epochs: it trains while the test steers it
CONFIG = TrainConfig(epochs=200)
KEY = "correct horse battery staple"
ANA, BEN = "ana-token-" + "a" * 20, "ben-token-" + "b" * 20


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("mnist-sample")


def control_rows(store: Store) -> list:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(schema.Control).order_by(schema.Control.id)).all()


def server_1_job(store: Store, dataset, registry: JobRegistry, owner: str = "", group_id: str = "",
                 configs: list | None = None) -> TrainingJob:
    """A job trained by `registry` ("server 1"), recorded by `store` and steered through it."""
    job = TrainingJob(configs or [CONFIG], dataset, listeners=[store.listener()], control_store=store, owner=owner,
                      group_id=group_id)
    return registry.add(job).start()


def test_a_run_of_server_1_is_paused_resumed_changed_and_stopped_from_server_2(store, dataset, monkeypatch):
    server_1, server_2 = JobRegistry(), JobRegistry()
    job = server_1_job(store, dataset, server_1)
    other = server_1_job(store, dataset, server_2)  # server 2 trains a run of its own: never touched
    run = LiveRun(job, job.run_ids[0])
    monkeypatch.setattr(common, "get_jobs", lambda: server_2)  # what server 2's pages see
    monkeypatch.setattr(common, "get_store", lambda: store)

    def on_server_2() -> common.StoredRun:
        handle = common.run_handle(run.run_id)
        assert isinstance(handle, common.StoredRun) and handle.control is not None
        return handle

    try:
        wait_for_run(run, lambda r: r.epochs, "the epoch-0 evaluation")
        assert not on_server_2().control.paused
        on_server_2().control.pause()
        wait_for_run(run, lambda r: r.status == Status.PAUSED, "the pause asked on server 2")
        store.flush()
        assert store.get(run.run_id).status == Status.PAUSED and on_server_2().control.paused
        on_server_2().control.set_learning_rate(0.05)  # taken at the first batch after the resume
        on_server_2().control.resume()
        record = wait_for_run(run, lambda r: r.lr_changes, "the learning-rate change asked on server 2")
        assert record.lr_changes[-1]["new"] == 0.05 and record.status == Status.TRAINING
        watcher = server_1._watcher
        on_server_2().control.stop()
        job.join(60)
        assert run.snapshot().status == Status.STOPPED
        assert other.active and not other.control.paused and not other.snapshot()[0].lr_changes
    finally:
        job.stop()
        other.stop()
        job.join(60)
        other.join(60)
    stored = store.load(run.run_id, weights=False)
    assert stored.status == Status.STOPPED and [c["new"] for c in stored.lr_changes] == [0.05]
    assert [(row.run_id, row.command, row.value) for row in control_rows(store)] == [
        (run.run_id, "pause", None), (run.run_id, "set_learning_rate", 0.05), (run.run_id, "resume", None),
        (run.run_id, "stop", None)]
    assert all(row.taken is not None for row in control_rows(store))
    assert common.run_handle(run.run_id).control is None  # finished: read-only again
    watcher.join(30)  # no live job left: the control thread ends (a new job starts another)
    assert not watcher.is_alive() and server_1._watcher is None


def test_a_sweep_of_server_1_is_scaled_and_stopped_by_its_group_id(store, dataset):
    server_1 = JobRegistry()
    configs = [TrainConfig(epochs=200, learning_rate=rate) for rate in (0.1, 0.5)]
    job = server_1_job(store, dataset, server_1, group_id="sweep-1", configs=configs)
    first = LiveRun(job, job.run_ids[0])  # the sweep's runs train together: the first one tells
    try:
        wait_for_run(first, lambda r: r.epochs, "the epoch-0 evaluation")
        store.flush()
        group = store.remote_job("sweep-1", store.list_runs(group_id="sweep-1"), "")
        group.control.pause()
        wait_for_run(first, lambda r: r.status == Status.PAUSED, "the pause asked for the sweep")
        group.scale_learning_rates(0.5)
        group.control.resume()
        wait_for_run(first, lambda r: r.lr_changes, "the sweep's learning rates halved")
        group.stop()
        job.join(60)
    finally:
        job.stop()
        job.join(60)
    assert [[c["new"] for c in record.lr_changes] for record in job.records()] == [[0.05], [0.25]]
    assert {record.status for record in job.records()} == {Status.STOPPED}


# ---------------------------------------------------------------- server 2's Train page (AppTest)

@pytest.fixture
def server_2(tmp_path, monkeypatch):
    """Server 2's pages, on a temporary store; no teacher key; cwd without secrets."""
    monkeypatch.delenv(classroom.TEACHER_KEY_ENV, raising=False)
    monkeypatch.setenv("LRCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LRCORE_RUNS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def class_server(server_2, monkeypatch):
    monkeypatch.setenv(classroom.TEACHER_KEY_ENV, KEY)


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def forge(widget):
    """A crafted message pressing a disabled widget (AppTest's own refusal lifted)."""
    widget.proto.disabled = False
    return widget


def test_the_train_page_controls_another_servers_run_for_its_owner_only(class_server, dataset):
    store = Store()  # the store this page's server uses too
    job = server_1_job(store, dataset, JobRegistry(), owner=owner_id(ANA))
    run = LiveRun(job, job.run_ids[0])
    try:
        wait_for_run(run, lambda r: r.epochs, "the epoch-0 evaluation")
        assert common.get_jobs().live_run(run.run_id) is None  # not trained by the page's server

        ben = open_page("pages/train.py", {"run": run.run_id}, {identity.TOKEN_KEY: BEN})
        assert button(ben, "Pause").disabled and button(ben, "Stop").disabled and button(ben, "Apply").disabled
        assert any("This run belongs to" in str(info.value) for info in ben.info)
        forge(button(ben, "Pause")).click().run()
        forge(button(ben, "Stop")).click().run()
        assert not ben.exception and control_rows(store) == []  # nothing asked for Ben

        ana = open_page("pages/train.py", {"run": run.run_id}, {identity.TOKEN_KEY: ANA})
        assert not button(ana, "Pause").disabled and not button(ana, "Stop").disabled
        assert button(ana, "Start").disabled  # her run is in progress, wherever it trains
        sidebar = " | ".join(markdown.value for markdown in ana.sidebar.markdown)
        assert "**Run:** training epoch" in sidebar  # the sidebar's line follows it too (it said "idle")
        button(ana, "Pause").click().run()
        assert not ana.exception
        assert [(row.run_id, row.command, row.who) for row in control_rows(store)] == \
            [(run.run_id, "pause", owner_id(ANA))]
        wait_for_run(run, lambda r: r.status == Status.PAUSED, "the pause clicked on server 2's page")
        store.flush()
        ana.run()
        assert [b.label for b in ana.button if b.label in ("Pause", "Resume")] == ["Resume"]
        button(ana, "Stop").click().run()
        job.join(60)
        assert run.snapshot().status == Status.STOPPED
    finally:
        job.stop()
        job.join(60)
        store.close()


def test_the_sweep_page_pauses_and_stops_another_servers_sweep(server_2, dataset):
    store = Store()
    configs = [TrainConfig(epochs=200, learning_rate=rate) for rate in (0.1, 0.5)]
    job = server_1_job(store, dataset, JobRegistry(), group_id="sweep-remote", configs=configs)
    store.create_group("sweep-remote", "2 runs", {"configs": 2}, job.run_ids)
    first = LiveRun(job, job.run_ids[0])
    try:
        wait_for_run(first, lambda r: r.epochs, "the epoch-0 evaluation")
        at = open_page("pages/sweep.py", {"sweep": "sweep-remote"})
        assert at.session_state["sweep_id"] == "sweep-remote"
        assert not at.button(key="sweep_pause").disabled and not at.button(key="sweep_stop").disabled
        at.button(key="sweep_pause").click().run()
        assert not at.exception
        assert [(row.run_id, row.command) for row in control_rows(store)] == [("sweep-remote", "pause")]
        wait_for_run(first, lambda r: r.status == Status.PAUSED, "the pause clicked on server 2's Sweep page")
        at.button(key="sweep_lr_apply").click().run()  # × 0.5, the page's default
        at.button(key="sweep_stop").click().run()
        job.join(60)
        assert {record.status for record in job.records()} == {Status.STOPPED}
        assert [row.command for row in control_rows(store)] == ["pause", "scale_learning_rates", "stop"]
    finally:
        job.stop()
        job.join(60)
        store.close()


def test_a_request_the_store_cannot_take_says_why_and_changes_nothing(server_2, monkeypatch):
    store = Store()
    # a run as its training server's writer keeps it: active, heartbeat fresh
    writer = store.writer(RunRecord("run-elsewhere", "elsewhere", CONFIG, status=Status.TRAINING))
    try:
        at = open_page("pages/train.py", {"run": "run-elsewhere"})
        assert not button(at, "Stop").disabled

        def refuse(*_args, **_kwargs):
            raise StoreError("the run store is read-only (attempt to write a readonly database)")

        monkeypatch.setattr(Store, "request_control", refuse)
        button(at, "Stop").click().run()
        assert not at.exception
        assert "Nothing changed: the run store is read" in " | ".join(str(e.value) for e in at.error)
        assert control_rows(store) == []
    finally:
        writer.close()
        store.close()
