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
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import math
import os
import queue
import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from . import events as ev
from . import store_schema as schema
from .checkpoint import Checkpoint, CheckpointError, checkpoint_bytes as make_checkpoint_bytes, load_checkpoint
from .data import default_data_dir
from .model import LogisticRegression
from .record import ACTIVE_STATUSES, RunRecord
from .status import Status

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0  # batch progress is committed at most about this often per run
HEARTBEAT_SECONDS = 5.0
WAIT_SECONDS = 300.0  # the end of a run waits at most this long for its commit (then: not saved, says why)
STALE_SECONDS = 600.0  # a run written from another host counts as crashed after this long silent
MAX_NAME_LENGTH = 100
MAX_MESSAGE_LENGTH = 1000
DEFAULT_STORE_MAX_MB = 500.0
DB_NAME = "lrcore.db"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
HOST = socket.gethostname()
FINAL_METRICS = ("test_loss", "test_accuracy", "validation_loss", "validation_accuracy", "epochs_completed")


class StoreError(ValueError):
    """A run or sweep cannot be found, renamed or deleted, or the store cannot be used; says why."""


class StoreFullError(StoreError, OSError):
    """The store is over its size limit ($LRCORE_STORE_MAX_MB): a new run is not saved."""


RunStoreError = StoreError  # the name the pages and the CLI used with lrcore.runstore

_WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the run store is on a read-only file system",
    errno.EACCES: "the server is not allowed to write to the run store",
    errno.EPERM: "the server is not allowed to write to the run store",
    errno.EFBIG: "a file grew larger than the server allows", errno.EIO: "the disk reported an input/output error",
}
_DB_ERRORS = (("disk is full", "the disk is full"), ("no space", "the disk is full"),
              ("readonly", "the run store is read-only"), ("read-only", "the run store is read-only"),
              ("disk i/o", "the disk reported an input/output error"),
              ("unable to open", "the run store's database file cannot be opened"),
              ("database is locked", "the run store stayed locked by another process"),
              ("connect", "the database server cannot be reached"),
              ("terminat", "the connection to the database server was lost"))


def disk_error(error: BaseException | None) -> OSError | None:
    """The OSError behind `error`, if any (torch.save wraps a full disk in a RuntimeError)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def describe_write_error(error: BaseException) -> str:
    """Why something could not be saved, in words for a page: no server paths or SQL in it."""
    if isinstance(error, StoreError):
        return str(error)
    if isinstance(error, sa_exc.DBAPIError):
        text = " ".join(str(error.orig).split())[:200]
        for key, what in _DB_ERRORS:
            if key in text.lower():
                return f"{what} ({text.split(':')[0] if 'connect' in key else text})"
        return f"the database refused the write ({text})"
    error = disk_error(error) or error
    if isinstance(error, OSError):
        what = _WRITE_ERRORS.get(error.errno, "the run store could not be written to")
        return f"{what} ({error.strerror or type(error).__name__})"
    return f"an internal error ({type(error).__name__}: {error})"


def _is_expected(error: BaseException) -> bool:
    """A disk's or database's fault (one log line), not a bug (a traceback)."""
    return isinstance(error, (StoreError, sa_exc.OperationalError)) or disk_error(error) is not None


_BAD_LIMITS: set[str] = set()


def store_limit_mb() -> float | None:
    """The store's size limit in MB: $LRCORE_STORE_MAX_MB (0 = no limit), else DEFAULT_STORE_MAX_MB."""
    text = os.environ.get("LRCORE_STORE_MAX_MB", "").strip()
    if not text:
        return DEFAULT_STORE_MAX_MB
    try:
        value = float(text)
        if not math.isfinite(value) or value < 0:
            raise ValueError
    except ValueError:
        if text not in _BAD_LIMITS:  # said once per value, not at every run
            _BAD_LIMITS.add(text)
            log.warning("LRCORE_STORE_MAX_MB=%r is not a size in MB (a number >= 0; 0 = no limit): using %g",
                        text[:40], DEFAULT_STORE_MAX_MB)
        return DEFAULT_STORE_MAX_MB
    return value or None


def _megabytes(size: float) -> str:
    if size < 1e6:
        return f"{size / 1e3:,.0f} kB"
    return f"{size / 1e6:,.1f} MB" if size < 10e6 else f"{size / 1e6:,.0f} MB"


def default_runs_dir() -> Path:
    """$LRCORE_RUNS_DIR, else runs/ in the data folder: where the default SQLite store lives."""
    folder = os.environ.get("LRCORE_RUNS_DIR")
    return Path(folder) if folder else default_data_dir() / "runs"


