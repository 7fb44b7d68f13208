"""The learning-rate range test (fastai's `lr_find`, Leslie Smith's "LR range test").

    result = lr_range_test(TrainConfig(optimizer="sgd"))
    print(result.suggestion)

Starting from a model's weights (by default the config's initial parameters), train on
minibatches of the config's training split while the learning rate grows exponentially
from `start_lr` to `end_lr` over `num_batches` batches, recording the loss of every batch
and its smoothed value (EMA, beta 0.98, bias-corrected, as fastai). Stop once the
smoothed loss exceeds 4x its minimum: the learning rate is far too high by then.
Training happens on a private copy, so the weights passed in are never changed.

The suggestion is the steepest descent of the smoothed loss against log(learning rate)
(fastai's `steep`, fastai v1's default), on the curve without its first 10% and last 5
points. Measured on mnist-sample for SGD, momentum and AdamW with raw and standardized
pixels, 5 epochs at that rate reach 0.89-0.92 validation accuracy for seeds 0-3. fastai
v2's default "valley" was tried and rejected: with only 100 batches the beta-0.98 EMA
lags ~50 batches, and valley then suggests 0.024 for plain SGD on raw pixels, which reaches
only 0.84 in 5 epochs; "minimum / 10" (`minimum_lr` is reported too) gave 0.874 for AdamW.
"""
from __future__ import annotations

import math
import os
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from .config import ConfigError, TrainConfig
from .data import Dataset, DatasetUnavailable, fit_normalizer, load_dataset, make_splits
from .engine import make_engine
from .jobs import Job
from .model import LogisticRegression, initial_parameters, uses_sigmoid
from .smoothing import BiasCorrectedEma
from .status import Status
from .training import resolve_device, single_cpu_thread
from .workers import PoolUnavailable, RangeTask, RemoteControl, TaskFailed, WorkerDied, WorkerPool

START_LR = 1e-6
END_LR = 10.0
NUM_BATCHES = 100
SMOOTHING = 0.98  # fastai's AvgSmoothLoss beta
BLOW_UP = 4.0  # stop when the smoothed loss exceeds BLOW_UP x its minimum (fastai)


@dataclass(frozen=True)
class RangeTestResult:
    """The range test's curve and its suggested learning rate (None when no clear suggestion)."""

    learning_rates: list[float]
    losses: list[float]  # raw loss of each batch, before its step
    smoothed: list[float]  # bias-corrected EMA of `losses`
    suggestion: float | None
    suggestion_index: int | None
    minimum_lr: float | None  # learning rate at the lowest smoothed loss
    blew_up: bool  # stopped early because the loss exceeded BLOW_UP x its minimum
    start_lr: float
    end_lr: float
    num_batches: int
    message: str = ""


def lr_schedule(start_lr: float, end_lr: float, num_batches: int) -> list[float]:
    """Exponentially increasing rates, start_lr at batch 0 to end_lr at the last batch."""
    if num_batches == 1:
        return [start_lr]
    ratio = end_lr / start_lr
    return [start_lr * ratio ** (i / (num_batches - 1)) for i in range(num_batches)]


def suggest(learning_rates: list[float], smoothed: list[float], num_batches: int) -> int | None:
    """Index of the steepest fall of the smoothed loss per log learning rate, or None.

    fastai's `steep`: the first 10% of the batches and the last 5 are left out (start-up
    and blow-up), then the most negative slope between neighbouring points wins.
    """
    first, last = num_batches // 10, len(smoothed) - 5
    candidates = [i for i in range(first, last - 1)
                  if math.isfinite(smoothed[i]) and math.isfinite(smoothed[i + 1])]
    if len(candidates) < 3:
        return None
    def slope(i: int) -> float:
        return (smoothed[i + 1] - smoothed[i]) / (math.log(learning_rates[i + 1]) - math.log(learning_rates[i]))
    best = min(candidates, key=slope)
    return best if slope(best) < 0 else None


Progress = Callable[[int, float, float, float], None]  # (batch, lr, loss, smoothed)


