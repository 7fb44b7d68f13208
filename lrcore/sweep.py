"""Learning-rate sweeps: many configurations trained side by side, in a background thread.

    configs = sweep_configs(TrainConfig(epochs=5), log_grid(1e-3, 100, 11), batch_sizes=[64, 256])
    worker = SweepWorker(configs, load_dataset("mnist-sample")).start()
    worker.join(); print(worker.snapshot().ranked()[0].config.learning_rate)

Configurations sharing a batch size (and weight decay may differ) form one group, trained by
`lrcore.train.train_group` on the same minibatches with one stacked matrix product per step,
so 16 learning rates cost little more than one. Groups run one after another. A diverged
configuration is frozen and marked; it never ends the sweep.
"""
from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence

import torch

from . import events as ev
from .config import LEARNING_RATE_RANGE, ConfigError, TrainConfig, config_problems
from .data import Dataset, DatasetUnavailable
from .status import Status
from .train import GROUP_SHARED, TrainingControl, train_group

log = logging.getLogger(__name__)
MAX_CONFIGS = 64  # one sweep; 64 x 10 x 784 weights and their curves stay small
GRID_SIZES = (2, 64)  # values in one log grid
PLOT_POINTS = 600  # per-batch curve points kept per configuration (older points are thinned)
BATCH_SMOOTHING = 0.9  # EMA of the per-batch loss for plotting: alpha 0.1 as the Train page, bias-corrected
ACTIVE_STATUSES = (Status.STARTING, Status.TRAINING)


@dataclass(frozen=True)
class SweepEnded:
    """The last event a sweep's listeners get: the sweep's final status (done, stopped, failed)."""

    status: str
    message: str


# listener(worker, indices, event): `indices` are the members the group event is about
# (empty for SweepEnded). Called in the sweep's thread after the event is folded into the record.
SweepListener = Callable[["SweepWorker", list[int], object], None]


def log_grid(low: float, high: float, count: int) -> list[float]:
    """`count` learning rates evenly spaced on a log scale from `low` to `high`, both included.

    Inner values are rounded to 3 significant digits (0.00316, not 0.0031622776…) so they
    read well in tables and travel to the Train page unchanged.
    """
    problems = grid_problems(low, high, count)
    if problems:
        raise ConfigError(problems)
    step = (math.log10(high) - math.log10(low)) / (count - 1)
    exact = [10 ** (math.log10(low) + i * step) for i in range(count)]
    exact[0], exact[-1] = float(low), float(high)
    rounded = [float(f"{value:.3g}") for value in exact[1:-1]]
    values = [exact[0], *rounded, exact[-1]]
    # a very narrow range can round two neighbours together: then keep the exact values
    return values if all(a < b for a, b in zip(values, values[1:])) else exact


def grid_problems(low: object, high: object, count: object) -> dict[str, str]:
    """{field: message} for a bad learning-rate grid; empty when it is fine."""
    problems: dict[str, str] = {}
    lo, hi = LEARNING_RATE_RANGE
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems[name] = f"must be a number from {lo:g} to {hi:g}, got {value!r}"
        elif not lo <= value <= hi:
            problems[name] = f"must be from {lo:g} to {hi:g}, got {value:g}"
    if not problems and low >= high:
        problems["high"] = f"must be larger than the lowest learning rate ({low:g}), got {high:g}"
    first, last = GRID_SIZES
    if isinstance(count, bool) or not isinstance(count, int) or not first <= count <= last:
        problems["count"] = f"must be a whole number from {first} to {last}, got {count!r}"
    return problems


def sweep_configs(base: TrainConfig, learning_rates: Sequence[float], batch_sizes: Sequence[int] | None = None,
                  weight_decays: Sequence[float] | None = None) -> list[TrainConfig]:
    """Every combination of batch size x weight decay x learning rate, grouped by batch size.

    Raises ConfigError with a clear message for an empty or oversized sweep or a bad value.
    """
    batch_sizes = list(dict.fromkeys(batch_sizes)) if batch_sizes else [base.batch_size]
    weight_decays = list(dict.fromkeys(weight_decays)) if weight_decays else [base.weight_decay]
    learning_rates = list(dict.fromkeys(learning_rates))
    if not learning_rates:
        raise ConfigError({"learning_rates": "choose at least one learning rate"})
    total = len(batch_sizes) * len(weight_decays) * len(learning_rates)
    if total > MAX_CONFIGS:
        raise ConfigError({"configs": (
            f"{len(learning_rates)} learning rates x {len(batch_sizes)} batch sizes x {len(weight_decays)} weight "
            f"decays = {total} configurations; a sweep allows at most {MAX_CONFIGS}: use fewer values")})
    configs = []
    for batch_size in batch_sizes:
        for decay in weight_decays:
            for lr in learning_rates:
                values = {**base.to_dict(), "batch_size": batch_size, "weight_decay": decay, "learning_rate": lr}
                problems = config_problems(values)
                if problems:
                    raise ConfigError(problems)
                configs.append(TrainConfig.from_dict(values))
    return configs


