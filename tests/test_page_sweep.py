"""Sweep page (AppTest): validation messages, a tiny sweep end to end, the range test, Open in Train."""
from __future__ import annotations

import re

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from lrcore.config import LEARNING_RATE_RANGE
from ui import common
from tests.apptest_helpers import open_page
from ui.text import md_escape


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("LRCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LRCORE_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file("../dashboard.py", default_timeout=60)
    at.run()
    at.switch_page("pages/sweep.py")
    at.run()
    assert not at.exception
    return at


def button(at, label):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}: {[b.label for b in at.button]}"
    return matches[0]


def unescaped(text: str) -> str:
    """What markdown shows for md_escape'd text."""
    return re.sub(r"\\(.)", r"\1", text)


def errors(at) -> str:
    return " | ".join(unescaped(e.value) for e in at.error)


def wait_for(at, condition, seconds: float = 90) -> None:
    """Wait for the page's sweep and range-test threads to end (join, no polling), then rerun the page
    once, as its polling fragment would, and check `condition(at)`."""
    from ui import common

    for key in ("sweep_id", "range_test_id"):
        job = common.get_jobs().get(at.session_state[key] if key in at.session_state else None)
        if job is not None:
            job.join(seconds)
            assert not job.alive, f"{key} still running after {seconds:g} s"
    at.run()
    assert not at.exception, at.exception
    assert condition(at), f"errors: {errors(at)}; markdown: {[m.value for m in at.markdown][:5]}"


def test_renders_with_defaults(app):
    assert app.title[0].value.endswith("Sweep")
    assert "Too low, too high, just right" in app.markdown[0].value
    assert "11 configurations" in " ".join(c.value for c in app.caption)
    assert not button(app, "Start sweep").disabled and button(app, "Stop").disabled
    assert not errors(app)
    assert any("Press **Find a learning rate**" in i.value for i in app.info)


@pytest.mark.parametrize("key, value, message", [
    ("sweep_low", "abc", "“abc” is not a number"),
    ("sweep_high", "0.0001", "must be larger than the lowest learning rate"),
    ("sweep_high", "1000", f"must be from {LEARNING_RATE_RANGE[0]:g} to {LEARNING_RATE_RANGE[1]:g}"),
    ("sweep_batch_sizes", "64, big", "“big” is not a whole number"),
    ("sweep_batch_sizes", "64, 9000", "9000 not allowed: each batch size must be from 1 to the training set size"),
    ("sweep_weight_decays", "-1", "-1 not allowed: each must be from 0 to 10"),
    ("sweep_batch_sizes", "32, 64, 128, 256, 512, 1024", "66 configurations; a sweep allows at most 64"),
])
def test_bad_input_gets_a_clear_message_and_no_start(app, key, value, message):
    app.text_input(key=key).set_value(value)
    app.run()
    assert not app.exception
    assert message in errors(app)
    assert button(app, "Start sweep").disabled


def test_tiny_sweep_runs_ranks_and_opens_in_train(app):
    app.slider(key="sweep_count").set_value(4)
    app.number_input(key="sweep_epochs").set_value(2)
    app.run()
    assert "4 configurations" in " ".join(c.value for c in app.caption)
    button(app, "Start sweep").click()
    app.run()
    assert app.session_state.sweep_id and app.query_params["sweep"] == app.session_state.sweep_id
    wait_for(app, lambda at: any(s.value == "Results, best first" for s in at.subheader))
    assert "**Sweep:** 4 runs, finished" in [m.value for m in app.sidebar.markdown]  # the sidebar follows it
    table = app.dataframe[0].value
    assert len(table) == 4 and list(table["rank"]) == [1, 2, 3, 4]
    # 0.0464 and 2.15 both learn (which wins depends on the dataset's defaults); 0.001 is slow, 100 diverges
    assert set(table["learning rate"].iloc[:2]) == {0.0464, 2.15} and list(table["learning rate"].iloc[2:]) == [0.001, 100.0]
    best, second = table["learning rate"].iloc[0], table["learning rate"].iloc[1]
    assert table["status"].iloc[-1] == "diverged"  # lr 100
    accuracies = list(table["validation accuracy"].iloc[:3])
    assert accuracies == sorted(accuracies, reverse=True)
    assert len(app.get("plotly_chart")) == 3  # accuracy, loss, per-minibatch loss
    assert any("diverged (the loss blew up)" in w.value for w in app.warning)
    assert any(s.value.startswith(f"Best: **lr {best:g}**") for s in app.success)

    app.switch_page("pages/home.py")  # the sweep lives on across page switches
    app.run()
    app.switch_page("pages/sweep.py")
    app.run()
    assert any(s.value == "Results, best first" for s in app.subheader)

    app.selectbox(key="sweep_pick").set_value(1)  # the second best
    app.run()
    button(app, "Open in Train").click()
    app.run()
    assert not app.exception
    assert app.session_state.train_learning_rate == second
    assert app.session_state.train_epochs == 2 and app.session_state.train_batch_size == 128
    assert app.query_params["lr"] == f"{second:g}"


