"""Runs page (AppTest): the table, comparing runs, renaming, deleting, opening a run elsewhere."""
from __future__ import annotations

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from lrcore.config import TrainConfig
from lrcore.data import load_dataset
from lrcore.runstore import RunStore
from lrcore.train import train
from pages.runs import legend_labels

SMALL = TrainConfig(epochs=2, learning_rate=0.5, batch_size=60, per_class_limit=30)
TABLE_KEY = "runs_table"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Three finished runs, trained once for the module: lr 0.5 / bs 60, lr 0.1 / bs 60, lr 0.1 / bs 30."""
    root = tmp_path_factory.mktemp("runs-template")
    store, dataset = RunStore(root), load_dataset("mnist-sample")
    ids = {}
    for name, config in [("baseline", SMALL), ("slow", SMALL.replace(learning_rate=0.1)),
                         ("small batches", SMALL.replace(learning_rate=0.1, batch_size=30))]:
        with store.writer(config, name=name) as writer:
            for event in train(config, dataset):
                writer.record(event)
        ids[name] = writer.run_id
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
    assert list(table["Batch size"]) == [30, 60, 60]
    assert set(table["Status"]) == {"done"} and set(table["Epochs"]) == {"2 / 2"}
    baseline = RunStore().get(with_runs["baseline"])
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
    store = RunStore()
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
    assert RunStore().get(run_id).name == "lr 0.1, patient"
    assert "lr 0.1, patient" in list(at.dataframe[0].value["Name"])

    at.button(key=f"runs_delete_{run_id}").click().run()
    assert "for good" in at.warning[0].value and (RunStore().root / run_id).exists()  # nothing deleted yet
    at.button(key="runs_delete_no").click().run()
    assert not at.warning and (RunStore().root / run_id).exists()
    at.button(key=f"runs_delete_{run_id}").click().run()
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception
    assert [run.name for run in RunStore().list_runs()] == ["small batches", "baseline"]
    assert list(at.dataframe[0].value["Name"]) == ["small batches", "baseline"]


def test_open_a_run_in_the_weights_page(with_runs):
    at = runs_page()
    select(at, ["baseline"])
    at.button(key=f"runs_open_Weights_{with_runs['baseline']}").click().run()
    assert not at.exception
    checkpoint = at.session_state["checkpoint"]
    assert checkpoint.config == SMALL and at.session_state["checkpoint_label"] == "run “baseline”"
    assert at.title[0].value != "Runs"  # now on the Weights page


def test_crashed_run_shows_its_reason_and_keeps_its_epochs(runs_dir):
    store = RunStore()
    events = iter(train(SMALL.replace(epochs=5), load_dataset("mnist-sample")))
    writer = store.writer(SMALL.replace(epochs=5), name="cut off")
    for event in events:
        writer.record(event)
        if getattr(event, "epoch", None) == 1 and type(event).__name__ == "EpochEnd":
            break
    writer.crash("the server was restarted")
    at = runs_page()
    table = at.dataframe[0].value
    assert list(table["Status"]) == ["crashed"] and list(table["Epochs"]) == ["1 / 5"]
    select(at, ["cut off"])
    assert "the server was restarted" in at.error[0].value
    assert chart_traces(at)["Loss per epoch"] == ["cut off"]
    assert not at.button(key=f"runs_open_Draw_{writer.run_id}").disabled  # its newest epoch can be opened
