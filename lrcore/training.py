"""The training loop: an iterator of events, controllable from another thread.

    for event in train(TrainConfig(learning_rate=0.5)):
        print(event)

`train_group` trains several configurations that differ only in learning rate and weight
decay on the same minibatches at once (one matrix product per step for all of them), and
yields each event once per model (`index`); `train` is the one-configuration case.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import fields
import threading
import time
from typing import Iterator, Sequence

import torch

from . import events as ev
from .config import ConfigError, TrainConfig, config_problems
from .data import Dataset, fit_normalizer, load_dataset, make_splits
from .engine import make_engine
from .model import LogisticRegression, initial_parameters, uses_sigmoid
from .status import Status

# A run "diverged" when its loss is NaN/infinite, or when the smoothed batch loss has blown
# up to many times the loss of an untrained model: softmax regression's gradients are
# bounded, so at a huge learning rate the loss explodes long before it overflows to NaN.
DIVERGENCE_FACTOR = 20.0
LOSS_SMOOTHING = 0.1  # weight of the newest batch in the moving average (tutorial 003)
# Devices where reading a loss back waits for the step (a sync): there the losses are read once
# per BatchProgress, not every step, and divergence is caught on the device meanwhile.
DEFERRED_READ_DEVICES = ("cuda", "mps", "xpu")
# The engine keeps one learning rate and one weight decay per stacked model; every other setting
# (a new one in the settings table too) must be equal for configurations to share minibatches.
PER_MODEL = ("learning_rate", "weight_decay")
GROUP_SHARED = tuple(field.name for field in fields(TrainConfig) if field.name not in PER_MODEL)


def group_key(config: TrainConfig) -> tuple:
    """What configurations must share to train together in one stacked pass (equal keys: one group)."""
    return tuple(getattr(config, name) for name in GROUP_SHARED)


class TrainingControl:
    """Pause, resume, stop and change the learning rates of a run (or a group) from another thread."""

    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending_lr: tuple[str, float] | None = None  # ("set", lr) or ("scale", factor)

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # wake a paused loop so it can stop

    def set_learning_rate(self, learning_rate: float) -> None:
        """Every model trains with `learning_rate` from the next batch on; raises ConfigError if invalid."""
        problem = config_problems({**TrainConfig().to_dict(), "learning_rate": learning_rate}).get("learning_rate")
        if problem:
            raise ConfigError({"learning_rate": problem})
        with self._lock:
            self._pending_lr = ("set", float(learning_rate))

    def scale_learning_rates(self, factor: float) -> None:
        """Multiply every model's learning rate by `factor` from the next batch on (a sweep keeps its spread)."""
        if not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
            raise ConfigError({"learning_rate": f"the factor must be a positive number, got {factor!r}"})
        with self._lock:
            self._pending_lr = ("scale", float(factor))

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def take_learning_rates(self, current: Sequence[float]) -> list[float] | None:
        """The new learning rate of each model, if a change is pending (taken once)."""
        with self._lock:
            pending, self._pending_lr = self._pending_lr, None
        if pending is None:
            return None
        kind, value = pending
        return [value if kind == "set" else rate * value for rate in current]

    def wait_until_running(self) -> None:
        self._running.wait()


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError({"device": "cuda was asked for but no CUDA GPU is available; use auto or cpu"})
    return device


@contextlib.contextmanager
def single_cpu_thread(device: str):
    """Train on one CPU thread.

    A step is ~20 tiny ops, so a second thread buys nothing (measured: same s/epoch), but
    when the cores are busy (a Streamlit server, a browser, another run) OpenMP's
    spin-waiting made two threads 10-100x slower. Restores the previous setting after.
    """
    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def device_normalizer(normalizer, device: str):
    """`normalizer` as one op per batch, its statistics on `device` once (not copied there per batch).

    (x / 255 - mean) / std = x * scale + shift, scale = 1 / (255 std), shift = -mean / std.
    """
    scale = (1.0 / (255.0 * normalizer.std)).to(device)
    shift = (-normalizer.mean / normalizer.std).to(device)
    return lambda batch: torch.addcmul(shift, batch.reshape(len(batch), -1), scale)


