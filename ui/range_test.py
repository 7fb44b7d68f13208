"""The Sweep page's second part: the range test (fastai's lr_find), a `RangeTestJob` polled by a fragment."""
from __future__ import annotations

import streamlit as st

from lrcore.config import LEARNING_RATE_RANGE, ConfigError
from lrcore.lr_finder import RangeTestJob
from lrcore.settings import OPTIMIZER_LABELS
from lrcore.sweep import grid_problems
from ui import common
from ui import compare_charts as charts
from ui import format as fmt
from ui.sweep_settings import parse_float, range_test_config, train_size
from ui.text import md_escape

POLL_SECONDS = 0.5


def live_range_test(test_id: str | None, was_active: bool) -> None:
    worker = common.get_jobs().get(test_id)
    if worker is None:
        st.info("Press **Find a learning rate**: about 100 minibatches with a learning rate growing from tiny to "
                "huge, in a few seconds.", icon=":material/arrow_upward:")
        return
    record = worker.snapshot()
    if was_active and not record.active:
        st.rerun()
    total = record.num_batches
    if record.active:
        st.progress(min(len(record.learning_rates) / total, 1.0),
                    text=f"Batch {len(record.learning_rates)} of {total} · learning rate "
                         f"{record.learning_rates[-1] if record.learning_rates else 0:.3g}")
    if record.status == "failed":
        st.error(md_escape(record.message, 500), icon=":material/error:")
        return
    if record.learning_rates:
        st.plotly_chart(charts.range_figure(record), key="range_chart")


def sweep_around() -> None:
    """Put a grid from suggestion / 10 to suggestion x 10 into the sweep controls."""
    suggestion = st.session_state.get("range_suggestion")
    if suggestion:
        lo, hi = LEARNING_RATE_RANGE
        st.session_state.sweep_low = f"{max(charts.round_lr(suggestion / 10), lo):g}"
        st.session_state.sweep_high = f"{min(charts.round_lr(suggestion * 10), hi):g}"


def range_test_section(dataset_name: str, dataset, problems: dict[str, str], sweeping: bool) -> None:
    """Settings, button, live chart and suggestion of the range test."""
    st.header("2 · Find a learning rate (range test)")
    st.caption("fastai's *lr_find*: starting from the untrained model, take about 100 minibatch steps while the "
               "learning rate grows exponentially from tiny to huge, and plot the loss. The suggestion is where the "
               "smoothed loss falls fastest; the loss blowing up on the right shows where learning rates become too "
               "high. The weights are left untouched: it is a quick look, not a training run. It uses the settings "
               "above (optimizer, normalisation, seed, the first batch size or full batch, and weight decay).")
    test_id = st.session_state.get("range_test_id")
    test_worker = common.get_jobs().get(test_id)
    test_record = test_worker.snapshot() if test_worker is not None else None
    testing = test_record is not None and test_record.active
    start_col, end_col, batches_col, button_col = st.columns([1, 1, 1, 1.4], vertical_alignment="bottom")
    start_col.text_input("From learning rate", key="range_start", persist_state="session")
    end_col.text_input("To learning rate", key="range_end", persist_state="session")
    batches_col.number_input("Minibatches", 20, 1000, key="range_batches", step=10, persist_state="session")
    range_problems: dict[str, str] = {}
    try:
        range_start = parse_float(st.session_state.range_start, "start", "use e.g. 1e-6")
        range_end = parse_float(st.session_state.range_end, "end", "use e.g. 10")
        range_problems = grid_problems(range_start, range_end, 2)
    except ConfigError as error:
        range_problems = error.problems
    for message in range_problems.values():
        st.error(f"Range test: {md_escape(message.replace('must', 'each end must', 1), 300)}")
    base_problems = {k: v for k, v in problems.items() if k in ("batch_sizes", "weight_decays")}
    for message in base_problems.values():
        st.error(f"Range test needs a valid first batch size and weight decay: {md_escape(message, 300)}")
    if button_col.button("Find a learning rate", icon=":material/search:", width="stretch",
                         disabled=testing or bool(range_problems or base_problems),
                         type="primary" if not sweeping else "secondary"):
        tester = RangeTestJob(range_test_config(dataset_name), dataset, start_lr=range_start, end_lr=range_end,
                              num_batches=int(st.session_state.range_batches))
        common.get_jobs().add(tester)
        st.session_state.range_test_id = tester.test_id
        tester.start()
        st.rerun()

    st.fragment(live_range_test, run_every=POLL_SECONDS if testing else None)(test_id, testing)
    if test_record is not None and test_record.result is not None and not testing:
        result = test_record.result
        config = test_record.config
        if result.suggestion is None:
            st.warning(f"No suggestion: {md_escape(result.message, 300)}.")
        else:
            suggestion = charts.round_lr(result.suggestion)
            st.session_state.range_suggestion = suggestion
            lowest = f"; the smoothed loss is lowest at lr {result.minimum_lr:.2g}, and rates beyond that are too high" \
                if result.minimum_lr else ""
            # full batch: every step took the whole training split, not the batch_size setting
            size = train_size(config.dataset, config.validation_fraction, config.seed, config.per_class_limit) \
                if config.full_batch else 0
            st.success(f"Suggested learning rate for {OPTIMIZER_LABELS[config.optimizer]} at "
                       f"{fmt.batch_text(config, size)}: **{suggestion:g}** (where the smoothed loss falls "
                       f"fastest{lowest}).",
                       icon=":material/target:")
            use_col, around_col, _ = st.columns([1.3, 1.3, 2])
            if use_col.button("Use this learning rate in Train", icon=":material/model_training:", type="primary",
                              width="stretch"):
                common.open_in_train(config.replace(learning_rate=suggestion))
            around_col.button("Sweep around it", icon=":material/science:", width="stretch", on_click=sweep_around,
                              disabled=sweeping, help="Set the sweep's range to suggestion ÷ 10 … suggestion × 10.")
