"""Learning-rate sweeps: the grid of configurations, its limits, and the ranking of its runs.

    configs = sweep_configs(TrainConfig(epochs=5), log_grid(1e-3, 100, 11), batch_sizes=[64, 256])
    job = TrainingJob(configs, load_dataset("mnist-sample"), group_id=new_id("sweep-")).start()
    job.join(); print(ranked(job.records())[0].config.learning_rate)

A sweep is K ordinary runs trained by one `lrcore.jobs.TrainingJob`: configurations sharing a
batch size (weight decay may differ) train together on the same minibatches with one stacked
matrix product per step, so 16 learning rates cost little more than one. A diverged run is
frozen and marked; it never ends the sweep.
"""
from __future__ import annotations

import math
from typing import Sequence

from .config import LEARNING_RATE_RANGE, ConfigError, TrainConfig, config_problems
from .record import RunRecord
from .status import Status
from .training import GROUP_SHARED, group_key

MAX_CONFIGS = 64  # one sweep; 64 x 10 x 784 weights and their curves stay small
GRID_SIZES = (2, 64)  # values in one log grid


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


def config_label(config: TrainConfig, show_batch: bool = True, show_decay: bool = True) -> str:
    parts = [f"lr {config.learning_rate:g}"]
    if show_batch:
        parts.append(f"batch {config.batch_size}")
    if show_decay:
        parts.append(f"wd {config.weight_decay:g}")
    return " · ".join(parts)


def ranked(records: Sequence[RunRecord]) -> list[RunRecord]:
    """Best validation accuracy first; diverged, failed and unstarted runs last (in sweep order)."""
    def key(pair: tuple[int, RunRecord]) -> tuple:
        index, record = pair
        ok = record.status not in (Status.DIVERGED, Status.FAILED) and record.validation_accuracy is not None \
            and math.isfinite(record.validation_accuracy)
        return (not ok, -(record.validation_accuracy or 0.0) if ok else 0.0, index)
    return [record for _, record in sorted(enumerate(records), key=key)]


def best(records: Sequence[RunRecord]) -> RunRecord | None:
    """The run with the best validation accuracy, None while none has one worth ranking."""
    first = ranked(records)[:1]
    if not first or first[0].status in (Status.DIVERGED, Status.FAILED) or first[0].validation_accuracy is None:
        return None
    return first[0]


def wall_seconds(records: Sequence[RunRecord]) -> float:
    """Seconds from the first group's start to the last run's latest report: a sweep's groups train in turn
    on one worker or side by side on several, so adding up each group's time would overstate it."""
    timed = [record for record in records if record.elapsed]
    if not timed:
        return 0.0
    return max(record.updated for record in timed) - min(record.updated - record.elapsed for record in timed)


def training_groups(records: Sequence[RunRecord]) -> int:
    """How many of the sweep's groups (batch sizes, data settings) train at this moment."""
    return len({group_key(record.config) for record in records
                if record.status in (Status.TRAINING, Status.PAUSED) and record.progress})


def fraction_done(records: Sequence[RunRecord]) -> float:
    """Share of all epochs of all runs trained so far (0..1), whether the groups train in turn or side by side."""
    if not records:
        return 0.0
    done = 0.0
    for record in records:
        if not record.active:
            done += 1.0
        elif record.progress:
            batches = max(record.progress.get("batches_per_epoch", 1), 1)
            epoch = record.progress.get("epoch", 1) - 1 + record.progress.get("batch", 0) / batches
            done += min(epoch / record.config.epochs, 1.0)
    return min(done / len(records), 1.0)


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