def divergence_message(loss: float, epoch: int, learning_rate: float) -> str:
    what = "became NaN" if math.isnan(loss) else "became infinite" if math.isinf(loss) else f"blew up to {loss:.3g}"
    return f"loss {what} at epoch {epoch} with lr {learning_rate:g}: try a smaller learning rate"


def train(config: TrainConfig, dataset: Dataset | None = None, control: TrainingControl | None = None,
          batch_event_seconds: float = 0.1, max_batches_per_epoch: int | None = None) -> Iterator[object]:
    """Train one model: `train_group` of one configuration, every event with index 0."""
    return train_group([config], dataset, control, batch_event_seconds, max_batches_per_epoch)


def minibatch_orders(batch_order: str, train_index: torch.Tensor, labels: torch.Tensor,
                     generator: torch.Generator) -> Iterator[torch.Tensor]:
    """The training images' indices in minibatch order, one tensor per epoch (endless).

    shuffled: a new permutation each epoch (the default, as DataLoader(shuffle=True));
    fixed: one permutation, repeated; by_class: sorted by label, in the split's order within a class.
    """
    def shuffled() -> torch.Tensor:
        return train_index[torch.randperm(len(train_index), generator=generator).to(train_index.device)]

    if batch_order == "by_class":
        order = train_index[torch.sort(labels[train_index].cpu(), stable=True).indices.to(train_index.device)]
    else:
        order = shuffled()  # the first epoch's; "fixed" keeps it
    while True:
        yield order
        if batch_order == "shuffled":
            order = shuffled()


def check_group(configs: Sequence[TrainConfig]) -> None:
    if not configs:
        raise ConfigError({"configs": "at least one configuration is needed"})
    for name in GROUP_SHARED:
        values = {getattr(config, name) for config in configs}
        if len(values) > 1:
            raise ConfigError({name: f"must be the same for every configuration trained together, got {sorted(map(str, values))}"})


def train_group(configs: Sequence[TrainConfig], dataset: Dataset | None = None,
                control: TrainingControl | None = None, batch_event_seconds: float = 0.1,
                max_batches_per_epoch: int | None = None) -> Iterator[object]:
    """Train K configurations (differing only in learning rate / weight decay) on the same minibatches."""
    check_group(configs)
    device = resolve_device(configs[0].device)
    with single_cpu_thread(device):
        yield from _train_group(configs, device, dataset, control, batch_event_seconds, max_batches_per_epoch)


