"""Train's "From scratch" panel: the model's equations for this task and the numbers of one step.

Tutorial 002 writes binary logistic regression by hand (sigmoid, dw = X (yhat - y)^T / m,
db = mean(yhat - y)); the panel shows those equations (or softmax's) with `st.latex` and one
gradient step of the current weights on a batch of the training split, computed by
`lrcore.from_scratch.step_numbers`, so the tutorial's code can be followed on screen. It is
drawn inside the Train page's polling fragment, so it follows a live run's weights while open.
"""
from __future__ import annotations

import streamlit as st
import torch

from lrcore.config import ConfigError, TrainConfig
from lrcore.data import DatasetUnavailable, make_splits
from ui import common

BATCH = 128  # images of the training split in the shown step (the run's batch size when smaller)


def _batch(config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The first `BATCH` images of the run's training split (uint8, as training reads them) and their labels."""
    try:
        dataset = common.get_dataset(config.dataset)
        splits = make_splits(dataset, config.validation_fraction, config.seed, config.per_class_limit)
    except (ConfigError, DatasetUnavailable):  # the panel says there is no step to show
        return None
    size = len(splits.train) if config.full_batch else min(config.batch_size, len(splits.train))
    index = splits.train[:min(size, BATCH)]
    return dataset.images("train", config.deskew)[index], dataset.labels("train")[index]


def equations(binary: bool) -> None:
    from lrcore import from_scratch  # B's module: no Streamlit, the same formulas its tests check

    for what, latex in from_scratch.equations(binary):
        st.markdown(f"**{what}**")
        st.latex(latex)


def step_table(numbers, batch_size: int) -> None:
    """The numbers of one step as a short table (shapes as tutorial 002 prints them)."""
    shape = lambda dims: " × ".join(str(d) for d in dims)  # noqa: E731
    rows = {
        "X (pixels × images)": shape(numbers.x_shape),
        "w": shape(numbers.w_shape),
        "ŷ": shape(numbers.yhat_shape),
        "loss": f"{numbers.loss:.4f}",
        "mean |dw|": f"{numbers.mean_abs_dw:.3g}",
        "|db|": f"{numbers.abs_db:.3g}",
        "‖dw‖ / ‖w‖": f"{numbers.dw_norm:.3g} / {numbers.w_norm:.3g}",
        "learning rate": f"{numbers.learning_rate:g}",
    }
    st.table({"": list(rows), "this step": list(rows.values())})
    if numbers.batch < batch_size:
        st.caption(f"Shown on the first {numbers.batch} images of the batch ({batch_size:,} images per step).")


def panel(record, binary: bool, key: str = "train_scratch_open") -> None:
    """The expander: equations for `binary`, then one step of `record`'s newest weights (when there are any).

    Drawn only while open (its state under `key`): closed, as most students leave it, it costs the
    polling fragment nothing (drawn every poll, it was a third of a watching tab's server time)."""
    expander = st.expander("From scratch: the equations and one step's numbers", icon=":material/function:",
                           key=key, on_change="rerun")
    if not expander.open:
        return
    with expander:
        try:
            # One after the other: beside the table, the longer formulas were cut off at 1024 px.
            equations(binary)
            with st.container(width=420):
                numbers(record)
        except ImportError:
            st.caption("The from-scratch equations need lrcore.from_scratch (not in this version).")


def numbers(record) -> None:
    """One step of the record's newest weights on a batch of its training split."""
    from lrcore import from_scratch

    if record is None or not record.snapshots or record.normalizer is None:
        st.caption("Start a run: the numbers of one gradient step at its current weights appear here, "
                   "following the run while it trains.")
        return
    epoch, weight, bias = record.snapshots[-1]
    key = (record.run_id, len(record.snapshots), epoch, record.learning_rate)
    memo = st.session_state.get("train_scratch_numbers")
    if memo is None or memo[0] != key:
        batch = _batch(record.config)
        if batch is None:
            st.caption("The run's training images are not available here, so there is no step to show.")
            return
        memo = (key, from_scratch.step_numbers(weight, bias, record.normalizer, *batch, record.learning_rate))
        st.session_state.train_scratch_numbers = memo
    st.markdown(f"**One step at the weights after epoch {epoch}**")
    config = record.config
    step_table(memo[1], record.train_size if config.full_batch else config.batch_size)
