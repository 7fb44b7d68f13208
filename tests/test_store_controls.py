"""Control rows in the run store (lrcore/store_controls.py): one server's pages ask, the server that
trains the run takes each request once. Every case on SQLite and on a real PostgreSQL server."""
from __future__ import annotations

import math
import threading
import time

import pytest
import sqlalchemy as sa

from lrcore import store_schema as schema
from lrcore.config import ConfigError, TrainConfig
from lrcore.record import RunRecord
from lrcore.status import Status
from lrcore.store import Store, StoreError
from lrcore.store_controls import CONTROL_FRESH_SECONDS, PRUNE_SECONDS, StoredControl, StoredJob

from .postgres_server import postgres_server  # noqa: F401  (the session fixture)
from .store_helpers import edit_run
from .test_store import forget_engine

ANA = "a" * 16


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A new, empty store's URL: an SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        url = str(tmp_path / "store" / "lrcore.db")
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    yield url
    forget_engine(url)


@pytest.fixture
def store(store_url):
    store = Store(store_url)
    yield store
    store.close()


def rows(store: Store) -> list:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(schema.Control).order_by(schema.Control.id)).all()


def training_row(store: Store, run_id: str, source: str = "dashboard", status: str = Status.TRAINING,
                 learning_rate: float = 0.5):
    """A run as a training server's writer keeps it: active, heartbeat fresh (the writer stays open)."""
    record = RunRecord(run_id, run_id, TrainConfig(learning_rate=learning_rate), source=source, owner=ANA,
                       status=status, learning_rate=learning_rate)
    return store.writer(record)


# ---------------------------------------------------------------- asking and taking

def test_requests_are_taken_once_oldest_first_and_only_for_the_runs_asked(store):
    store.request_control("run-1", "pause", who=ANA)
    store.request_control("sweep-1", "scale_learning_rates", 0.5, who=ANA)
    store.request_control("run-1", "set_learning_rate", 0.05)
    store.request_control("run-1", "resume", who=ANA)
    taken = store.take_controls(["run-1", "run-2"])
    assert [(r.run_id, r.command, r.value, r.who) for r in taken] == [
        ("run-1", "pause", None, ANA), ("run-1", "set_learning_rate", 0.05, ""), ("run-1", "resume", None, ANA)]
    assert store.take_controls(["run-1"]) == []  # taken: never again
    assert [(r.run_id, r.command, r.value) for r in store.take_controls(["sweep-1"])] == \
        [("sweep-1", "scale_learning_rates", 0.5)]
    assert store.take_controls([]) == [] and store.take_controls(["nobody"]) == []
    assert all(row.taken is not None and row.taken >= row.created for row in rows(store))