def default_store_url() -> str:
    """$LRCORE_STORE_URL, else the SQLite file lrcore.db in default_runs_dir()."""
    configured = os.environ.get("LRCORE_STORE_URL", "").strip()
    return configured or str(default_runs_dir() / DB_NAME)


def _url(url: str | Path | None) -> sa.engine.URL:
    text = str(url) if url is not None else default_store_url()
    if "://" not in text:  # a path: an SQLite file (*.db, *.sqlite), else a folder with lrcore.db in it
        path = Path(text).expanduser()
        if path.is_dir() or path.suffix.lower() not in SQLITE_SUFFIXES:
            path = path / DB_NAME
        return sa.engine.make_url(f"sqlite:///{path.resolve()}")
    parsed = sa.engine.make_url(text)
    if parsed.drivername in ("postgresql", "postgres"):  # psycopg 3 is the driver we install
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def check_run_id(run_id: str, kind: str = "run") -> None:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise StoreError(f"invalid {kind} id {str(run_id)[:120]!r}: use letters, digits, '-', '_' and '.' "
                         "(at most 100)")


def capped(text: Any, limit: int) -> str:
    """Stored text on one line and at most `limit` characters ("…" marks a cut)."""
    if text is None:
        return ""
    line = " ".join(str(text)[:limit * 4].split())
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def clean_name(name: str) -> str:
    text = " ".join(str(name).split())
    if not text:
        raise StoreError("a run name cannot be empty")
    if len(text) > MAX_NAME_LENGTH:
        raise StoreError(f"a run name is at most {MAX_NAME_LENGTH} characters, got {len(text)}")
    return text


# ---------------------------------------------------------------- engines (one per URL and process)

_ENGINES: dict[str, sa.Engine] = {}
_IMPORTED: dict[str, str] = {}  # url -> the import message of this process's first start of that store
_ENGINES_LOCK = threading.Lock()
# (url, run id) -> the writer of this process that has the run open
_OPEN: dict[tuple[str, str], "RunWriter"] = {}
# (url, run id) -> the final record of a run whose writer could not write its end: this process
# lists it as ended (with its save error) rather than as training or crashed
_UNSAVED: dict[tuple[str, str], RunRecord] = {}
_LIVE_LOCK = threading.Lock()


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA busy_timeout=30000")  # writers of other processes wait their turn
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; a commit costs no fsync
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def sqlite_file(url: sa.engine.URL) -> Path:
    """The database file of a SQLite URL, also in SQLite's URI form (file:/path?mode=ro&uri=true)."""
    database = url.database or ""
    if database.startswith("file:"):
        database = database[len("file:"):].split("?")[0]
    return Path(database)


def _engine(url: sa.engine.URL) -> tuple[sa.Engine, str]:
    key = url.render_as_string(hide_password=False)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            if url.get_backend_name() == "sqlite":
                sqlite_file(url).parent.mkdir(parents=True, exist_ok=True)
                engine = sa.create_engine(url, connect_args={"timeout": 30})
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = sa.create_engine(url, pool_pre_ping=True)
            try:
                _create_schema(engine, url.render_as_string(hide_password=True))
            except BaseException:
                engine.dispose()
                raise
            _ENGINES[key] = engine
        return engine, key


def _create_schema(engine: sa.Engine, shown: str) -> None:
    """Create the tables if missing; refuse a store written by a newer version."""
    for attempt in range(3):  # two processes creating one PostgreSQL schema at once: the loser retries
        try:
            with engine.begin() as connection:
                if sa.inspect(connection).has_table(schema.Meta.__tablename__):
                    found = connection.execute(sa.select(schema.Meta.value).where(
                        schema.Meta.key == "schema_version")).scalar()
                    if found is not None and int(found) > schema.SCHEMA_VERSION:
                        raise StoreError(
                            f"the run store {shown} was written by a newer version of lrcore (schema {int(found)}; "
                            f"this version knows schema {schema.SCHEMA_VERSION} and older): upgrade lrcore, "
                            "or set LRCORE_STORE_URL to another store")
                schema.Base.metadata.create_all(connection)
                if connection.execute(sa.select(schema.Meta.value).where(
                        schema.Meta.key == "schema_version")).scalar() is None:
                    connection.execute(sa.insert(schema.Meta).values(key="schema_version",
                                                                      value=str(schema.SCHEMA_VERSION)))
            return
        except (sa_exc.IntegrityError, sa_exc.ProgrammingError):
            if attempt == 2:
                raise
            time.sleep(0.2)


