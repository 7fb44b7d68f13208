"""The Runs page's panels below its table: runs not saved, adding a checkpoint, storage and clean-up.

Each deletes, adds or offers runs through the store (`ui.common.get_store()`); messages for the
page go through session state (`runs_notice`, `runs_problem`) and show on its next run.
"""
from __future__ import annotations

import math
import re

import streamlit as st

from lrcore.checkpoint import MAX_CHECKPOINT_BYTES, CheckpointError, checkpoint_bytes
from lrcore.data import DATASET_TITLES
from lrcore.naming import setting_text
from lrcore.record import RunRecord
from lrcore.store import Store, StoreError, describe_write_error, store_limit_mb
from ui import common, identity, uploads
from ui import format as fmt
from ui.text import md_escape

MAX_UPLOAD_MB = MAX_CHECKPOINT_BYTES // (1024 * 1024)
CHECKPOINT_METRICS = ("test_loss", "test_accuracy", "validation_loss", "validation_accuracy", "epochs_completed")


def size_text(size: float) -> str:
    """1.2 MB, 340 kB: how much the store holds."""
    if size < 1e6:
        return f"{size / 1e3:,.0f} kB"
    return f"{size / 1e6:,.1f} MB" if size < 10e6 else f"{size / 1e6:,.0f} MB"


def delete_runs(key: str) -> None:
    """Confirmation callback of a many-run delete (selected runs, or the old ones)."""
    run_ids = st.session_state.pop(key, None) or []
    # checked here, not only when the list was made: a forged click, or a list from before a change
    refused = [run_id for run_id in run_ids if not identity.may_control(run_id)]
    deleted, problems = common.get_store().delete_many([run_id for run_id in run_ids if run_id not in refused])
    if refused:
        problems.insert(0, f"{len(refused)} run{'s were' if len(refused) != 1 else ' was'} not deleted: "
                           "only its owner (and the teacher) may delete a run.")
    if deleted:
        st.session_state.runs_notice = f"Deleted {len(deleted)} run{'s' if len(deleted) != 1 else ''}."
    if problems:
        st.session_state.runs_problem = " ".join(problems[:3]) + (f" (and {len(problems) - 3} more)"
                                                                 if len(problems) > 3 else "")


def confirm_delete_many(key: str, runs: list[RunRecord], what: str) -> None:
    """The confirmation box of a many-run delete, while `key` holds the run ids to delete."""
    with st.container(border=True):
        names = ", ".join(f"“{md_escape(run.name, 60)}”" for run in runs[:5])
        more = f" and {len(runs) - 5} more" if len(runs) > 5 else ""
        st.warning(f"Delete {what} for good ({len(runs)}: {names}{more})? Their checkpoints, curves and "
                   "weights are removed from disk.")
        yes_col, no_col, _ = st.columns([1.3, 1, 3.7])
        yes_col.button(f"Yes, delete {len(runs)}", type="primary", key=f"{key}_yes", on_click=delete_runs,
                       args=(key,))
        no_col.button("Cancel", key=f"{key}_no", on_click=st.session_state.pop, args=(key, None))


def unsaved_runs() -> None:
    """Runs of this server that the store could not save: usable (and downloadable) until it restarts."""
    records = common.get_jobs().unsaved_runs()
    if not records:
        return
    st.subheader("Not saved", help="These runs trained, but the run store could not keep them. They live in the "
                                   "server's memory only, until it restarts.")
    for record in records[-5:]:
        with st.container(border=True):
            text_col, button_col = st.columns([4, 1.3], vertical_alignment="center")
            text_col.error(f"“{md_escape(record.name)}” ({record.status}) could not be saved: "
                           f"{md_escape(record.save_error, 400)}. It stays usable until the server restarts: "
                           "download its checkpoint to keep it.", icon=":material/sd_card_alert:")
            model = record.latest_model()
            metrics = {k: v for k, v in record.final.items() if k in CHECKPOINT_METRICS
                       and isinstance(v, (int, float)) and math.isfinite(v)}
            metrics.setdefault("epochs_completed", record.epochs_done)
            button_col.download_button(
                "Checkpoint", icon=":material/download:", width="stretch", key=f"runs_unsaved_{record.run_id}",
                data=(lambda r=record, m=model, x=metrics: checkpoint_bytes(m, r.config, r.class_names, r.normalizer,
                                                                             x)) if model is not None else b"",
                file_name=f"{common.file_stem(record.name)}.pt", mime="application/octet-stream", on_click="ignore",
                disabled=model is None or record.normalizer is None,
                help="Its newest weights with their settings, built from the server's memory.")
    if len(records) > 5:
        st.caption(f"And {len(records) - 5} earlier unsaved runs (their checkpoints from the Train page).")


