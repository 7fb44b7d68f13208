"""The training settings, described once.

One `Setting` per `TrainConfig` field says its type, default, what is allowed, its label and
help text, its URL key and CLI flag, and how people read a value. `TrainConfig`'s checks, the
CLI's flags, the Train and Sweep widgets, the share link and the run names and legends are all
built from `SETTINGS`, so a new hyperparameter is one entry here (plus the engine, where it
changes the step) and its field in `TrainConfig`. Order = the order of run names, legends and
`--help`; add new settings at the end: the Train and Sweep pages lay out the settings up to
`deskew` by hand and give each later one a default widget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from . import datasets as _datasets

OPTIMIZER_LABELS = {"sgd": "SGD", "momentum": "SGD + momentum", "adamw": "AdamW"}
NORMALIZATION_LABELS = {"raw": "raw pixels 0..1", "standardize": "per-pixel mean/std"}
# Minibatch order (tutorial 002's "what happens if you disable the shuffling?"): a new shuffle
# each epoch, one shuffled order repeated every epoch, or sorted by class (all 0s, then all 1s...).
BATCH_ORDER_LABELS = {"shuffled": "shuffled every epoch", "fixed": "the same order every epoch",
                      "by_class": "sorted by class"}
SWITCH_WORDS = {"on": True, "off": False}
ALL = "all"  # the URL word and legend text for an optional limit that is off


@dataclass(frozen=True)
class Setting:
    """One training setting. `low`/`high` bound what TrainConfig accepts (`open_low`/`open_high`:
    the bound itself is not allowed); `ui_low`/`ui_high` (default: the same) bound the widgets
    and links, `decimals` rounds them. `choices` may be read live (the dataset registry)."""

    name: str
    kind: type  # float, int, str (one of `choices`) or bool
    default: Any
    rule: str  # "must be <rule>, got ..." in ConfigError
    label: str = ""  # widget label; "" = no widget (device, dataset)
    help: str = ""  # widget help
    cli_help: str = ""
    param: str = ""  # URL query key; "" = not in links
    flags: tuple[str, ...] = ()  # CLI flags, the first one's name is the argparse dest's
    short: str = ""  # run names and legends: "lr=0.5"
    long: str = ""  # sentences: "learning rate 0.5"
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    ui_low: float | None = None
    ui_high: float | None = None
    decimals: int | None = None
    step: float | None = None
    choices: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)  # widget text of a choice
    words: Mapping[Any, str] = field(default_factory=dict)  # legend text of a value
    optional: bool = False  # None allowed (per_class_limit: "use all images")
    by_dataset: bool = False  # its default depends on the dataset (DATASET_DEFAULTS)
    range_rule: str = ""  # message for a number of the right kind outside low..high

    @property
    def lowest(self) -> float | None:
        return self.low if self.ui_low is None else self.ui_low

    @property
    def highest(self) -> float | None:
        return self.high if self.ui_high is None else self.ui_high

    def problem(self, value: Any) -> str | None:
        """"must be ..., got ..." for a value TrainConfig rejects, else None."""
        if value is None and self.optional:
            return None
        if self.kind is bool:
            return None if isinstance(value, bool) else f"must be {self.rule}, got {value!r}"
        if self.kind is str:
            return None if value in self.choices else \
                f"must be one of {', '.join(self.choices)}, got {value!r}"
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (self.kind is int and not isinstance(value, int)) or not math.isfinite(value):
            return f"must be {self.rule}, got {value!r}"
        if self.range_rule and value > 0 and not self.low <= value <= self.high:
            return f"must be {self.range_rule}, got {value:g}"
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)) or \
                self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            return f"must be {self.rule}, got {value!r}"
        return None

    def text(self, value: Any) -> str:
        """A value as people read it: "SGD", "standardised", "all", "on", "0.01"."""
        if value in self.words or (self.kind is str and value in self.labels):
            return self.words.get(value) or self.labels[value]
        if value is None:
            return ALL
        if isinstance(value, bool):
            return "on" if value else "off"
        return f"{value:g}" if isinstance(value, float) else str(value)

    def allowed_text(self) -> str:
        """What a link may say: "one of sgd, momentum, adamw", "a number from 0 to 0.99 with ..."."""
        if self.kind is bool:
            return "one of " + ", ".join(SWITCH_WORDS)
        if self.kind is str:
            return "one of " + ", ".join(self.choices)
        text = f"{'a whole number' if self.kind is int else 'a number'} from {self.lowest:g} to {self.highest:g}"
        if self.decimals is not None:
            text += f" with at most {'two' if self.decimals == 2 else self.decimals} decimals"
        return text + (f", or {ALL}" if self.optional else "")

    def parse(self, text: str) -> Any:
        """The value a link's word stands for; ValueError when it is not allowed."""
        if self.kind is bool:
            return SWITCH_WORDS[text] if text in SWITCH_WORDS else _reject(text)
        if self.kind is str:
            return text if text in self.choices else _reject(text)
        if self.optional and text == ALL:
            return None
        value = self.kind(text)  # ValueError for "abc" (and for "0.5" as a whole number)
        if not math.isfinite(value) or not self.lowest <= value <= self.highest:
            _reject(text)
        if self.decimals is not None and abs(round(value, self.decimals) - value) > 1e-9:
            _reject(text)
        return value

    def word(self, value: Any) -> str:
        """A value as its link word: "on"/"off", "all", floats exactly (repr) or rounded to `decimals`."""
        if isinstance(value, bool):
            return "on" if value else "off"
        if value is None:
            return ALL
        if isinstance(value, str):
            return value
        return str(round(value, self.decimals) if self.decimals is not None else value)


