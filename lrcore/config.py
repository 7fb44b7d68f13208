"""One dataclass that holds and validates every training hyperparameter.

Pages, the CLI and the tests all build a `TrainConfig`; a bad value raises a
`ConfigError` whose `problems` maps each field to a message saying what is allowed,
so a page can show it next to the control and the CLI can print it on one line.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from . import datasets as _datasets

OPTIMIZERS = ("sgd", "momentum", "adamw")
OPTIMIZER_LABELS = {"sgd": "SGD", "momentum": "SGD + momentum", "adamw": "AdamW"}
NORMALIZATIONS = ("raw", "standardize")
NORMALIZATION_LABELS = {"raw": "raw pixels 0..1", "standardize": "per-pixel mean/std"}
# Minibatch order (tutorial 002's "what happens if you disable the shuffling?"): a new shuffle
# each epoch, one shuffled order repeated every epoch, or sorted by class (all 0s, then all 1s...).
BATCH_ORDERS = ("shuffled", "fixed", "by_class")
BATCH_ORDER_LABELS = {"shuffled": "shuffled every epoch", "fixed": "the same order every epoch",
                      "by_class": "sorted by class"}
DATASETS = _datasets.NAMES  # the registry's names, read live (lrcore/datasets.py)
DEVICES = ("auto", "cpu", "cuda")
LEARNING_RATE_RANGE = (1e-6, 100.0)


class ConfigError(ValueError):
    """Raised for invalid hyperparameters; `problems` maps field name -> message."""

    def __init__(self, problems: dict[str, str]):
        self.problems = dict(problems)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.problems.items()))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Same config + same seed -> same numbers."""

    learning_rate: float = 0.5
    batch_size: int = 128
    validation_fraction: float = 0.2
    epochs: int = 10
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    dataset: str = "mnist-sample"
    normalization: str = "raw"
    per_class_limit: int | None = None
    batch_order: str = "shuffled"
    # Off here so that old checkpoints and runs (saved before the setting existed) load as they
    # were trained; `for_dataset` / `defaults_for` turn it on where it helps (digit datasets).
    deskew: bool = False

    def __post_init__(self) -> None:
        problems = config_problems(asdict(self))
        if problems:
            raise ConfigError(problems)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> "TrainConfig":
        """The default settings that suit `dataset` (`defaults_for`), with `overrides` on top."""
        return cls(**{**defaults_for(dataset), **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict, ignoring unknown keys (old checkpoints, URL params)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def replace(self, **changes: Any) -> "TrainConfig":
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def check_sizes(self, train_size: int) -> None:
        """Checks that need the size of the training split (known after splitting)."""
        if self.batch_size > train_size:
            raise ConfigError({"batch_size": f"must be at most the training set size ({train_size:,} images)"})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def config_problems(values: dict[str, Any]) -> dict[str, str]:
    """Return {field: message} for every invalid value; empty when all are valid."""
    problems: dict[str, str] = {}
    lo, hi = LEARNING_RATE_RANGE
    lr = values.get("learning_rate")
    if not _is_number(lr) or not math.isfinite(lr) or lr <= 0:
        problems["learning_rate"] = f"must be a finite number > 0 (allowed: {lo:g} to {hi:g}), got {lr!r}"
    elif not lo <= lr <= hi:
        problems["learning_rate"] = f"must be between {lo:g} and {hi:g}, got {lr:g}"
    batch_size = values.get("batch_size")
    if not _is_int(batch_size) or batch_size < 1:
        problems["batch_size"] = f"must be a whole number >= 1, got {batch_size!r}"
    fraction = values.get("validation_fraction")
    if not _is_number(fraction) or not 0 < fraction < 1:
        problems["validation_fraction"] = f"must be strictly between 0 and 1, got {fraction!r}"
    epochs = values.get("epochs")
    if not _is_int(epochs) or not 1 <= epochs <= 1000:
        problems["epochs"] = f"must be a whole number from 1 to 1000, got {epochs!r}"
    optimizer = values.get("optimizer")
    if optimizer not in OPTIMIZERS:
        problems["optimizer"] = f"must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}"
    momentum = values.get("momentum")
    if not _is_number(momentum) or not 0 <= momentum < 1:
        problems["momentum"] = f"must be >= 0 and < 1, got {momentum!r}"
    decay = values.get("weight_decay")
    if not _is_number(decay) or not math.isfinite(decay) or not 0 <= decay <= 10:
        problems["weight_decay"] = f"must be a number from 0 to 10, got {decay!r}"
    seed = values.get("seed")
    if not _is_int(seed) or not 0 <= seed < 2**31:
        problems["seed"] = f"must be a whole number from 0 to {2**31 - 1}, got {seed!r}"
    for field, allowed in (("device", DEVICES), ("dataset", DATASETS), ("normalization", NORMALIZATIONS),
                           ("batch_order", BATCH_ORDERS)):
        value = values.get(field)
        if value not in allowed:
            problems[field] = f"must be one of {', '.join(allowed)}, got {value!r}"
    if not isinstance(values.get("deskew"), bool):
        problems["deskew"] = f"must be true or false, got {values.get('deskew')!r}"
    limit = values.get("per_class_limit")
    if limit is not None and (not _is_int(limit) or limit < 1):
        problems["per_class_limit"] = f"must be empty (use all images) or a whole number >= 1, got {limit!r}"
    return problems


# Default settings per dataset, on top of TrainConfig's own defaults: one place that the CLI,
# the Train page and `TrainConfig.for_dataset` read. Measured (README, "Speed and accuracy"):
# lr 0.5 overshoots on Fashion-MNIST (0.72 test accuracy); deskewing helps digits only.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist-sample": {"deskew": True},
    "mnist": {"deskew": True},
    "fashion-mnist": {"learning_rate": 0.1, "epochs": 20, "deskew": False},
}


def defaults_for(dataset: str) -> dict[str, Any]:
    """Every TrainConfig field's default for `dataset` (an unknown name gets the plain defaults)."""
    base = {f.name: f.default for f in fields(TrainConfig)}
    return {**base, **DATASET_DEFAULTS.get(dataset, {}), "dataset": dataset}


DATASET_NAMES = {"mnist-sample": "MNIST sample", "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


def dataset_default_text(field: str) -> str:
    """"default for Fashion-MNIST: 0.1" for help texts: the datasets whose default differs from
    the default dataset's ("" when every dataset has the same)."""
    base = defaults_for(DATASETS[0])[field]
    return "; ".join(f"default for {DATASET_NAMES[dataset]}: {_plain(defaults_for(dataset)[field])}"
                     for dataset in DATASETS if defaults_for(dataset)[field] != base)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)
