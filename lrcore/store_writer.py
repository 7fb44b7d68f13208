"""Writing runs off the training thread: a RunWriter per run cuts what changed since its last write
out of the record (a few list slices, a _Delta) and the store's StoreThread commits the deltas of
every run that are waiting in one transaction, and refreshes the heartbeats of open runs. The job
listener (`listener`, what `Store.listener` returns) opens a writer per run of a TrainingJob.

A write that fails never stops training: the writer says why once (`on_error`) and stops saving.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import sqlalchemy as sa

from . import events as ev
from . import store_schema as schema
from .record import RunRecord
from .store_liveness import _LIVE_LOCK, _OPEN, _UNSAVED, _try_lock
from .store_setup import HOST, MAX_NAME_LENGTH, StoreError, _is_expected, capped, describe_write_error

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("lrcore.store")  # one logger for the whole store, as before it was split

FLUSH_SECONDS = 1.0  # batch progress is committed at most about this often per run
HEARTBEAT_SECONDS = 5.0
WAIT_SECONDS = 300.0  # the end of a run waits at most this long for its commit (then: not saved, says why)


class _Delta:
    """What changed in one run since its writer's last write, cut out in the training thread."""

    __slots__ = ("writer", "values", "epochs", "points", "rewrite", "snapshots", "removed", "done")

    def __init__(self, writer: "RunWriter"):
        self.writer = writer
        self.values: dict = {}
        self.epochs: list[dict] = []
        self.points: list[tuple[int, float]] = []
        self.rewrite = False  # the batch values were averaged in pairs: replace them all
        self.snapshots: list[tuple] = []
        self.removed: list[int] = []
        self.done: threading.Event | None = None


