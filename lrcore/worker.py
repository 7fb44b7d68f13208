"""Training in a background thread, with a thread-safe record that pages poll.

The worker consumes `train(...)` and folds each event into a `RunRecord`; it makes no
Streamlit calls. Pages read `worker.snapshot()` from an `st.fragment(run_every=...)`, so
widget clicks and page switches rerun the page script without touching the thread.
`RunRegistry` keeps the workers of the whole server process, keyed by run id, so a run
keeps training across a browser refresh (the id travels in the URL).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

import torch

from . import events as ev
from .config import ConfigError, TrainConfig
from .data import Dataset, DatasetUnavailable, Normalizer
from .model import LogisticRegression
from .status import Status
from .train import TrainingControl, train

log = logging.getLogger(__name__)
ACTIVE_STATUSES = (Status.STARTING, Status.TRAINING, Status.PAUSED)
# Weight snapshots a live run keeps in server memory (31 KB each for 10 classes): thinned evenly
# as the run grows, like the run store's files, so a 1000-epoch run holds ~1.6 MB, not 31 MB.
MAX_MEMORY_SNAPSHOTS = 50


@dataclass
class RunRecord:
    """What a run has produced so far. Copies of it are handed to pages."""

    run_id: str
    name: str
    config: TrainConfig
    status: str = Status.STARTING
    message: str = ""
    class_names: tuple[str, ...] = ()
    train_size: int = 0
    validation_size: int = 0
    batches_per_epoch: int = 0
    device: str = ""
    epochs: list[dict] = field(default_factory=list)  # one dict per EpochEnd, epoch 0 first
    batch_steps: list[int] = field(default_factory=list)
    batch_losses: list[float] = field(default_factory=list)
    lr_changes: list[dict] = field(default_factory=list)  # {step, epoch, old, new}
    snapshots: list[tuple[int, torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (epoch, W, b)
    progress: dict = field(default_factory=dict)  # epoch, batch, batches_per_epoch, step, seconds_left
    learning_rate: float = 0.0
    final: dict = field(default_factory=dict)  # test/validation metrics once finished
    normalizer: Normalizer | None = None
    started: float = field(default_factory=time.time)
    elapsed: float = 0.0
    save_error: str = ""  # why the run store could not save this run ("" while it can); it trains on
    version: int = 0  # bumped on every change, so pollers can skip redraws
    snapshot_stride: int = 1  # epochs kept in `snapshots` are multiples of this (plus the newest)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def epochs_done(self) -> int:
        return self.epochs[-1]["epoch"] if self.epochs else 0

    def latest_model(self) -> LogisticRegression | None:
        """The newest weights (last epoch, or the kept weights after a stop/divergence)."""
        if not self.snapshots:
            return None
        _, weight, bias = self.snapshots[-1]
        return LogisticRegression.from_tensors(weight, bias)

    def _thin_snapshots(self) -> None:
        """At most MAX_MEMORY_SNAPSHOTS epoch snapshots: epoch 0, multiples of a stride that doubles
        as the run grows, and the newest (what the Weights slider scrubs through)."""
        newest = self.snapshots[-1]
        while True:
            kept = [s for s in self.snapshots if s[0] % self.snapshot_stride == 0 or s is newest]
            if len(kept) <= MAX_MEMORY_SNAPSHOTS:
                break
            self.snapshot_stride *= 2
        self.snapshots = kept

    def apply(self, event: object) -> None:
        """Fold one training event into the record."""
        if isinstance(event, ev.RunStarted):
            self.status = Status.TRAINING
            self.class_names = event.class_names
            self.train_size, self.validation_size = event.train_size, event.validation_size
            self.batches_per_epoch, self.device = event.batches_per_epoch, event.device
            self.normalizer = event.normalizer
            self.learning_rate = event.config.learning_rate
        elif isinstance(event, ev.EpochEnd):
            self.epochs.append({
                "epoch": event.epoch, "step": event.step, "train_loss": event.train_loss,
                "train_accuracy": event.train_accuracy, "validation_loss": event.validation_loss,
                "validation_accuracy": event.validation_accuracy, "learning_rate": event.learning_rate,
                "seconds": event.seconds, "elapsed": event.elapsed})
            self.snapshots.append((event.epoch, event.weight, event.bias))
            self._thin_snapshots()
            self.elapsed = event.elapsed
        elif isinstance(event, ev.BatchProgress):
            first = event.step - len(event.losses) + 1
            self.batch_steps.extend(range(first, event.step + 1))
            self.batch_losses.extend(event.losses)
            self.learning_rate = event.learning_rate
            self.progress = {"epoch": event.epoch, "batch": event.batch, "step": event.step,
                             "batches_per_epoch": event.batches_per_epoch, "seconds_left": event.seconds_left}
            self.elapsed = event.elapsed
        elif isinstance(event, ev.LearningRateChanged):
            self.lr_changes.append({"step": event.step, "epoch": event.epoch, "old": event.old, "new": event.new})
            self.learning_rate = event.new
        elif isinstance(event, ev.Paused):
            self.status = Status.PAUSED
        elif isinstance(event, ev.Resumed):
            self.status = Status.TRAINING
        elif isinstance(event, ev.Diverged):
            self.message = event.message
        elif isinstance(event, ev.Finished):
            self.status = event.status
            self.final = {"test_loss": event.test_loss, "test_accuracy": event.test_accuracy,
                          "validation_loss": event.validation_loss,
                          "validation_accuracy": event.validation_accuracy,
                          "epochs_completed": event.epochs_completed,
                          "train_loss": event.train_loss, "train_accuracy": event.train_accuracy,
                          "kept_step": event.kept_step, "kept_epoch": event.kept_at[0],
                          "kept_batch": event.kept_at[1]}
            weight = event.model.linear.weight.detach().clone()
            bias = event.model.linear.bias.detach().clone()
            if not self.snapshots or not torch.equal(self.snapshots[-1][1], weight):
                # stopped or diverged mid-epoch: keep the weights it ended with
                self.snapshots.append((self.epochs_done, weight, bias))
            self.elapsed = event.elapsed
        self.version += 1


Listener = Callable[["TrainingWorker", object], None]


class TrainingWorker:
    """Runs `train(config)` in a daemon thread; `control` pauses, resumes, stops, changes lr."""

    def __init__(self, config: TrainConfig, dataset: Dataset, run_id: str | None = None, name: str | None = None,
                 listeners: Iterable[Listener] = (), batch_event_seconds: float = 0.1):
        self.run_id = run_id or new_run_id()
        self.control = TrainingControl()
        self._record = RunRecord(self.run_id, name or default_run_name(config), config)
        self._lock = threading.Lock()
        self._dataset = dataset
        self._listeners = list(listeners)
        self._batch_event_seconds = batch_event_seconds
        self._thread = threading.Thread(target=self._run, name=f"train-{self.run_id}", daemon=True)

    def start(self) -> "TrainingWorker":
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def snapshot(self) -> RunRecord:
        """A copy safe to read without the lock (lists copied; tensors are never mutated)."""
        with self._lock:
            record = self._record
            return replace(record, epochs=list(record.epochs), batch_steps=list(record.batch_steps),
                           batch_losses=list(record.batch_losses), lr_changes=list(record.lr_changes),
                           snapshots=list(record.snapshots), progress=dict(record.progress),
                           final=dict(record.final))

    @property
    def version(self) -> int:
        return self._record.version

    def rename(self, name: str) -> None:
        with self._lock:
            self._record.name = name
            self._record.version += 1

    def set_save_error(self, reason: str) -> None:
        """Called by a recorder (RunStore.listener) that cannot save this run; the first reason stays."""
        with self._lock:
            if not self._record.save_error:
                self._record.save_error = reason
                self._record.version += 1

    def _run(self) -> None:
        try:
            for event in train(self._record.config, self._dataset, self.control, self._batch_event_seconds):
                with self._lock:
                    self._record.apply(event)
                self._notify(event)
        except (ConfigError, DatasetUnavailable) as error:
            self._crash(str(error))
        except Exception as error:  # never let a worker die silently: the page shows the reason
            log.exception("training run %s crashed", self.run_id)
            self._crash(f"training stopped by an internal error: {type(error).__name__}: {error}")

    def _crash(self, message: str) -> None:
        with self._lock:
            self._record.status = Status.CRASHED
            self._record.message = message
            self._record.version += 1
        self._notify(None)

    def _notify(self, event: object) -> None:
        for listener in self._listeners:
            try:
                listener(self, event)
            except Exception:  # a failing recorder must not stop training
                log.exception("listener failed for run %s", self.run_id)



def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def default_run_name(config: TrainConfig) -> str:
    """"SGD lr=0.5 wd=0.01": what differs from the defaults (see lrcore.naming)."""
    from .naming import default_run_name as name_for

    return name_for(config)


class RunRegistry:
    """The workers of this server process, by run id. One per process, shared by all sessions."""

    def __init__(self) -> None:
        self._workers: dict[str, TrainingWorker] = {}
        self._lock = threading.Lock()

    def start(self, config: TrainConfig, dataset: Dataset, listeners: Iterable[Listener] = (),
              name: str | None = None) -> TrainingWorker:
        worker = TrainingWorker(config, dataset, name=name, listeners=listeners)
        with self._lock:
            self._workers[worker.run_id] = worker
        return worker.start()

    def get(self, run_id: str | None) -> TrainingWorker | None:
        if not run_id:
            return None
        with self._lock:
            return self._workers.get(run_id)

    def active(self) -> list[TrainingWorker]:
        with self._lock:
            return [w for w in self._workers.values() if w.snapshot().active]

    def unsaved(self) -> list[TrainingWorker]:
        """Workers whose run could not be saved: they exist only here, until the server restarts."""
        with self._lock:
            workers = list(self._workers.values())
        return [w for w in workers if w.snapshot().save_error]