def _reject(text: str):
    raise ValueError(text)


LEARNING_RATE_RANGE = (1e-6, 100.0)
SETTINGS: tuple[Setting, ...] = (
    Setting("dataset", str, "mnist-sample", "", choices=_datasets.NAMES, flags=("--dataset",),
            cli_help="dataset to train on", short="data", long="dataset"),
    Setting("learning_rate", float, 0.5, f"a finite number > 0 (allowed: {LEARNING_RATE_RANGE[0]:g} to "
            f"{LEARNING_RATE_RANGE[1]:g})", low=LEARNING_RATE_RANGE[0], high=LEARNING_RATE_RANGE[1],
            range_rule=f"between {LEARNING_RATE_RANGE[0]:g} and {LEARNING_RATE_RANGE[1]:g}",
            label="Learning rate", help="How far each step moves the weights. Too small: slow. Too large: "
            "the loss jumps around or blows up.", cli_help="learning rate", param="lr",
            flags=("--lr", "--learning-rate"), short="lr", long="learning rate", by_dataset=True),
    Setting("batch_size", int, 128, "a whole number >= 1", low=1, ui_high=1_000_000, label="Batch size",
            help="Images per gradient step.", cli_help="minibatch size", param="batch_size",
            flags=("--batch-size",), short="bs", long="batch size"),
    Setting("optimizer", str, "sgd", "", choices=tuple(OPTIMIZER_LABELS), labels=OPTIMIZER_LABELS,
            label="Optimizer", cli_help="optimizer", param="optimizer", flags=("--optimizer",), short="opt",
            long="optimizer"),
    Setting("momentum", float, 0.9, ">= 0 and < 1", low=0.0, high=1.0, open_high=True, ui_high=0.99,
            decimals=2, step=0.01, label="Momentum", help="Used by SGD + momentum only.",
            cli_help="momentum (optimizer momentum)", param="momentum", flags=("--momentum",),
            short="momentum", long="momentum"),
    Setting("weight_decay", float, 0.0, "a number from 0 to 10", low=0.0, high=10.0, step=0.001,
            label="Weight decay", help="Pulls every weight towards 0 (L2).", cli_help="weight decay",
            param="weight_decay", flags=("--weight-decay",), short="wd", long="weight decay"),
    Setting("epochs", int, 10, "a whole number from 1 to 1000", low=1, high=1000, label="Epochs",
            help="Passes over the training images.", cli_help="passes over the training split", param="epochs",
            flags=("--epochs",), short="epochs", long="epochs", by_dataset=True),
    Setting("validation_fraction", float, 0.2, "strictly between 0 and 1", low=0.0, high=1.0, open_low=True,
            open_high=True, ui_low=0.01, ui_high=0.9, decimals=2, step=0.01, label="Validation fraction",
            help="Share of the training images held out to check the model on unseen data.",
            cli_help="fraction of the training pool held out for validation", param="val_fraction",
            flags=("--validation-fraction",), short="val", long="validation fraction"),
    Setting("normalization", str, "raw", "", choices=tuple(NORMALIZATION_LABELS), labels=NORMALIZATION_LABELS,
            words={"standardize": "standardised", "raw": "raw"}, label="Normalisation",
            cli_help="raw 0..1 pixels or per-pixel mean/std", param="normalization", flags=("--normalization",),
            short="norm", long="normalisation", by_dataset=True),
    Setting("per_class_limit", int, None, "empty (use all images) or a whole number >= 1", low=1,
            ui_high=1_000_000, optional=True, step=50, label="Images per class",
            help="Train on a subset, e.g. 500 per class as in tutorial 003.",
            cli_help="use at most N training images per class (tutorial 003 uses 500)", param="per_class",
            flags=("--per-class-limit",), short="per class", long="images per class"),
    Setting("seed", int, 0, f"a whole number from 0 to {2**31 - 1}", low=0, high=2**31 - 1, label="Seed",
            help="Same seed and settings give the same split, batches and numbers.",
            cli_help="seed for split, init and shuffling", param="seed", flags=("--seed",), short="seed",
            long="seed"),
    Setting("device", str, "auto", "", choices=("auto", "cpu", "cuda"), cli_help="auto = CUDA when available",
            flags=("--device",), short="device", long="device"),
    Setting("batch_order", str, "shuffled", "", choices=tuple(BATCH_ORDER_LABELS), labels=BATCH_ORDER_LABELS,
            label="Minibatch order", help="Shuffled every epoch is the usual choice. Sorted by class shows what "
            "happens without shuffling when the data is ordered: the model forgets one digit while it sees the "
            "next.", cli_help="minibatch order: reshuffled every epoch, one fixed order, or sorted by class",
            param="order", flags=("--batch-order",), short="order", long="minibatch order"),
    # Off by default so that old checkpoints and runs (saved before the setting existed) load as
    # they were trained; DATASET_DEFAULTS turns it on where it helps (digit datasets).
    Setting("deskew", bool, False, "true or false", label="Deskew the digits",
            help="Shear every image so its strokes stand upright, in training and for drawings: the classic "
            "fix for a linear model's sensitivity to slant.", cli_help="deskew the images (shear each digit "
            "upright)", param="deskew", flags=("--deskew",), short="deskew", long="deskew", by_dataset=True),
)
# Which model: tutorial 002's binary logistic regression (one weight vector, sigmoid) or softmax
# regression (one weight vector per class). "auto" picks binary for two classes.
MODEL_LABELS = {"auto": "auto (sigmoid for two classes)", "softmax": "softmax", "binary": "binary (sigmoid)"}
SETTINGS += (
    Setting("model", str, "auto", "", choices=tuple(MODEL_LABELS), labels=MODEL_LABELS,
            words={"auto": "auto", "softmax": "softmax", "binary": "sigmoid"}, label="Model",
            help="Binary (sigmoid): one weight image and the sigmoid, for exactly two classes, as tutorial 002. "
            "Softmax: one weight image per class, for any number of classes. Auto: sigmoid for two classes, "
            "softmax for more.", cli_help="auto (sigmoid for two classes, softmax for more), softmax, or binary "
            "(sigmoid: two classes only)", param="model", flags=("--model",), short="model", long="model"),
    Setting("full_batch", bool, False, "true or false", label="Full batch",
            help="Every step uses the whole training split (batch size = training images), as tutorial 002: "
            "one step per epoch, so it needs more epochs or a larger learning rate.",
            cli_help="every step uses the whole training split (full-batch gradient descent, tutorial 002); "
            "--batch-size is then ignored", param="full_batch", flags=("--full-batch",), short="full batch",
            long="full batch"),
)
BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
BY_PARAM: dict[str, Setting] = {setting.param: setting for setting in SETTINGS if setting.param}


