"""One dataclass that holds and validates every training hyperparameter.

Pages, the CLI and the tests all build a `TrainConfig`; a bad value raises a
`ConfigError` whose `problems` maps each field to a message saying what is allowed,
so a page can show it next to the control and the CLI can print it on one line.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from . import datasets as _datasets
from .settings import (BATCH_ORDER_LABELS, BY_NAME, LEARNING_RATE_RANGE, NORMALIZATION_LABELS,  # noqa: F401
                       OPTIMIZER_LABELS, setting_problems)

OPTIMIZERS = tuple(OPTIMIZER_LABELS)
NORMALIZATIONS = tuple(NORMALIZATION_LABELS)
BATCH_ORDERS = tuple(BATCH_ORDER_LABELS)
DATASETS = _datasets.NAMES  # the registry's names, read live (lrcore/datasets.py)
DEVICES = BY_NAME["device"].choices


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
    model: str = "auto"  # "auto" (binary for two classes), "softmax" or "binary": lrcore.model.uses_sigmoid
    full_batch: bool = False  # every step on the whole training split (tutorial 002): `batch_size_for`

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
        if not self.full_batch and self.batch_size > train_size:
            raise ConfigError({"batch_size": f"must be at most the training set size ({train_size:,} images); "
                                             "or turn on Full batch to train on all of them in every step"})

    def batch_size_for(self, train_size: int) -> int:
        """Images per step: the whole training split with `full_batch`, else `batch_size`."""
        return max(train_size, 1) if self.full_batch else self.batch_size

    def check_dataset(self, num_classes: int, dataset_title: str | None = None) -> None:
        """Checks that need the dataset's number of classes: a binary model needs exactly two.

        Called when training starts; pages call it before Start to show the problem by the control.
        """
        if self.model == "binary" and num_classes != 2:
            title = dataset_title or _dataset_title(self.dataset)
            raise ConfigError({"model": f"binary logistic regression needs exactly two classes; {title} has "
                                        f"{num_classes}: choose softmax or auto"})

    @classmethod
    def of_unregistered_dataset(cls, values: dict[str, Any]) -> "TrainConfig":
        """The settings of a model whose dataset is not registered here (a checkpoint of another
        machine's image folder): every other field is checked as usual, `dataset` is kept as given
        (a non-empty name of at most 200 characters), so the model loads and predicts; training or
        evaluating on that dataset needs it imported first (load_dataset says so)."""
        name = values.get("dataset")
        if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
            raise ConfigError({"dataset": f"must be a dataset name (1 to 200 printable characters), got "
                                          f"{name if not isinstance(name, str) else name[:40]!r}"})
        config = cls.from_dict({**values, "dataset": DATASETS[0]})
        object.__setattr__(config, "dataset", name)  # frozen: set once here, like __init__ would
        return config


def _dataset_title(name: str) -> str:
    info = _datasets.REGISTRY.get(name)
    return info.short_title if info is not None else name


def config_problems(values: dict[str, Any]) -> dict[str, str]:
    """Return {field: message} for every invalid value (lrcore/settings.py's rules); empty when all are valid."""
    return setting_problems(values)


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


def dataset_default_text(field: str) -> str:
    """"default for Fashion-MNIST: 0.1" for help texts: the datasets whose default differs from
    the default dataset's ("" when every dataset has the same)."""
    base = defaults_for(DATASETS[0])[field]
    return "; ".join(f"default for {_datasets.get(dataset).short_title}: "
                     f"{BY_NAME[field].text(defaults_for(dataset)[field])}"
                     for dataset in DATASETS if defaults_for(dataset)[field] != base)

