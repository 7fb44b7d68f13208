"""One dataclass that holds and validates every training hyperparameter.

Pages, the CLI and the tests all build a `TrainConfig`; a bad value raises a
`ConfigError` whose `problems` maps each field to a message saying what is allowed,
so a page can show it next to the control and the CLI can print it on one line.
"""
from __future__ import annotations

import math
import re
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
        """A copy with `changes`. A config of a dataset not registered here (`of_unregistered_dataset`)
        keeps its dataset as long as `changes` do not name another one."""
        values = {**self.to_dict(), **changes}
        if values["dataset"] == self.dataset and self.dataset not in DATASETS:
            return TrainConfig.of_unregistered_dataset(values)
        return TrainConfig.from_dict(values)

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

# Every other dataset that is not digits is pictures of any size: the user's own image folders
# (lrcore.image_folder). Their pixels are mostly light background (mean 0.86 on the bundled
# example), so raw inputs make one huge curvature along the mean image: gradient descent on raw
# 32x32 colour pixels is stable only below lr ~0.003 (binary and softmax alike: 50% accuracy at
# lr 0.005, validation loss rising). Standardised, the largest curvature still grows with the
# number of pixels (0.18-0.19 x pixels on the example at every size, the neighbours being
# correlated), so the learning rate is 16 / pixels, rounded: 0.02 at 28x28 grey, 0.005 at 32x32
# colour, 0.001 at 64x64 colour. With 20 epochs that reached 0.98-1.00 test accuracy on the example
# and the best or near-best validation loss on a harder pair (Fashion-MNIST T-shirts vs shirts),
# binary and softmax, at 28 grey, 32 and 64 colour (lr 0.1 there: 0.80-0.83 and a loss of 1.2-3.5).
PICTURE_DEFAULTS: dict[str, Any] = {"normalization": "standardize", "epochs": 20, "deskew": False}
PICTURE_LR_PER_PIXEL = 16.0
PICTURE_LR_RANGE = (1e-4, 0.05)
PICTURES_TEXT = "your own pictures"  # how help texts name these datasets
# A folder dataset's registered name (lrcore.image_folder.dataset_name), "bees-32-colour-1a2b3c4d":
# read here for a dataset that is not registered in this process (a checkpoint from another machine).
# Not imported from image_folder: that module needs photo decoding, config must stay light.
FOLDER_NAME = re.compile(r"^[a-z0-9-]+-(?P<side>[0-9]{1,4})-(?P<colour>colour|grey)-[0-9a-f]{8}$")


def picture_learning_rate(num_pixels: int) -> float:
    """16 / pixels with one significant figure (0.005 for 3x32x32): see PICTURE_DEFAULTS."""
    rate = PICTURE_LR_PER_PIXEL / max(num_pixels, 1)
    rate = round(rate, -math.floor(math.log10(rate)))
    return min(max(rate, PICTURE_LR_RANGE[0]), PICTURE_LR_RANGE[1])


def picture_pixels(dataset: str) -> int | None:
    """Inputs per image of a dataset of pictures (not digits, no defaults of its own): from the
    registry, or from a folder dataset's name where it is not registered; None for any other."""
    if dataset in DATASET_DEFAULTS:
        return None
    info = _datasets.REGISTRY.get(dataset)
    if info is not None:
        return None if info.digits else info.num_pixels
    match = FOLDER_NAME.match(dataset) if isinstance(dataset, str) else None
    if match is None:
        return None
    side = int(match["side"])
    return (3 if match["colour"] == "colour" else 1) * side * side


def special_defaults(dataset: str) -> dict[str, Any]:
    """The settings whose default for `dataset` differs from TrainConfig's own: its DATASET_DEFAULTS
    entry, or PICTURE_DEFAULTS and a learning rate for its size; {} for any other."""
    pixels = picture_pixels(dataset)
    if pixels is not None:
        return {**PICTURE_DEFAULTS, "learning_rate": picture_learning_rate(pixels)}
    return dict(DATASET_DEFAULTS.get(dataset, {}))


def defaults_for(dataset: str) -> dict[str, Any]:
    """Every TrainConfig field's default for `dataset` (an unknown name gets the plain defaults)."""
    base = {f.name: f.default for f in fields(TrainConfig)}
    return {**base, **special_defaults(dataset), "dataset": dataset}


def dataset_default_text(field: str) -> str:
    """"default for Fashion-MNIST: 0.1" for help texts: the built-in datasets whose default differs
    from the default dataset's, then your own pictures' ("" when every dataset has the same).
    Imported folders are not listed one by one: there can be many, and their rule is one."""
    base = defaults_for(DATASETS[0])[field]
    parts = [f"{_datasets.get(dataset).short_title}: {BY_NAME[field].text(defaults_for(dataset)[field])}"
             for dataset in DATASET_DEFAULTS if dataset in DATASETS and defaults_for(dataset)[field] != base]
    if field == "learning_rate":
        parts.append(f"{PICTURES_TEXT}: {PICTURE_LR_PER_PIXEL:g} / pixels, e.g. "
                     f"{picture_learning_rate(3 * 32 * 32):g} at 32x32 colour")
    elif field in PICTURE_DEFAULTS and PICTURE_DEFAULTS[field] != base:
        parts.append(f"{PICTURES_TEXT}: {BY_NAME[field].text(PICTURE_DEFAULTS[field])}")
    return "default for " + "; for ".join(parts) if parts else ""
