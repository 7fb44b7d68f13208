"""The Sweep page's settings: the Train page's settings shared by every run, and the swept lists.

Every value comes from the widgets (keys `sweep_*`); `read_settings` turns them into the sweep's
configurations or into one clear message per control that is wrong (never a traceback).
"""
from __future__ import annotations

import streamlit as st

from lrcore.config import LEARNING_RATE_RANGE, ConfigError, TrainConfig
from lrcore.data import DATASET_TITLES, make_splits
from lrcore.lr_finder import END_LR, NUM_BATCHES, START_LR
from lrcore.settings import BY_NAME, SETTINGS
from lrcore.sweep import MAX_CONFIGS, grid_problems, log_grid, parse_numbers, sweep_configs
from ui import common
from ui.settings import setting_widget
from ui.text import md_escape

# Settings every configuration of a sweep shares (the Train page's widgets, same ranges), so a
# sweep's configuration can reproduce any Train run; the learning rate, batch size and weight
# decay are swept as lists instead.
SHARED = [s.name for s in SETTINGS if s.label and s.name not in ("learning_rate", "batch_size", "weight_decay")]
# Widget defaults: the table's (deskew follows the dataset, below), fewer epochs than a Train run.
DEFAULTS = {**{f"sweep_{name}": BY_NAME[name].default for name in SHARED if name not in ("deskew", "per_class_limit")},
            "sweep_low": "0.001", "sweep_high": "100", "sweep_count": 11, "sweep_batch_sizes": "128",
            "sweep_weight_decays": "0", "sweep_epochs": 5, "sweep_limit_on": False, "sweep_per_class_limit": 500,
            "sweep_show_batches": True, "range_start": f"{START_LR:g}", "range_end": f"{END_LR:g}",
            "range_batches": NUM_BATCHES}


def shared_settings() -> dict:
    """The shared settings from the widgets (per_class_limit None when the subset is off)."""
    state = st.session_state
    values = {name: state[f"sweep_{name}"] for name in SHARED if name != "per_class_limit"}
    for name, value in values.items():
        setting = BY_NAME[name]
        if setting.decimals is not None:  # a slider's float can be 0.30000000000000004
            values[name] = round(float(value), setting.decimals)
        elif setting.kind is int:
            values[name] = int(value)
    values["per_class_limit"] = int(state.sweep_per_class_limit) if state.sweep_limit_on else None
    return values


