"""Sweeps on disk, beside the runs: every sweep's settings, curves, results and final weights.

    store = SweepStore()                           # <runs dir>/sweeps
    worker = SweepWorker(configs, dataset, listeners=[store.listener()]).start()
    store.list_sweeps()                            # summaries, newest first
    store.load(sweep_id)                           # a SweepRecord, as the Sweep page draws it

One folder per sweep:

    <sweep_id>/meta.json          status, every configuration's settings, status and final metrics;
                                  the file that makes the folder a sweep
    <sweep_id>/epochs.jsonl       one line per configuration and epoch: {"member": i, "epoch": e, ...}
    <sweep_id>/curves.json        the smoothed per-minibatch loss of every configuration (thinned)
    <sweep_id>/weights/group-NN.pt latest weights and biases of batch-size group NN (K x C x 784, K x C),
                                  rewritten as each epoch ends and once more at the group's end
    <sweep_id>/normalizer.pt      the input normalisation, so a configuration can become a checkpoint

Whole files are replaced atomically and epoch lines are appended and flushed, as in the run
store (lrcore.runstore). Epoch lines and weights are written as each epoch ends (weights
first, so a listed epoch's weights are on disk); the curves every few seconds. A write that
fails stops the recording of that sweep with one log line (`SweepStore.save_errors`); the
sweep itself trains on. A sweep whose meta says "running" but whose process has ended (server restart,
kill) is read back as crashed, with every completed epoch kept.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import events as ev
from .checkpoint import checkpoint_bytes
from .config import ConfigError, TrainConfig
from .model import LogisticRegression
from .status import Status
# The run store's file and liveness helpers: sweeps are kept with the same guarantees.
from .runstore import (MAX_MESSAGE_LENGTH, MAX_NAME_LENGTH, RUN_ID_PATTERN, SWEEPS_FOLDER, QueuedWriter,
                       RunStoreError, _capped, _folder_with_meta, _owner, _read_folders, _read_jsonl, _read_meta,
                       _read_normalizer, _remove_folder, _save_normalizer, _unsaved, _write_atomic, _write_crash,
                       _writer_gone, default_runs_dir, describe_write_error, disk_error)
from .sweep import MemberRecord, SweepEnded, SweepRecord, SweepWorker

log = logging.getLogger(__name__)

FORMAT = "lrcore-sweep"
VERSION = 1
META, EPOCHS, CURVES, NORMALIZER, WEIGHTS = "meta.json", "epochs.jsonl", "curves.json", "normalizer.pt", "weights"
STATUSES = (Status.RUNNING, Status.DONE, Status.STOPPED, Status.FAILED, Status.CRASHED)
CURVE_SECONDS = 2.0  # the per-batch curves are rewritten at most this often while training
META_SECONDS = 1.0  # the summary in meta.json likewise, between status changes
HEARTBEAT_SECONDS = 5.0
EPOCH_FIELDS = ("epoch", "step", "train_loss", "train_accuracy", "validation_loss", "validation_accuracy", "seconds")


class SweepStoreError(RunStoreError):
    """A sweep cannot be found, read or deleted; the message says why."""


def default_sweeps_dir() -> Path:
    return default_runs_dir() / SWEEPS_FOLDER


@dataclass
class SweepSummary:
    """A sweep as listed: enough for a picker, without its curves."""

    sweep_id: str
    status: str
    dataset: str
    created: float
    elapsed: float
    configs: list[TrainConfig]
    best_label: str | None = None
    best_validation_accuracy: float | None = None
    message: str = ""

    @property
    def title(self) -> str:
        rates = sorted({config.learning_rate for config in self.configs})
        when = time.strftime("%d %b %H:%M", time.localtime(self.created))
        best = (f" · best {self.best_label}: {self.best_validation_accuracy:.1%}"
                if self.best_validation_accuracy is not None else "")
        return (f"{when} · {len(self.configs)} configurations, lr {rates[0]:g} to {rates[-1]:g} on "
                f"{self.dataset} · {self.status}{best}")


def _finite_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _member_summary(member: MemberRecord) -> dict:
    return {"status": member.status, "message": member.message, "final": member.final,
            "last_step": member.last_step, "epochs_done": member.epochs_done,
            "validation_accuracy": _finite_or_none(member.validation_accuracy)}


# ---------------------------------------------------------------- writer

class SweepWriter(QueuedWriter):
    """Records one sweep's progress into its folder. Create it with `SweepStore.writer`.

    `record` only queues the event; a writer thread reads the worker's snapshot and does the
    file work, so the sweep never waits for the disk. `SweepEnded` waits until all is written.
    """

    def __init__(self, store: "SweepStore", worker: SweepWorker, source: str,
                 on_error: Callable[[str], None] | None = None):
        record = worker.snapshot()
        self.sweep_id = record.sweep_id
        _check_sweep_id(self.sweep_id)
        self.on_error = on_error
        # the size limit covers the whole run store, which holds the sweeps folder
        quota_root = store.root.parent if store.root.name == SWEEPS_FOLDER else store.root
        self._make_folder(store.root, self.sweep_id, "sweep", SweepStoreError, quota_root)
        self._worker = worker
        now = time.time()
        self._meta: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "sweep_id": self.sweep_id, "status": Status.RUNNING, "message": "",
            "source": source, "created": record.started, "updated": now, "elapsed": 0.0,
            "configs": [member.config.to_dict() for member in record.members],
            "labels": [member.label for member in record.members], "groups": record.groups,
            "members": [_member_summary(member) for member in record.members], "class_names": [],
            "train_size": 0, "validation_size": 0, "device": "", "owner": _owner()}
        self._written = [0] * len(record.members)  # epoch lines written per configuration
        self._weights_written: dict[int, list] = {}  # group -> (epochs, finished) per member, as saved
        self._epochs = self._open_append(EPOCHS)
        self._handles = (self._epochs,)
        self._last_curves = 0.0
        self.finished = False
        self._start_writing(f"sweepstore-{self.sweep_id}")

    def record(self, indices: list[int], event: object) -> None:
        """Queue one sweep event; after `SweepEnded` return once everything is on disk."""
        if self.finished:
            return
        self.finished = isinstance(event, SweepEnded)
        self._queue.put(event)
        if self.finished:
            self.wait()

    def _is_last(self, event: object) -> bool:
        return isinstance(event, SweepEnded)

    def _settle(self, event: object) -> None:
        if isinstance(event, SweepEnded):
            self._meta.update(status=event.status, message=event.message)

    def _apply(self, event: object) -> None:
        now = time.time()
        if isinstance(event, ev.GroupBatchProgress):
            if now - self._last_curves < CURVE_SECONDS and now - self._last_meta < HEARTBEAT_SECONDS:
                return  # nothing due: skip the snapshot
        record = self._worker.snapshot()
        meta = self._meta
        meta.update(elapsed=record.elapsed, message=record.message,
                    members=[_member_summary(member) for member in record.members])
        if isinstance(event, ev.GroupStarted):
            meta.update(class_names=list(event.class_names), train_size=event.train_size,
                        validation_size=event.validation_size, device=event.device)
            if event.normalizer is not None and not (self.path / NORMALIZER).exists():
                _save_normalizer(self.path / NORMALIZER, event.normalizer)
        elif isinstance(event, SweepEnded):
            meta.update(status=event.status, message=event.message)
        if not isinstance(event, ev.GroupBatchProgress):
            self._save_group_weights(record)  # before the epoch lines: a listed epoch has its weights
        self._write_epochs(record)
        # batches and epoch ends are written throttled; anything else changes a status: at once
        routine = isinstance(event, (ev.GroupBatchProgress, ev.GroupEpochEnd))
        if not routine or now - self._last_curves >= CURVE_SECONDS:
            self._write_curves(record)
        if not routine or now - self._last_meta >= META_SECONDS:
            self._write_meta()

    def _write_epochs(self, record: SweepRecord) -> None:
        lines = []
        for member in record.members:
            for row in member.epochs[self._written[member.index]:]:
                lines.append(json.dumps({"member": member.index, **{name: row[name] for name in EPOCH_FIELDS}}))
            self._written[member.index] = len(member.epochs)
        if lines:
            self._epochs.write("\n".join(lines) + "\n")
            self._epochs.flush()

    def _write_curves(self, record: SweepRecord) -> None:
        curves = [{"steps": member.batch_steps, "smoothed": member.batch_smoothed} for member in record.members]
        # compact: json's indented output goes through its pure-Python encoder, ~10x slower for 40,000 numbers
        text = json.dumps(curves, separators=(",", ":"))
        _write_atomic(self.path / CURVES, lambda out: out.write(text))
        self._last_curves = time.time()

    def _save_group_weights(self, record: SweepRecord) -> None:
        """Each group's latest weights (last completed epoch, or final), one file per group, rewritten
        when they changed: a sweep cut off by a crash keeps weights for every configuration."""
        for number, indices in enumerate(record.groups):
            members = [record.members[i] for i in indices if record.members[i].weight is not None]
            state = [(m.epochs_done, bool(m.final)) for m in members]
            if not members or self._weights_written.get(number) == state:
                continue
            values = {"indices": torch.tensor([m.index for m in members]),
                      "epochs": torch.tensor([m.epochs_done for m in members]),
                      "weight": torch.stack([m.weight.cpu() for m in members]),
                      "bias": torch.stack([m.bias.cpu() for m in members])}
            _write_atomic(self.path / WEIGHTS / f"group-{number:02d}.pt", lambda out: torch.save(values, out),
                          binary=True)
            self._weights_written[number] = state



def _check_sweep_id(sweep_id: str) -> None:
    if not isinstance(sweep_id, str) or not RUN_ID_PATTERN.match(sweep_id):  # the same rule as run ids
        raise SweepStoreError(f"invalid sweep id {sweep_id!r}: use letters, digits, '-', '_' and '.'")


# ---------------------------------------------------------------- store

class SweepStore:
    """All sweeps under one folder (by default `sweeps/` inside the runs folder)."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_sweeps_dir()
        self.skipped: list[tuple[str, str]] = []
        self.problem = ""  # why the last list_sweeps() could not read the folder itself
        self.save_errors: dict[str, str] = {}  # sweep id -> why it could not be saved (this process)

    def writer(self, worker: SweepWorker, source: str = "dashboard",
               on_error: Callable[[str], None] | None = None) -> SweepWriter:
        """Create the sweep's folder; raises OSError if it cannot (see RunStore.writer)."""
        return SweepWriter(self, worker, source, on_error)

    def listener(self, source: str = "dashboard") -> Callable[[SweepWorker, list[int], object], None]:
        """A `SweepWorker` listener that records the sweep it is attached to (one sweep per listener)."""
        writers: dict[str, SweepWriter | None] = {}
        lock = threading.Lock()

        def on_event(worker: SweepWorker, indices: list[int], event: object) -> None:
            sweep_id = worker.sweep_id
            with lock:
                if sweep_id not in writers:
                    try:
                        writers[sweep_id] = self.writer(
                            worker, source, on_error=lambda reason: self.save_errors.setdefault(sweep_id, reason))
                    except Exception as error:  # a read-only or full disk: the sweep still runs, unrecorded
                        self.save_errors[sweep_id] = describe_write_error(error)
                        if isinstance(error, RunStoreError) or disk_error(error):
                            log.error("sweep %s is not saved: %s", sweep_id, self.save_errors[sweep_id])
                        else:
                            log.exception("sweep %s is not saved", sweep_id)
                        writers[sweep_id] = None
                writer = writers[sweep_id]
            if writer is not None:
                writer.record(indices, event)

        return on_event

    # -- reading

    def list_sweeps(self) -> list[SweepSummary]:
        """Every readable sweep, newest first; unreadable folders are listed in `skipped`."""
        sweeps, self.skipped, self.problem = _read_folders(
            self.root, lambda folder: _summary(self._meta(folder), folder.name))
        sweeps.sort(key=lambda sweep: (sweep.created, sweep.sweep_id), reverse=True)
        return sweeps

    def load(self, sweep_id: str) -> SweepRecord:
        """One sweep in full, as the Sweep page draws it: curves, results and final weights."""
        folder = self._folder(sweep_id)
        meta = self._meta(folder)
        configs, labels, groups, summaries = _members_of(meta)
        group_of = {index: number for number, indices in enumerate(groups) for index in indices}
        members = []
        for index, (config, label, summary) in enumerate(zip(configs, labels, summaries)):
            final = summary.get("final") if isinstance(summary.get("final"), dict) else {}
            last_step = summary.get("last_step")
            members.append(MemberRecord(index, config, _capped(label, MAX_NAME_LENGTH), group_of.get(index, 0),
                                        status=str(summary.get("status") or Status.WAITING),
                                        message=_capped(summary.get("message"), MAX_MESSAGE_LENGTH),
                                        final=dict(final),
                                        last_step=last_step if isinstance(last_step, int) else None))
        for row in _read_jsonl(folder / EPOCHS):
            try:
                member = members[int(row["member"])]
                values = {name: row[name] for name in EPOCH_FIELDS}
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if values["epoch"] > member.epochs_done or not member.epochs:
                member.epochs.append(values)
        try:
            curves = json.loads((folder / CURVES).read_text(encoding="utf-8"))
            for member, curve in zip(members, curves):
                steps, smoothed = list(curve["steps"]), list(curve["smoothed"])
                if len(steps) == len(smoothed):
                    member.batch_steps, member.batch_smoothed = steps, smoothed
        except (OSError, ValueError, TypeError, KeyError):
            pass  # no curves yet (or a damaged file): the epoch curves and table still show
        for path in sorted((folder / WEIGHTS).glob("group-*.pt")):
            try:
                values = torch.load(path, map_location="cpu", weights_only=True)
                for index, weight, bias in zip(values["indices"].tolist(), values["weight"], values["bias"]):
                    members[index].weight, members[index].bias = weight, bias
            except Exception:
                continue  # damaged: those configurations just cannot become checkpoints
        status = meta["status"]
        if status == Status.CRASHED:
            for member in members:
                if member.status in (Status.WAITING, Status.TRAINING):
                    member.status = Status.CRASHED
                    member.message = f"the sweep ended without finishing after epoch {member.epochs_done}"
        return SweepRecord(sweep_id, members, groups, status=status,
                           message=_capped(meta.get("message"), MAX_MESSAGE_LENGTH),
                           train_size=int(meta.get("train_size") or 0),
                           validation_size=int(meta.get("validation_size") or 0),
                           device=str(meta.get("device") or ""), normalizer=_read_normalizer(folder / NORMALIZER),
                           class_names=tuple(meta.get("class_names") or ()),
                           started=float(meta.get("created") or 0.0), elapsed=float(meta.get("elapsed") or 0.0))

    # -- changing

    def delete(self, sweep_id: str) -> None:
        """Remove a finished sweep and its files."""
        folder = self._folder(sweep_id)
        try:
            status = self._meta(folder)["status"]
        except SweepStoreError:
            status = None  # a broken folder may always be removed
        if status == Status.RUNNING:
            raise SweepStoreError("this sweep is still training; stop it before deleting it")
        _remove_folder(self.root, folder)

    # -- internals

    def _folder(self, sweep_id: str) -> Path:
        _check_sweep_id(sweep_id)
        return _folder_with_meta(self.root, sweep_id, "sweep", SweepStoreError)

    def _meta(self, folder: Path) -> dict:
        meta = _read_meta(folder, FORMAT, "sweep", SweepStoreError)
        if meta.get("status") not in STATUSES:
            raise SweepStoreError(f"meta.json has an unknown status {meta.get('status')!r}")
        _members_of(meta)  # raises for bad settings
        if meta["status"] == Status.RUNNING:
            meta = self._check_owner(folder, meta)
        return meta

    def _check_owner(self, folder: Path, meta: dict) -> dict:
        """A 'running' sweep whose process is gone becomes crashed (persisted when surely dead)."""
        kept = _unsaved(folder)
        if kept is not None:  # its writer in this process could not write the end: the end it knew
            return kept
        state = _writer_gone(meta, folder)
        if state is None:
            return meta
        pid = (meta.get("owner") or {}).get("pid")
        meta = {**meta, "status": Status.CRASHED, "message": (
            f"the process training it (pid {pid}) ended without finishing (server restart, crash or kill); "
            "every completed epoch is kept")}
        # the summary's per-configuration numbers may lag the epoch lines by a second: bring them up to date
        rows = _read_jsonl(folder / EPOCHS)
        members = [dict(member) for member in meta["members"]]
        for row in rows:
            try:
                member = members[int(row["member"])]
                if int(row["epoch"]) >= int(member.get("epochs_done") or 0):
                    member.update(epochs_done=int(row["epoch"]),
                                  validation_accuracy=_finite_or_none(row["validation_accuracy"]))
            except (KeyError, IndexError, TypeError, ValueError):
                continue
        meta["members"] = members
        _write_crash(folder, meta, state)
        return meta


