"""Short names for settings, shared by run names and chart legends so the two always agree.

    default_run_name(TrainConfig(weight_decay=0.01))  -> "SGD lr=0.5 wd=0.01"
    legend_labels(runs)                               -> ["lr=0.1", "lr=0.5"]

A run name says what differs from the defaults (the dataset's own defaults when
`lrcore.config.defaults_for` exists), so two runs that differ only in weight decay no
longer share one name. Any TrainConfig field works, including ones added later: a field
without a short name is named after itself ("deskew off", "label smoothing=0.1").
"""
from __future__ import annotations

import re
import time
import uuid
from dataclasses import fields
from typing import Any, Sequence

from . import config as config_module
from .config import ConfigError, TrainConfig
from .settings import BY_NAME, SETTINGS

# Settings named in legends and run names, in the settings table's order (lrcore/settings.py).
SHORT_NAMES = {setting.name: setting.short for setting in SETTINGS if setting.short}
# Left out of run names: where the run trained is not a hyperparameter, and the run list
# has its own dataset column.
NOT_IN_NAMES = ("dataset", "device")


def short_name(field: str) -> str:
    return SHORT_NAMES.get(field, field.replace("_", " "))


def setting_fields() -> list[str]:
    """Every TrainConfig field: SHORT_NAMES order first, then any others in dataclass order."""
    names = [f.name for f in fields(TrainConfig)]
    return [name for name in SHORT_NAMES if name in names] + [name for name in names if name not in SHORT_NAMES]


def setting_text(field: str, value: Any) -> str:
    """A setting's value as people read it: "SGD", "standardised", "all", "0.01"."""
    if field in BY_NAME:
        return BY_NAME[field].text(value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_label(field: str, value: Any) -> str:
    """"wd=0.01"; an on/off setting reads "deskew off"."""
    if isinstance(value, bool):
        return f"{short_name(field)} {setting_text(field, value)}"
    return f"{short_name(field)}={setting_text(field, value)}"


def differing_settings(configs: Sequence[TrainConfig]) -> list[str]:
    """The settings (in `setting_fields` order) that are not the same for every config."""
    return [field for field in setting_fields() if len({getattr(config, field, None) for config in configs}) > 1]


def legend_labels(runs: Sequence[Any]) -> list[str]:
    """'lr=0.1, bs=64' from the settings that differ; the run's name where that does not tell them apart.

    `runs` are anything with `.config` and `.name` (stored runs, run records).
    """
    differing = differing_settings([run.config for run in runs])
    if all(getattr(run.config, "full_batch", False) for run in runs):
        differing = [field for field in differing if field != "batch_size"]  # unused by every run
    labels = [", ".join(setting_label(f, getattr(run.config, f, None)) for f in differing) for run in runs]
    return [label if label and labels.count(label) == 1 else (f"{label} · {run.name}" if label else run.name)
            for label, run in zip(labels, runs)]


def defaults_for(dataset: str) -> TrainConfig:
    """The default settings for `dataset`: `config.defaults_for` where it exists, else TrainConfig's."""
    lookup = getattr(config_module, "defaults_for", None)
    plain = _plain_config(dataset)
    if lookup is None:
        return plain
    try:
        defaults = lookup(dataset)
        if isinstance(defaults, TrainConfig):
            return defaults
        return plain.replace(**dict(defaults))  # a mapping of the settings that differ
    except Exception:  # a name is a label: never let it stop a run from starting
        return plain


def _plain_config(dataset: str) -> TrainConfig:
    """TrainConfig's own defaults on `dataset`, also where it is not registered in this process (a
    checkpoint of another machine's image folder keeps its dataset's name as written)."""
    try:
        return TrainConfig(dataset=dataset)
    except ConfigError:
        try:
            return TrainConfig.of_unregistered_dataset({"dataset": dataset})
        except ConfigError:  # not even a name: the run name never shows the dataset anyway
            return TrainConfig()


def changed_settings(config: TrainConfig) -> list[tuple[str, str]]:
    """(field, label) of each setting where `config` differs from its dataset's defaults, in
    `setting_fields` order: [("learning_rate", "lr=0.1"), ("deskew", "deskew off")]. Momentum counts only
    for SGD + momentum (the one optimizer that uses it), the batch size not for a full-batch run."""
    defaults = defaults_for(config.dataset)
    changed = []
    for field in setting_fields():
        if field in NOT_IN_NAMES:
            continue
        if field == "momentum" and config.optimizer != "momentum":
            continue
        if field == "batch_size" and getattr(config, "full_batch", False):
            continue  # full batch: the batch size setting is not used
        value = getattr(config, field)
        if value != getattr(defaults, field, None):
            changed.append((field, setting_label(field, value)))
    return changed


def default_run_name(config: TrainConfig) -> str:
    """"SGD lr=0.5", "SGD lr=0.5 wd=0.01", "AdamW lr=0.001 bs=64 deskew off": what differs from the defaults.

    The optimizer and learning rate are always named, the other settings when they differ.
    """
    parts = [setting_text("optimizer", config.optimizer), setting_label("learning_rate", config.learning_rate)]
    parts += [label for field, label in changed_settings(config) if field not in ("optimizer", "learning_rate")]
    return " ".join(parts)


NUMBER_AT_END = re.compile(r" #(\d{1,9})$")


def numbered_name(name: str, number: int) -> str:
    """"SGD lr=0.5 #3": a run name with its owner's run number, so one student's runs differ at a glance."""
    return f"{name} #{number}"


def run_number(name: str) -> int:
    """The owner's run number at the end of an auto-name ("SGD lr=0.5 #3" -> 3); 0 for any other name."""
    match = NUMBER_AT_END.search(name)
    return int(match[1]) if match else 0


def new_id(prefix: str = "") -> str:
    """A run's (or, with a prefix, a sweep's) id: time-ordered and unique, 20261130-201455-3fa2c1."""
    return prefix + time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