def test_a_sweep_is_saved_and_comes_back_after_a_restart(app, tmp_path):
    app.slider(key="sweep_count").set_value(4)
    app.number_input(key="sweep_epochs").set_value(2)
    app.run()
    button(app, "Start sweep").click()
    app.run()
    sweep_id = app.session_state.sweep_id
    wait_for(app, lambda at: any(s.value == "Results, best first" for s in at.subheader))
    before = app.dataframe[0].value
    best = before["learning rate"].iloc[0]

    st.cache_resource.clear()  # a server restart: the process's sweeps are gone, the disk stays
    again = open_page("pages/sweep.py", query={"sweep": sweep_id})  # a refresh of the old link
    assert again.session_state.sweep_id == sweep_id
    assert any("read back from the store" in c.value and "2 epochs, SGD" in c.value for c in again.caption)
    table = again.dataframe[0].value
    assert list(table["learning rate"]) == list(before["learning rate"])
    assert table["validation accuracy"].equals(before["validation accuracy"])  # NaN (diverged) equals NaN here
    assert len(again.get("plotly_chart")) == 3
    assert any(s.value.startswith(f"Best: **lr {best:g}**") for s in again.success)
    assert again.selectbox(key="sweep_pick_earlier").value == sweep_id

    # every run of the sweep is a full run: listed on Runs with its sweep, opens in Weights
    again.selectbox(key="sweep_pick").set_value(0)
    again.run()
    button(again, "Weights").click()
    again.run()
    assert not again.exception
    [run] = [r for r in common.get_store().list_runs() if r.config.learning_rate == best]
    assert again.session_state.run_id == run.run_id and "checkpoint" not in again.session_state
    assert again.title[0].value == "Weights"  # scrubbing the stored epochs of that run
    assert again.select_slider(key="weights_index").options == ["epoch 0 (untrained)", "epoch 1", "epoch 2"]
    assert run.group_id == sweep_id and run.source == "sweep"
    assert [row["epoch"] for row in common.get_store().load(run.run_id).epochs] == [0, 1, 2]
    runs_page = open_page("pages/runs.py")
    runs_table = runs_page.dataframe[0].value
    assert len(runs_table) == 4 and set(runs_table["Sweep"]) == {"4 runs, lr 0.001 to 100"}

    fresh = open_page("pages/sweep.py")  # a new visitor finds it under Earlier sweeps
    assert "sweep_id" not in fresh.session_state
    assert fresh.selectbox(key="sweep_pick_earlier").value == sweep_id
    button(fresh, "Show").click()
    fresh.run()
    assert fresh.session_state.sweep_id == sweep_id and fresh.query_params["sweep"] == sweep_id
    assert len(fresh.dataframe[0].value) == 4
    button(fresh, "Delete").click()
    fresh.run()
    button(fresh, "Yes, delete").click()
    fresh.run()
    assert not fresh.exception and "sweep_id" not in fresh.session_state
    assert "Earlier sweeps (0)" in fresh.expander[0].label
    gone = open_page("pages/sweep.py", query={"sweep": sweep_id})
    assert any("is not in this store" in w.value for w in gone.warning)
    assert common.get_store().list_runs() == []  # its runs went with it


