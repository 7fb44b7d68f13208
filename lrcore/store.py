"""Every run and sweep in one SQL database (SQLAlchemy 2): SQLite by default, PostgreSQL when
$LRCORE_STORE_URL says so.

    store = Store()                                      # $LRCORE_STORE_URL, else <runs dir>/lrcore.db
    job = TrainingJob(configs, dataset, listeners=[store.listener()])
    store.list_runs()                                    # RunRecords, newest first
    store.load(run_id)                                   # equal to the live record

Writes happen off the training thread: the writer cuts what changed since its last write out of
the record (a few list slices) and a store thread commits it, the deltas of every run that are
waiting in one transaction. Batch progress is committed about once a second; epochs, pauses,
learning-rate changes and the end at once (the end is waited for). A write that fails (full disk,
read-only store, lost server) never stops training: the writer says why once (`on_error`) and
stops saving.

A run whose writer is gone reads back as crashed with its completed epochs: on the same host the
writer holds an OS lock (flock) that a kill -9 drops; from another host, a heartbeat older than
STALE_SECONDS (the store thread refreshes it every HEARTBEAT_SECONDS, paused runs too).

The store is split into small modules, each importable on its own; every name is importable from
here as before:
    store_setup     settings, errors in words, URLs, engines and the schema, id and name checks
    store_liveness  whether a run's writer is alive (locks, pids, heartbeats); dead ones -> crashed
    store_writer    RunWriter, the StoreThread that commits, and the TrainingJob listener
    store_read      stored rows back as RunRecords, a run's checkpoint bytes, the bytes the store takes
    store_controls  pages of one server controlling a run another server trains (control rows)
    store           GroupRecord and the Store: opening, reading, changing, sweeps (this module)
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from . import store_schema as schema
from .checkpoint import Checkpoint, load_checkpoint
from .naming import new_id, run_number
from .record import ACTIVE_STATUSES, RunRecord
from .status import Status
from .store_read import read_checkpoint_bytes, read_records, read_usage
from .store_controls import ControlsMixin
from .store_lessons import LessonsMixin
from .store_liveness import _LIVE_LOCK, _OPEN, _UNSAVED, STALE_SECONDS, _lock_dir, _pid_alive, _try_lock, settle
from .store_setup import (
    _ENGINES, _ENGINES_LOCK, _IMPORTED, DB_NAME, DEFAULT_STORE_MAX_MB, FINAL_METRICS, HOST, MAX_MESSAGE_LENGTH,
    MAX_NAME_LENGTH, RUN_ID_PATTERN, SQLITE_SUFFIXES, RunStoreError, StoreError, StoreFullError, _engine,
    _megabytes, _url, capped, check_run_id, clean_name, default_runs_dir, default_store_url,
    describe_write_error, disk_error, sqlite_file, store_limit_mb)
from .store_writer import FLUSH_SECONDS, HEARTBEAT_SECONDS, WAIT_SECONDS, RunWriter, StoreThread, insert_rows, listener

__all__ = [  # what other modules import from here (the private ones: tests reach them through lrcore.store)
    "DB_NAME", "DEFAULT_STORE_MAX_MB", "FINAL_METRICS", "FLUSH_SECONDS", "HEARTBEAT_SECONDS", "HOST",
    "MAX_MESSAGE_LENGTH", "MAX_NAME_LENGTH", "RUN_ID_PATTERN", "SQLITE_SUFFIXES", "STALE_SECONDS", "WAIT_SECONDS",
    "GroupRecord", "RunStoreError", "RunWriter", "Store", "StoreError", "StoreFullError", "StoreThread", "capped",
    "check_run_id", "clean_name", "default_runs_dir", "default_store_url", "describe_write_error", "disk_error",
    "insert_rows", "sqlite_file", "store_limit_mb",
    "_ENGINES", "_ENGINES_LOCK", "_IMPORTED", "_LIVE_LOCK", "_OPEN", "_UNSAVED", "_pid_alive", "_try_lock", "_url"]


@dataclass
class GroupRecord:
    """A sweep: K runs trained together, and this small record."""

    group_id: str
    name: str
    params: dict
    created: float
    run_ids: list[str]
    statuses: dict[str, int] = field(default_factory=dict)  # status -> how many of its runs have it

    @property
    def active(self) -> bool:
        return any(status in ACTIVE_STATUSES for status in self.statuses)

    @property
    def status(self) -> str:
        """training while any run is active, else crashed/stopped if any is, else done."""
        if self.active:
            return Status.TRAINING
        for status in (Status.CRASHED, Status.STOPPED):
            if self.statuses.get(status):
                return status
        return Status.DONE


# ---------------------------------------------------------------- the store

class Store(LessonsMixin, ControlsMixin):  # lessons: lrcore/store_lessons.py; control rows: store_controls.py
    """The run store at `url`: None -> $LRCORE_STORE_URL, else the SQLite file lrcore.db in
    $LRCORE_RUNS_DIR or <data dir>/runs; a path -> that SQLite file (*.db, *.sqlite) or lrcore.db in
    that folder; a URL (sqlite:///..., postgresql://...) as it is. Safe for threads and processes.
    Raises StoreError when the store cannot be opened (says why)."""

    def __init__(self, url: str | Path | None = None):
        try:
            parsed = _url(url)
        except sa_exc.ArgumentError as error:
            raise StoreError(f"the run store URL {str(url)[:200]!r} is not a database URL ({error}); "
                             "use a path, sqlite:///file.db or postgresql://user@host/database") from None
        self.url = parsed.render_as_string(hide_password=True)
        try:
            self.engine, self._key = _engine(parsed)
        except sa_exc.ArgumentError as error:  # an unknown database kind
            raise StoreError(f"the run store URL {self.url!r} is not a database URL lrcore can use ({error}); "
                             "use a path, sqlite:///file.db or postgresql://user@host/database") from None
        except (OSError, sa_exc.SQLAlchemyError) as error:
            raise StoreError(f"the run store {self.url} cannot be opened: {describe_write_error(error)}") from None
        except ImportError as error:  # e.g. PostgreSQL without its driver
            raise StoreError(f"the run store {self.url} needs a database driver that is not installed "
                             f"({error.name or error}): pip install 'psycopg[binary]>=3.1'") from None
        self.dialect = parsed.get_backend_name()
        self.lock_dir = _lock_dir(parsed)
        self.skipped: list[tuple[str, str]] = []  # (run id, why) of rows the last list could not read
        self.problem = ""  # why the last list_runs() could not read the store at all ("" when it could)
        self._thread: StoreThread | None = None
        self._thread_lock = threading.Lock()
        self._usage: tuple[float, int] | None = None
        if self.dialect == "sqlite" and self._key not in _IMPORTED:
            from .store_import import import_folders

            _IMPORTED[self._key] = import_folders(self, sqlite_file(parsed).parent)
        self.imported_message = _IMPORTED.get(self._key, "")

    # -- writing

    def writer(self, record: RunRecord, on_error: Callable[[str], None] | None = None,
               position: int = 0, source: str | None = None) -> RunWriter:
        """Insert the run's row and return its writer. Raises StoreError (StoreFullError over the size
        limit) or a database/OS error when it cannot; later failed writes never raise (`on_error`)."""
        return self._open_writers([(record, on_error, position)], source)[0]

    def _open_writers(self, runs: list[tuple[RunRecord, Callable[[str], None] | None, int]],
                      source: str | None) -> list[RunWriter]:
        """Writers for several runs, their rows inserted in one transaction (a sweep's K runs)."""
        for record, _, _ in runs:
            check_run_id(record.run_id)
        self.check_room()
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = StoreThread(self)
                self._thread.start()
        writers: list[RunWriter] = []
        try:
            with self.engine.begin() as connection:
                for record, on_error, position in runs:
                    writers.append(RunWriter(self, record, on_error, position, source or record.source, connection))
        except BaseException as error:
            for writer in writers:
                writer.abandon()
            if isinstance(error, sa_exc.SQLAlchemyError):  # read-only, full, or a server gone: say which
                raise StoreError(describe_write_error(error)) from None
            raise
        return writers

    def listener(self, source: str = "dashboard") -> Callable[[Any, RunRecord, object], None]:
        """A TrainingJob listener that saves every run of the jobs it is attached to.

        A run that cannot be saved trains on: the reason goes to `job.set_save_error(run_id, reason)`.
        """
        return listener(self, source)

    def check_room(self) -> None:
        """Raise StoreFullError when the store is at or over its size limit."""
        limit = store_limit_mb()
        if limit is None:
            return
        now = time.monotonic()
        if self._usage is None or now - self._usage[0] > 2.0:  # a 64-run sweep asks 64 times at once
            self._usage = (now, self.usage())
        used = self._usage[1]
        if used >= limit * 1e6:
            raise StoreFullError(
                f"the run store is full: it holds {_megabytes(used)}, its limit is {_megabytes(limit * 1e6)} "
                "(LRCORE_STORE_MAX_MB); delete old runs on the Runs page (or sweeps on the Sweep page) to make room")

    def usage(self) -> int:
        """Bytes the store's data takes (SQLite: the pages in use; elsewhere: the stored values)."""
        return read_usage(self)

    def write_problem(self) -> str | None:
        """Why a new run would not be saved now (store over its limit, not writable), else None."""
        try:
            self.check_room()
            with self.engine.begin() as connection:
                connection.execute(sa.update(schema.Meta).where(schema.Meta.key == "schema_version")
                                   .values(value=schema.Meta.value))
        except (OSError, StoreError, sa_exc.SQLAlchemyError) as error:
            return describe_write_error(error)
        return None

    def flush(self, timeout: float | None = 60) -> None:
        """Wait until every write queued so far is committed (a writer's end is waited for anyway)."""
        if self._thread is not None and self._thread.is_alive():
            self._thread.sync(timeout)

    def close(self) -> None:
        """Stop the store thread once its queued writes are committed (tests; servers just exit)."""
        if self._thread is not None:
            self._thread.stop()

    @contextlib.contextmanager
    def _transaction(self, write: bool = True):
        """A connection (`write`: in a transaction) whose database errors become one clear StoreError."""
        try:
            with (self.engine.begin() if write else self.engine.connect()) as connection:
                yield connection
        except sa_exc.SQLAlchemyError as error:
            reason = describe_write_error(error)
            raise StoreError(reason if write else f"the run store cannot be read: {reason}") from None

    # -- reading

    def list_runs(self, group_id: str | None = None, owner: str | None = None,
                  lesson: str | None = None) -> list[RunRecord]:
        """Runs newest first (group_id: only that sweep's; "" only lone runs; owner, lesson: only that
        browser's, that lesson's), epochs filled, no batch losses or weights. Rows that cannot be read
        are skipped and listed in `skipped`."""
        where = [column == value for column, value in ((schema.Run.group_id, group_id), (schema.Run.owner, owner),
                                                        (schema.Run.lesson, lesson)) if value is not None]
        try:
            runs = self._records(where, order=(schema.Run.created.desc(), schema.Run.id.desc()))
        except StoreError as error:  # the database is down or unreadable: the page says so, lists nothing
            self.problem = str(error)
            return []
        self.problem = ""
        return runs

    def get(self, run_id: str) -> RunRecord:
        """One run's summary, as list_runs gives it."""
        return self._one(run_id, batches=False, weights=False)

    def load(self, run_id: str, weights: bool = True) -> RunRecord:
        """One run in full: epochs, batch losses, lr changes, final and (if `weights`) the snapshots."""
        return self._one(run_id, batches=True, weights=weights)

    def checkpoint(self, run_id: str) -> Checkpoint:
        """The run as a checkpoint: its kept weights once finished, else its newest epoch's."""
        return load_checkpoint(self.checkpoint_bytes(run_id))

    def checkpoint_bytes(self, run_id: str) -> bytes:
        """Bytes of the run's checkpoint (for download), built from its newest snapshot."""
        return read_checkpoint_bytes(self, run_id)

    def older_than(self, days: float, now: float | None = None) -> list[RunRecord]:
        """Runs not training that were started more than `days` days ago (prune candidates)."""
        cutoff = (time.time() if now is None else now) - days * 86400
        return [run for run in self.list_runs() if not run.active and run.created < cutoff]

    # -- changing

    def rename(self, run_id: str, name: str) -> str:
        """Give a run a new name (a live writer never overwrites it)."""
        check_run_id(run_id)
        clean = clean_name(name)
        with self._transaction() as connection:
            found = connection.execute(sa.update(schema.Run).where(schema.Run.id == run_id).values(name=clean))
        if not found.rowcount:
            raise StoreError(f"no run with id {run_id} in the store (deleted, or never saved)")
        return clean

    def delete(self, run_id: str) -> None:
        """Remove a run. A run still training must be stopped first."""
        run = self.get(run_id)
        if run.active:
            raise StoreError(f"run “{run.name}” is still training; stop it before deleting it")
        with self._transaction() as connection:
            self._delete_rows(connection, schema.Run.id == run_id)
        with _LIVE_LOCK:
            _UNSAVED.pop((self._key, run_id), None)

    def delete_many(self, run_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Delete several runs: (deleted ids, one line per run that could not be deleted and why)."""
        deleted, problems = [], []
        for run_id in run_ids:
            try:
                self.delete(run_id)
            except StoreError as error:
                problems.append(str(error))
            except (OSError, sa_exc.SQLAlchemyError) as error:
                problems.append(f"run {run_id} could not be deleted: {describe_write_error(error)}")
            else:
                deleted.append(run_id)
        return deleted, problems

    def import_checkpoint(self, data: bytes, name: str | None = None, source: str = "upload",
                          owner: str = "", lesson: str = "") -> RunRecord:
        """Store a checkpoint as a run (status imported, owned by `owner`); raises CheckpointError if it is not one."""
        checkpoint = load_checkpoint(data)
        self.check_room()
        run_id = new_id()
        now = time.time()
        epochs = int(checkpoint.metrics.get("epochs_completed", 0) or 0)
        record = RunRecord(run_id, clean_name(name) if name and name.strip() else "uploaded checkpoint",
                           checkpoint.config, status=Status.IMPORTED, source=capped(source, 20),
                           class_names=tuple(checkpoint.class_names), learning_rate=checkpoint.config.learning_rate,
                           final=dict(checkpoint.metrics), created=now, updated=now)
        weight = checkpoint.model.linear.weight.detach().cpu().clone()
        bias = checkpoint.model.linear.bias.detach().cpu().clone()
        with self.engine.begin() as connection:
            connection.execute(sa.insert(schema.Run).values(
                id=run_id, name=record.name, source=record.source, owner=owner, lesson=lesson,
                config=record.config.to_dict(), created=now,
                heartbeat=now, host=HOST, pid=os.getpid(), normalizer=schema.normalizer_bytes(checkpoint.normalizer),
                **schema.run_values(record)))
            connection.execute(sa.insert(schema.Snapshot), schema.snapshot_rows(run_id, [(epochs, 0, weight, bias)]))
        return self.load(run_id)

    # -- people (a class server's browsers, by public owner id)

    def next_run_number(self, owner: str) -> int:
        """The number of `owner`'s next auto-named run ("... #4"): one more than the highest it has, so a
        run deleted from the middle never makes two runs share a number."""
        with self._transaction(write=False) as connection:
            names = connection.execute(sa.select(schema.Run.name).where(schema.Run.owner == owner)).scalars()
            return 1 + max((run_number(name) for name in names), default=0)

    def set_display_name(self, owner: str, name: str) -> str:
        """Remember the name `owner` typed (cleaned; StoreError says what is wrong with it)."""
        from .classroom import clean_display_name

        try:
            clean = clean_display_name(name)
        except ValueError as error:
            raise StoreError(str(error)) from None
        self._set_person(owner, name=clean)
        return clean

    def display_names(self) -> dict[str, str]:
        """Owner id -> the name that browser typed (owners without one are left out)."""
        with self._transaction(write=False) as connection:
            rows = connection.execute(sa.select(schema.Person.owner, schema.Person.name)
                                      .where(schema.Person.name != "")).all()
        return {row.owner: capped(row.name, 40) for row in rows}

    def set_teacher(self, owner: str, fingerprint: str) -> None:
        """Remember that `owner` typed the teacher key with this fingerprint ("" forgets it)."""
        self._set_person(owner, teacher=fingerprint)

    def teacher_fingerprint(self, owner: str) -> str:
        """The fingerprint of the teacher key `owner` typed ("" if none)."""
        with self._transaction(write=False) as connection:
            found = connection.execute(sa.select(schema.Person.teacher).where(schema.Person.owner == owner)).scalar()
        return found or ""

    def _set_person(self, owner: str, **values: str) -> None:
        if not owner or len(owner) > schema.OWNER_LENGTH:
            raise StoreError(f"invalid owner id {str(owner)[:80]!r}")
        with self._transaction() as connection:
            found = connection.execute(sa.update(schema.Person).where(schema.Person.owner == owner)
                                       .values(updated=time.time(), **values))
            if not found.rowcount:
                connection.execute(sa.insert(schema.Person).values(owner=owner, updated=time.time(),
                                                                   **{"name": "", "teacher": "", **values}))

    # -- groups (sweeps)

    def create_group(self, group_id: str, name: str, params: dict, run_ids: list[str]) -> None:
        """Record a sweep: its name, parameters and its runs in order (they may be saved before or after)."""
        check_run_id(group_id, "sweep")
        with self._transaction() as connection:
            if connection.execute(sa.select(schema.Group.id).where(schema.Group.id == group_id)).first():
                raise StoreError(f"a sweep with id {group_id} already exists in the store")
            connection.execute(sa.insert(schema.Group).values(id=group_id, name=capped(name, MAX_NAME_LENGTH),
                                                              params=dict(params), run_ids=list(run_ids),
                                                              created=time.time()))
            for position, run_id in enumerate(run_ids):
                connection.execute(sa.update(schema.Run).where(schema.Run.id == run_id)
                                   .values(group_id=group_id, position=position))

    def list_groups(self) -> list[GroupRecord]:
        """Every sweep, newest first, with how many of its runs have each status."""
        with self._transaction(write=False) as connection:
            groups = connection.execute(sa.select(schema.Group).order_by(schema.Group.created.desc())).all()
            rows = connection.execute(sa.select(*_LIVENESS).where(schema.Run.group_id != "")).all()
        counts: dict[str, dict[str, int]] = {}
        for values in self._settle([dict(row._mapping) for row in rows]):
            statuses = counts.setdefault(values["group_id"], {})
            statuses[values["status"]] = statuses.get(values["status"], 0) + 1
        return [_group(row, counts.get(row.id, {})) for row in groups]

    def load_group(self, group_id: str) -> tuple[GroupRecord, list[RunRecord]]:
        """A sweep and its runs in the sweep's order, with their batch losses (no weights)."""
        check_run_id(group_id, "sweep")
        with self._transaction(write=False) as connection:
            row = connection.execute(sa.select(schema.Group).where(schema.Group.id == group_id)).first()
        if row is None:
            raise StoreError(f"no sweep with id {group_id} in the store (deleted, or never saved)")
        runs = {run.run_id: run for run in self._records([schema.Run.group_id == group_id], batches=True)}
        order = [run_id for run_id in (row.run_ids or []) if run_id in runs]
        ordered = [runs[run_id] for run_id in order] + sorted(
            (run for run_id, run in runs.items() if run_id not in order), key=lambda run: run.created)
        statuses: dict[str, int] = {}
        for run in ordered:
            statuses[run.status] = statuses.get(run.status, 0) + 1
        return _group(row, statuses), ordered

    def delete_group(self, group_id: str) -> None:
        """Remove a sweep and its runs; refused while any of them is training."""
        group, runs = self.load_group(group_id)
        if group.active:
            raise StoreError(f"sweep “{group.name or group_id}” is still training; stop it before deleting it")
        with self._transaction() as connection:
            self._delete_rows(connection, schema.Run.group_id == group_id)
            connection.execute(sa.delete(schema.Group).where(schema.Group.id == group_id))

    # -- internals

    def _one(self, run_id: str, batches: bool, weights: bool) -> RunRecord:
        check_run_id(run_id)
        records = self._records([schema.Run.id == run_id], batches=batches, weights=weights, normalizer=True)
        if not records:
            if self.skipped:
                raise StoreError(f"run {run_id} cannot be read: {self.skipped[0][1]}")
            raise StoreError(f"no run with id {run_id} in the store (deleted, or never saved)")
        return records[0]

    def _records(self, where: list, order: tuple = (), batches: bool = False, weights: bool = False,
                 normalizer: bool = False) -> list[RunRecord]:
        """The runs matching `where`, each with its epochs (and batch losses / snapshots if asked)."""
        try:
            return self._read_records(where, order, batches, weights, normalizer)
        except sa_exc.SQLAlchemyError as error:
            raise StoreError(f"the run store cannot be read: {describe_write_error(error)}") from None

    def _read_records(self, where: list, order: tuple, batches: bool, weights: bool,
                      normalizer: bool) -> list[RunRecord]:
        return read_records(self, where, order, batches, weights, normalizer)

    def _settle(self, rows: list[dict]) -> list[dict]:
        """Rows of active runs whose writer is gone become crashed (and are written so, quietly)."""
        return settle(self, rows)

    def _delete_rows(self, connection: sa.Connection, where) -> None:
        """Delete the runs matching `where` and everything of theirs (children first: no cascade needed)."""
        ids = sa.select(schema.Run.id).where(where)
        for table in (schema.Epoch, schema.BatchLoss, schema.Snapshot):
            connection.execute(sa.delete(table).where(table.run_id.in_(ids)))
        connection.execute(sa.delete(schema.Run).where(where))


_LIVENESS = (schema.Run.id, schema.Run.group_id, schema.Run.status, schema.Run.host, schema.Run.pid,
             schema.Run.heartbeat, schema.Run.config)


def _group(row: Any, statuses: dict[str, int]) -> GroupRecord:
    return GroupRecord(row.id, capped(row.name, MAX_NAME_LENGTH), dict(row.params or {}), float(row.created),
                       [str(run_id) for run_id in row.run_ids or []], statuses)

