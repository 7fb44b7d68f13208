"""Events yielded by training. The CLI, the pages, the store and the tests consume the same stream.

Every event is about one run (one model). `index` is that model's place among the K models
trained together on the same minibatches (`lrcore.training.train_group`, a sweep); a single run
(`lrcore.training.train`) is a group of one, index 0. A group yields the K events of a kind one
after another, index 0 first. `lrcore.record.fold` is the one place an event changes a run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .config import TrainConfig
from .status import Status


@dataclass(frozen=True)
class RunStarted:
    index: int
    config: TrainConfig
    class_names: tuple[str, ...]
    train_size: int
    validation_size: int
    test_size: int
    batches_per_epoch: int
    device: str
    normalizer: object = field(repr=False, default=None)


@dataclass(frozen=True)
class EpochEnd:
    """Metrics after `epoch` epochs; epoch 0 is the evaluation before any step.

    `train_loss` / `train_accuracy`: the running average over the epoch (Keras, fastai): the
    mean over the epoch's batches, each measured just before its own step, weighted by batch
    size; no second pass over the training set. The weights changed during the epoch, so it
    lags the end-of-epoch weights' own numbers (`Finished.train_loss` is those, exactly). Epoch 0's are
    an exact evaluation of the untrained model. `validation_*`: the end-of-epoch weights on
    the whole validation split.
    """

    index: int
    epoch: int
    epochs: int
    step: int
    train_loss: float  # running average over the epoch (see above)
    train_accuracy: float
    validation_loss: float
    validation_accuracy: float
    learning_rate: float
    seconds: float  # training time of this epoch alone (0 for epoch 0)
    elapsed: float  # since the run started
    weight: torch.Tensor | None = field(repr=False)  # C x P snapshot, CPU (None: not kept)
    bias: torch.Tensor | None = field(repr=False)


@dataclass(frozen=True)
class BatchProgress:
    """Throttled by time; `losses` holds every batch loss since the previous event."""

    index: int
    epoch: int  # 1-based epoch in progress
    batch: int  # batches done in this epoch
    batches_per_epoch: int
    step: int  # total steps done; losses[i] belongs to step - len(losses) + i + 1
    losses: tuple[float, ...]
    learning_rate: float
    elapsed: float
    seconds_left: float


@dataclass(frozen=True)
class LearningRateChanged:
    index: int
    step: int
    epoch: int
    old: float
    new: float


@dataclass(frozen=True)
class Paused:
    index: int
    step: int


@dataclass(frozen=True)
class Resumed:
    index: int
    step: int


@dataclass(frozen=True)
class Diverged:
    index: int
    epoch: int
    step: int
    learning_rate: float
    loss: float
    message: str


@dataclass(frozen=True)
class Finished:
    """Last event. status: done, stopped or diverged. `model` holds the kept weights."""

    index: int
    status: Status
    epochs_completed: int
    model: torch.nn.Module = field(repr=False)
    normalizer: object = field(repr=False)
    class_names: tuple[str, ...]
    test_loss: float
    test_accuracy: float
    validation_loss: float
    validation_accuracy: float
    elapsed: float
    # The kept weights' numbers, evaluated on the whole training split (unlike EpochEnd's running
    # average); validation is the last EpochEnd's unless the run ended inside an epoch (a stop or
    # divergence: the kept weights are newer). Every figure shown for the final model comes from here.
    train_loss: float = math.nan
    train_accuracy: float = math.nan
    kept_step: int = 0  # optimizer steps behind the kept weights
    batches_per_epoch: int = 0

    @property
    def kept_at(self) -> tuple[int, int]:
        """(epoch, batch) of the kept weights: after `batch` of `epoch`; (0, 0) = untrained."""
        return kept_position(self.kept_step, self.batches_per_epoch)


def kept_position(step: int, batches_per_epoch: int) -> tuple[int, int]:
    """Step count -> (epoch, batch within it), 1-based; step 0 is (0, 0), the untrained model."""
    if step <= 0 or batches_per_epoch <= 0:
        return 0, 0
    epoch = (step - 1) // batches_per_epoch + 1
    return epoch, step - (epoch - 1) * batches_per_epoch
