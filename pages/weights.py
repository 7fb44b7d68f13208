"""Weights: the ten 28x28 weight images, live while training, and a slider through the epochs.

Each class's weights are an image: a blue pixel is evidence for the class when it is inked,
a red pixel evidence against. The figures come from `pages.charts`; while the current run
trains, a fragment redraws them from `worker.snapshot()` twice a second.
"""
from __future__ import annotations

import streamlit as st

from pages import charts, common

POLL_SECONDS = 0.5


def snapshot_label(record, index: int) -> str:
    """Slider label for snapshot `index`: its epoch, or how the run ended for the weights kept at the end."""
    epoch = record.snapshots[index][0]
    if epoch == 0 and index == 0:
        return "0 (untrained)"
    if index > 0 and record.snapshots[index - 1][0] == epoch:
        return f"{epoch}+ ({record.status})"  # stopped or diverged in the middle of the next epoch
    return str(epoch)


def draw_weights(weight, bias, class_names, shared_scale: bool, source: object) -> None:
    """Heatmaps and biases; `source` names the weights (run and snapshot), so polls reuse the figures."""
    if "weights_figures" not in st.session_state:
        st.session_state.weights_figures, st.session_state.weights_memo = charts.WeightMaps(), charts.FigureMemo()
    maps = st.session_state.weights_figures.figure(source, weight, class_names, shared_scale)
    biases = st.session_state.weights_memo.get("biases", source, lambda: charts.bias_figure(bias, class_names))
    maps_col, bias_col = st.columns([5, 1])
    maps_col.plotly_chart(maps, key="weights_maps")
    bias_col.plotly_chart(biases, key="weights_biases")
    limit = float(weight.abs().max())
    scale = f"one colour scale for all classes, ±{limit:.3g}" if shared_scale else \
        "each class scaled to its own largest weight"
    st.caption(f"Blue: ink on this pixel is evidence **for** the class; red: evidence **against**; white: "
               f"ignored. Hover a pixel for its row, column and weight. Colours: {scale}.")


def run_weights(run_id: str, was_active: bool, shared_scale: bool) -> None:
    """The current run's weights at the epoch chosen on the slider (following the newest while training)."""
    worker = common.get_registry().get(run_id)
    record = worker.snapshot()
    if was_active and not record.active:
        st.rerun()  # the run just ended: redraw the whole page with polling off
    if not record.snapshots:
        if record.active:
            st.info("Waiting for the first weights (the untrained model)…", icon=":material/hourglass_top:")
        else:
            st.error(f"This run stopped before it produced any weights. {record.message}")
        return
    newest = len(record.snapshots) - 1
    options = list(range(newest + 1))
    label = "Weights after epoch"
    state = st.session_state
    following = record.active and st.toggle("Follow the newest epoch", value=True, key="weights_follow",
                                            help="Switch off to slide back through the epochs while it trains.")
    if following:
        # A display-only slider: the browser's copy of a keyed slider can lag behind new epochs.
        if newest > 0:
            st.select_slider(label, options=options, value=newest, disabled=True,
                             format_func=lambda index: snapshot_label(record, index))
        state.weights_index = newest
    else:
        if state.get("weights_run") != run_id or state.get("weights_followed") \
                or not 0 <= state.get("weights_index", -1) <= newest:
            state.weights_index = newest  # a new run, or following just ended: start at the newest
        if newest > 0:
            st.select_slider(label, options=options, key="weights_index",
                             format_func=lambda index: snapshot_label(record, index),
                             help="Epoch 0 is the random start. Slide to watch the digits form.")
    state.weights_run, state.weights_followed = run_id, following
    index = state.weights_index
    epoch, weight, bias = record.snapshots[index]
    status = f"live, {common.run_state_text(worker)}" if record.active else record.status
    st.markdown(f"**Epoch {snapshot_label(record, index)}** of run “{record.name}” ({status})")
    draw_weights(weight, bias, record.class_names, shared_scale, source=(run_id, index, epoch))


st.title("Weights")
worker = None if common.using_checkpoint() else common.current_worker()
model = common.current_model()
if model is None and worker is None:
    st.info("There is no model to show yet: train one on the Train page (or load a checkpoint on the Runs page).",
            icon=":material/info:")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/show_chart:")
    st.stop()

st.caption("One 28×28 weight image per class: the model scores an image by adding up ink × weight over "
           "all pixels, plus the class's bias.")
shared_scale = not st.toggle("Scale each class separately", key="weights_separate_scales",
                             persist_state="session",
                             help="Off: one symmetric colour scale for all ten, so they compare. On: each image "
                                  "uses its own range, which shows faint classes better.")

if worker is None:
    st.markdown(f"**{model.label}**")
    weight, bias = model.model.linear.weight.detach(), model.model.linear.bias.detach()
    draw_weights(weight, bias, model.class_names, shared_scale, source=(model.label, id(model.model)))
else:
    active = worker.snapshot().active
    st.fragment(run_weights, run_every=POLL_SECONDS if active else None)(worker.run_id, active, shared_scale)
