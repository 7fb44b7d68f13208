"""Training runs on disk: every run's settings, curves, weights and checkpoint, kept across restarts.

    store = RunStore()                      # $LRCORE_RUNS_DIR, else <data dir>/runs
    with store.writer(config, name="lr 0.1") as writer:
        for event in train(config):
            writer.record(event)
    store.list_runs()                       # summaries, newest first

One folder per run:

    <run_id>/meta.json       status, settings, summary; the file that makes the folder a run
    <run_id>/name.json       the name given by the user (rename), if any
    <run_id>/epochs.jsonl    one line of metrics per epoch (epoch 0 = before training)
    <run_id>/batches.jsonl   the per-batch losses: {"step": first step, "losses": [...]} per line, or,
                             once thinned, {"step": s, "stride": n, "losses": [...]}: each value the
                             mean of n steps, the i-th ending at step s + i * n
    <run_id>/weights/NNNN.pt weight and bias after epoch NNNN (torch.save of tensors only), for at
                             most MAX_SNAPSHOTS epochs spread evenly over the run: epoch 0 and the
                             newest are always kept
    <run_id>/normalizer.pt   the input normalisation, so an unfinished run can become a checkpoint
    <run_id>/model.pt        the final checkpoint (done, stopped or diverged: the kept weights)

Whole files are written to a temp file and moved into place with `os.replace`, so a
crash never leaves a half-written meta, weight or checkpoint file; the two .jsonl files
are appended and flushed line by line, and a torn last line is ignored when reading.
Training calls `record` from its loop, so the per-event work is small: a line appended
per (throttled) batch event, and one weight file plus a meta rewrite per epoch.

A run whose meta still says "running" but whose writer process has ended (server
restart, kill -9) is shown as crashed, with every completed epoch kept.

What one run keeps is bounded (every epoch's metrics, at most MAX_SNAPSHOTS weight files and
MAX_BATCH_VALUES batch losses), and the whole store has a size limit ($LRCORE_STORE_MAX_MB, 500 MB
by default): a run started while the store is over it trains but is not saved. A write that fails
(full disk, read-only folder, no permission) never stops training: the writer stops saving that
run, logs one line and keeps the reason in `writer.error` (and in the run's `save_error`).
"""
from __future__ import annotations

import csv
import errno
import io
import json
import logging
import math
import os
import queue
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from . import events as ev
from .checkpoint import Checkpoint, CheckpointError, checkpoint_bytes, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .data import Normalizer, default_data_dir
from .model import LogisticRegression
from .status import Status
from .jobs import new_id as new_run_id
from .naming import default_run_name

log = logging.getLogger(__name__)

FORMAT = "lrcore-run"
VERSION = 1
META, NAME, EPOCHS, BATCHES = "meta.json", "name.json", "epochs.jsonl", "batches.jsonl"
NORMALIZER, CHECKPOINT, WEIGHTS = "normalizer.pt", "model.pt", "weights"
STATUSES = (Status.RUNNING, Status.DONE, Status.STOPPED, Status.DIVERGED, Status.CRASHED, Status.IMPORTED)
HEARTBEAT_SECONDS = 5.0  # a running run's meta is refreshed at least this often while batches stream
STALE_SECONDS = 600.0  # a run written from another machine counts as crashed after this long silent
MAX_NAME_LENGTH = 100
MAX_MESSAGE_LENGTH = 1000  # a status message read back from disk is cut here (the page shows it whole)
MAX_SNAPSHOTS = 50  # weight files kept per run, thinned evenly as the run grows
MAX_BATCH_VALUES = 10_000  # per-batch losses kept per run; beyond, neighbours are averaged in pairs
DEFAULT_STORE_MAX_MB = 500.0
SWEEPS_FOLDER = "sweeps"  # reserved inside the runs folder: lrcore.sweepstore keeps sweeps there
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
EPOCH_FIELDS = ("epoch", "step", "train_loss", "train_accuracy", "validation_loss", "validation_accuracy",
                "learning_rate", "seconds", "elapsed")


class RunStoreError(ValueError):
    """A run cannot be found, renamed or deleted; the message says why."""


class StoreFullError(RunStoreError, OSError):
    """The store is over its size limit ($LRCORE_STORE_MAX_MB): a new run or sweep is not saved.

    Both a RunStoreError (callers that report store problems in one line, like the CLI, catch it)
    and an OSError (the store cannot take the run, as with a full disk)."""


_WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the runs folder is on a read-only file system",
    errno.EACCES: "the server is not allowed to write to the runs folder",
    errno.EPERM: "the server is not allowed to write to the runs folder",
    errno.EFBIG: "a file grew larger than the server allows", errno.EIO: "the disk reported an input/output error",
}