def setting_problems(values: Mapping[str, Any]) -> dict[str, str]:
    """{field: message} for every value its Setting rejects (missing counts as None)."""
    problems = {s.name: s.problem(values.get(s.name)) for s in SETTINGS}
    return {name: message for name, message in problems.items() if message}


def to_params(values: Mapping[str, Any]) -> dict[str, str]:
    """Link query parameters for the settings in `values` (an optional setting that is off: left out)."""
    return {BY_NAME[name].param: BY_NAME[name].word(value) for name, value in values.items()
            if name in BY_NAME and BY_NAME[name].param and value is not None}


def from_params(params: Mapping[str, str], defaults: Mapping[str, Any],
                escape=lambda text, limit=None: text) -> tuple[dict[str, Any], list[str]]:
    """The link's settings over `defaults`, and a warning per value not allowed (its text put
    through `escape`, which a page sets to its markdown escaping)."""
    settings = dict(defaults)
    warnings = []
    for param, setting in BY_PARAM.items():
        if param not in params:
            continue
        text = params[param]
        try:
            settings[setting.name] = setting.parse(text)
        except ValueError:
            warnings.append(f"The link's {escape(param)}={escape(text, 40)} was ignored: {param} must be "
                            f"{setting.allowed_text()}. Using the default "
                            f"({escape(setting.word(settings.get(setting.name)))}).")
    return settings, warnings
