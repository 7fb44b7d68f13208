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
    <run_id>/batches.jsonl   one line per BatchProgress event: {"step": first step, "losses": [...]}
    <run_id>/weights/NNNN.pt weight and bias after epoch NNNN (torch.save of tensors only)
    <run_id>/normalizer.pt   the input normalisation, so an unfinished run can become a checkpoint
    <run_id>/model.pt        the final checkpoint (done, stopped or diverged: the kept weights)

Whole files are written to a temp file and moved into place with `os.replace`, so a
crash never leaves a half-written meta, weight or checkpoint file; the two .jsonl files
are appended and flushed line by line, and a torn last line is ignored when reading.
Training calls `record` from its loop, so the per-event work is small: a line appended
per (throttled) batch event, and one weight file plus a meta rewrite per epoch.

A run whose meta still says "running" but whose writer process has ended (server
restart, kill -9) is shown as crashed, with every completed epoch kept.
"""
from __future__ import annotations

import csv
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
from .worker import default_run_name, new_run_id

log = logging.getLogger(__name__)

FORMAT = "lrcore-run"
VERSION = 1
META, NAME, EPOCHS, BATCHES = "meta.json", "name.json", "epochs.jsonl", "batches.jsonl"
NORMALIZER, CHECKPOINT, WEIGHTS = "normalizer.pt", "model.pt", "weights"
STATUSES = ("running", "done", "stopped", "diverged", "crashed", "imported")
HEARTBEAT_SECONDS = 5.0  # a running run's meta is refreshed at least this often while batches stream
STALE_SECONDS = 600.0  # a run written from another machine counts as crashed after this long silent
MAX_NAME_LENGTH = 100
SWEEPS_FOLDER = "sweeps"  # reserved inside the runs folder: lrcore.sweepstore keeps sweeps there
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
EPOCH_FIELDS = ("epoch", "step", "train_loss", "train_accuracy", "validation_loss", "validation_accuracy",
                "learning_rate", "seconds", "elapsed")


class RunStoreError(ValueError):
    """A run cannot be found, renamed or deleted; the message says why."""


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
    # filled by load():
    epochs: list[dict] = field(default_factory=list)
    batch_steps: list[int] = field(default_factory=list)
    batch_losses: list[float] = field(default_factory=list)
    snapshots: list[tuple[int, torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status == "running"

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


def _read_folders(root: Path, read: Callable[[Path], Any], skip: tuple[str, ...] = ()) -> tuple[list, list]:
    """`read(folder)` for each folder in `root`, and (name, why) for those it rejects with RunStoreError.

    Hidden names (temp files, folders being imported or deleted) and `skip` are passed over.
    """
    items, skipped = [], []
    try:
        folders = sorted(root.iterdir())
    except OSError:
        folders = []
    for folder in folders:
        if folder.name.startswith(".") or folder.name in skip or not folder.is_dir():
            continue
        try:
            items.append(read(folder))
        except RunStoreError as error:
            skipped.append((folder.name, str(error)))
    return items, skipped


def _folder_with_meta(root: Path, name: str, kind: str, error: type[ValueError]) -> Path:
    folder = root / name
    if not (folder / META).is_file():
        raise error(f"no {kind} {name} in {root}")
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
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


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
    and define `_apply(event)` and `_is_last(event)`."""

    path: Path
    _meta: dict[str, Any]
    _handles: tuple = ()
    _thread: threading.Thread

    def _make_folder(self, root: Path, name: str, kind: str, error: type[ValueError]) -> None:
        self.path = root / name
        root.mkdir(parents=True, exist_ok=True)
        try:
            self.path.mkdir()
        except FileExistsError:
            raise error(f"a {kind} with id {name} already exists in {root}") from None
        (self.path / WEIGHTS).mkdir()

    def _start_writing(self, name: str) -> None:
        """Join this process's live writers, write meta.json and start the writer thread."""
        self.errors = 0  # file writes that failed (logged); training is never stopped by them
        self._last_meta = 0.0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._key = str(self.path.resolve())
        with _LIVE_LOCK:
            _LIVE[self._key] = self
        self._write_meta()  # last: the folder only counts once meta.json exists
        self._thread = threading.Thread(target=self._drain, name=name, daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every queued event is written (after the last one)."""
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _drain(self) -> None:
        while True:
            event = self._queue.get()
            try:
                self._apply(event)
            except Exception:  # a full disk must not stop training; the folder keeps what was saved
                self.errors += 1
                log.exception("could not record %s in %s", type(event).__name__, self._thread.name)
            if self._is_last(event):
                self._close()
                return

    def _apply(self, event: object) -> None:
        raise NotImplementedError

    def _is_last(self, event: object) -> bool:
        raise NotImplementedError

    def _write_meta(self) -> None:
        now = time.time()
        self._meta["updated"] = now
        self._last_meta = now
        _write_json(self.path / META, self._meta)

    def _close(self) -> None:
        """Write the final meta (status no longer running) and leave this process's live writers."""
        try:
            self._write_meta()
        except Exception:
            self.errors += 1
            log.exception("could not write the final status in %s", self.path)
        for handle in self._handles:
            handle.close()
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
                 source: str):
        self.run_id = run_id or new_run_id()
        _check_run_id(self.run_id)
        self.config = config
        self._make_folder(store.root, self.run_id, "run", RunStoreError)
        now = time.time()
        self._meta: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "run_id": self.run_id,
            "name": _clean_name(name) if name else default_run_name(config),
            "status": "running", "phase": "starting", "message": "", "source": source,
            "config": config.to_dict(), "class_names": [], "created": now, "updated": now, "duration": 0.0,
            "epochs_done": 0, "best_validation_accuracy": None, "learning_rate": config.learning_rate,
            "progress": {}, "final": {}, "train_size": 0, "validation_size": 0, "batches_per_epoch": 0,
            "device": "", "lr_changes": [], "owner": _owner()}
        self._epochs = open(self.path / EPOCHS, "a", encoding="utf-8")
        self._batches = open(self.path / BATCHES, "a", encoding="utf-8")
        self._handles = (self._epochs, self._batches)
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

    def _apply(self, event: object) -> None:
        meta = self._meta
        if isinstance(event, _Crash):
            meta.update(status="crashed", phase="", message=event.message or "crashed", progress={})
        elif isinstance(event, ev.BatchProgress):
            first = event.step - len(event.losses) + 1
            self._batches.write(json.dumps({"step": first, "losses": [float(x) for x in event.losses]}) + "\n")
            self._batches.flush()
            meta["duration"] = event.elapsed
            meta["learning_rate"] = event.learning_rate
            meta["progress"] = {"epoch": event.epoch, "batch": event.batch, "step": event.step,
                                "batches_per_epoch": event.batches_per_epoch, "seconds_left": event.seconds_left}
            if time.time() - self._last_meta >= HEARTBEAT_SECONDS:
                self._write_meta()
        elif isinstance(event, ev.EpochEnd):
            self._record_epoch(event)
        elif isinstance(event, ev.RunStarted):
            meta.update(phase="training", class_names=list(event.class_names), train_size=event.train_size,
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
            meta["phase"] = "paused"
            self._write_meta()
        elif isinstance(event, ev.Resumed):
            meta["phase"] = "training"
            self._write_meta()
        elif isinstance(event, ev.Diverged):
            meta["message"] = event.message
            self._write_meta()
        elif isinstance(event, ev.Finished):
            final = {"test_loss": event.test_loss, "test_accuracy": event.test_accuracy,
                     "validation_loss": event.validation_loss, "validation_accuracy": event.validation_accuracy,
                     "epochs_completed": event.epochs_completed}
            save_checkpoint(self.path / CHECKPOINT, event.model, self.config, tuple(event.class_names),
                            event.normalizer, {k: v for k, v in final.items() if _finite(v)})
            meta.update(status=event.status, phase="", final=final, duration=event.elapsed, progress={})

    def _record_epoch(self, event: ev.EpochEnd) -> None:
        # weights first, then the metrics line, then meta: a listed epoch always has its weights
        snapshot = {"weight": event.weight.detach().cpu(), "bias": event.bias.detach().cpu()}
        _write_atomic(self.path / WEIGHTS / f"{event.epoch:04d}.pt", lambda out: torch.save(snapshot, out),
                      binary=True)
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


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check_run_id(run_id: str) -> None:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise RunStoreError(f"invalid run id {run_id!r}: use letters, digits, '-', '_' and '.'")
    if run_id == SWEEPS_FOLDER:
        raise RunStoreError(f"{SWEEPS_FOLDER!r} is reserved for the sweeps folder; choose another run id")


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

    def writer(self, config: TrainConfig, name: str | None = None, run_id: str | None = None,
               source: str = "cli") -> RunWriter:
        """Create the run's folder (status running) and return its writer."""
        return RunWriter(self, config, name, run_id, source)

    def listener(self, source: str = "dashboard") -> Callable[[object, object], None]:
        """A `TrainingWorker` listener that records every worker it is attached to."""
        writers: dict[str, RunWriter] = {}
        failed: set[str] = set()
        lock = threading.Lock()

        def on_event(worker, event) -> None:
            run_id = worker.run_id
            with lock:
                if run_id in failed:
                    return
                writer = writers.get(run_id)
            try:
                if writer is None:
                    record = worker.snapshot()
                    writer = self.writer(record.config, record.name, run_id, source)
                    with lock:
                        writers[run_id] = writer
                if event is None:
                    writer.crash(worker.snapshot().message)
                else:
                    writer.record(event)
            except Exception as error:  # a full disk must not stop training: stop recording this run
                log.exception("could not record run %s in %s", run_id, self.root)
                with lock:
                    failed.add(run_id)
                if writer is not None:
                    try:
                        writer.crash(f"recording stopped: {type(error).__name__}: {error}")
                    except Exception:
                        pass
            if writer is not None and writer.finished:
                with lock:
                    writers.pop(run_id, None)

        return on_event

    # -- reading

    def list_runs(self) -> list[StoredRun]:
        """Every valid run, newest first. Unreadable folders are skipped and listed in `skipped`."""
        runs, self.skipped = _read_folders(self.root, self._summary, skip=(SWEEPS_FOLDER,))
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
            try:
                first, losses = int(row["step"]), [float(x) for x in row["losses"]]
            except (KeyError, TypeError, ValueError):
                continue
            run.batch_steps.extend(range(first, first + len(losses)))
            run.batch_losses.extend(losses)
        if weights:
            run.snapshots = self._snapshots(folder)
        return run

    def load_weights(self, run_id: str, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias after `epoch`."""
        snapshot = _read_snapshot(self._folder(run_id) / WEIGHTS / f"{int(epoch):04d}.pt")
        if snapshot is None:
            raise RunStoreError(f"run {run_id} has no saved weights for epoch {epoch}")
        return snapshot

    def checkpoint_path(self, run_id: str) -> Path | None:
        """The final checkpoint file, or None while running / after a crash."""
        path = self._folder(run_id) / CHECKPOINT
        return path if path.is_file() else None

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

    def import_checkpoint(self, data: bytes, name: str | None = None, source: str = "upload",
                          epochs: list[dict] | None = None) -> str:
        """Store a checkpoint as a run (status imported); raises CheckpointError if bad.

        `epochs` (metrics per epoch, e.g. a sweep configuration's) become the run's curves; a row's
        missing learning rate is the config's and its elapsed time the sum of the epochs' seconds.
        """
        checkpoint = load_checkpoint(data)
        run_id = new_run_id()
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
                "status": "imported", "phase": "", "message": "", "source": source,
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
        if meta["status"] == "running":
            meta = self._check_owner(folder, meta)
        name = meta.get("name") or folder.name
        try:
            custom = json.loads((folder / NAME).read_text(encoding="utf-8"))
            if isinstance(custom, dict) and isinstance(custom.get("name"), str) and custom["name"].strip():
                name = custom["name"]
        except (OSError, ValueError):
            pass
        try:
            checkpoint = folder / CHECKPOINT
            return StoredRun(
                run_id=folder.name, name=name, status=meta["status"], config=config, path=folder,
                phase=str(meta.get("phase") or ""), message=str(meta.get("message") or ""),
                source=str(meta.get("source") or ""), class_names=tuple(meta.get("class_names") or ()),
                created=float(meta.get("created") or 0.0), updated=float(meta.get("updated") or 0.0),
                duration=float(meta.get("duration") or 0.0), epochs_done=int(meta.get("epochs_done") or 0),
                best_validation_accuracy=meta.get("best_validation_accuracy"),
                learning_rate=float(meta.get("learning_rate") or config.learning_rate),
                progress=dict(meta.get("progress") or {}), final=dict(meta.get("final") or {}),
                train_size=int(meta.get("train_size") or 0), validation_size=int(meta.get("validation_size") or 0),
                batches_per_epoch=int(meta.get("batches_per_epoch") or 0), device=str(meta.get("device") or ""),
                checkpoint=checkpoint if checkpoint.is_file() else None,
                has_weights=checkpoint.is_file() or any((folder / WEIGHTS).glob("[0-9]*.pt")),
                lr_changes=list(meta.get("lr_changes") or []))
        except (TypeError, ValueError) as error:
            raise RunStoreError(f"meta.json has invalid values ({error})") from None

    def _check_owner(self, folder: Path, meta: dict) -> dict:
        """A 'running' run whose writer is gone becomes crashed (persisted when surely dead)."""
        state = _writer_gone(meta, folder)
        if state is None:
            return meta
        epochs, total = int(meta.get("epochs_done") or 0), meta.get("config", {}).get("epochs", "?")
        pid = (meta.get("owner") or {}).get("pid")
        meta = {**meta, "status": "crashed", "phase": "", "progress": {}, "message": (
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
