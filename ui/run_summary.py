"""The Train page's account of a run: its progress bar, its numbers and how it ended.

Drawn from a `RunRecord` (a live worker's snapshot or a stored run) inside the page's polling
fragment; every number shown is for the same weights, the kept ones when a run ended inside an epoch.
"""
from __future__ import annotations

import streamlit as st

from ui.format import duration, kept_weights, loss, percent
from ui.text import md_escape


def show_progress(record) -> None:
    """The bar: epochs and batches done, time left, or how the run ended."""
    total = record.config.epochs
    if record.status == "queued":  # every worker process is busy: it starts when one is free
        from ui.common import queued_text

        st.progress(0.0, text=f"{queued_text(record.queued_ahead)}: it starts when a worker process is free…")
        return
    if record.status == "starting" or (record.active and not record.progress):
        st.progress(0.0, text="Evaluating the untrained model (epoch 0)…")
        return
    if not record.active:
        done = record.final.get("epochs_completed", record.epochs_done)
        st.progress(done / total, text=f"{record.status.capitalize()}: {done} of {total} epochs "
                                        f"in {duration(record.elapsed)}")
        return
    progress = record.progress
    steps_done = (progress["epoch"] - 1) * progress["batches_per_epoch"] + progress["batch"]
    fraction = min(1.0, steps_done / max(1, progress["batches_per_epoch"] * total))
    paused = " (paused)" if record.status == "paused" else ""
    st.progress(fraction, text=f"Epoch {progress['epoch']} of {total} · batch {progress['batch']} of "
                               f"{progress['batches_per_epoch']} · about {duration(progress['seconds_left'])} "
                               f"left{paused}")


def show_metrics(record) -> None:
    """The live numbers and, once it ended, the final model's."""
    last = record.epochs[-1] if record.epochs else {}
    previous = record.epochs[-2] if len(record.epochs) > 1 else None
    kept = kept_weights(record)
    if kept is not None:
        # Ended inside an epoch: show the kept weights' numbers, not the last epoch's, so every
        # figure on the page is for the same weights.
        last = {name: record.final[name] for name in ("train_accuracy", "validation_accuracy", "validation_loss")}
        previous = record.epochs[-1] if record.epochs else None
    delta = None
    if previous and last:
        delta = f"{last['validation_accuracy'] - previous['validation_accuracy']:+.1%}"
    if kept is not None:
        st.caption(f"Every number below is for the weights kept from {kept}.")
    cols = st.columns(5)
    cols[0].metric("Epochs done", f"{record.epochs_done} / {record.config.epochs}")
    cols[1].metric("Train accuracy", percent(last.get("train_accuracy")))
    cols[2].metric("Validation accuracy", percent(last.get("validation_accuracy")), delta=delta)
    cols[3].metric("Validation loss", loss(last.get("validation_loss")))
    cols[4].metric("Learning rate now", f"{record.learning_rate:g}")
    if record.final and record.status in ("done", "stopped", "diverged"):
        st.markdown("##### Final model" + (f": the weights kept from {kept}" if kept else ""))
        cols = st.columns(5)
        cols[0].metric("Test accuracy", percent(record.final["test_accuracy"]))
        cols[1].metric("Test loss", loss(record.final["test_loss"]))
        cols[2].metric("Validation accuracy", percent(record.final["validation_accuracy"]))
        cols[3].metric("Full epochs", f"{record.final['epochs_completed']} / {record.config.epochs}")
        cols[4].metric("Training time", duration(record.elapsed))


def show_outcome(record) -> None:
    """How the run ended (done, stopped, diverged, crashed) and whether it was saved."""
    if record.save_error:
        st.warning(f"This run could not be saved: {md_escape(record.save_error, 400)}. It stays usable until the "
                   "server restarts; download its checkpoint from the Runs page to keep it.",
                   icon=":material/save:")
    kept = kept_weights(record)
    if record.status == "diverged" and kept is None:  # the Finished event (with the kept weights) is on its way
        st.error(f"Training diverged: {record.message}. The weights kept are the last finite ones; the numbers "
                 "for them follow as soon as the run has finished.", icon=":material/error:")
    elif record.status == "diverged":
        st.error(f"Training diverged: {record.message}. The weights kept are the last finite ones, from "
                 f"{kept}; every number below is for them.", icon=":material/error:")
    elif record.status == "crashed":
        st.error(record.message, icon=":material/error:")
    elif record.status == "stopped" and not record.epochs:
        st.warning("Stopped before it started training (it was still queued).", icon=":material/stop_circle:")
    elif record.status == "stopped":
        st.warning(f"Stopped; the weights it reached are kept (from {kept or f'epoch {record.epochs_done}'}).",
                   icon=":material/stop_circle:")
    elif record.status == "done":
        st.success(f"Done: test accuracy {percent(record.final.get('test_accuracy'))}. Look at the weights on "
                   "the Weights page.", icon=":material/check_circle:")