@pytest.mark.parametrize("run_id, command, value, message", [
    ("run-1", "explode", None, "unknown control command 'explode': use one of pause, resume, stop"),
    ("run-1", "set_learning_rate", None, "set_learning_rate needs a positive number, got None"),
    ("run-1", "scale_learning_rates", math.nan, "needs a positive number, got nan"),
    ("run-1", "set_learning_rate", -1.0, "needs a positive number"),
    ("../etc", "stop", None, "invalid run or sweep id '../etc'"),
])
def test_a_bad_request_is_refused_saying_why_and_writes_nothing(store, run_id, command, value, message):
    with pytest.raises(StoreError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.request_control(run_id, command, value)
    assert rows(store) == []


def test_old_rows_are_pruned_when_a_new_request_is_written(store):
    store.request_control("run-1", "pause")
    with store.engine.begin() as connection:
        connection.execute(sa.update(schema.Control).values(created=time.time() - PRUNE_SECONDS - 1))
    store.request_control("run-1", "stop")
    assert [row.command for row in rows(store)] == ["stop"]


def test_two_takers_reading_the_same_request_take_it_once(store):
    """The race step by step: server 1 reads the waiting ids, server 2 takes them, server 1 marks
    what it read: it gets nothing (the UPDATE takes only rows still untaken)."""
    store.request_control("run-1", "pause")
    seen_by_server_1 = store._waiting_controls(["run-1"])
    assert [r.command for r in store.take_controls(["run-1"])] == ["pause"]  # server 2
    assert seen_by_server_1 and store._mark_taken(seen_by_server_1) == []


def test_two_servers_polling_at_once_take_every_request_exactly_once(store_url):
    """Two stores on one database (two servers, their own connections) take in a loop while requests
    come in: every request is taken, none twice."""
    servers = [Store(store_url), Store(store_url)]
    taken: list[list[int]] = [[], []]
    done = threading.Event()

    def poll(index: int) -> None:
        while True:
            finished = done.is_set()  # read before the take: the last take after the last request
            taken[index] += [r.request_id for r in servers[index].take_controls(["run-1", "run-2"])]
            if finished:
                return

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for number in range(60):
        servers[number % 2].request_control(f"run-{number % 2 + 1}", "pause")
    done.set()
    for thread in threads:
        thread.join(120)
    asked = [row.id for row in rows(servers[0])]
    assert len(asked) == 60 and sorted(taken[0] + taken[1]) == asked  # all of them, none twice
    for server in servers:
        server.close()


# ---------------------------------------------------------------- a run another server trains

def test_a_control_is_offered_only_for_a_run_trained_now_by_a_server_that_takes_requests(store):
    writer = training_row(store, "run-1")
    cli = training_row(store, "run-cli", source="cli")
    try:
        control = store.remote_control(store.get("run-1"), ANA)
        assert isinstance(control, StoredControl) and not control.paused
        assert store.remote_control(store.get("run-cli"), ANA) is None  # the command line reads no requests
        edit_run(store, "run-1", status=Status.PAUSED)
        assert store.remote_control(store.get("run-1"), ANA).paused  # the store's word
        edit_run(store, "run-1", heartbeat=time.time() - CONTROL_FRESH_SECONDS - 1)  # its server went silent
        assert store.remote_control(store.get("run-1"), ANA) is None
        edit_run(store, "run-1", heartbeat=time.time(), status=Status.DONE)
        assert store.remote_control(store.get("run-1"), ANA) is None
    finally:
        writer.close()
        cli.close()


def test_a_stored_control_writes_what_a_page_asks_and_checks_it_as_the_training_side_would(store):
    writer = training_row(store, "run-1")
    try:
        control = store.remote_control(store.get("run-1"), ANA)
        control.pause()
        control.resume()
        control.set_learning_rate(0.05)
        control.scale_learning_rates(2)
        control.stop()
        with pytest.raises(ConfigError, match="learning_rate"):
            control.set_learning_rate(1e9)
        with pytest.raises(ConfigError, match="positive number"):
            control.scale_learning_rates(0)
        assert [(row.run_id, row.command, row.value, row.who, row.taken) for row in rows(store)] == [
            ("run-1", "pause", None, ANA, None), ("run-1", "resume", None, ANA, None),
            ("run-1", "set_learning_rate", 0.05, ANA, None), ("run-1", "scale_learning_rates", 2.0, ANA, None),
            ("run-1", "stop", None, ANA, None)]
    finally:
        writer.close()


def test_a_sweep_of_another_server_is_controlled_by_its_group_id(store):
    writers = [training_row(store, "sweep-1-01", learning_rate=0.1),
               training_row(store, "sweep-1-02", status=Status.PAUSED, learning_rate=1.0)]
    try:
        runs = [store.get("sweep-1-01"), store.get("sweep-1-02")]
        job = store.remote_job("sweep-1", runs, ANA)
        assert isinstance(job, StoredJob) and job.run_ids == ["sweep-1-01", "sweep-1-02"]
        assert job.control.paused  # one of its runs is
        with pytest.raises(ConfigError, match="would take a learning rate to 1000"):
            job.scale_learning_rates(1000)  # 1.0 × 1000 is over the range: refused here, as on its server
        job.scale_learning_rates(0.5)
        job.stop()
        assert [(row.run_id, row.command, row.value) for row in rows(store)] == [
            ("sweep-1", "scale_learning_rates", 0.5), ("sweep-1", "stop", None)]
    finally:
        for writer in writers:
            writer.close()
    assert store.remote_job("sweep-1", [store.get("sweep-1-01")], ANA) is None  # no longer active


# ---------------------------------------------------------------- an existing store

def test_the_table_is_added_to_an_existing_schema_2_store_without_losing_data(store, store_url):
    """A store as the previous version left it (schema 2, no lrcore_controls): reopening adds the
    table; its runs, people and version stay as they were."""
    training_row(store, "run-1").close()
    store.set_display_name(ANA, "Ana")
    store.close()
    with store.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE lrcore_controls")
    forget_engine(store_url)
    assert not sa.inspect(store.engine).has_table("lrcore_controls")
    reopened = Store(store_url)
    try:
        with reopened.engine.connect() as connection:
            assert sa.inspect(connection).has_table("lrcore_controls")
            assert connection.execute(sa.select(schema.Meta.value).where(
                schema.Meta.key == "schema_version")).scalar() == "2"
        assert [run.run_id for run in reopened.list_runs()] == ["run-1"]
        assert reopened.display_names() == {ANA: "Ana"}
        reopened.request_control("run-1", "stop", who=ANA)
        assert [r.command for r in reopened.take_controls(["run-1"])] == ["stop"]
    finally:
        reopened.close()