def disk_error(error: BaseException) -> OSError | None:
    """The OSError behind `error`, if any: torch.save reports a full disk as a RuntimeError raised
    while handling the OSError (its zip writer fails again on closing)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def describe_write_error(error: BaseException) -> str:
    """Why something could not be saved, in words for a page: no server paths in it."""
    if isinstance(error, (StoreFullError, RunStoreError)):
        return str(error)
    error = disk_error(error) or error
    if isinstance(error, OSError):
        what = _WRITE_ERRORS.get(error.errno, "the runs folder could not be written to")
        return f"{what} ({error.strerror or type(error).__name__})"
    return f"an internal error ({type(error).__name__}: {error})"


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


_BAD_LIMITS: set[str] = set()


def folder_size(root: Path) -> int:
    """Bytes in the files under `root` (0 if it does not exist); links are not followed."""
    total, pending = 0, [root]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def _megabytes(size: float) -> str:
    if size < 1e6:
        return f"{size / 1e3:,.0f} kB"
    return f"{size / 1e6:,.1f} MB" if size < 10e6 else f"{size / 1e6:,.0f} MB"


def check_room(root: Path) -> None:
    """Raise StoreFullError when the store under `root` is at or over its size limit."""
    limit = store_limit_mb()
    if limit is None:
        return
    used = folder_size(root)
    if used >= limit * 1e6:
        raise StoreFullError(
            f"the run store is full: it holds {_megabytes(used)}, its limit is {_megabytes(limit * 1e6)} "
            "(LRCORE_STORE_MAX_MB); delete old runs on the Runs page (or sweeps on the Sweep page) to make room")


def default_runs_dir() -> Path:
    """`$LRCORE_RUNS_DIR`, else `runs/` inside the data directory."""
    configured = os.environ.get("LRCORE_RUNS_DIR")
    return Path(configured) if configured else default_data_dir() / "runs"


@dataclass
class StoredRun:
    """A run as found on disk. `list_runs` fills the summary; `load` also the curves and weights."""

    run_id: str
    name: str
    status: str  # running, done, stopped, diverged, crashed, imported
    config: TrainConfig
    path: Path
    phase: str = ""  # training or paused while running
    message: str = ""
    source: str = ""  # dashboard, cli, upload
    class_names: tuple[str, ...] = ()
    created: float = 0.0
    updated: float = 0.0
    duration: float = 0.0  # seconds since the run started, as last recorded
    epochs_done: int = 0
    best_validation_accuracy: float | None = None
    learning_rate: float = 0.0
    progress: dict = field(default_factory=dict)  # epoch, batch, batches_per_epoch, step of a running run
    final: dict = field(default_factory=dict)  # test/validation metrics once finished
    train_size: int = 0
    validation_size: int = 0
    batches_per_epoch: int = 0
    device: str = ""
    checkpoint: Path | None = None
    has_weights: bool = False  # a final checkpoint or at least one epoch's weights (see RunStore.checkpoint)
    lr_changes: list[dict] = field(default_factory=list)  # {step, epoch, old, new}
    save_error: str = ""  # why the run could not be saved completely (see describe_write_error)
    # filled by load():
    epochs: list[dict] = field(default_factory=list)
    batch_steps: list[int] = field(default_factory=list)
    batch_losses: list[float] = field(default_factory=list)
    snapshots: list[tuple[int, torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status == Status.RUNNING

    @property
    def test_accuracy(self) -> float | None:
        return self.final.get("test_accuracy")


# ---------------------------------------------------------------- files

def _write_atomic(path: Path, write: Callable[[Any], None], binary: bool = False) -> None:
    """Write via a temp file in the same folder, then os.replace: readers see old or new, never half."""
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as out:
            write(out)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _write_json(path: Path, value: Any) -> None:
    _write_atomic(path, lambda out: json.dump(value, out, indent=1))


def _read_meta(folder: Path, expected_format: str, kind: str, error: type[ValueError]) -> dict:
    """A run's or sweep's meta.json, checked to be of `expected_format`; `error` says what is wrong."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"no meta.json (not a {kind}, or one whose start was cut off)") from None
    except (OSError, UnicodeDecodeError, ValueError) as reason:
        raise error(f"meta.json is unreadable ({reason})") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        raise error(f"meta.json is not an lrcore {kind}")
    return meta


def _read_folders(root: Path, read: Callable[[Path], Any],
                  skip: tuple[str, ...] = ()) -> tuple[list, list, str]:
    """`read(folder)` for each folder in `root`, (name, why) for those it rejects with RunStoreError,
    and why `root` itself cannot be listed ("" when it can, or does not exist yet: no runs).

    Hidden names (temp files, folders being imported or deleted) and `skip` are passed over.
    """
    items, skipped = [], []
    try:
        folders = sorted(root.iterdir())
    except FileNotFoundError:
        return items, skipped, ""
    except OSError as error:
        return items, skipped, f"the folder cannot be read ({error.strerror or type(error).__name__})"
    for folder in folders:
        try:
            if folder.name.startswith(".") or folder.name in skip or not folder.is_dir():
                continue
            items.append(read(folder))
        except RunStoreError as error:
            skipped.append((folder.name, str(error)))
        except OSError as error:  # e.g. a folder without read permission
            skipped.append((folder.name, f"unreadable ({error.strerror or type(error).__name__})"))
    return items, skipped, ""


def _folder_with_meta(root: Path, name: str, kind: str, error: type[ValueError]) -> Path:
    folder = root / name
    if not (folder / META).is_file():
        raise error(f"no {kind} {name} in the store (deleted, or never saved)")
    return folder


def _writer_gone(meta: dict, folder: Path) -> str | None:
    """None while a 'running' folder's writer may still be at work; else "dead", or "unknown" when
    it wrote from another machine and has been silent for STALE_SECONDS."""
    state = _owner_state(meta, folder)
    if state == "alive" or (state == "unknown" and time.time() - float(meta.get("updated") or 0.0) < STALE_SECONDS):
        return None
    return state