def _members_of(meta: dict) -> tuple[list[TrainConfig], list[str], list[list[int]], list[dict]]:
    """The configurations, labels, groups and member summaries of a sweep's meta, checked."""
    try:
        configs = [TrainConfig.from_dict(values) for values in meta["configs"]]
        labels = [str(label) for label in meta["labels"]]
        groups = [[int(index) for index in group] for group in meta["groups"]]
        summaries = [dict(member) for member in meta["members"]]
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise SweepStoreError(f"meta.json has invalid settings ({error})") from None
    if not configs or not (len(configs) == len(labels) == len(summaries)) \
            or sorted(i for group in groups for i in group) != list(range(len(configs))):
        raise SweepStoreError("meta.json's configurations, labels and groups do not match")
    return configs, labels, groups, summaries


def _summary(meta: dict, sweep_id: str) -> SweepSummary:
    configs, labels, _groups, members = _members_of(meta)
    best_label, best = None, None
    for label, member in zip(labels, members):
        accuracy = member.get("validation_accuracy")
        if member.get("status") in (Status.DIVERGED, Status.FAILED) or not isinstance(accuracy, (int, float)):
            continue
        if best is None or accuracy > best:
            best_label, best = label, float(accuracy)
    return SweepSummary(sweep_id, meta["status"], configs[0].dataset, float(meta.get("created") or 0.0),
                        float(meta.get("elapsed") or 0.0), configs, _capped(best_label, MAX_NAME_LENGTH) or None,
                        best, _capped(meta.get("message"), MAX_MESSAGE_LENGTH))


def member_checkpoint_bytes(record: SweepRecord, member: MemberRecord) -> bytes:
    """One configuration's final (or latest) weights as a checkpoint file, to keep it as a run."""
    if member.weight is None or member.bias is None or record.normalizer is None:
        raise SweepStoreError(f"{member.label} has no saved weights")
    metrics = {name: value for name, value in member.final.items() if _finite_or_none(value) is not None}
    metrics.setdefault("epochs_completed", member.epochs_done)
    return checkpoint_bytes(LogisticRegression.from_tensors(member.weight, member.bias), member.config,
                            tuple(record.class_names), record.normalizer, metrics)
