"""Runs page (AppTest): the table, comparing runs, renaming, deleting, opening a run elsewhere."""
from __future__ import annotations

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from lrcore.config import TrainConfig
from lrcore.data import load_dataset
from lrcore.jobs import TrainingJob
from lrcore.store import Store
from tests.store_helpers import edit_run, record_run
from ui import common
from pages.runs import legend_labels

SMALL = TrainConfig(epochs=2, learning_rate=0.5, batch_size=60, per_class_limit=30)
TABLE_KEY = "runs_table"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Three finished runs, trained once for the module: lr 0.5 / bs 60, lr 0.1 / bs 60, lr 0.1 / bs 30."""
    root = tmp_path_factory.mktemp("runs-template")
    store, dataset = Store(root / "lrcore.db"), load_dataset("mnist-sample")
    ids = {}
    for name, config in [("baseline", SMALL), ("slow", SMALL.replace(learning_rate=0.1)),
                         ("small batches", SMALL.replace(learning_rate=0.1, batch_size=30))]:
        ids[name] = record_run(store, config, name, dataset)
    store.close()  # everything in the database file, so a copy is complete
    return root, ids


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LRCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LRCORE_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture
def with_runs(runs_dir, template):
    root, ids = template
    shutil.copytree(root, runs_dir)
    return ids


def runs_page() -> AppTest:
    at = AppTest.from_file("../dashboard.py", default_timeout=60)
    at.switch_page("pages/runs.py")
    at.run()
    assert not at.exception, at.exception
    return at


def select(at: AppTest, names: list[str]) -> None:
    """Tick table rows by run name (what a click on the row checkboxes does)."""
    table = at.dataframe[0].value
    rows = [list(table["Name"]).index(name) for name in names]
    at.session_state[TABLE_KEY] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception


def chart_traces(at: AppTest) -> dict[str, list[str]]:
    """Chart title -> names of its traces that show in the legend."""
    out = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        out[spec["layout"]["title"]["text"]] = [t["name"] for t in spec["data"] if t.get("showlegend", True)]
    return out


def test_no_runs_yet(runs_dir):
    at = runs_page()
    assert "No runs yet" in at.info[0].value
    assert not at.dataframe


def test_table_lists_every_run_with_its_settings_and_results(with_runs):
    at = runs_page()
    table = at.dataframe[0].value
    assert list(table["Name"]) == ["small batches", "slow", "baseline"]  # newest first
    assert list(table["Learning rate"]) == ["0.1", "0.1", "0.5"]
    assert list(table["Batch size"]) == ["30", "60", "60"]
    assert set(table["Status"]) == {"done"} and set(table["Epochs"]) == {"2 / 2"}
    baseline = Store().get(with_runs["baseline"])
    assert table["Test acc."].iloc[2] == pytest.approx(baseline.test_accuracy * 100)
    assert table["Best val. acc."].iloc[2] == pytest.approx(baseline.best_validation_accuracy * 100)
    assert "Tick runs" in at.info[0].value and not at.get("plotly_chart")


def test_two_selected_runs_overlay_with_differing_settings_in_the_legend(with_runs):
    at = runs_page()
    select(at, ["baseline", "slow"])
    traces = chart_traces(at)
    assert traces["Loss per epoch"] == ["lr=0.5", "lr=0.1"]
    assert traces["Accuracy per epoch"] == ["lr=0.5", "lr=0.1"]
    assert traces["Training loss per batch (smoothed)"] == ["lr=0.5", "lr=0.1"]
    assert "batch size 60" in " ".join(c.value for c in at.caption)  # shared settings are named once

    select(at, ["baseline", "small batches"])  # two settings differ
    assert chart_traces(at)["Loss per epoch"] == ["lr=0.5, bs=60", "lr=0.1, bs=30"]

    at.segmented_control(key="runs_curves").set_value("Both").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["line"]["dash"] for t in spec["data"]] == ["solid", "dash", "solid", "dash"]
    assert len({t["line"]["color"] for t in spec["data"]}) == 2  # one colour per run


def test_legend_falls_back_to_names_when_settings_are_equal(with_runs):
    store = Store()
    baseline = store.get(with_runs["baseline"])
    twin = store.get(with_runs["slow"])
    twin.config = baseline.config
    assert legend_labels([baseline, twin]) == ["baseline", "slow"]


def test_rename_and_delete_with_confirmation(with_runs):
    at = runs_page()
    select(at, ["slow"])
    run_id = with_runs["slow"]
    at.text_input(key=f"runs_name_{run_id}").set_value("lr 0.1, patient")
    at.button(key=f"FormSubmitter:runs_rename_{run_id}-Rename").click().run()
    assert Store().get(run_id).name == "lr 0.1, patient"
    assert "lr 0.1, patient" in list(at.dataframe[0].value["Name"])

    at.button(key=f"runs_delete_{run_id}").click().run()
    assert "for good" in at.warning[0].value and Store().get(run_id)  # nothing deleted yet
    at.button(key="runs_delete_no").click().run()
    assert not at.warning and Store().get(run_id)
    at.button(key=f"runs_delete_{run_id}").click().run()
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception
    assert [run.name for run in Store().list_runs()] == ["small batches", "baseline"]
    assert list(at.dataframe[0].value["Name"]) == ["small batches", "baseline"]


def test_open_a_run_in_the_weights_page(with_runs):
    at = runs_page()
    select(at, ["baseline"])
    at.button(key=f"runs_open_Weights_{with_runs['baseline']}").click().run()
    assert not at.exception
    # the stored run becomes the current run: Weights scrubs its saved epochs, Draw and Evaluate use its weights
    assert at.session_state["run_id"] == with_runs["baseline"] and "checkpoint" not in at.session_state
    assert at.title[0].value == "Weights"
    assert at.select_slider(key="weights_index").options == ["epoch 0 (untrained)", "epoch 1", "epoch 2"]


def test_crashed_run_shows_its_reason_and_keeps_its_epochs(runs_dir):
    run_id = record_run(Store(), SMALL.replace(epochs=5), "cut off", load_dataset("mnist-sample"), crash_after_epoch=1)
    at = runs_page()
    table = at.dataframe[0].value
    assert list(table["Status"]) == ["crashed"] and list(table["Epochs"]) == ["1 / 5"]
    select(at, ["cut off"])
    assert "the server was restarted" in at.error[0].value
    assert chart_traces(at)["Loss per epoch"] == ["cut off"]
    assert not at.button(key=f"runs_open_Draw_{run_id}").disabled  # its newest epoch can be opened


def test_full_batch_runs_show_their_training_split_not_the_batch_size_setting(runs_dir):
    """Issue 12: a full-batch run trained on all 300 training images per step; the table said 'batch 60'."""
    dataset, store = load_dataset("mnist-sample"), Store()
    full = SMALL.replace(full_batch=True)  # batch_size stays 60: the setting, not what it used
    for name, config in [("full a", full), ("full b", full.replace(learning_rate=0.1)), ("minibatches", SMALL)]:
        record_run(store, config, name, dataset)
    train_size = store.get(store.list_runs()[0].run_id).train_size
    assert train_size > 60
    at = runs_page()
    table = at.dataframe[0].value
    assert list(table["Name"]) == ["minibatches", "full b", "full a"]
    assert list(table["Batch size"]) == ["60", f"full ({train_size:,})", f"full ({train_size:,})"]
    select(at, ["full a", "full b"])
    note = next(c.value for c in at.caption if "Same for all" in c.value)
    assert "full batch on" in note and "batch size" not in note  # not 'batch size 60' beside it


def test_an_uploaded_full_batch_checkpoint_says_full_batch_not_its_batch_size_setting(runs_dir):
    import torch

    from lrcore.checkpoint import checkpoint_bytes
    from lrcore.data import Normalizer
    from lrcore.model import LogisticRegression

    model = LogisticRegression.from_tensors(torch.zeros(10, 784), torch.zeros(10))
    data = checkpoint_bytes(model, TrainConfig(full_batch=True, batch_size=128), tuple("0123456789"),
                            Normalizer("raw"), {})
    at = runs_page()
    at.file_uploader(key="runs_upload_0").set_value(("full.pt", data, "application/octet-stream")).run()
    assert not at.exception, at.exception
    caption = next(c.value for c in at.caption if c.value.startswith("A valid checkpoint"))
    assert "full batch" in caption and "128" not in caption, caption


# ---------------------------------------------------------------- saving problems, clean-up, user text

def page_text(at: AppTest) -> str:
    parts = [element.value for kind in ("markdown", "caption", "error", "warning", "info", "success")
             for element in getattr(at, kind)]
    return " | ".join(str(part) for part in parts)


def test_a_run_saved_only_in_part_says_why(with_runs, runs_dir):
    run_id = with_runs["slow"]
    edit_run(Store(), run_id, save_error="the disk is full (No space left on device)")
    at = runs_page()
    table = at.dataframe[0].value
    assert table["Status"].iloc[list(table["Name"]).index("slow")] == "done, not fully saved"
    select(at, ["slow"])
    assert "could not be saved completely: the disk is full \\(No space left on device\\)" in at.error[0].value


@pytest.fixture
def unsaved_worker(runs_dir, tmp_path):
    """A run of this server whose store folder could not be made (a file is in the way)."""
    def no_room(job, record, event):  # what the store's listener does when it cannot write
        job.set_save_error(record.run_id, "the runs folder could not be written to (read-only file system)")

    job = TrainingJob([SMALL], load_dataset("mnist-sample"), names=["kept in memory"], listeners=[no_room])
    common.get_jobs().add(job).start()
    job.join(60)
    yield job
    common.get_jobs().remove(job.job_id)  # other tests share this server-wide registry


def test_a_run_that_could_not_be_saved_is_listed_with_its_checkpoint(unsaved_worker):
    at = runs_page()
    assert "No runs yet" in at.info[0].value  # nothing on disk
    error = at.error[0].value
    assert "“kept in memory” (done) could not be saved: the runs folder could not be written to" in error
    assert "until the server restarts" in error
    button = at.get("download_button")[0]
    assert not button.disabled


def test_prune_old_finished_runs_with_confirmation(with_runs, runs_dir):
    for name, age_days in (("baseline", 40), ("slow", 12)):
        edit_run(Store(), with_runs[name], created=Store().get(with_runs[name]).created - age_days * 86400)
    at = runs_page()
    assert "The run store holds" in page_text(at) and "500 MB limit" in page_text(at)
    assert at.button(key="runs_prune").label == "Delete 1 finished run older than 30 days…"
    at.number_input(key="runs_prune_days").set_value(10).run()
    assert at.button(key="runs_prune").label == "Delete 2 finished runs older than 10 days…"
    at.button(key="runs_prune").click().run()
    assert "Delete the runs older than 10 days for good (2:" in at.warning[0].value
    assert len(Store().list_runs()) == 3  # nothing deleted before the confirmation
    at.button(key="runs_confirm_prune_yes").click().run()
    assert not at.exception
    assert [run.name for run in Store().list_runs()] == ["small batches"]
    assert list(at.dataframe[0].value["Name"]) == ["small batches"]
    assert "Deleted 2 runs" in at.success[0].value


def test_delete_several_selected_runs(with_runs):
    at = runs_page()
    select(at, ["baseline", "slow"])
    at.button(key="runs_delete_selected").click().run()
    assert "Delete the selected runs for good (2:" in at.warning[0].value
    at.button(key="runs_confirm_selected_no").click().run()
    assert len(Store().list_runs()) == 3
    at.button(key="runs_delete_selected").click().run()
    at.button(key="runs_confirm_selected_yes").click().run()
    assert [run.name for run in Store().list_runs()] == ["small batches"]


def test_store_over_its_limit_says_so(with_runs, monkeypatch):
    monkeypatch.setenv("LRCORE_STORE_MAX_MB", "0.01")
    at = runs_page()
    warning = at.warning[0].value
    assert warning.startswith("New runs are not being saved: the run store is full\\: it holds")
    assert "its limit is 10 kB \\(LRCORE\\_STORE\\_MAX\\_MB\\); delete old runs" in warning
    assert at.expander[-1].proto.expanded  # the clean-up controls are open


def test_user_text_is_shown_literally_and_no_server_path(with_runs, runs_dir):
    run_id = with_runs["slow"]
    evil = "[click](https://evil.example) ![x](https://tracker.example/x.png) <b>bold</b>"
    Store().rename(run_id, evil)
    # the same settings as "baseline": the legends name the runs
    edit_run(Store(), run_id, config=SMALL.to_dict(), status="crashed", message="**loud** [link](https://x.example)")
    at = runs_page()
    select(at, [evil, "baseline"])
    at.selectbox(key="runs_action_run").set_value(run_id).run()
    text = page_text(at)
    assert "[click](" not in text and "**loud**" not in text and "\\*\\*loud\\*\\*" in text
    legends = chart_traces(at)["Loss per epoch"]
    assert "&lt;b&gt;bold&lt;/b&gt;" in " ".join(legends) and "<b>" not in " ".join(legends)
    at.button(key=f"runs_delete_{run_id}").click().run()
    assert "Delete “\\[click\\]" in at.warning[0].value
    assert str(runs_dir) not in page_text(at) and str(runs_dir.resolve()) not in page_text(at)


# ---------------------------------------------------------------- a class server (a teacher key is set)

TEACHER_KEY = "runs-page-teacher-key"
ANA, BEN, TEACHER = "ana-token-" + "a" * 20, "ben-token-" + "b" * 20, "teacher-token-" + "t" * 20


@pytest.fixture
def class_runs(with_runs, monkeypatch, tmp_path):
    """The three runs: "baseline" and "slow" are Ana's, "small batches" Ben's; Ana typed her name."""
    from lrcore.classroom import TEACHER_KEY_ENV, key_fingerprint, owner_id

    monkeypatch.setenv(TEACHER_KEY_ENV, TEACHER_KEY)
    monkeypatch.chdir(tmp_path)  # no .streamlit/secrets.toml of the checkout
    store = Store()
    for name, token in (("baseline", ANA), ("slow", ANA), ("small batches", BEN)):
        edit_run(store, with_runs[name], owner=owner_id(token))
    store.set_display_name(owner_id(ANA), "Ana")
    store.set_teacher(owner_id(TEACHER), key_fingerprint(TEACHER_KEY))
    return with_runs


def class_runs_page(token: str) -> AppTest:
    from ui.identity import TOKEN_KEY

    at = AppTest.from_file("../dashboard.py", default_timeout=60)
    at.session_state[TOKEN_KEY] = token
    at.switch_page("pages/runs.py")
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_student_sees_own_runs_by_default_and_the_whole_class_with_owners(class_runs):
    ana = class_runs_page(ANA)
    table = ana.dataframe[0].value
    assert list(table["Name"]) == ["slow", "baseline"] and set(table["Owner"]) == {"you"}
    assert list(table.columns[:4]) == ["Name", "Owner", "Started", "Status"]  # the start time on screen
    ana.toggle(key="runs_whole_class_student").set_value(True).run()
    table = ana.dataframe[0].value
    assert list(zip(table["Name"], table["Owner"])) == [("small batches", "student " + ben_id()[:4]),
                                                        ("slow", "you"), ("baseline", "you")]
    ben = class_runs_page(BEN)
    assert list(zip(ben.dataframe[0].value["Name"], ben.dataframe[0].value["Owner"])) == [("small batches", "you")]
    teacher = class_runs_page(TEACHER)  # the teacher sees everyone's at once
    assert list(teacher.dataframe[0].value["Owner"]) == ["student " + ben_id()[:4], "Ana", "Ana"]


def ben_id() -> str:
    from lrcore.classroom import owner_id

    return owner_id(BEN)


def test_another_students_run_is_read_only_even_for_forged_clicks(class_runs):
    from tests.test_classroom import forge

    ben = class_runs_page(BEN)
    ben.toggle(key="runs_whole_class_student").set_value(True).run()
    select(ben, ["slow"])
    run_id = class_runs["slow"]
    assert "This run belongs to Ana: you can watch it, not change it." in page_text(ben)
    assert ben.text_input(key=f"runs_name_{run_id}").disabled
    assert ben.button(key=f"runs_delete_{run_id}").disabled
    forge(ben.text_input(key=f"runs_name_{run_id}")).set_value("mine now")
    forge(ben.button(key=f"FormSubmitter:runs_rename_{run_id}-Rename")).click().run()
    forge(ben.button(key=f"runs_delete_{run_id}")).click().run()
    assert not ben.exception and not ben.warning  # no rename, and no delete confirmation
    assert Store().get(run_id).name == "slow"

    select(ben, ["small batches", "slow", "baseline"])  # his own and Ana's two: only his can go
    assert ben.button(key="runs_delete_selected").disabled  # fewer than two of them are his
    assert ben.button(key="runs_prune").disabled  # none older than 30 days; 0 days: only his own
    ben.number_input(key="runs_prune_days").set_value(0).run()
    assert ben.button(key="runs_prune").label == "Delete 1 finished run older than 0 days…"
    ben.button(key="runs_prune").click().run()
    ben.button(key="runs_confirm_prune_yes").click().run()
    assert sorted(run.name for run in Store().list_runs()) == ["baseline", "slow"]


def test_a_teacher_whose_key_changed_between_page_and_click_is_refused(class_runs, monkeypatch):
    """The actions check again when they run: a callback of a button drawn enabled a moment earlier."""
    from lrcore.classroom import TEACHER_KEY_ENV

    teacher = class_runs_page(TEACHER)
    select(teacher, ["slow"])
    run_id = class_runs["slow"]
    assert not teacher.button(key=f"runs_delete_{run_id}").disabled
    teacher.button(key=f"runs_delete_{run_id}").click().run()
    monkeypatch.setenv(TEACHER_KEY_ENV, "the key of the next term")  # no longer the teacher
    teacher.button(key="runs_delete_yes").click().run()
    assert "was not deleted" in page_text(teacher) and "This run belongs to Ana" in page_text(teacher)
    assert Store().get(run_id).name == "slow"
    monkeypatch.setenv(TEACHER_KEY_ENV, TEACHER_KEY)  # the teacher again: the form is drawn enabled
    teacher.run()
    select(teacher, ["slow"])
    teacher.text_input(key=f"runs_name_{run_id}").set_value("renamed")
    monkeypatch.setenv(TEACHER_KEY_ENV, "the key of the next term")
    teacher.button(key=f"FormSubmitter:runs_rename_{run_id}-Rename").click().run()
    assert "was not renamed" in page_text(teacher) and Store().get(run_id).name == "slow"