@torch.no_grad()
def lr_range_test(config: TrainConfig, dataset: Dataset | None = None, model: LogisticRegression | None = None,
                  start_lr: float = START_LR, end_lr: float = END_LR, num_batches: int = NUM_BATCHES,
                  progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> RangeTestResult:
    """Run the range test for `config` (optimizer, batch size, normalisation, split, seed, weight decay).

    `model` gives the starting weights (default: the config's initial parameters); it is
    left exactly as it was. `progress` is called after every batch; `should_stop` ends early.
    """
    problems = {}
    if not (0 < start_lr < end_lr) or not math.isfinite(end_lr):
        problems["end_lr"] = f"the range must go up: 0 < start ({start_lr:g}) < end ({end_lr:g})"
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or not 10 <= num_batches <= 10_000:
        problems["num_batches"] = f"must be a whole number from 10 to 10000, got {num_batches!r}"
    if problems:
        raise ConfigError(problems)
    device = resolve_device(config.device)
    with single_cpu_thread(device):  # as training: one thread is as fast, and far faster under load
        return _range_test(config, device, dataset, model, start_lr, end_lr, num_batches, progress, should_stop)


def _range_test(config: TrainConfig, device: str, dataset: Dataset | None, model: LogisticRegression | None,
                start_lr: float, end_lr: float, num_batches: int, progress: Progress | None,
                should_stop: Callable[[], bool] | None) -> RangeTestResult:
    dataset = dataset if dataset is not None else load_dataset(config.dataset)
    splits = make_splits(dataset, config.validation_fraction, config.seed, config.per_class_limit)
    config.check_sizes(len(splits.train))
    config.check_dataset(dataset.num_classes, dataset.info.short_title)
    binary = uses_sigmoid(config, dataset.num_classes)
    # Full batch: every one of the test's steps on the whole training split, as a run would take them.
    batch_size = config.batch_size_for(len(splits.train))
    images = dataset.flat_images("train", device, config.deskew)  # as a run with these settings sees them
    train_index = splits.train.to(device)
    normalizer = fit_normalizer(config.normalization, images, train_index)
    raw = normalizer.kind == "raw"
    prepare = (lambda batch: batch.float()) if raw else normalizer
    if model is not None:
        weight, bias = model.linear.weight.detach(), model.linear.bias.detach()
    else:
        weight, bias = initial_parameters(1 if binary else dataset.num_classes, config.seed,
                                          num_pixels=dataset.info.num_pixels)
    schedule = lr_schedule(start_lr, end_lr, num_batches)
    # The engine clones weight and bias, so the caller's tensors are never written to.
    engine = make_engine(weight, bias, dataset.num_classes, weight.shape[0] == 1, config.optimizer, [schedule[0]],
                         [config.weight_decay], config.momentum, device, input_scale=1 / 255 if raw else 1.0)
    targets = engine.targets(dataset.train_labels.to(device))
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.empty(0, dtype=torch.long)
    position = 0
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    smoother, best, blew_up = BiasCorrectedEma(SMOOTHING), math.inf, False
    for batch, lr in enumerate(schedule):
        if should_stop is not None and should_stop():
            break
        if position + batch_size > len(order):  # a new epoch: reshuffle, as training does
            order = train_index[torch.randperm(len(train_index), generator=generator).to(device)]
            position = 0
        rows = order[position:position + batch_size]
        position += batch_size
        engine.set_learning_rate(0, lr)
        inputs = prepare(images.index_select(0, rows))
        loss_sum, delta = engine.forward(inputs, targets.index_select(1, rows))
        loss = loss_sum.item() / len(rows)
        # a non-finite loss stays visible (and stops the test) instead of being skipped
        value = smoother.add(loss) if math.isfinite(loss) else math.nan
        lrs.append(lr)
        losses.append(loss)
        smoothed.append(value)
        if progress is not None:
            progress(batch, lr, loss, value)
        if not math.isfinite(value) or value > BLOW_UP * best:
            blew_up = True
            break
        best = min(best, value)
        engine.update(inputs, delta)
    index = suggest(lrs, smoothed, num_batches)
    finite = [i for i, v in enumerate(smoothed) if math.isfinite(v)]
    minimum = min(finite, key=lambda i: smoothed[i]) if finite else None
    message = ""
    if index is None:
        message = ("no clear suggestion: the loss never fell steadily; widen the range or use more batches"
                   if len(lrs) >= 10 else "too few batches for a suggestion: widen the range or use more batches")
    return RangeTestResult(lrs, losses, smoothed, lrs[index] if index is not None else None, index,
                           lrs[minimum] if minimum is not None else None, blew_up, start_lr, end_lr,
                           num_batches, message)


@dataclass
class RangeTestRecord:
    """What a range test running in a thread has produced so far."""

    test_id: str
    config: TrainConfig
    start_lr: float = START_LR
    end_lr: float = END_LR
    num_batches: int = NUM_BATCHES
    status: str = Status.RUNNING  # running, done, stopped, failed
    message: str = ""
    learning_rates: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    result: RangeTestResult | None = None
    started: float = field(default_factory=time.time)

    @property
    def active(self) -> bool:
        return self.status == Status.RUNNING

    def copy(self) -> "RangeTestRecord":
        return replace(self, learning_rates=list(self.learning_rates), losses=list(self.losses),
                       smoothed=list(self.smoothed))


class RangeTestJob(Job[RangeTestRecord]):
    """Runs `lr_range_test` in a daemon thread (a `lrcore.jobs.Job`), or in a worker process of the
    registry's pool (`use_pool`), the thread reading its progress back; pages poll `snapshot()`."""

    kind = "range-test"

    def __init__(self, config: TrainConfig, dataset: Dataset, test_id: str | None = None,
                 start_lr: float = START_LR, end_lr: float = END_LR, num_batches: int = NUM_BATCHES):
        self.test_id = test_id or "range-" + uuid.uuid4().hex[:8]
        super().__init__(self.test_id, RangeTestRecord(self.test_id, config, start_lr, end_lr, num_batches))
        self._dataset = dataset
        self.pool: WorkerPool | None = None
        self._control = RemoteControl(on_stop=lambda: self.pool.wake() if self.pool is not None else None)

    def use_pool(self, pool: WorkerPool | None) -> None:
        """Run in `pool`'s worker processes (None: in this job's thread); before `start()` only."""
        self.pool = pool

    def stop(self) -> None:
        super().stop()
        self._control.stop()

    def _progress(self, batch: int, lr: float, loss: float, smoothed: float) -> None:
        def add(record: RangeTestRecord) -> None:
            record.learning_rates.append(lr)
            record.losses.append(loss)
            record.smoothed.append(smoothed)
        self.update(add)

    def work(self) -> None:
        r = self._state
        try:
            if self.pool is None:
                result = lr_range_test(r.config, self._dataset, start_lr=r.start_lr, end_lr=r.end_lr,
                                       num_batches=r.num_batches, progress=self._progress,
                                       should_stop=lambda: self.stop_requested)
            else:
                result = self._in_worker(r)
                if result is None:
                    self._end(Status.STOPPED, "stopped while queued, before it started")
                    return
        except (ConfigError, DatasetUnavailable, PoolUnavailable) as error:
            self._end(Status.FAILED, str(error))
            return
        except TaskFailed as error:
            self._end(Status.FAILED, error.message if error.status == Status.FAILED else
                      f"the range test stopped by an internal error: {error.message}")
            return
        except WorkerDied as error:
            self._end(Status.FAILED, f"the range test stopped: {error}")
            return
        self.update(lambda record: setattr(record, "result", result))
        self._end(Status.STOPPED if self.stop_requested else Status.DONE, result.message)

    def _in_worker(self, r: RangeTestRecord) -> RangeTestResult | None:
        """The test in a worker process, its progress folded in here (None: stopped while queued)."""
        worker = self.pool.acquire(lambda: self.stop_requested, lambda ahead: None)
        if worker is None:
            return None
        try:
            task = RangeTask(r.config, r.start_lr, r.end_lr, r.num_batches, os.environ.get("LRCORE_DATA_DIR"))
            result = None
            for message in worker.run_task("range", task, self._control):
                if message[0] == "progress":
                    self._progress(*message[1:])
                else:
                    result = message[1]
            return result
        finally:
            self.pool.release(worker)

    def failed(self, message: str) -> None:
        self._end(Status.FAILED, f"the range test {message}")

    def _end(self, status: str, message: str) -> None:
        def end(record: RangeTestRecord) -> None:
            record.status, record.message = status, message
        self.update(end)