def _lock_dir(url: sa.engine.URL) -> Path:
    if url.get_backend_name() == "sqlite":
        return sqlite_file(url).parent / "locks"
    digest = hashlib.sha1(url.render_as_string(hide_password=True).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "lrcore-locks" / digest


def _try_lock(path: Path) -> int | None:
    """An exclusive flock on `path` (created if missing), or None while someone holds it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        return None
    return handle


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host and is not a zombie (killed, not yet reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's, but there
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


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


# ---------------------------------------------------------------- writing

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
                host=HOST, pid=os.getpid(), heartbeat=time.time(), **schema.run_values(record)))
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
            try:
                items = [self.queue.get(timeout=HEARTBEAT_SECONDS)]
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


# ---------------------------------------------------------------- the store

class Store:
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
        writers: dict[str, RunWriter | None] = {}  # None: finished, or could not be saved
        groups: dict[int, list[str]] = {}  # id(job) -> its run ids
        lock = threading.Lock()

        def report(job, run_id: str, reason: str) -> None:
            set_error = getattr(job, "set_save_error", None)
            if set_error is not None:
                set_error(run_id, reason)

        def open_writer(job, record: RunRecord, position: int) -> RunWriter | None:
            run_id = record.run_id
            try:
                return self.writer(record, lambda reason: report(job, run_id, reason), position,
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
            run_ids = list(getattr(job, "run_ids", None) or [])
            run_ids += [] if record.run_id in run_ids else [record.run_id]
            with lock:
                todo = [(position, run_id) for position, run_id in enumerate(run_ids) if run_id not in writers]
                writers.update((run_id, None) for _, run_id in todo)  # one try per run
            records = {run_id: record if run_id == record.run_id else job.record(run_id) for _, run_id in todo}
            try:
                opened = self._open_writers([(records[run_id], (lambda reason, r=run_id: report(job, r, reason)),
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
        with self._transaction(write=False) as connection:
            if self.dialect == "sqlite":
                pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
                free = connection.exec_driver_sql("PRAGMA freelist_count").scalar()
                size = connection.exec_driver_sql("PRAGMA page_size").scalar()
                return int((pages - free) * size)
            length = sa.func.octet_length
            snapshots = connection.execute(sa.select(sa.func.coalesce(sa.func.sum(
                length(schema.Snapshot.weight) + length(schema.Snapshot.bias)), 0))).scalar()
            rows = sum(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar() * size
                       for table, size in ((schema.Run, 2000), (schema.Epoch, 100), (schema.BatchLoss, 40),
                                           (schema.Group, 1000), (schema.Meta, 100)))
            return int(snapshots) + int(rows)

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

    def list_runs(self, group_id: str | None = None) -> list[RunRecord]:
        """Runs newest first (group_id: only that sweep's; "" only lone runs), epochs filled, no batch
        losses or weights. Rows that cannot be read are skipped and listed in `skipped`."""
        where = [] if group_id is None else [schema.Run.group_id == group_id]
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
        run = self.get(run_id)
        with self._transaction(write=False) as connection:
            row = connection.execute(sa.select(schema.Snapshot).where(schema.Snapshot.run_id == run_id)
                                     .order_by(schema.Snapshot.epoch.desc(), schema.Snapshot.ordinal.desc())
                                     .limit(1)).first()
            normalizer = connection.execute(sa.select(schema.Run.normalizer).where(schema.Run.id == run_id)).scalar()
        weight = bias = None
        if row is not None:
            weight, bias = schema.bytes_tensor(row.weight), schema.bytes_tensor(row.bias)
        if weight is None or bias is None or weight.ndim != 2:
            why = "it is still starting" if run.active else f"it {run.status} before its first evaluation"
            raise CheckpointError(f"run “{run.name}” has no saved weights yet: {why}")
        normalizer = schema.bytes_normalizer(normalizer)
        if normalizer is None or not run.class_names:
            raise CheckpointError(f"run “{run.name}” is missing its normalisation settings, so its "
                                  "weights cannot be turned into a checkpoint")
        metrics = {key: float(run.final[key]) for key in FINAL_METRICS
                   if isinstance(run.final.get(key), (int, float)) and math.isfinite(run.final[key])}
        metrics.setdefault("epochs_completed", float(row.epoch))
        return make_checkpoint_bytes(LogisticRegression.from_tensors(weight, bias), run.config, run.class_names,
                                     normalizer, metrics)

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

    def import_checkpoint(self, data: bytes, name: str | None = None, source: str = "upload") -> RunRecord:
        """Store a checkpoint as a run (status imported); raises CheckpointError if it is not one."""
        checkpoint = load_checkpoint(data)
        self.check_room()
        run_id = new_run_id()
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
                id=run_id, name=record.name, source=record.source, config=record.config.to_dict(), created=now,
                heartbeat=now, host=HOST, pid=os.getpid(), normalizer=schema.normalizer_bytes(checkpoint.normalizer),
                **schema.run_values(record)))
            connection.execute(sa.insert(schema.Snapshot), schema.snapshot_rows(run_id, [(epochs, 0, weight, bias)]))
        return self.load(run_id)

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
        columns = [column for column in schema.Run.__table__.c if normalizer or column.name != "normalizer"]
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(*columns).where(*where).order_by(*order)).all()
            children = sa.select(schema.Run.id).where(*where)
            epochs = connection.execute(sa.select(schema.Epoch).where(schema.Epoch.run_id.in_(children))
                                        .order_by(schema.Epoch.run_id, schema.Epoch.epoch)).all()
            points = [] if not batches else connection.execute(
                sa.select(schema.BatchLoss).where(schema.BatchLoss.run_id.in_(children))
                .order_by(schema.BatchLoss.run_id, schema.BatchLoss.step)).all()
            counts = dict(connection.execute(
                sa.select(schema.Snapshot.run_id, sa.func.count()).where(schema.Snapshot.run_id.in_(children))
                .group_by(schema.Snapshot.run_id)).all())
            snapshots = connection.execute(sa.select(schema.Snapshot).where(schema.Snapshot.run_id.in_(children))
                                           .order_by(schema.Snapshot.run_id, schema.Snapshot.epoch,
                                                     schema.Snapshot.ordinal)).all() if weights else []
        records, self.skipped = {}, []
        for values in self._settle([dict(row._mapping) for row in rows]):
            try:
                records[values["id"]] = schema.record_from_row(values, MAX_NAME_LENGTH, MAX_MESSAGE_LENGTH)
            except (ValueError, TypeError, KeyError) as error:
                self.skipped.append((values.get("id", "?"), str(error)))
        for run_id, count in counts.items():
            if run_id in records:  # has_weights without loading them
                records[run_id].stored_snapshots = int(count)
        for row in epochs:
            if row.run_id in records:
                records[row.run_id].epochs.append(schema.epoch_dict(row))
        for row in points:
            if row.run_id in records:
                records[row.run_id].batch_steps.append(row.step)
                records[row.run_id].batch_losses.append(schema.unreal(row.loss))
        for row in snapshots:
            weight, bias = schema.bytes_tensor(row.weight), schema.bytes_tensor(row.bias)
            if row.run_id in records and weight is not None and bias is not None:
                records[row.run_id].snapshots.append((row.epoch, weight, bias))
        return list(records.values())

    def _settle(self, rows: list[dict]) -> list[dict]:
        """Rows of active runs whose writer is gone become crashed (and are written so, quietly)."""
        now = time.time()
        for values in rows:
            if values["status"] not in ACTIVE_STATUSES:
                continue
            key = (self._key, values["id"])
            with _LIVE_LOCK:
                unsaved, mine = _UNSAVED.get(key), key in _OPEN
            if unsaved is not None:  # its writer here could not write the end: the end it knew
                values.update(schema.run_values(unsaved), save_error=unsaved.save_error)
                continue
            if mine:
                continue
            stale = now - float(values["heartbeat"] or 0.0) >= STALE_SECONDS
            handle = None
            if values["host"] == HOST and not stale:
                handle = _try_lock(self.lock_dir / f"{values['id']}.lock")
                if handle is None:
                    continue  # its writer holds the lock: alive
                pid = int(values["pid"] or 0)
                if pid != os.getpid() and _pid_alive(pid):  # this process knows its writers (_OPEN)
                    # a free lock but its process is there: another temp folder (a service's private
                    # /tmp holding a PostgreSQL store's locks) or a reused pid; the heartbeat decides
                    os.close(handle)
                    continue
            elif not stale:
                continue
            try:
                self._crashed(values)
            finally:
                if handle is not None:
                    (self.lock_dir / f"{values['id']}.lock").unlink(missing_ok=True)
                    os.close(handle)
        return rows

    def _crashed(self, values: dict) -> None:
        epochs = self._epochs_done(values["id"])
        total = (values.get("config") or {}).get("epochs", "?") if isinstance(values.get("config"), dict) else "?"
        message = (f"the process training it (pid {values['pid']} on {values['host']}) ended without finishing "
                   f"(server restart, crash or kill) after epoch {epochs} of {total}; the completed epochs are kept")
        values.update(status=Status.CRASHED, message=message, progress={})
        try:
            with self.engine.begin() as connection:
                connection.execute(sa.update(schema.Run).where(
                    schema.Run.id == values["id"], schema.Run.status.in_([str(s) for s in ACTIVE_STATUSES]))
                    .values(status=str(Status.CRASHED), message=message, progress={}))
        except sa_exc.SQLAlchemyError:  # a read-only store just shows it
            pass

    def _epochs_done(self, run_id: str) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.max(schema.Epoch.epoch))
                                          .where(schema.Epoch.run_id == run_id)).scalar() or 0)

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


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(3).hex()