def _train_group(configs: Sequence[TrainConfig], device: str, dataset: Dataset | None,
                 control: TrainingControl | None, batch_event_seconds: float,
                 max_batches_per_epoch: int | None) -> Iterator[object]:
    config = configs[0]
    dataset = dataset if dataset is not None else load_dataset(config.dataset)
    splits = make_splits(dataset, config.validation_fraction, config.seed, config.per_class_limit)
    config.check_sizes(len(splits.train))
    config.check_dataset(dataset.num_classes, dataset.info.short_title)
    binary = uses_sigmoid(config, dataset.num_classes)
    weight_rows = 1 if binary else dataset.num_classes  # per model
    # The deskewed copy (when asked for) is made once per dataset and process, never per batch;
    # the normaliser, every batch, the epoch evaluations and the test set all use the same variant.
    images = dataset.flat_images("train", device, config.deskew)
    labels = dataset.train_labels.to(device)
    train_index = splits.train.to(device)
    validation_index = splits.validation.to(device)
    normalizer = fit_normalizer(config.normalization, images, train_index)
    # Raw pixels only need /255, which the engine folds into its matrix products.
    raw = normalizer.kind == "raw"
    prepare = (lambda batch: batch.float()) if raw else device_normalizer(normalizer, device)
    count = len(configs)
    weight, bias = initial_parameters(weight_rows, config.seed, count, num_pixels=dataset.info.num_pixels)
    engine = make_engine(weight, bias, dataset.num_classes, binary, config.optimizer,
                         [c.learning_rate for c in configs], [c.weight_decay for c in configs],
                         config.momentum, device, input_scale=1 / 255 if raw else 1.0)
    targets = engine.targets(labels)  # rows x N (one-hot, or y = 1 for class 1), gathered per batch
    batch_size = config.batch_size_for(len(train_index))
    batches_per_epoch = math.ceil(len(train_index) / batch_size)
    if max_batches_per_epoch is not None:
        batches_per_epoch = min(batches_per_epoch, max_batches_per_epoch)
    total_steps = batches_per_epoch * config.epochs
    for index, member in enumerate(configs):
        yield ev.RunStarted(index, member, dataset.class_names, len(splits.train), len(splits.validation),
                            len(dataset.test_labels), batches_per_epoch, device, normalizer)

    started = time.perf_counter()
    training_seconds = 0.0

    def evaluate_all(index: torch.Tensor) -> tuple[list[float], list[float]]:
        return engine.evaluate(images, index, labels, prepare)

    def snapshot() -> tuple[torch.Tensor, torch.Tensor]:
        return (engine.weight.detach().cpu().view(count, weight_rows, -1).clone(),
                engine.bias.detach().cpu().view(count, weight_rows).clone())

    # Epoch 0: the K models are the same untrained model, so one is evaluated (not K).
    untrained = make_engine(weight[:weight_rows], bias[:weight_rows], dataset.num_classes, binary, config.optimizer,
                            [configs[0].learning_rate], [configs[0].weight_decay], config.momentum, device,
                            engine.input_scale)
    (train0_loss,), (train0_acc,) = untrained.evaluate(images, train_index, labels, prepare)
    (val0_loss,), (val0_acc,) = untrained.evaluate(images, validation_index, labels, prepare)
    weights, biases = snapshot()
    rates = engine.learning_rates
    yield from (ev.EpochEnd(i, 0, config.epochs, 0, train0_loss, train0_acc, val0_loss, val0_acc, rates[i], 0.0,
                            time.perf_counter() - started, weights[i], biases[i]) for i in range(count))
    last_validation = ([val0_loss] * count, [val0_acc] * count)
    # an untrained model's loss: log(2) for binary (sigmoid(0) = 1/2), log(C) for softmax
    initial_loss = train0_loss if math.isfinite(train0_loss) else math.log(2 if binary else dataset.num_classes)
    # The smoothed batch loss of each model: on the host where each step's loss is read anyway (CPU),
    # on the device where reading it would wait for the step (GPU; see `sync`).
    read_every_batch = torch.device(device).type not in DEFERRED_READ_DEVICES
    smoothed = [initial_loss] * count if read_every_batch else torch.full((count,), initial_loss, device=device)
    loss_limit = DIVERGENCE_FACTOR * initial_loss
    diverged = [False] * count
    kept_steps: list[int | None] = [None] * count  # the step whose weights a diverged model keeps
    status = Status.DONE
    epochs_completed = 0
    orders = minibatch_orders(config.batch_order, train_index, labels, torch.Generator().manual_seed(config.seed))

    def progress_events(epoch: int, batch: int, pending: list[tuple[float, ...]], elapsed: float,
                        seconds_left: float) -> list[ev.BatchProgress]:
        """One BatchProgress per model; a diverged model's losses end with the step that blew up."""
        rates, first_step = engine.learning_rates, engine.steps - len(pending) + 1
        columns = list(zip(*pending))  # one tuple of losses per model
        events = []
        for i in range(count):
            losses = columns[i]
            if kept_steps[i] is not None:  # diverged: its losses end at the step that blew up
                losses = losses[:max(kept_steps[i] + 2 - first_step, 0)]
                if not losses:
                    continue
            events.append(ev.BatchProgress(i, epoch, batch, batches_per_epoch, first_step + len(losses) - 1, losses,
                                           rates[i], elapsed, seconds_left))
        return events

    for epoch in range(1, config.epochs + 1):
        order = next(orders)
        epoch_labels = labels.index_select(0, order)  # once per epoch: each batch's labels are a slice
        epoch_start = time.perf_counter()
        pending: list[tuple[float, ...]] = []  # losses read but not yet sent in a BatchProgress
        unread: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]] = []  # (loss sum, correct, ok, B)
        epoch_loss, epoch_correct, epoch_seen = [0.0] * count, [0] * count, 0
        last_event = epoch_start

        def read_step(epoch: int, sums: list[float], correct: list[int], size: int) -> list[ev.Diverged]:
            """One step's loss sums read on the host before its update: counted, and checked for divergence."""
            nonlocal epoch_seen
            losses = [value / size for value in sums]
            pending.append(tuple(losses))
            epoch_seen += size
            news = []
            for i, loss in enumerate(losses):
                epoch_loss[i] += sums[i]
                epoch_correct[i] += correct[i]
                if diverged[i]:
                    continue
                smoothed[i] += LOSS_SMOOTHING * (loss - smoothed[i]) if math.isfinite(loss) else math.inf
                if not math.isfinite(loss) or smoothed[i] > loss_limit:
                    # Frozen before this step's update, so the kept weights are the last finite ones.
                    diverged[i] = True
                    kept_steps[i] = engine.steps
                    engine.freeze(i)
                    lr = engine.learning_rates[i]
                    news.append(ev.Diverged(i, epoch, engine.steps, lr, loss, divergence_message(loss, epoch, lr)))
            return news

        def sync() -> list[ev.Diverged]:
            """Read the unread steps' losses and correct counts; a model frozen on the device is frozen here too."""
            nonlocal epoch_seen
            if not unread:
                return []
            first_step = engine.steps - len(unread) + 1
            if len(unread) == 1:
                sums, corrects, oks = ([values.tolist()] for values in unread[0][:3])
            else:
                sums, corrects, oks = (torch.stack(values).tolist() for values in list(zip(*unread))[:3])
            news = []
            for offset, ((*_, size), loss_sums, correct, ok) in enumerate(zip(unread, sums, corrects, oks)):
                pending.append(tuple(value / size for value in loss_sums))
                epoch_seen += size
                for i in range(count):
                    epoch_loss[i] += loss_sums[i]
                    epoch_correct[i] += correct[i]
                if all(ok):
                    continue
                for i in (i for i in range(count) if not ok[i] and not diverged[i]):
                    # frozen on the device before this step's update: the kept weights are the last finite ones
                    diverged[i] = True
                    kept_steps[i] = first_step + offset - 1
                    engine.freeze(i)
                    lr, loss = engine.learning_rates[i], pending[-1][i]
                    news.append(ev.Diverged(i, epoch, kept_steps[i], lr, loss, divergence_message(loss, epoch, lr)))
            unread.clear()
            return news

        for batch in range(batches_per_epoch):
            if control is not None:
                if control.paused and not control.stop_requested:
                    training_seconds += time.perf_counter() - epoch_start
                    yield from sync()  # a model that diverged meanwhile gets no Paused
                    yield from (ev.Paused(i, engine.steps) for i in range(count) if not diverged[i])
                    control.wait_until_running()
                    epoch_start = time.perf_counter()
                    if not control.stop_requested:
                        yield from (ev.Resumed(i, engine.steps) for i in range(count) if not diverged[i])
                if control.stop_requested:
                    status = Status.STOPPED
                    break
                new_rates = control.take_learning_rates(engine.learning_rates)
                if new_rates:
                    yield from sync()  # no rate change for a model that diverged meanwhile
                for i, new_lr in enumerate(new_rates or ()):
                    old = engine.learning_rates[i]
                    if new_lr != old and not diverged[i]:
                        engine.set_learning_rate(i, new_lr)
                        yield ev.LearningRateChanged(i, engine.steps, epoch, old, new_lr)
            first, last = batch * batch_size, min((batch + 1) * batch_size, len(order))
            rows = order[first:last]
            inputs = prepare(images.index_select(0, rows))
            loss_sum, correct, delta = engine.forward_counted(inputs, targets.index_select(1, rows),
                                                              epoch_labels[first:last])
            if read_every_batch:  # as before the step's update: a model that blows up keeps its last finite weights
                yield from read_step(epoch, loss_sum.tolist(), correct.tolist(), len(rows))
            else:
                # Divergence on the device: NaN, infinite, or a smoothed loss far above an untrained model's.
                # (lerp carries NaN and inf into `smoothed`; `<=` is False for both.)
                smoothed.lerp_(loss_sum / len(rows), LOSS_SMOOTHING)
                ok = smoothed <= loss_limit
                engine.guard(ok)
                unread.append((loss_sum, correct, ok, len(rows)))
            engine.update(inputs, delta)
            now = time.perf_counter()
            emit = now - last_event >= batch_event_seconds or batch == batches_per_epoch - 1
            if emit:
                yield from sync()
            if emit:
                done = (epoch - 1) * batches_per_epoch + batch + 1
                spent = training_seconds + now - epoch_start
                yield from progress_events(epoch, batch + 1, pending, now - started,
                                           spent / done * (total_steps - done))
                pending = []
                last_event = now
            if all(diverged):
                break
        else:
            epochs_completed = epoch
        yield from sync()
        seconds = time.perf_counter() - epoch_start
        training_seconds += seconds
        if status == Status.STOPPED or all(diverged):
            if pending:
                yield from progress_events(epoch, batch + 1, pending, time.perf_counter() - started, 0.0)
            break
        # Train numbers: the running average over the epoch's batches (Keras, fastai), no second pass.
        seen = max(epoch_seen, 1)
        val_loss, val_acc = evaluate_all(validation_index)
        last_validation = (val_loss, val_acc)
        weights, biases = snapshot()
        elapsed, rates = time.perf_counter() - started, engine.learning_rates
        for i in range(count):
            if not diverged[i]:  # a diverged model's curve stops where it diverged
                yield ev.EpochEnd(i, epoch, config.epochs, engine.steps, epoch_loss[i] / seen, epoch_correct[i] / seen,
                                  val_loss[i], val_acc[i], rates[i], seconds, elapsed, weights[i], biases[i])

    models = tuple(LogisticRegression.from_tensors(*engine.parameters_of(i)) for i in range(count))
    test_index = torch.arange(len(dataset.test_labels), device=device)
    test_loss, test_acc = engine.evaluate(dataset.flat_images("test", device, config.deskew), test_index,
                                          dataset.test_labels.to(device), prepare)
    # The final model's numbers are its kept weights' own: one exact pass over the training set
    # (the epochs' train numbers are running averages), and validation again only where the
    # weights changed after the last epoch's evaluation (a stop or divergence inside an epoch).
    train_loss, train_acc = evaluate_all(train_index)
    val_loss, val_acc = evaluate_all(validation_index) if status == Status.STOPPED or any(diverged) else last_validation
    elapsed = time.perf_counter() - started
    for i in range(count):
        yield ev.Finished(i, Status.DIVERGED if diverged[i] else status, epochs_completed, models[i], normalizer,
                          dataset.class_names, test_loss[i], test_acc[i], val_loss[i], val_acc[i], elapsed,
                          train_loss[i], train_acc[i], engine.steps if kept_steps[i] is None else kept_steps[i],
                          batches_per_epoch)