class RunWriter:
    """Saves one run; made by `Store.writer`. `write(record, event)` after each `fold`."""

    def __init__(self, store: "Store", record: RunRecord, on_error: Callable[[str], None] | None, position: int,
                 source: str, connection: sa.Connection):
        """Insert the run's row in `connection`'s transaction (see Store._open_writers)."""
        self.store, self.run_id, self.on_error = store, record.run_id, on_error
        self.error: str | None = None
        self.closed = False
        self._key = (store._key, self.run_id)
        self._lock_path = store.lock_dir / f"{self.run_id}.lock"
        self._lock = _try_lock(self._lock_path)  # before the row exists: a reader never sees it unlocked
        if self._lock is None:
            raise StoreError(f"run {self.run_id} is already being written by another process")
        try:
            if connection.execute(sa.select(schema.Run.id).where(schema.Run.id == self.run_id)).first():
                raise StoreError(f"a run with id {self.run_id} already exists in the store")
            connection.execute(sa.insert(schema.Run).values(
                id=self.run_id, group_id=record.group_id, position=position,
                name=capped(record.name, MAX_NAME_LENGTH) or self.run_id,
                source=capped(source, 20), config=record.config.to_dict(), created=record.created,
                owner=record.owner, lesson=record.lesson, host=HOST, pid=os.getpid(), heartbeat=time.time(), **schema.run_values(record)))
        except BaseException:
            os.close(self._lock)
            raise
        with _LIVE_LOCK:
            _OPEN[self._key] = self
        self._epochs = self._points = 0
        self._batch_stride = 1
        # (epoch, ordinal) -> the weight tensor written (a record's tensors are never mutated)
        self._snapshots: dict[tuple, object] = {}
        self._normalizer = False
        self._last = 0.0
        self._record: RunRecord | None = None

    def write(self, record: RunRecord, event: object, flush: bool | None = None, wait: bool = True) -> None:
        """Persist what changed since the last write (after `fold(record, event)`; event None = the job
        ended it). Batch progress is committed about once a second, anything else at once; the end is
        waited for unless `wait` is False (a sweep's runs but the last: its wait covers theirs)."""
        if self.closed:
            return
        self._record = record
        last = event is None or isinstance(event, ev.Finished)
        now = time.monotonic()
        if flush is None:
            flush = not isinstance(event, ev.BatchProgress) or now - self._last >= FLUSH_SECONDS
        if not flush and not last:
            return
        self._last = now
        try:
            if self.error is None:
                self.store._thread.put(self._delta(record), wait=last and wait)
            elif last and wait:  # the store thread may still be reporting the failure (fail sets error first)
                self.store._thread.sync(WAIT_SECONDS)
        except Exception as error:  # training goes on, whatever the store does
            self.fail(error)
        finally:
            if last:
                self.close(wait=False)  # waited above, unless a later run's end waits for it

    def _delta(self, record: RunRecord) -> _Delta:
        delta = _Delta(self)
        delta.values = schema.run_values(record)
        delta.values["heartbeat"] = time.time()
        if not self._normalizer and record.normalizer is not None:
            delta.values["normalizer"] = schema.normalizer_bytes(record.normalizer)
            self._normalizer = True
        delta.epochs = record.epochs[self._epochs:]
        self._epochs = len(record.epochs)
        if record.batch_stride != self._batch_stride:
            delta.rewrite, self._points, self._batch_stride = True, 0, record.batch_stride
        delta.points = list(zip(record.batch_steps[self._points:], record.batch_losses[self._points:]))
        self._points = len(record.batch_losses)
        kept = {(epoch, ordinal): (weight, bias) for epoch, ordinal, weight, bias in
                schema.snapshot_keys(record.snapshots)}
        delta.removed = [key for key, weight in self._snapshots.items()
                         if key not in kept or kept[key][0] is not weight]
        delta.snapshots = [(*key, weight, bias) for key, (weight, bias) in kept.items()
                           if self._snapshots.get(key) is not weight]
        self._snapshots = {key: weight for key, (weight, _bias) in kept.items()}
        return delta

    def fail(self, error: BaseException) -> None:
        """The first failed write: remember why, log one line, tell `on_error`; nothing is written after."""
        if self.error is not None:
            return
        self.error = describe_write_error(error)
        if _is_expected(error):
            log.error("stopped saving run %s: %s", self.run_id, self.error)
        else:
            log.error("stopped saving run %s after an internal error", self.run_id, exc_info=error)
        if self.on_error is not None:
            try:
                self.on_error(self.error)
            except Exception:
                log.exception("the save-error callback of run %s failed", self.run_id)

    def abandon(self) -> None:
        """Undo a start whose transaction failed."""
        self.closed = True
        with _LIVE_LOCK:
            _OPEN.pop(self._key, None)
        os.close(self._lock)

    def close(self, wait: bool = True) -> None:
        """Leave the open runs and drop the lock (`wait`: after what was queued is committed). A failed
        writer tries once more, quietly, to write the end (the disk may have room again), else this
        process keeps the end in memory."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.error is None and self._record is not None:
                # batch progress newer than the last commit (it is committed about once a second)
                self.store._thread.put(self._delta(self._record))
            if wait and self.error is None:
                self.store.flush(WAIT_SECONDS)
            if self.error is not None and self._record is not None:
                record = self._record.copy()
                record.save_error = self.error
                try:
                    with self.store.engine.begin() as connection:
                        connection.execute(sa.update(schema.Run).where(schema.Run.id == self.run_id).values(
                            save_error=self.error, **schema.run_values(record)))
                except Exception:
                    with _LIVE_LOCK:
                        _UNSAVED[self._key] = record
        finally:
            with _LIVE_LOCK:
                _OPEN.pop(self._key, None)
            os.close(self._lock)


class StoreThread(threading.Thread):
    """Commits the writers' deltas (all that are waiting in one transaction) and the heartbeats."""

    def __init__(self, store: "Store"):
        super().__init__(name="lrcore-store", daemon=True)
        self.store = store
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = False

    def put(self, delta: _Delta, wait: bool = False) -> None:
        if wait:
            delta.done = threading.Event()
        self.queue.put(delta)
        if wait and threading.current_thread() is not self and not delta.done.wait(WAIT_SECONDS):
            raise StoreError(f"the database did not answer within {WAIT_SECONDS:.0f} s")

    def sync(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is committed (or has failed)."""
        barrier = _Delta(None)
        barrier.done = threading.Event()
        self.queue.put(barrier)
        return barrier.done.wait(timeout)

    def stop(self) -> None:
        self._stopping = True
        self.queue.put(None)
        self.join(60)

    def run(self) -> None:
        last_beat = time.monotonic()
        while True:
            items = []  # not the last round's: an idle wait must not commit it again
            try:
                items.append(self.queue.get(timeout=HEARTBEAT_SECONDS))
                while True:
                    items.append(self.queue.get_nowait())
            except queue.Empty:
                pass
            deltas = [item for item in items if item is not None]  # writer None: a sync barrier
            try:
                if deltas:
                    self._commit(deltas)
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                    last_beat = time.monotonic()
                    self._heartbeat()
            except Exception:  # never die: a dead store thread would leave every writer waiting
                log.exception("the store thread of %s failed", self.store.url)
            if self._stopping and self.queue.empty():
                return

    def _commit(self, deltas: list[_Delta]) -> None:
        try:
            merged: dict[int, _Delta] = {}  # one delta per writer, in order
            for delta in deltas:
                if delta.writer is not None and delta.writer.error is None:
                    _merge(merged.setdefault(id(delta.writer), _Delta(delta.writer)), delta)
            todo = list(merged.values())
            try:
                if todo:
                    with self.store.engine.begin() as connection:
                        _apply(connection, todo)
            except Exception as error:
                if len(todo) == 1:
                    todo[0].writer.fail(error)
                else:  # one run's bad write must not stop the others': each alone
                    for delta in todo:
                        try:
                            with self.store.engine.begin() as connection:
                                _apply(connection, [delta])
                        except Exception as alone:
                            delta.writer.fail(alone)
        finally:
            for delta in deltas:
                if delta.done is not None:
                    delta.done.set()

    def _heartbeat(self) -> None:
        """A paused run writes nothing: this keeps its row from looking dead to another host."""
        with _LIVE_LOCK:
            ids = [key[1] for key, writer in _OPEN.items()
                   if key[0] == self.store._key and writer.error is None]
        if not ids:
            return
        try:
            with self.store.engine.begin() as connection:
                connection.execute(sa.update(schema.Run).where(schema.Run.id.in_(ids)).values(heartbeat=time.time()))
        except Exception:  # a failing store shows in the writers' next write
            pass


def _merge(into: _Delta, delta: _Delta) -> None:
    """Fold a later delta of the same run into `into` (rows to delete before those to insert)."""
    into.values.update(delta.values)
    into.epochs = into.epochs + delta.epochs
    if delta.rewrite:
        into.rewrite, into.points = True, list(delta.points)
    else:
        into.points = into.points + delta.points
    adding = {(epoch, ordinal): (weight, bias) for epoch, ordinal, weight, bias in into.snapshots}
    removing = set(into.removed)
    for key in delta.removed:
        if adding.pop(key, None) is None or key in removing:
            removing.add(key)  # in the database (an earlier row): delete it
    adding.update({(epoch, ordinal): (weight, bias) for epoch, ordinal, weight, bias in delta.snapshots})
    into.removed = sorted(removing)
    into.snapshots = [(*key, weight, bias) for key, (weight, bias) in adding.items()]


def _apply(connection: sa.Connection, deltas: list[_Delta]) -> None:
    """The deltas of several runs in a handful of statements (each one a batch)."""
    runs, epochs, points, removed, snapshots = [], [], [], [], []
    for delta in deltas:
        run_id = delta.writer.run_id
        if delta.values:
            runs.append({"_id": run_id, **delta.values})
        epochs += [schema.epoch_row(run_id, row) for row in delta.epochs]
        points += [{"run_id": run_id, "step": step, "loss": schema.real(loss)} for step, loss in delta.points]
        removed += [{"_id": run_id, "_epoch": epoch, "_ordinal": ordinal} for epoch, ordinal in delta.removed]
        snapshots += schema.snapshot_rows(run_id, delta.snapshots)
    Run, Snapshot = schema.Run, schema.Snapshot
    for names in {tuple(sorted(row)) for row in runs}:  # the first write of a run adds its normaliser
        rows = [row for row in runs if tuple(sorted(row)) == names]
        connection.execute(sa.update(Run).where(Run.id == sa.bindparam("_id")).values(
            {name: sa.bindparam(name) for name in names if name != "_id"}), rows)
    rewrite = [delta.writer.run_id for delta in deltas if delta.rewrite]
    if rewrite:
        connection.execute(sa.delete(schema.BatchLoss).where(schema.BatchLoss.run_id.in_(rewrite)))
    if removed:
        connection.execute(sa.delete(Snapshot).where(Snapshot.run_id == sa.bindparam("_id"),
                                                     Snapshot.epoch == sa.bindparam("_epoch"),
                                                     Snapshot.ordinal == sa.bindparam("_ordinal")), removed)
    for table, rows in ((schema.Epoch, epochs), (schema.BatchLoss, points), (Snapshot, snapshots)):
        insert_rows(connection, table, rows)


def insert_rows(connection: sa.Connection, table: Any, rows: list[dict]) -> None:
    """Insert many rows (executemany). PostgreSQL's batch losses go as three arrays in one statement:
    one statement per row, even pipelined, costs a 16-run sweep's 8,000 losses seconds of round trips."""
    if not rows:
        return
    if table is schema.BatchLoss and connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "INSERT INTO lrcore_batch_losses (run_id, step, loss) "
            "SELECT * FROM unnest(%s::varchar[], %s::integer[], %s::double precision[])",
            ([row["run_id"] for row in rows], [row["step"] for row in rows], [row["loss"] for row in rows]))
        return
    connection.execute(sa.insert(table), rows)