def _write_crash(folder: Path, meta: dict, state: str) -> None:
    """Persist a crashed status once the writer is surely dead (a read-only store just shows it)."""
    if state == "dead":
        try:
            _write_json(folder / META, meta)
        except OSError:
            pass


def _remove_folder(root: Path, folder: Path) -> None:
    """Delete `folder`: renamed first (atomic), so a half-deleted folder is never listed."""
    trash = root / f".deleting-{folder.name}-{uuid.uuid4().hex[:6]}"
    key = str(folder.resolve())
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)
    with _LIVE_LOCK:
        _UNSAVED.pop(key, None)


def _unsaved(folder: Path) -> dict | None:
    """The final meta of a run or sweep of this process whose writer could not write it, if any."""
    with _LIVE_LOCK:
        return _UNSAVED.get(str(folder.resolve()))


def _read_jsonl(path: Path) -> list[Any]:
    """Every complete line; a torn last line (writer killed mid-append) is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


# ---------------------------------------------------------------- process liveness

def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[0]


_IDENTITY: dict[int, dict] = {}


def _owner() -> dict:
    """Who is writing: pid, its start time and the host, recorded in meta.json."""
    pid = os.getpid()
    if pid not in _IDENTITY:  # recomputed after a fork
        _IDENTITY[pid] = {"pid": pid, "start": _process_start(pid), "host": socket.gethostname()}
    return _IDENTITY[pid]


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    if _process_state(pid) in ("Z", "X"):  # killed but not yet reaped by its parent
        return False
    current = _process_start(pid)
    return not (start and current and current != start)


_LIVE: dict[str, "QueuedWriter"] = {}  # run or sweep folder -> unfinished writer of this process
# run or sweep folder -> its final meta, kept in memory when a failed writer could not write it,
# so this process lists it as ended (with its save error) rather than as training or crashed
_UNSAVED: dict[str, dict] = {}
_LIVE_LOCK = threading.Lock()


def _owner_state(meta: dict, folder: Path) -> str:
    """alive, dead or unknown (another machine) for the writer of a 'running' run."""
    owner = meta.get("owner") or {}
    me = _owner()
    if owner.get("host") != me["host"]:
        return "unknown"
    if owner.get("pid") == me["pid"] and owner.get("start") == me["start"]:
        with _LIVE_LOCK:
            return "alive" if str(folder.resolve()) in _LIVE else "dead"
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return "dead"
    return "alive" if _pid_alive(pid, owner.get("start")) else "dead"


# ---------------------------------------------------------------- writer

class QueuedWriter:
    """A run's or sweep's folder, written from a thread of its own so that the training loop
    queuing the events never waits for the disk. Subclasses create the folder with
    `_make_folder`, fill `_meta` and `_handles` (open append files), call `_start_writing`,
    and define `_apply(event)`, `_settle(event)` and `_is_last(event)`.

    The first write that fails (full disk, read-only folder, ...) stops the writing: `error` says
    why in words, one line is logged, `on_error(error)` is called, and the remaining events are
    only folded into the meta kept in memory, so the folder is never listed as still training.
    """

    path: Path
    _meta: dict[str, Any]
    _handles: tuple = ()
    _thread: threading.Thread
    error: str | None = None
    on_error: Callable[[str], None] | None = None

    def _make_folder(self, root: Path, name: str, kind: str, error: type[ValueError],
                     quota_root: Path | None = None) -> None:
        self.path = root / name
        check_room(quota_root or root)
        root.mkdir(parents=True, exist_ok=True)
        try:
            self.path.mkdir()
        except FileExistsError:
            raise error(f"a {kind} with id {name} already exists in the store") from None
        try:
            (self.path / WEIGHTS).mkdir()
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise

    def _open_append(self, name: str):
        """An append handle for `name` in the folder; the folder is removed again if that fails."""
        try:
            return open(self.path / name, "a", encoding="utf-8")
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """Undo a start that failed: close what was opened, leave the live writers, remove the folder."""
        for handle in self._handles:
            try:
                handle.close()
            except OSError:
                pass
        with _LIVE_LOCK:
            _LIVE.pop(str(self.path.resolve()), None)
        shutil.rmtree(self.path, ignore_errors=True)

    def _start_writing(self, name: str) -> None:
        """Join this process's live writers, write meta.json and start the writer thread."""
        self.errors = 0  # 1 once a write failed (see `error`); training is never stopped by it
        self._last_meta = 0.0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._key = str(self.path.resolve())
        with _LIVE_LOCK:
            _LIVE[self._key] = self
        try:
            self._write_meta()  # last: the folder only counts once meta.json exists
        except BaseException:
            self._abandon()
            raise
        self._thread = threading.Thread(target=self._drain, name=name, daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every queued event is written (after the last one)."""
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _drain(self) -> None:
        while True:
            event = self._queue.get()
            if self.error is None:
                try:
                    self._apply(event)
                except Exception as error:  # a full disk must not stop training: stop saving, say why
                    self._fail(error)
            if self._is_last(event):
                self._close(event)
                return

    def _fail(self, error: Exception) -> None:
        """The first failed write: remember why, log one line, tell `on_error`; nothing is written after."""
        self.errors += 1
        self.error = describe_write_error(error)
        if disk_error(error) is not None:  # the disk's fault: one line, no traceback
            log.error("stopped saving %s: %s", self.path, self.error)
        else:
            log.exception("stopped saving %s after an internal error", self.path)
        if self.on_error is not None:
            try:
                self.on_error(self.error)
            except Exception:
                log.exception("the save-error callback of %s failed", self.path)

    def _apply(self, event: object) -> None:
        raise NotImplementedError

    def _settle(self, event: object) -> None:
        """Fold the last event into the meta in memory (status, final results), without writing files."""
        raise NotImplementedError

    def _is_last(self, event: object) -> bool:
        raise NotImplementedError

    def _write_meta(self) -> None:
        now = time.time()
        self._meta["updated"] = now
        self._last_meta = now
        _write_json(self.path / META, self._meta)

    def _close(self, event: object) -> None:
        """Write the final meta (status no longer running) and leave this process's live writers,
        whatever fails: a writer that cannot write leaves its final meta in memory instead."""
        try:
            if self.error is None:
                try:
                    self._write_meta()
                except Exception as error:
                    self._fail(error)
            if self.error is not None:
                self._settle(event)
                self._meta["save_error"] = self.error
                try:  # quietly: the failure is already logged, and the disk may have room again
                    self._write_meta()
                except Exception:
                    with _LIVE_LOCK:
                        _UNSAVED[self._key] = json.loads(json.dumps(self._meta))
        finally:
            for handle in self._handles:
                try:
                    handle.close()
                except Exception:  # its last buffered line could not be flushed: already reported
                    pass
            with _LIVE_LOCK:
                _LIVE.pop(self._key, None)


class _Crash:
    def __init__(self, message: str):
        self.message = message


class RunWriter(QueuedWriter):
    """Records one run's events into its folder. Create it with `RunStore.writer`.

    `record` only queues the event: a writer thread does the file work, so the training
    loop never waits for the disk. `Finished` and `crash` wait until everything is written.
    """

    def __init__(self, store: "RunStore", config: TrainConfig, name: str | None, run_id: str | None,
                 source: str, on_error: Callable[[str], None] | None = None):
        self.run_id = run_id or new_run_id()
        _check_run_id(self.run_id)
        self.config = config
        self.on_error = on_error
        name = _clean_name(name) if name else default_run_name(config)
        self._make_folder(store.root, self.run_id, "run", RunStoreError)
        now = time.time()
        self._meta: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "run_id": self.run_id, "name": name,
            "status": Status.RUNNING, "phase": Status.STARTING, "message": "", "source": source,
            "config": config.to_dict(), "class_names": [], "created": now, "updated": now, "duration": 0.0,
            "epochs_done": 0, "best_validation_accuracy": None, "learning_rate": config.learning_rate,
            "progress": {}, "final": {}, "train_size": 0, "validation_size": 0, "batches_per_epoch": 0,
            "device": "", "lr_changes": [], "owner": _owner()}
        self._epochs = self._open_append(EPOCHS)
        self._handles = (self._epochs,)
        self._batches = self._open_append(BATCHES)
        self._handles = (self._epochs, self._batches)
        self._snapshot_epochs: list[int] = []  # epochs whose weight files are kept
        self._snapshot_stride = 1  # kept: multiples of this, and the newest
        self._batch_stride = 1  # steps averaged into one stored batch loss
        self._batch_points: list[tuple[int, float]] = []  # (last step, mean loss) as on disk
        self._batch_block: list = [0.0, 0, 0]  # sum, count and last step of the block being averaged
        self._submit_lock = threading.Lock()
        self.finished = False  # no more events accepted (Finished or crash submitted)
        self._start_writing(f"runstore-{self.run_id}")

    # -- context manager: a block that raises marks the run crashed with the reason
    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self.finished:
            self.wait()
        elif kind is KeyboardInterrupt:
            self.crash("interrupted (Ctrl+C) before the end")
        elif error is not None:
            self.crash(f"training stopped by an error: {type(error).__name__}: {error}")
        else:
            self.crash("ended without finishing")

    @property
    def status(self) -> str:
        return self._meta["status"]

    def record(self, event: object) -> None:
        """Queue one lrcore.train event (RunStarted, EpochEnd, BatchProgress, ..., Finished).

        After `Finished` it returns once the checkpoint and final status are on disk.
        """
        with self._submit_lock:
            if self.finished:
                return
            last = isinstance(event, ev.Finished)
            self.finished = last
            self._queue.put(event)
        if last:
            self.wait()

    def crash(self, message: str) -> None:
        """Mark the run crashed with `message` (completed epochs stay) and wait until written."""
        with self._submit_lock:
            if self.finished:
                return
            self.finished = True
            self._queue.put(_Crash(message))
        self.wait()

    def _is_last(self, event: object) -> bool:
        return isinstance(event, (_Crash, ev.Finished))

    def _settle(self, event: object) -> None:
        if isinstance(event, _Crash):
            self._meta.update(status=Status.CRASHED, phase="", message=event.message or "crashed", progress={})
        elif isinstance(event, ev.Finished):
            final = {"test_loss": event.test_loss, "test_accuracy": event.test_accuracy,
                     "validation_loss": event.validation_loss, "validation_accuracy": event.validation_accuracy,
                     "epochs_completed": event.epochs_completed}
            self._meta.update(status=event.status, phase="", final=final, duration=event.elapsed, progress={})

    def _apply(self, event: object) -> None:
        meta = self._meta
        if isinstance(event, _Crash):
            self._flush_batch_block()
            self._settle(event)
        elif isinstance(event, ev.BatchProgress):
            first = event.step - len(event.losses) + 1
            self._record_batches(first, [float(x) for x in event.losses])
            meta["duration"] = event.elapsed
            meta["learning_rate"] = event.learning_rate
            meta["progress"] = {"epoch": event.epoch, "batch": event.batch, "step": event.step,
                                "batches_per_epoch": event.batches_per_epoch, "seconds_left": event.seconds_left}
            if time.time() - self._last_meta >= HEARTBEAT_SECONDS:
                self._write_meta()
        elif isinstance(event, ev.EpochEnd):
            self._record_epoch(event)
        elif isinstance(event, ev.RunStarted):
            meta.update(phase=Status.TRAINING, class_names=list(event.class_names), train_size=event.train_size,
                        validation_size=event.validation_size, batches_per_epoch=event.batches_per_epoch,
                        device=event.device)
            if event.normalizer is not None:
                _save_normalizer(self.path / NORMALIZER, event.normalizer)
            self._write_meta()
        elif isinstance(event, ev.LearningRateChanged):
            meta["lr_changes"].append({"step": event.step, "epoch": event.epoch, "old": event.old, "new": event.new})
            meta["learning_rate"] = event.new
            self._write_meta()
        elif isinstance(event, ev.Paused):
            meta["phase"] = Status.PAUSED
            self._write_meta()
        elif isinstance(event, ev.Resumed):
            meta["phase"] = Status.TRAINING
            self._write_meta()
        elif isinstance(event, ev.Diverged):
            meta["message"] = event.message
            self._write_meta()
        elif isinstance(event, ev.Finished):
            self._flush_batch_block()
            self._settle(event)
            save_checkpoint(self.path / CHECKPOINT, event.model, self.config, tuple(event.class_names),
                            event.normalizer, {k: v for k, v in meta["final"].items() if _finite(v)})

    def _record_batches(self, first: int, losses: list[float]) -> None:
        """Append the losses of steps first, first + 1, ...; at most MAX_BATCH_VALUES stay on disk."""
        if self._batch_stride == 1 and len(self._batch_points) + len(losses) <= MAX_BATCH_VALUES:
            self._batches.write(json.dumps({"step": first, "losses": losses}) + "\n")
            self._batches.flush()
            self._batch_points.extend(zip(range(first, first + len(losses)), losses))
            return
        block, points = self._batch_block, []
        for step, loss in enumerate(losses, start=first):
            block[0] += loss
            block[1] += 1
            block[2] = step
            if block[1] >= self._batch_stride:
                points.append((step, block[0] / block[1]))
                block[:] = [0.0, 0, 0]
        self._append_batch_points(points)

    def _append_batch_points(self, points: list[tuple[int, float]]) -> None:
        if not points:
            return
        self._batch_points.extend(points)
        if len(self._batch_points) <= MAX_BATCH_VALUES:
            self._batches.write(json.dumps({"step": points[0][0], "stride": self._batch_stride,
                                            "losses": [loss for _, loss in points]}) + "\n")
            self._batches.flush()
            return
        # Too many: average neighbours in pairs (an odd last one starts the next, twice as long, block)
        # and rewrite the file, so it stays at most MAX_BATCH_VALUES values.
        old, stride = self._batch_points, self._batch_stride
        if len(old) % 2:
            step, loss = old.pop()
            block = self._batch_block
            block[0], block[1], block[2] = block[0] + loss * stride, block[1] + stride, max(block[2], step)
        self._batch_stride = stride * 2
        self._batch_points = [(old[i + 1][0], (old[i][1] + old[i + 1][1]) / 2) for i in range(0, len(old), 2)]
        row = {"step": self._batch_points[0][0], "stride": self._batch_stride,
               "losses": [loss for _, loss in self._batch_points]}
        self._batches.close()
        _write_atomic(self.path / BATCHES, lambda out: out.write(json.dumps(row) + "\n"))
        self._batches = open(self.path / BATCHES, "a", encoding="utf-8")
        self._handles = (self._epochs, self._batches)

    def _flush_batch_block(self) -> None:
        """At the end: the last, shorter block of steps becomes one more value."""
        block = self._batch_block
        if block[1]:
            self._batches.write(json.dumps({"step": block[2], "stride": block[1], "losses": [block[0] / block[1]]})
                                + "\n")
            self._batches.flush()
            block[:] = [0.0, 0, 0]

    def _record_epoch(self, event: ev.EpochEnd) -> None:
        # weights first, then the metrics line, then meta: the newest listed epoch has its weights
        snapshot = {"weight": event.weight.detach().cpu(), "bias": event.bias.detach().cpu()}
        _write_atomic(self.path / WEIGHTS / f"{event.epoch:04d}.pt", lambda out: torch.save(snapshot, out),
                      binary=True)
        self._thin_snapshots(event.epoch)
        row = {name: getattr(event, name) for name in EPOCH_FIELDS}
        self._epochs.write(json.dumps(row) + "\n")
        self._epochs.flush()
        meta = self._meta
        meta["epochs_done"] = event.epoch
        meta["duration"] = event.elapsed
        meta["learning_rate"] = event.learning_rate
        if math.isfinite(event.validation_accuracy):
            best = meta["best_validation_accuracy"]
            meta["best_validation_accuracy"] = (event.validation_accuracy if best is None
                                                else max(best, event.validation_accuracy))
        self._write_meta()

    def _thin_snapshots(self, newest: int) -> None:
        """Keep at most MAX_SNAPSHOTS weight files: epochs at multiples of a stride that doubles as
        the run grows (epoch 0 always), and the newest; the others' files are removed."""
        kept = [epoch for epoch in self._snapshot_epochs if epoch != newest] + [newest]
        stride = self._snapshot_stride
        while sum(1 for epoch in kept if epoch % stride == 0 or epoch == newest) > MAX_SNAPSHOTS:
            stride *= 2
        self._snapshot_stride = stride
        self._snapshot_epochs = []
        for epoch in kept:
            if epoch % stride == 0 or epoch == newest:
                self._snapshot_epochs.append(epoch)
            else:
                (self.path / WEIGHTS / f"{epoch:04d}.pt").unlink(missing_ok=True)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check_run_id(run_id: str) -> None:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise RunStoreError(f"invalid run id {run_id!r}: use letters, digits, '-', '_' and '.'")
    if run_id == SWEEPS_FOLDER:
        raise RunStoreError(f"{SWEEPS_FOLDER!r} is reserved for the sweeps folder; choose another run id")


def _capped(text: Any, limit: int) -> str:
    """Text read from a file, on one line and at most `limit` characters ("…" marks a cut)."""
    if text is None:
        return ""
    line = " ".join(str(text)[:limit * 4].split())  # cut first: a 1 MB value is not split whole
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def _clean_name(name: str) -> str:
    text = " ".join(str(name).split())  # newlines and tabs become single spaces
    if not text:
        raise RunStoreError("a run name cannot be empty")
    if len(text) > MAX_NAME_LENGTH:
        raise RunStoreError(f"a run name is at most {MAX_NAME_LENGTH} characters, got {len(text)}")
    return text


# ---------------------------------------------------------------- store

class RunStore:
    """All runs under one folder. Safe to use from several threads and processes."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_runs_dir()
        self.skipped: list[tuple[str, str]] = []  # (folder, why) from the last list_runs()
        self.problem = ""  # why the last list_runs() could not read the folder itself ("" if it could)

    def writer(self, config: TrainConfig, name: str | None = None, run_id: str | None = None,
               source: str = "cli", on_error: Callable[[str], None] | None = None) -> RunWriter:
        """Create the run's folder (status running) and return its writer.

        Raises OSError when the folder cannot be made (StoreFullError: the store is over its size
        limit); later failed writes never raise: `on_error(reason)` is called once and
        `writer.error` keeps the reason (see `describe_write_error`).
        """
        return RunWriter(self, config, name, run_id, source, on_error)

    def listener(self, source: str = "dashboard") -> Callable[[object, object], None]:
        """A `TrainingWorker` listener that records every worker it is attached to.

        A run that cannot be saved (full disk, read-only folder, store over its limit) keeps
        training: the reason goes to `worker.set_save_error`, for the pages to show.
        """
        writers: dict[str, RunWriter] = {}
        failed: set[str] = set()
        lock = threading.Lock()

        def report(worker, reason: str) -> None:
            set_error = getattr(worker, "set_save_error", None)
            if set_error is not None:
                set_error(reason)

        def on_event(worker, event) -> None:
            run_id = worker.run_id
            with lock:
                if run_id in failed:
                    return
                writer = writers.get(run_id)
            if writer is None:
                try:
                    record = worker.snapshot()
                    writer = self.writer(record.config, record.name, run_id, source,
                                         on_error=lambda reason: report(worker, reason))
                except Exception as error:  # the run trains on, unsaved: say why, once
                    reason = describe_write_error(error)
                    if isinstance(error, RunStoreError) or disk_error(error):
                        log.error("run %s is not saved: %s", run_id, reason)
                    else:
                        log.exception("run %s is not saved", run_id)
                    with lock:
                        failed.add(run_id)
                    report(worker, reason)
                    return
                with lock:
                    writers[run_id] = writer
            if event is None:
                writer.crash(worker.snapshot().message)
            else:
                writer.record(event)
            if writer.finished:
                with lock:
                    writers.pop(run_id, None)

        return on_event

    # -- reading

    def list_runs(self) -> list[StoredRun]:
        """Every valid run, newest first. Unreadable folders are skipped and listed in `skipped`."""
        runs, self.skipped, self.problem = _read_folders(self.root, self._summary, skip=(SWEEPS_FOLDER,))
        runs.sort(key=lambda run: (run.created, run.run_id), reverse=True)
        return runs

    def get(self, run_id: str) -> StoredRun:
        """One run's summary (no curves or weights)."""
        return self._summary(self._folder(run_id))

    def load(self, run_id: str, weights: bool = True) -> StoredRun:
        """One run in full: epochs, batch losses and (if `weights`) the weight snapshots."""
        folder = self._folder(run_id)
        run = self._summary(folder)
        run.epochs = [row for row in _read_jsonl(folder / EPOCHS)
                      if isinstance(row, dict) and all(name in row for name in EPOCH_FIELDS)]
        for row in _read_jsonl(folder / BATCHES):
            try:  # a thinned row's i-th value is the mean of `stride` steps ending at step + i * stride
                first, losses = int(row["step"]), [float(x) for x in row["losses"]]
                stride = int(row.get("stride", 1))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            if stride < 1:
                continue
            run.batch_steps.extend(range(first, first + stride * len(losses), stride))
            run.batch_losses.extend(losses)
        if weights:
            run.snapshots = self._snapshots(folder)
        return run

    def checkpoint(self, run_id: str) -> Checkpoint:
        """The run as a checkpoint: its final one, else built from its newest epoch's weights."""
        return load_checkpoint(self.checkpoint_bytes(run_id))

    def checkpoint_bytes(self, run_id: str) -> bytes:
        """Bytes of the run's checkpoint (for download), built from its newest epoch if unfinished."""
        folder = self._folder(run_id)
        path = folder / CHECKPOINT
        if path.is_file():
            return path.read_bytes()
        run = self._summary(folder)
        snapshots = sorted(int(p.stem) for p in (folder / WEIGHTS).glob("[0-9]*.pt") if p.stem.isdigit())
        for epoch in reversed(snapshots):
            snapshot = _read_snapshot(folder / WEIGHTS / f"{epoch:04d}.pt")
            if snapshot is not None:
                break
        else:
            why = "it is still starting" if run.active else f"it {run.status} before its first evaluation"
            raise CheckpointError(f"run “{run.name}” has no saved weights yet: {why}")
        normalizer = _read_normalizer(folder / NORMALIZER)
        if normalizer is None or not run.class_names:
            raise CheckpointError(f"run “{run.name}” is missing its normalisation settings, so its "
                                  "weights cannot be turned into a checkpoint")
        metrics = {"epochs_completed": epoch}
        return checkpoint_bytes(LogisticRegression.from_tensors(*snapshot), run.config, run.class_names,
                                normalizer, metrics)

    # -- changing

    def rename(self, run_id: str, name: str) -> str:
        """Give a run a new name (kept in name.json, so a live writer never overwrites it)."""
        folder = self._folder(run_id)
        self._summary(folder)  # must be a valid run
        clean = _clean_name(name)
        _write_json(folder / NAME, {"name": clean})
        return clean

    def delete(self, run_id: str) -> None:
        """Remove a run and its files. A run still training elsewhere must be stopped first."""
        folder = self._folder(run_id)
        try:
            run = self._summary(folder)
        except RunStoreError:
            run = None  # a broken folder may always be removed
        if run is not None and run.active:
            raise RunStoreError(f"run “{run.name}” is still training; stop it before deleting it")
        _remove_folder(self.root, folder)

    def delete_many(self, run_ids: list[str]) -> tuple[list[str], list[str]]:
        """Delete several runs: (deleted ids, one line per run that could not be deleted and why)."""
        deleted, problems = [], []
        for run_id in run_ids:
            try:
                self.delete(run_id)
            except RunStoreError as error:
                problems.append(str(error))
            except OSError as error:
                problems.append(f"run {run_id} could not be deleted: {describe_write_error(error)}")
            else:
                deleted.append(run_id)
        return deleted, problems

    def older_than(self, days: float, now: float | None = None) -> list[StoredRun]:
        """Runs that are not training and were started more than `days` days ago (prune candidates)."""
        cutoff = (time.time() if now is None else now) - days * 86400
        return [run for run in self.list_runs() if not run.active and run.created < cutoff]

    def usage(self) -> int:
        """Bytes the store holds on disk (runs and sweeps)."""
        return folder_size(self.root)

    def write_problem(self) -> str | None:
        """Why a new run would not be saved now (store over its limit, folder not writable), else None.

        Probes by creating and removing a small hidden file, which also catches a read-only mount
        for a server running as root (which permission bits do not stop).
        """
        try:
            check_room(self.root)
            self.root.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(dir=self.root, prefix=".probe-")
            try:
                os.write(handle, b"x")
            finally:
                os.close(handle)
                os.unlink(probe)
        except OSError as error:
            return describe_write_error(error)
        return None

    def import_checkpoint(self, data: bytes, name: str | None = None, source: str = "upload",
                          epochs: list[dict] | None = None) -> str:
        """Store a checkpoint as a run (status imported); raises CheckpointError if bad.

        `epochs` (metrics per epoch, e.g. a sweep configuration's) become the run's curves; a row's
        missing learning rate is the config's and its elapsed time the sum of the epochs' seconds.
        """
        checkpoint = load_checkpoint(data)
        run_id = new_run_id()
        check_room(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".import-"))
        try:
            save_checkpoint(staging / CHECKPOINT, checkpoint.model, checkpoint.config, checkpoint.class_names,
                            checkpoint.normalizer, checkpoint.metrics)
            metrics = checkpoint.metrics
            now = time.time()
            rows, elapsed = [], 0.0
            for row in epochs or []:
                elapsed += float(row.get("seconds") or 0.0)
                rows.append({"learning_rate": checkpoint.config.learning_rate, "elapsed": elapsed, **row})
                missing = [name for name in EPOCH_FIELDS if name not in rows[-1]]
                if missing:
                    raise RunStoreError(f"epoch {row.get('epoch', '?')} has no {', '.join(missing)}")
            if rows:
                (staging / EPOCHS).write_text("".join(json.dumps({k: row[k] for k in EPOCH_FIELDS}) + "\n"
                                                      for row in rows), encoding="utf-8")
            accuracies = [row["validation_accuracy"] for row in rows if _finite(row["validation_accuracy"])]
            best = max(accuracies) if accuracies else metrics.get("validation_accuracy")
            epochs_done = int(metrics.get("epochs_completed", 0) or 0)
            _write_json(staging / META, {
                "format": FORMAT, "version": VERSION, "run_id": run_id,
                "name": _clean_name(name) if name and name.strip() else "uploaded checkpoint",
                "status": Status.IMPORTED, "phase": "", "message": "", "source": source,
                "config": checkpoint.config.to_dict(), "class_names": list(checkpoint.class_names),
                "created": now, "updated": now, "duration": elapsed, "epochs_done": epochs_done,
                "best_validation_accuracy": best,
                "learning_rate": checkpoint.config.learning_rate, "progress": {},
                "final": dict(metrics), "train_size": 0, "validation_size": 0, "batches_per_epoch": 0,
                "device": "", "lr_changes": [], "owner": _owner()})
            os.replace(staging, self.root / run_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return run_id

    # -- internals

    def _folder(self, run_id: str) -> Path:
        _check_run_id(run_id)
        return _folder_with_meta(self.root, run_id, "run", RunStoreError)

    def _summary(self, folder: Path) -> StoredRun:
        meta = _read_meta(folder, FORMAT, "run", RunStoreError)
        try:
            config = TrainConfig.from_dict(meta["config"])
        except (ConfigError, KeyError, TypeError, AttributeError) as error:
            raise RunStoreError(f"meta.json has invalid settings ({error})") from None
        if meta.get("status") not in STATUSES:
            raise RunStoreError(f"meta.json has an unknown status {meta.get('status')!r}")
        if meta["status"] == Status.RUNNING:
            meta = self._check_owner(folder, meta)
        name = meta.get("name") or folder.name
        try:
            custom = json.loads((folder / NAME).read_text(encoding="utf-8"))
            if isinstance(custom, dict) and isinstance(custom.get("name"), str) and custom["name"].strip():
                name = custom["name"]
        except (OSError, ValueError):
            pass
        name = _capped(name, MAX_NAME_LENGTH) or folder.name  # a huge name in a file never reaches a page
        try:
            checkpoint = folder / CHECKPOINT
            return StoredRun(
                run_id=folder.name, name=name, status=meta["status"], config=config, path=folder,
                phase=_capped(meta.get("phase"), 20), message=_capped(meta.get("message"), MAX_MESSAGE_LENGTH),
                source=_capped(meta.get("source"), 20), class_names=tuple(meta.get("class_names") or ()),
                created=float(meta.get("created") or 0.0), updated=float(meta.get("updated") or 0.0),
                duration=float(meta.get("duration") or 0.0), epochs_done=int(meta.get("epochs_done") or 0),
                best_validation_accuracy=meta.get("best_validation_accuracy"),
                learning_rate=float(meta.get("learning_rate") or config.learning_rate),
                progress=dict(meta.get("progress") or {}), final=dict(meta.get("final") or {}),
                train_size=int(meta.get("train_size") or 0), validation_size=int(meta.get("validation_size") or 0),
                batches_per_epoch=int(meta.get("batches_per_epoch") or 0), device=str(meta.get("device") or ""),
                checkpoint=checkpoint if checkpoint.is_file() else None,
                has_weights=checkpoint.is_file() or any((folder / WEIGHTS).glob("[0-9]*.pt")),
                lr_changes=list(meta.get("lr_changes") or []),
                save_error=_capped(meta.get("save_error"), MAX_MESSAGE_LENGTH))
        except (TypeError, ValueError) as error:
            raise RunStoreError(f"meta.json has invalid values ({error})") from None

    def _check_owner(self, folder: Path, meta: dict) -> dict:
        """A 'running' run whose writer is gone becomes crashed (persisted when surely dead)."""
        kept = _unsaved(folder)
        if kept is not None:  # its writer in this process could not write the end: the end it knew
            return kept
        state = _writer_gone(meta, folder)
        if state is None:
            return meta
        epochs, total = int(meta.get("epochs_done") or 0), meta.get("config", {}).get("epochs", "?")
        pid = (meta.get("owner") or {}).get("pid")
        meta = {**meta, "status": Status.CRASHED, "phase": "", "progress": {}, "message": (
            f"the process training it (pid {pid}) ended without finishing (server restart, crash or "
            f"kill) after epoch {epochs} of {total}; the completed epochs are kept")}
        _write_crash(folder, meta, state)
        return meta

    def _snapshots(self, folder: Path) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        snapshots = []
        for path in sorted((folder / WEIGHTS).glob("[0-9]*.pt")):
            if not path.stem.isdigit():
                continue
            snapshot = _read_snapshot(path)
            if snapshot is not None:
                snapshots.append((int(path.stem), *snapshot))
        return snapshots


def _read_snapshot(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        values = torch.load(path, map_location="cpu", weights_only=True)
        weight, bias = values["weight"], values["bias"]
    except Exception:  # missing or damaged: that epoch simply has no weights
        return None
    if not isinstance(weight, torch.Tensor) or not isinstance(bias, torch.Tensor) or weight.ndim != 2:
        return None
    return weight, bias


def _save_normalizer(path: Path, normalizer: Normalizer) -> None:
    values = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in normalizer.to_dict().items()}
    _write_atomic(path, lambda out: torch.save(values, out), binary=True)


def _read_normalizer(path: Path) -> Normalizer | None:
    try:
        values = torch.load(path, map_location="cpu", weights_only=True)
        return Normalizer.from_dict(values)
    except Exception:
        return None


def epochs_csv(run: StoredRun) -> str:
    """The per-epoch metrics of a loaded run as CSV (for export)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(EPOCH_FIELDS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in run.epochs:
        writer.writerow(row)
    return buffer.getvalue()