def check_sweep(configs: Sequence[TrainConfig]) -> None:
    """The limits a sweep must respect: 1 to MAX_CONFIGS configurations, one dataset/device/epochs..."""
    if not configs:
        raise ConfigError({"configs": "a sweep needs at least one configuration"})
    if len(configs) > MAX_CONFIGS:
        raise ConfigError({"configs": f"a sweep allows at most {MAX_CONFIGS} configurations, got {len(configs)}"})
    for name in GROUP_SHARED:
        if name == "batch_size":
            continue
        values = {getattr(config, name) for config in configs}
        if len(values) > 1:
            raise ConfigError({name: f"must be the same for every configuration of a sweep, "
                                     f"got {sorted(map(str, values))}"})


def group_by_batch_size(configs: Sequence[TrainConfig]) -> list[list[int]]:
    """Indices of `configs` per batch size, in order of first appearance: one training pass each."""
    groups: dict[int, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(config.batch_size, []).append(index)
    return list(groups.values())


def config_label(config: TrainConfig, show_batch: bool = True, show_decay: bool = True) -> str:
    parts = [f"lr {config.learning_rate:g}"]
    if show_batch:
        parts.append(f"batch {config.batch_size}")
    if show_decay:
        parts.append(f"wd {config.weight_decay:g}")
    return " · ".join(parts)


@dataclass
class MemberRecord:
    """One configuration of a sweep: its curves, status and final metrics."""

    index: int
    config: TrainConfig
    label: str
    group: int
    status: str = Status.WAITING  # waiting, training, done, diverged, stopped, failed; crashed (read back from disk)
    message: str = ""
    epochs: list[dict] = field(default_factory=list)  # epoch 0 first; stops at divergence
    batch_steps: list[int] = field(default_factory=list)  # thinned to about PLOT_POINTS points
    batch_smoothed: list[float] = field(default_factory=list)  # EMA of the batch loss at those steps
    final: dict = field(default_factory=dict)  # validation/test loss and accuracy, epochs_completed
    last_step: int | None = None  # set when it diverged: the step whose loss blew up
    weight: torch.Tensor | None = field(default=None, repr=False)  # C x 784, latest (kept) weights
    bias: torch.Tensor | None = field(default=None, repr=False)
    _ema: float = field(default=0.0, repr=False)
    _ema_count: int = field(default=0, repr=False)
    _stride: int = field(default=1, repr=False)

    def add_batch_loss(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            return
        self._ema = BATCH_SMOOTHING * self._ema + (1 - BATCH_SMOOTHING) * loss
        self._ema_count += 1
        if step % self._stride:
            return
        self.batch_steps.append(step)
        self.batch_smoothed.append(self._ema / (1 - BATCH_SMOOTHING ** self._ema_count))
        if len(self.batch_steps) > PLOT_POINTS:  # keep every other point from now on
            self._stride *= 2
            keep = [i for i, s in enumerate(self.batch_steps) if s % self._stride == 0]
            self.batch_steps = [self.batch_steps[i] for i in keep]
            self.batch_smoothed = [self.batch_smoothed[i] for i in keep]

    @property
    def validation_accuracy(self) -> float | None:
        if self.final:
            return self.final["validation_accuracy"]
        return self.epochs[-1]["validation_accuracy"] if self.epochs else None

    @property
    def epochs_done(self) -> int:
        return self.epochs[-1]["epoch"] if self.epochs else 0

    def copy(self) -> "MemberRecord":
        return replace(self, epochs=list(self.epochs), batch_steps=list(self.batch_steps),
                       batch_smoothed=list(self.batch_smoothed), final=dict(self.final))


@dataclass
class SweepRecord:
    """What a sweep has produced so far; copies are handed to pages."""

    sweep_id: str
    members: list[MemberRecord]
    groups: list[list[int]]
    status: str = Status.STARTING  # starting, training, done, stopped, failed; crashed (read back from disk)
    message: str = ""
    group: int = 0  # group being trained (index into groups)
    progress: dict = field(default_factory=dict)  # epoch, batch, batches_per_epoch, seconds_left
    train_size: int = 0
    validation_size: int = 0
    device: str = ""
    normalizer: object = field(default=None, repr=False)
    class_names: tuple[str, ...] = ()
    started: float = field(default_factory=time.time)
    elapsed: float = 0.0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def configs(self) -> list[TrainConfig]:
        return [member.config for member in self.members]

    def ranked(self) -> list[MemberRecord]:
        """Best validation accuracy first; diverged and failed configurations last."""
        def key(member: MemberRecord) -> tuple:
            ok = member.status not in (Status.DIVERGED, Status.FAILED) and member.validation_accuracy is not None
            return (not ok, -(member.validation_accuracy or 0.0), member.index)
        return sorted(self.members, key=key)

    def best(self) -> MemberRecord | None:
        ranked = self.ranked()
        if not ranked or ranked[0].status in (Status.DIVERGED, Status.FAILED) or ranked[0].validation_accuracy is None:
            return None
        return ranked[0]

    def fraction_done(self) -> float:
        """Share of all epochs of all groups trained so far (0..1)."""
        if not self.groups:
            return 0.0
        epochs = self.members[0].config.epochs
        per_group = 1.0 / len(self.groups)
        done = sum(per_group for index in range(len(self.groups))
                   if all(self.members[m].status not in (Status.WAITING, Status.TRAINING) for m in self.groups[index]))
        if self.active and self.progress and self.group < len(self.groups):
            batches = max(self.progress.get("batches_per_epoch", 1), 1)
            within = (self.progress.get("epoch", 1) - 1 + self.progress.get("batch", 0) / batches) / epochs
            done += per_group * min(within, 1.0)
        return min(done, 1.0)


@dataclass(frozen=True)
class GroupFailed:
    """A group could not train (e.g. its batch size is larger than the training split)."""

    message: str


class SweepWorker:
    """Trains a sweep's groups one after another in a daemon thread; `stop()` ends it early."""

    def __init__(self, configs: Sequence[TrainConfig], dataset: Dataset, sweep_id: str | None = None,
                 batch_event_seconds: float = 0.2, max_batches_per_epoch: int | None = None,
                 listeners: Iterable[SweepListener] = ()):
        configs = list(configs)
        check_sweep(configs)
        self.sweep_id = sweep_id or new_sweep_id()
        self.control = TrainingControl()
        groups = group_by_batch_size(configs)
        show_batch = len({c.batch_size for c in configs}) > 1
        show_decay = len({c.weight_decay for c in configs}) > 1
        group_of = {index: number for number, members in enumerate(groups) for index in members}
        members = [MemberRecord(i, c, config_label(c, show_batch, show_decay), group_of[i])
                   for i, c in enumerate(configs)]
        self._record = SweepRecord(self.sweep_id, members, groups)
        self._lock = threading.Lock()
        self._dataset = dataset
        self._batch_event_seconds = batch_event_seconds
        self._max_batches = max_batches_per_epoch
        self._listeners = list(listeners)
        self._thread = threading.Thread(target=self.run, name=f"sweep-{self.sweep_id}", daemon=True)

    def start(self) -> "SweepWorker":
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def stop(self) -> None:
        self.control.stop()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def snapshot(self) -> SweepRecord:
        """A copy safe to read without the lock (lists copied; tensors are never mutated)."""
        with self._lock:
            record = self._record
            return replace(record, members=[m.copy() for m in record.members],
                           groups=[list(g) for g in record.groups], progress=dict(record.progress))

    def run(self) -> None:
        """Train every group (the thread's body; call directly to run synchronously)."""
        with self._lock:
            self._record.status = Status.TRAINING
        try:
            for number, indices in enumerate(self._record.groups):
                if self.control.stop_requested:
                    break
                self._run_group(number, indices)
        except Exception as error:  # never let the thread die silently: the page shows why
            log.exception("sweep %s crashed", self.sweep_id)
            self._finish(Status.FAILED, f"the sweep stopped by an internal error: {type(error).__name__}: {error}")
            return
        stopped = self.control.stop_requested
        self._finish(Status.STOPPED if stopped else Status.DONE, "stopped before the end" if stopped else "")

    def _finish(self, status: str, message: str) -> None:
        with self._lock:
            for member in self._record.members:
                if member.status in (Status.WAITING, Status.TRAINING):
                    member.status = Status.STOPPED if status == Status.STOPPED else Status.FAILED
                    member.message = member.message or ("stopped before the end" if status == Status.STOPPED else message)
            self._record.status = status
            self._record.message = message
        self._notify([], SweepEnded(status, message))

    def _notify(self, indices: list[int], event: object) -> None:
        for listener in self._listeners:
            try:
                listener(self, indices, event)
            except Exception:  # a failing recorder must not stop the sweep
                log.exception("sweep listener failed for %s", self.sweep_id)

    def _run_group(self, number: int, indices: list[int]) -> None:
        configs = [self._record.members[i].config for i in indices]
        with self._lock:
            self._record.group = number
            self._record.progress = {}
            for i in indices:
                self._record.members[i].status = Status.TRAINING
        try:
            events = train_group(configs, self._dataset, self.control, self._batch_event_seconds, self._max_batches)
            for event in events:
                with self._lock:
                    self._apply(indices, event)
                self._notify(indices, event)
        except (ConfigError, DatasetUnavailable) as error:
            # e.g. a batch size larger than the training split: this group fails, the others still run
            with self._lock:
                for i in indices:
                    member = self._record.members[i]
                    member.status, member.message = Status.FAILED, str(error)
            self._notify(indices, GroupFailed(str(error)))

    def _apply(self, indices: list[int], event: object) -> None:
        """Fold one group event into the record (under the lock)."""
        record = self._record
        members = [record.members[i] for i in indices]
        if isinstance(event, ev.GroupStarted):
            record.train_size, record.validation_size = event.train_size, event.validation_size
            record.device, record.normalizer, record.class_names = event.device, event.normalizer, event.class_names
        elif isinstance(event, ev.GroupEpochEnd):
            for k, member in enumerate(members):
                if member.status == Status.DIVERGED or not event.alive[k]:
                    continue  # a frozen model's metrics would draw a misleading flat line
                member.epochs.append({
                    "epoch": event.epoch, "step": event.step, "train_loss": event.train_loss[k],
                    "train_accuracy": event.train_accuracy[k], "validation_loss": event.validation_loss[k],
                    "validation_accuracy": event.validation_accuracy[k], "seconds": event.seconds})
                member.weight, member.bias = event.weight[k], event.bias[k]
            record.elapsed = event.elapsed
        elif isinstance(event, ev.GroupBatchProgress):
            first = event.step - len(event.losses) + 1
            for offset, losses in enumerate(event.losses):
                for k, member in enumerate(members):
                    if member.last_step is None or first + offset <= member.last_step:
                        member.add_batch_loss(first + offset, losses[k])
            record.progress = {"epoch": event.epoch, "batch": event.batch,
                               "batches_per_epoch": event.batches_per_epoch, "seconds_left": event.seconds_left}
            record.elapsed = event.elapsed
        elif isinstance(event, ev.GroupDiverged):
            member = members[event.index]
            member.status, member.message = Status.DIVERGED, event.message
            member.last_step = event.step + 1  # its losses up to the blow-up still belong on the curve
        elif isinstance(event, ev.GroupFinished):
            for k, member in enumerate(members):
                member.final = {"validation_loss": event.validation_loss[k],
                                "validation_accuracy": event.validation_accuracy[k],
                                "test_loss": event.test_loss[k], "test_accuracy": event.test_accuracy[k],
                                "epochs_completed": member.epochs_done}
                member.weight = event.models[k].linear.weight.detach().clone()
                member.bias = event.models[k].linear.bias.detach().clone()
                if member.status == Status.TRAINING:
                    member.status = Status.STOPPED if event.status == Status.STOPPED else Status.DONE
                    if member.status == Status.STOPPED:
                        member.message = f"stopped after epoch {member.epochs_done}"
            record.elapsed = event.elapsed


def new_sweep_id() -> str:
    return "sweep-" + time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def parse_numbers(text: str, kind: type, name: str, allowed: str) -> list:
    """Parse "64, 128 256" into numbers of `kind`; ConfigError naming the bad entry otherwise."""
    values = []
    for part in text.replace(",", " ").replace(";", " ").split():
        try:
            value = kind(part)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ConfigError({name: f"“{part}” is not {what}; {allowed}"}) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError({name: f"“{part}” is not a finite number; {allowed}"})
        values.append(value)
    return values