def storage_section(store: Store, runs: list[RunRecord]) -> None:
    """How full the store is, and deleting old finished runs."""
    used, limit = store.usage(), store_limit_mb()
    over = limit is not None and used >= limit * 1e6
    with st.expander("Storage and clean-up", icon=":material/storage:", expanded=over):
        size = size_text(used) + (f" of its {size_text(limit * 1e6)} limit (LRCORE_STORE_MAX_MB)" if limit
                                  else " (no size limit: LRCORE_STORE_MAX_MB=0)")
        st.caption(f"The run store holds {size}: {len(runs)} run{'s' if len(runs) != 1 else ''} and the saved "
                   "sweeps. Each run keeps every epoch's metrics, at most 50 weight snapshots and 10,000 batch "
                   "losses. Nothing is ever deleted without you asking.")
        days_col, button_col = st.columns([1, 2], vertical_alignment="bottom")
        days = days_col.number_input("Finished more than … days ago", min_value=0, max_value=3650, value=30,
                                     step=1, key="runs_prune_days",
                                     help="Runs still training are never deleted. 0 = every finished run.")
        old = [run for run in store.older_than(days) if identity.can_control(run.owner)]  # a student: own runs
        confirming = st.session_state.get("runs_confirm_prune")
        button_col.button(f"Delete {len(old)} finished run{'s' if len(old) != 1 else ''} older than {days} "
                          f"day{'s' if days != 1 else ''}…", icon=":material/delete_sweep:", key="runs_prune",
                          disabled=not old or bool(confirming), on_click=st.session_state.__setitem__,
                          args=("runs_confirm_prune", [run.run_id for run in old]))
        if confirming:
            confirm_delete_many("runs_confirm_prune", [run for run in old if run.run_id in confirming],
                                f"the runs older than {days} day{'s' if days != 1 else ''}")
        st.caption("To delete particular runs, tick them in the table and use **Delete** (several at once: "
                   "**Delete the selected runs**). Sweeps are deleted on the Sweep page.")


def upload_section() -> None:
    problem = st.session_state.pop("runs_upload_problem", None)
    with st.expander("Add a checkpoint file", icon=":material/upload:"):  # opened by the user, stays open
        st.caption(f"A .pt file saved by this dashboard or `python -m lrcore train --save` (or a tutorial's "
                   f"`state_dict` with linear.weight and linear.bias), at most {MAX_UPLOAD_MB} MB. It is checked "
                   "without running any code in it, then listed above like any run.")
        if problem:
            st.error(problem)
        counter = st.session_state.setdefault("runs_upload_counter", 0)
        read = uploads.checkpoint_uploader("Checkpoint file", f"runs_upload_{counter}", "was not added",
                                           show_problem=False, help=None)
        if read is None:
            return
        if read.checkpoint is None:
            # the message stays, the uploader empties: pick another file straight away
            st.session_state.runs_upload_problem = read.problem
            st.session_state.runs_upload_counter = counter + 1
            st.rerun()
        upload, checkpoint = read.file, read.checkpoint
        config, metrics = checkpoint.config, checkpoint.metrics
        facts = [f"{len(checkpoint.class_names)} classes", md_escape(DATASET_TITLES.get(config.dataset, config.dataset)),
                 f"{setting_text('optimizer', config.optimizer)} lr={config.learning_rate:g}",
                 fmt.batch_text(config)]  # 'full batch' for a full-batch model: its batch_size was not used
        if "test_accuracy" in metrics:
            facts.append(f"test accuracy {fmt.percent(metrics['test_accuracy'], 2)}")
        st.caption("A valid checkpoint: " + " · ".join(facts) + ".")
        default_name = re.sub(r"\.(pt|pth)$", "", upload.name) or "uploaded checkpoint"
        name = st.text_input("Name", value=default_name, max_chars=100, key=f"runs_upload_name_{counter}")
        if st.button("Add to runs", type="primary", key=f"runs_upload_add_{counter}"):
            try:
                run_id = common.get_store().import_checkpoint(upload.getvalue(), name=name,
                                                              owner=identity.viewer().owner).run_id
            except OSError as error:  # a full disk, a read-only folder, the store over its limit
                st.error(f"“{md_escape(upload.name)}” was not added: it could not be saved, "
                         f"{md_escape(describe_write_error(error), 400)}.")
                return
            except (CheckpointError, StoreError) as error:
                st.error(f"“{md_escape(upload.name)}” was not added: {md_escape(error, 400)}.")
                return
            st.session_state.runs_upload_counter = counter + 1  # empties the uploader
            st.session_state.runs_select = [run_id]
            st.toast(f"Added “{md_escape(name)}”.")
            st.rerun()