def parse_float(text: str, name: str, allowed: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError({name: f"“{text}” is not a number; {allowed}"}) from None
    return value


@st.cache_data(show_spinner=False, max_entries=64)
def train_size(dataset_name: str, validation_fraction: float, seed: int, per_class_limit: int | None = None) -> int:
    splits = make_splits(common.get_dataset(dataset_name), validation_fraction, seed, per_class_limit)
    return len(splits.train)


def read_settings(dataset_name: str) -> tuple[list[TrainConfig], dict[str, str]]:
    """The sweep's configurations from the widgets, or {control: message} for what is wrong."""
    state = st.session_state
    lo, hi = LEARNING_RATE_RANGE
    problems: dict[str, str] = {}
    learning_rates: list[float] = []
    try:
        low = parse_float(state.sweep_low, "low", f"use a number from {lo:g} to {hi:g}")
        high = parse_float(state.sweep_high, "high", f"use a number from {lo:g} to {hi:g}")
        problems.update(grid_problems(low, high, state.sweep_count))
        if not problems:
            learning_rates = log_grid(low, high, state.sweep_count)
    except ConfigError as error:
        problems.update(error.problems)
    batch_sizes: list[int] = []
    try:
        batch_sizes = parse_numbers(state.sweep_batch_sizes, int, "batch_sizes", "e.g. 64, 128, 256")
        if not batch_sizes:
            problems["batch_sizes"] = "enter at least one batch size, e.g. 128"
        shared = shared_settings()
        size = train_size(dataset_name, shared["validation_fraction"], shared["seed"], shared["per_class_limit"])
        too_big = [b for b in batch_sizes if not 1 <= b <= size]
        if too_big:
            problems["batch_sizes"] = (f"{', '.join(map(str, too_big))} not allowed: each batch size must be from 1 "
                                       f"to the training set size ({size:,} images)")
    except ConfigError as error:
        problems.update(error.problems)
    decays: list[float] = []
    try:
        decays = parse_numbers(state.sweep_weight_decays, float, "weight_decays", "e.g. 0, 0.001, 0.01")
        if not decays:
            problems["weight_decays"] = "enter at least one weight decay, e.g. 0"
        decay = BY_NAME["weight_decay"]
        bad = [d for d in decays if decay.problem(d)]
        if bad:
            problems["weight_decays"] = (f"{', '.join(f'{d:g}' for d in bad)} not allowed: each must be from "
                                         f"{decay.low:g} to {decay.high:g}")
    except ConfigError as error:
        problems.update(error.problems)
    if problems:
        return [], problems
    try:
        base = TrainConfig.for_dataset(dataset_name, **shared_settings())
        return sweep_configs(base, learning_rates, batch_sizes, decays), {}
    except ConfigError as error:
        return [], error.problems


def problem_note(problems: dict[str, str], *names: str) -> None:
    for name in names:
        if name in problems:
            st.error(md_escape(problems[name], 300))  # the messages quote what was typed


def range_test_config(dataset_name: str) -> TrainConfig:
    """The sweep's settings with its first batch size and weight decay (the grid may be invalid)."""
    state = st.session_state
    return TrainConfig.for_dataset(
        dataset_name, batch_size=parse_numbers(state.sweep_batch_sizes, int, "batch_sizes", "")[0],
        weight_decay=parse_numbers(state.sweep_weight_decays, float, "weight_decays", "")[0], **shared_settings())


def settings_form(dataset_name: str) -> tuple[list[TrainConfig], dict[str, str]]:
    """The settings box: what is swept, the optimizer, the data; returns the configurations or the problems."""
    settings_box = st.container(border=True)
    # Three columns, as on Train: what is swept, the optimizer, the data. Four were too narrow at
    # 1024x768 (labels on three lines), and the data settings then needed a second row.
    lr_col, optimizer_col, data_col = settings_box.columns(3, gap="medium")
    with lr_col:
        low_col, high_col = st.columns(2)
        low_col.text_input("Lowest learning rate", key="sweep_low", persist_state="session")
        high_col.text_input("Highest learning rate", key="sweep_high", persist_state="session")
        # from 3: Home's "too low, just right, too high" card opens the Sweep with three rates
        st.slider("How many learning rates", 3, MAX_CONFIGS, key="sweep_count", persist_state="session",
                  help="Spread evenly on a log scale between the lowest and the highest.")
    configs, problems = read_settings(dataset_name)
    with lr_col:
        problem_note(problems, "low", "high", "count")
        st.text_input("Batch sizes", key="sweep_batch_sizes", persist_state="session",
                      help="One or more, separated by commas. Each batch size is a separate pass over the data.")
        problem_note(problems, "batch_sizes")
        st.text_input("Weight decays", key="sweep_weight_decays", persist_state="session",
                      help="One or more, separated by commas (0 = none). Trained together with the learning rates.")
        problem_note(problems, "weight_decays")
        setting_widget(st.number_input, "epochs", "sweep_epochs", help=None)
    with optimizer_col:
        setting_widget(st.radio, "optimizer", "sweep_optimizer")
        setting_widget(st.slider, "momentum", "sweep_momentum", disabled=st.session_state.sweep_optimizer != "momentum")
        setting_widget(st.slider, "validation_fraction", "sweep_validation_fraction", help=None)
        setting_widget(st.number_input, "seed", "sweep_seed",
                       help="The same seed gives every configuration the same start and the same minibatches.")
    with data_col:
        setting_widget(st.radio, "normalization", "sweep_normalization")
        setting_widget(st.toggle, "deskew", "sweep_deskew")
        setting_widget(st.selectbox, "batch_order", "sweep_batch_order")
        st.toggle("Use a subset", key="sweep_limit_on", persist_state="session", help=BY_NAME["per_class_limit"].help)
        setting_widget(st.number_input, "per_class_limit", "sweep_per_class_limit", help=None,
                       disabled=not st.session_state.sweep_limit_on)
        for name in SHARED[SHARED.index("deskew") + 1:]:  # settings added to the table later: default widgets
            setting_widget(None, name, f"sweep_{name}")
    problem_note(problems, "configs", *(name for name in problems if name not in
                                        ("low", "high", "count", "batch_sizes", "weight_decays", "configs")))
    if configs:
        batch_count = len({c.batch_size for c in configs})
        rates = sorted({c.learning_rate for c in configs})
        passes = f"{batch_count} pass{'es' if batch_count > 1 else ''}"
        st.caption(f"{len(configs)} configurations on {DATASET_TITLES[dataset_name]}; learning rates "
                   f"{', '.join(f'{lr:g}' for lr in rates)}. Trained in {passes} over the data (one per batch size), "
                   "each pass one matrix product per step for all its configurations"
                   f"{'; the passes run side by side on the worker processes that are free' if batch_count > 1 else ''}.")
    return configs, problems