def listener(store: "Store", source: str = "dashboard") -> Callable[[Any, RunRecord, object], None]:
    """A TrainingJob listener that saves every run of the jobs it is attached to.

    A run that cannot be saved trains on: the reason goes to `job.set_save_error(run_id, reason)`.
    """
    writers: dict[str, RunWriter | None] = {}  # None: finished, or could not be saved
    groups: dict[int, list[str]] = {}  # id(job) -> its run ids
    lock = threading.Lock()
    # A sweep's groups may train on several workers at once, so a job's events come from several threads:
    # the first event of any run opens every run of its job, and the others wait for that to be done (an
    # event that came meanwhile was dropped while a run's writer was not there yet).
    opening = threading.Lock()

    def report(job, run_id: str, reason: str) -> None:
        set_error = getattr(job, "set_save_error", None)
        if set_error is not None:
            set_error(run_id, reason)

    def open_writer(job, record: RunRecord, position: int) -> RunWriter | None:
        run_id = record.run_id
        try:
            return store.writer(record, lambda reason: report(job, run_id, reason), position,
                                source if source != "dashboard" else None)
        except Exception as error:  # the run trains on, unsaved: say why, once
            reason = describe_write_error(error)
            if _is_expected(error):
                log.error("run %s is not saved: %s", run_id, reason)
            else:
                log.exception("run %s is not saved", run_id)
            report(job, run_id, reason)
            return None

    def open_all(job, record: RunRecord) -> None:
        """The job's first event: every run of it gets its row now, in one transaction (a waiting
        one too, so a sweep cut off before its later groups start still lists them)."""
        with opening:
            _open_all(job, record)

    def _open_all(job, record: RunRecord) -> None:
        run_ids = list(getattr(job, "run_ids", None) or [])
        run_ids += [] if record.run_id in run_ids else [record.run_id]
        with lock:
            todo = [(position, run_id) for position, run_id in enumerate(run_ids) if run_id not in writers]
        if not todo:  # another thread of the job opened them while this one waited
            return
        records = {run_id: record if run_id == record.run_id else job.record(run_id) for _, run_id in todo}
        try:
            opened = store._open_writers([(records[run_id], (lambda reason, r=run_id: report(job, r, reason)),
                                           position) for position, run_id in todo],
                                         source if source != "dashboard" else None)
        except Exception:  # one by one, so each run that cannot be saved says why
            opened = [open_writer(job, records[run_id], position) for position, run_id in todo]
        with lock:
            writers.update(zip([run_id for _, run_id in todo], opened))
            groups[id(job)] = run_ids

    def on_event(job, record: RunRecord, event: object) -> None:
        run_id = record.run_id
        if run_id not in writers:
            open_all(job, record)
        writer = writers.get(run_id)
        if writer is None:
            return
        last = event is None or isinstance(event, ev.Finished)
        # the end of a run waits for its commit, unless another run of the job is still open:
        # the last one's wait covers every earlier write (one queue, committed in order)
        wait = not last or not any(other != run_id and writers.get(other) is not None
                                   for other in groups.get(id(job), ()))
        writer.write(record, event, wait=wait)
        if writer.closed:
            with lock:
                writers[run_id] = None

    return on_event
