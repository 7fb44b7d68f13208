"""One record of a run, and `fold`, the one place a training event changes it.

The live job folds every event into its records; the store's writer persists what changed;
the store's reader gives back the same record. Pages, the CLI and the tests all read this shape.

What one record keeps is bounded, in memory and in the store alike: every epoch's metrics, at most
MAX_SNAPSHOTS weight snapshots (epoch 0, multiples of a stride that doubles as the run grows, and
the newest) and at most MAX_BATCH_VALUES batch losses (beyond, neighbours are averaged in pairs).
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass, field, replace

import torch

from . import events as ev
from .config import TrainConfig
from .data import Normalizer
from .model import LogisticRegression
from .status import Status

ACTIVE_STATUSES = (Status.QUEUED, Status.STARTING, Status.WAITING, Status.TRAINING, Status.PAUSED)
MAX_SNAPSHOTS = 50  # weight snapshots per run (31 KB each for 10 classes)
MAX_BATCH_VALUES = 10_000  # batch losses per run
EPOCH_FIELDS = ("epoch", "step", "train_loss", "train_accuracy", "validation_loss", "validation_accuracy",
                "learning_rate", "seconds", "elapsed")


@dataclass
class RunRecord:
    """What a run has produced so far; pages get copies (`copy()`)."""

    run_id: str
    name: str
    config: TrainConfig
    status: str = Status.STARTING
    message: str = ""
    source: str = "dashboard"  # dashboard, cli, sweep, upload
    group_id: str = ""  # the sweep this run was trained in ("" for a lone run)
    class_names: tuple[str, ...] = ()
    train_size: int = 0
    validation_size: int = 0
    batches_per_epoch: int = 0
    device: str = ""
    epochs: list[dict] = field(default_factory=list)  # one dict of EPOCH_FIELDS per epoch, epoch 0 first
    batch_steps: list[int] = field(default_factory=list)  # the step each value of batch_losses ends at
    batch_losses: list[float] = field(default_factory=list)
    batch_stride: int = 1  # steps averaged into each batch value (doubles when thinned)
    batch_block: list[float] = field(default_factory=lambda: [0.0, 0, 0])  # loss sum, count, last step not yet a value
    lr_changes: list[dict] = field(default_factory=list)  # {step, epoch, old, new}
    snapshots: list[tuple[int, torch.Tensor, torch.Tensor]] = field(default_factory=list, repr=False)
    snapshot_stride: int = 1  # kept snapshot epochs are multiples of this, plus the newest
    progress: dict = field(default_factory=dict)  # epoch, batch, batches_per_epoch, step, seconds_left
    learning_rate: float = 0.0
    final: dict = field(default_factory=dict)  # the kept weights' metrics once finished
    normalizer: Normalizer | None = field(default=None, repr=False)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    elapsed: float = 0.0  # seconds since training started, as last reported
    save_error: str = ""  # why the store could not save this run ("" while it can); it trains on
    stored_snapshots: int = 0  # weight snapshots in the store (a listing reads them without their tensors)
    queued_ahead: int = 0  # while queued: runs that must end before a worker is free for it (not stored)
    owner: str = ""  # the public id of the browser that started it (lrcore.classroom.owner_id); "" = nobody's
    lesson: str = ""  # the id of the lesson it was started in ("" = none)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def settling(self) -> bool:
        """Diverged, its final numbers (the kept weights on the test set) not in yet: pages watching it keep
        polling until the Finished event brings them (it comes a moment later, or at a sweep's end)."""
        return self.status == Status.DIVERGED and not self.final

    @property
    def epochs_done(self) -> int:
        return self.epochs[-1]["epoch"] if self.epochs else 0

    @property
    def best_validation_accuracy(self) -> float | None:
        values = [row["validation_accuracy"] for row in self.epochs if math.isfinite(row["validation_accuracy"])]
        return max(values) if values else None

    @property
    def validation_accuracy(self) -> float | None:
        """The kept weights' once finished, else the newest epoch's."""
        if "validation_accuracy" in self.final:
            return self.final["validation_accuracy"]
        return self.epochs[-1]["validation_accuracy"] if self.epochs else None

    @property
    def test_accuracy(self) -> float | None:
        return self.final.get("test_accuracy")

    @property
    def has_weights(self) -> bool:
        """Weights to open or download: in memory, or in the store for a run listed without them."""
        return bool(self.snapshots) or self.stored_snapshots > 0

    def latest_model(self) -> LogisticRegression | None:
        """The newest weights (last epoch, or the kept weights after a stop/divergence)."""
        if not self.snapshots:
            return None
        _, weight, bias = self.snapshots[-1]
        return LogisticRegression.from_tensors(weight, bias)

    def copy(self) -> "RunRecord":
        """A copy safe to read while the job goes on (lists copied; tensors are never mutated)."""
        return replace(self, epochs=list(self.epochs), batch_steps=list(self.batch_steps),
                       batch_losses=list(self.batch_losses), batch_block=list(self.batch_block),
                       lr_changes=list(self.lr_changes), snapshots=list(self.snapshots),
                       progress=dict(self.progress), final=dict(self.final))


@dataclass(frozen=True)
class QueueState:
    """An event of the job, not of training (`lrcore.events` holds those): the run waits for a free worker
    process (status queued, `ahead` runs must end first), or has left the queue (starting or waiting)."""

    index: int
    status: str
    ahead: int = 0


def fold(record: RunRecord, event: object) -> None:
    """Fold one training event (about this run) into its record."""
    record.updated = time.time()
    if isinstance(event, QueueState):
        record.status, record.queued_ahead = event.status, event.ahead
    elif isinstance(event, ev.RunStarted):
        record.status = Status.TRAINING
        record.class_names = tuple(event.class_names)
        record.train_size, record.validation_size = event.train_size, event.validation_size
        record.batches_per_epoch, record.device = event.batches_per_epoch, event.device
        record.normalizer = event.normalizer
        record.learning_rate = event.config.learning_rate
    elif isinstance(event, ev.EpochEnd):
        record.epochs.append({name: getattr(event, name) for name in EPOCH_FIELDS})
        if event.weight is not None:
            add_snapshot(record, event.epoch, event.weight, event.bias)
        record.learning_rate = event.learning_rate
        record.elapsed = event.elapsed
    elif isinstance(event, ev.BatchProgress):
        add_batch_losses(record, event.step - len(event.losses) + 1, event.losses)
        record.learning_rate = event.learning_rate
        record.progress = {"epoch": event.epoch, "batch": event.batch, "step": event.step,
                           "batches_per_epoch": event.batches_per_epoch, "seconds_left": event.seconds_left}
        record.elapsed = event.elapsed
    elif isinstance(event, ev.LearningRateChanged):
        record.lr_changes.append({"step": event.step, "epoch": event.epoch, "old": event.old, "new": event.new})
        record.learning_rate = event.new
    elif isinstance(event, ev.Paused):
        record.status = Status.PAUSED
    elif isinstance(event, ev.Resumed):
        record.status = Status.TRAINING
    elif isinstance(event, ev.Diverged):
        # At once, not at Finished: in a sweep the others train on while this one is frozen.
        record.status = Status.DIVERGED
        record.message = event.message
    elif isinstance(event, ev.Finished):
        record.status = event.status
        record.final = {"test_loss": event.test_loss, "test_accuracy": event.test_accuracy,
                        "validation_loss": event.validation_loss, "validation_accuracy": event.validation_accuracy,
                        "epochs_completed": event.epochs_completed, "train_loss": event.train_loss,
                        "train_accuracy": event.train_accuracy, "kept_step": event.kept_step,
                        "kept_epoch": event.kept_at[0], "kept_batch": event.kept_at[1]}
        total, count, last = record.batch_block
        if count:  # the last, shorter block of steps becomes one more value
            record.batch_steps.append(int(last))
            record.batch_losses.append(total / count)
            record.batch_block = [0.0, 0, 0]
        weight = event.model.linear.weight.detach().cpu().clone()
        bias = event.model.linear.bias.detach().cpu().clone()
        if not record.snapshots or not torch.equal(record.snapshots[-1][1], weight):
            # stopped or diverged mid-epoch: keep the weights it ended with
            add_snapshot(record, record.epochs_done, weight, bias)
        record.elapsed = event.elapsed
        record.progress = {}


def crash(record: RunRecord, message: str) -> None:
    """The job training this run ended without finishing it."""
    record.status = Status.CRASHED
    record.message = message
    record.updated = time.time()


def add_snapshot(record: RunRecord, epoch: int, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Keep (epoch, W, b), thinned to MAX_SNAPSHOTS: epoch 0, multiples of a doubling stride, the newest.

    After a stop or divergence inside an epoch the kept weights come last with the epoch number of
    the snapshot before them (the Weights page names them from `final`'s kept epoch and batch)."""
    snapshots = record.snapshots + [(epoch, weight, bias)]
    stride = record.snapshot_stride
    while sum(1 for s in snapshots if s[0] % stride == 0 or s is snapshots[-1]) > MAX_SNAPSHOTS:
        stride *= 2
    record.snapshot_stride = stride
    record.snapshots = [s for s in snapshots if s[0] % stride == 0 or s is snapshots[-1]]


def add_batch_losses(record: RunRecord, first_step: int, losses: tuple[float, ...] | list[float]) -> None:
    """Append the losses of steps first_step, first_step + 1, ...; at most MAX_BATCH_VALUES values stay,
    each the mean of `batch_stride` consecutive steps (a diverged run's inf/NaN stays as it is)."""
    stride, block = record.batch_stride, record.batch_block
    for step, loss in enumerate(losses, start=first_step):
        if stride == 1:
            record.batch_steps.append(step)
            record.batch_losses.append(loss)
        else:
            block[0] += loss
            block[1] += 1
            block[2] = step
            if block[1] >= stride:
                record.batch_steps.append(step)
                record.batch_losses.append(block[0] / block[1])
                block[:] = [0.0, 0, 0]
        if len(record.batch_losses) > MAX_BATCH_VALUES:
            stride = _halve_batch_values(record)
            block = record.batch_block


def _halve_batch_values(record: RunRecord) -> int:
    """Average neighbours in pairs; an odd last value starts the next, twice as long, block."""
    steps, losses = record.batch_steps, record.batch_losses
    if len(losses) % 2:
        step = steps.pop()
        total, count, last = record.batch_block
        record.batch_block = [losses.pop() * record.batch_stride + total, record.batch_stride + count,
                              max(step, last)]
    record.batch_steps = steps[1::2]
    record.batch_losses = [(losses[i] + losses[i + 1]) / 2 for i in range(0, len(losses), 2)]
    record.batch_stride *= 2
    return record.batch_stride


def epochs_csv(record: RunRecord) -> str:
    """The per-epoch metrics of a run as CSV (for export), one row per epoch."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(EPOCH_FIELDS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in record.epochs:
        writer.writerow(row)
    return buffer.getvalue()