def test_range_test_suggests_and_fills_train(app):
    button(app, "Find a learning rate").click()
    app.run()
    wait_for(app, lambda at: any("Suggested learning rate" in s.value for s in at.success))
    suggestion = app.session_state.range_suggestion
    assert 1e-6 <= suggestion <= 10
    assert len(app.get("plotly_chart")) == 1
    button(app, "Sweep around it").click()
    app.run()
    assert float(app.text_input(key="sweep_low").value) == pytest.approx(suggestion / 10, rel=0.05)
    assert float(app.text_input(key="sweep_high").value) == pytest.approx(suggestion * 10, rel=0.05)
    button(app, "Use this learning rate in Train").click()
    app.run()
    assert not app.exception
    assert app.session_state.train_learning_rate == suggestion


# ---------------------------------------------------------------- hostile input (security review)

@pytest.mark.parametrize("sweep_id", ["[x](http://e)![i](http://e/i.png)", "<img src=x onerror=alert(1)>",
                                      "../../etc/passwd", "`code` $x$ :red[y]\n# heading", "x" * 5000])
def test_a_link_to_an_unknown_sweep_shows_its_id_literally(sweep_id, tmp_path, monkeypatch):
    monkeypatch.setenv("LRCORE_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page("pages/sweep.py", query={"sweep": sweep_id})
    [warning] = [w.value for w in at.warning if "is not in this store" in w.value]
    assert f"({md_escape(sweep_id)})" in warning  # the escaped form: links, images and HTML stay text
    assert not re.search(r"(?<!\\)(<|\]\(|`|\$|:red\[)", warning)
    assert len(warning) < 500 and "sweep_id" not in at.session_state


def test_typed_markdown_in_the_settings_is_echoed_literally(app):
    app.text_input(key="sweep_low").set_value("[x](http://e)")
    app.text_input(key="range_start").set_value("![i](http://e/i.png)")
    app.run()
    assert not app.exception
    shown = [e.value for e in app.error]
    assert any(md_escape("“[x](http://e)”") in e for e in shown)
    assert any(md_escape("“![i](http://e/i.png)”") in e for e in shown)
    assert not any(re.search(r"(?<!\\)\]\(", e) for e in shown)


def test_a_sweep_that_cannot_be_saved_says_so(tmp_path, monkeypatch):
    from tests.test_save_errors import read_only_store_url

    monkeypatch.setenv("LRCORE_STORE_URL", read_only_store_url(tmp_path))
    app = open_page("pages/sweep.py")
    app.slider(key="sweep_count").set_value(2)
    app.number_input(key="sweep_epochs").set_value(1)
    app.run()
    button(app, "Start sweep").click()
    app.run()
    wait_for(app, lambda at: any(s.value == "Results, best first" for s in at.subheader))
    common.get_jobs().remove(app.session_state.sweep_id)  # unsaved runs would show on other tests' Runs pages
    warning = next(w.value for w in app.warning if w.value.startswith("This sweep could not be saved"))
    assert "read\\-only" in warning


def test_the_sweep_offers_every_train_setting_so_a_sweep_can_reproduce_a_train_run(app):
    """Deskew, minibatch order and images per class (missing before) reach every configuration."""
    from ui import common

    assert app.toggle(key="sweep_deskew").value is True  # the digits' default, as on the Train page
    app.toggle(key="sweep_deskew").set_value(False)
    app.selectbox(key="sweep_batch_order").set_value("by_class")
    app.toggle(key="sweep_limit_on").set_value(True)
    app.run()
    app.number_input(key="sweep_per_class_limit").set_value(50)
    app.slider(key="sweep_count").set_value(3)
    app.number_input(key="sweep_epochs").set_value(1)
    app.slider(key="sweep_validation_fraction").set_value(0.9)  # the Train page's range (was up to 0.5)
    app.run()
    assert not errors(app), errors(app)
    button(app, "Start sweep").click()
    app.run()
    job = common.get_jobs().get(app.session_state.sweep_id)
    assert {(m.config.deskew, m.config.batch_order, m.config.per_class_limit, m.config.validation_fraction)
            for m in job.records()} == {(False, "by_class", 50, 0.9)}
    job.stop()
    wait_for(app, lambda at: not job.active)
