"""The Train page in Streamlit's AppTest: settings and their checks, runs started through the page,
live controls (pause, stop, learning rate), divergence, reset and share-link query parameters."""
from __future__ import annotations

import json
import math
import re

import pytest
from streamlit.testing.v1 import AppTest

from ui.text import md_escape
from tests.apptest_helpers import open_page, wait_for_run

from ui import common
from ui.charts import TRAIN_LABEL

APP = "../dashboard.py"  # relative to this file
PAGE = "pages/train.py"


@pytest.fixture(autouse=True)
def fresh_data_dir(tmp_path, monkeypatch):
    """Runs recorded by the run store go to a temporary folder."""
    monkeypatch.setenv("LRCORE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LRCORE_RUNS_DIR", raising=False)
    yield tmp_path


def train_page(query: dict | None = None) -> AppTest:
    return open_page(PAGE, query)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def figures(at: AppTest) -> dict[str, dict]:
    """The page's charts (ECharts options, ui/live_charts.py) by title."""
    specs = [json.loads(chart.proto.spec) for chart in at.get("echarts_chart")]
    return {spec["title"]["text"]: spec for spec in specs}


def trace(option: dict, name: str) -> dict:
    """A chart's series by name, with its points' x and y as lists (plotly's shape, easier to compare)."""
    series = next(item for item in option["series"] if item["name"] == name)
    return {**series, "x": [x for x, _y in series["data"]], "y": [y for _x, y in series["data"]]}


def lr_marks(option: dict) -> list[tuple[str, float]]:
    """(label, x) of each learning-rate change's dotted line."""
    lines = option["series"][0].get("markLine", {}).get("data", [])
    return [(line["label"]["formatter"], line["xAxis"]) for line in lines]


def worker_of(at: AppTest):
    return common.get_jobs().live_run(at.session_state["run_id"])


def start(at: AppTest, **numbers) -> None:
    """Set number inputs by key suffix (e.g. epochs=2), press Start and check a run began."""
    for name, value in numbers.items():
        at.number_input(key=f"train_{name}").set_value(value)
    at.run()
    button(at, "Start").click()
    at.run()
    assert not at.exception, at.exception
    assert worker_of(at) is not None


def finish(at: AppTest, timeout: float = 60) -> None:
    """Wait for the run's worker thread, then redraw the page from its final record."""
    worker_of(at).join(timeout)
    assert not worker_of(at).alive
    at.run()
    assert not at.exception, at.exception


def test_renders_without_a_run_with_defaults():
    at = train_page()
    assert at.number_input(key="train_learning_rate").value == 0.5
    assert at.select_slider(key="train_lr_grid").value == 0.5
    assert at.number_input(key="train_batch_size").value == 128
    assert at.number_input(key="train_epochs").value == 10
    assert at.radio(key="train_optimizer").value == "sgd"
    assert at.toggle(key="train_limit_on").value is False
    assert not button(at, "Start").disabled
    assert button(at, "Stop").disabled and button(at, "Pause").disabled
    assert any("press **Start**" in info.value for info in at.info)
    assert not errors(at)
    assert at.query_params["lr"] == "0.5" and at.query_params["dataset"] == "mnist-sample"


def test_before_start_the_charts_show_the_axes_the_run_will_fill():
    """Empty charts with the planned length and fixed ranges, under the same keys as a run's, so the
    browser has the charts' script loaded and the charts drawn when the first point comes (bench_latency)."""
    at = train_page()
    at.number_input(key="train_epochs").set_value(4)
    at.number_input(key="train_batch_size").set_value(100)
    at.run()
    charts = figures(at)
    assert set(charts) == {"Loss per epoch", "Accuracy per epoch", "Loss per minibatch"}
    assert {chart.key for chart in at.get("echarts_chart")} == {"train_chart_loss", "train_chart_accuracy",
                                                                  "train_chart_batch_loss"}
    for option in charts.values():
        assert all(not series["data"] for series in option["series"])  # no point yet
        assert [note["style"]["text"] for note in option["graphic"]] == ["no run yet: press Start"]
    accuracy = charts["Accuracy per epoch"]
    assert (accuracy["yAxis"]["min"], accuracy["yAxis"]["max"]) == (0, 100)
    assert (accuracy["xAxis"]["min"], accuracy["xAxis"]["max"]) == (0, 4)
    # mnist-sample's default split: 6,400 training images, 64 batches of 100 an epoch, 4 epochs
    assert charts["Loss per minibatch"]["xAxis"]["max"] == 4 * 64

    start(at, epochs=2)
    finish(at)
    charts = figures(at)
    assert len(trace(charts["Accuracy per epoch"], "validation")["x"]) == 3  # epochs 0, 1, 2
    assert "graphic" not in charts["Accuracy per epoch"]


def test_batch_size_larger_than_the_training_split_keeps_start_disabled():
    at = train_page()
    at.number_input(key="train_batch_size").set_value(7000).run()  # mnist-sample trains on 6,400 images
    assert any("at most the training set size (6,400 images" in message for message in errors(at))
    assert button(at, "Start").disabled
    at.number_input(key="train_batch_size").set_value(6400).run()
    assert not errors(at) and not button(at, "Start").disabled


def test_a_small_subset_makes_the_default_batch_size_too_large():
    at = train_page()
    at.toggle(key="train_limit_on").set_value(True).run()
    at.number_input(key="train_per_class_limit").set_value(5).run()  # 50 training images < 128
    assert any("at most the training set size (50 images" in message for message in errors(at))
    assert button(at, "Start").disabled


@pytest.mark.parametrize("learning_rate, expected", [(500.0, "between 1e-06 and 100"), (0.0, "finite number > 0")])
def test_learning_rate_out_of_range_keeps_start_disabled(learning_rate, expected):
    at = train_page()
    at.number_input(key="train_learning_rate").set_value(learning_rate).run()
    assert any(message.startswith("**Learning rate**") and expected in message for message in errors(at))
    assert button(at, "Start").disabled


def test_log_slider_and_exact_learning_rate_follow_each_other():
    at = train_page()
    at.select_slider(key="train_lr_grid").set_value(0.01).run()
    assert at.number_input(key="train_learning_rate").value == 0.01
    at.number_input(key="train_learning_rate").set_value(0.03).run()
    assert at.select_slider(key="train_lr_grid").value == 0.02  # nearest on the log grid
    assert at.query_params["lr"] == "0.03"


def test_momentum_is_only_editable_for_sgd_with_momentum():
    at = train_page()
    assert at.slider(key="train_momentum").disabled
    at.radio(key="train_optimizer").set_value("momentum").run()
    assert not at.slider(key="train_momentum").disabled


def test_short_run_through_the_page_fills_charts_and_final_metrics():
    at = train_page()
    at.number_input(key="train_learning_rate").set_value(0.3)
    start(at, epochs=3)
    assert button(at, "Start").disabled  # one run at a time
    assert not button(at, "Stop").disabled
    finish(at)
    record = worker_of(at).snapshot()
    assert record.status == "done" and record.config.learning_rate == 0.3 and record.config.epochs == 3

    charts = figures(at)
    accuracy = charts["Accuracy per epoch"]
    assert trace(accuracy, "validation")["x"] == [0, 1, 2, 3]
    assert trace(accuracy, "validation")["y"] == pytest.approx([100 * row["validation_accuracy"]
                                                                for row in record.epochs], rel=1e-4)  # in %
    assert trace(accuracy, "validation")["y"][-1] > 85
    assert trace(charts["Loss per epoch"], TRAIN_LABEL)["y"] == pytest.approx([row["train_loss"] for row in record.epochs],
                                                                          rel=1e-4)
    batch = charts["Loss per minibatch"]
    assert len(batch["series"]) == 2  # raw losses and their moving average

    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Test accuracy"] == f"{record.final['test_accuracy']:.1%}"
    assert metrics["Full epochs"] == "3 / 3"
    assert any("Done: test accuracy" in message.value for message in at.success)
    assert not button(at, "Start").disabled  # finished: a new run may start
    assert at.query_params["run"] == record.run_id


def test_pause_resume_change_learning_rate_and_stop():
    at = train_page()
    start(at, epochs=500)
    worker = worker_of(at)
    wait_for_run(worker, lambda record: record.epochs, "the epoch-0 evaluation")

    button(at, "Pause").click().run()
    assert worker.control.paused and button(at, "Resume")
    # Set on the Paused event, then the loop waits:
    wait_for_run(worker, lambda record: record.status == "paused", "the run to pause")
    paused_step = worker.snapshot().progress.get("step")
    at.run()  # a page round trip while paused: no batch runs meanwhile
    assert not at.exception, at.exception
    assert worker.snapshot().status == "paused" and worker.snapshot().progress.get("step") == paused_step
    button(at, "Resume").click().run()
    assert not worker.control.paused

    at.number_input(key="train_live_lr").set_value(1000.0).run()
    button(at, "Apply").click().run()
    assert any("between 1e-06 and 100" in message for message in errors(at))  # refused, run unchanged
    at.number_input(key="train_live_lr").set_value(0.05).run()
    button(at, "Apply").click().run()
    assert any("0.05 from the next batch" in message.value for message in at.success)
    wait_for_run(worker, lambda record: record.lr_changes, "the new learning rate to be applied")

    at.switch_page("pages/weights.py").run()  # away and back: the run goes on, the live box shows its lr
    at.switch_page(PAGE).run()
    assert worker_of(at) == worker and worker.snapshot().active
    assert at.number_input(key="train_live_lr").value == 0.05

    button(at, "Stop").click().run()
    finish(at)
    record = worker.snapshot()
    assert record.status == "stopped" and record.lr_changes[0]["new"] == 0.05
    warning = next(message.value for message in at.warning if message.value.startswith("Stopped"))
    kept_epoch, kept_batch = record.final["kept_epoch"], record.final["kept_batch"]
    where = f"from epoch {kept_epoch}" if kept_batch == record.batches_per_epoch else \
        f"epoch {kept_epoch}, batch {kept_batch} of {record.batches_per_epoch}"
    assert where in warning  # which weights were kept, and every metric below is for them
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Validation accuracy"] == f"{record.final['validation_accuracy']:.1%}"
    assert metrics["Train accuracy"] == f"{record.final['train_accuracy']:.1%}"
    step = record.lr_changes[0]["step"]
    assert lr_marks(figures(at)["Loss per minibatch"]) == [("lr → 0.05", step)]
    assert lr_marks(figures(at)["Accuracy per epoch"]) == [("lr → 0.05", pytest.approx(step / record.batches_per_epoch))]


def test_a_diverging_learning_rate_shows_a_clear_error():
    at = train_page()
    at.number_input(key="train_learning_rate").set_value(50.0)
    start(at, epochs=2)
    finish(at)
    assert worker_of(at).snapshot().status == "diverged"
    assert any("Training diverged: loss" in message and "try a smaller learning rate" in message
               for message in errors(at))
    assert math.isfinite(float(worker_of(at).snapshot().snapshots[-1][1].abs().max()))  # last finite weights


def test_reset_forgets_the_run_and_restores_defaults():
    at = train_page()
    at.number_input(key="train_learning_rate").set_value(0.2)
    start(at, epochs=1)
    finish(at)
    button(at, "Reset").click().run()
    assert "run_id" not in at.session_state and "run" not in at.query_params
    assert at.number_input(key="train_learning_rate").value == 0.5
    assert at.number_input(key="train_epochs").value == 10
    assert any("press **Start**" in info.value for info in at.info)


def test_share_link_parameters_fill_the_widgets():
    at = train_page({"lr": "0.02", "batch_size": "64", "val_fraction": "0.3", "epochs": "4",
                     "optimizer": "momentum", "momentum": "0.8", "weight_decay": "0.001", "seed": "7",
                     "normalization": "standardize", "per_class": "100", "order": "by_class"})
    assert not at.warning
    assert at.number_input(key="train_learning_rate").value == 0.02
    assert at.select_slider(key="train_lr_grid").value == 0.02
    assert at.number_input(key="train_batch_size").value == 64
    assert at.slider(key="train_validation_fraction").value == 0.3
    assert at.number_input(key="train_epochs").value == 4
    assert at.radio(key="train_optimizer").value == "momentum"
    assert at.slider(key="train_momentum").value == 0.8
    assert at.number_input(key="train_weight_decay").value == 0.001
    assert at.number_input(key="train_seed").value == 7
    assert at.radio(key="train_normalization").value == "standardize"
    assert at.toggle(key="train_limit_on").value is True
    assert at.number_input(key="train_per_class_limit").value == 100
    assert at.selectbox(key="train_batch_order").value == "by_class"
    assert not errors(at) and not button(at, "Start").disabled


@pytest.mark.parametrize("param, value, allowed", [
    ("lr", "abc", "a number from 1e-06 to 100"),
    ("lr", "1000", "a number from 1e-06 to 100"),
    ("batch_size", "0.5", "a whole number from 1"),
    ("optimizer", "adam", "one of sgd, momentum, adamw"),
    ("val_fraction", "0.95", "a number from 0.01 to 0.9"),
    ("per_class", "-3", "or all"),
    ("order", "random", "one of shuffled, fixed, by_class"),
    ("lr", "`0.1`[x](http://e.invalid)![i](http://e.invalid/i.png)", "a number from 1e-06 to 100"),
    ("deskew", "maybe", "one of on, off"),
])
def test_a_bad_share_link_parameter_warns_and_falls_back_to_the_default(param, value, allowed):
    at = train_page({param: value, "epochs": "3"})
    assert len(at.warning) == 1
    warning = at.warning[0].value
    # The value is shown literally: escaped for markdown, so a crafted link cannot add links or images.
    assert f"{md_escape(param)}={md_escape(value, 40)}" in warning
    assert allowed in warning and "Using the default" in warning
    assert at.number_input(key="train_epochs").value == 3  # the good parameter still applies
    assert at.number_input(key="train_learning_rate").value == 0.5
    assert at.query_params.get(param) != value  # the URL now holds the setting in use


def test_settings_survive_a_visit_to_another_page():
    at = train_page()
    at.number_input(key="train_epochs").set_value(7).run()
    at.switch_page("pages/weights.py").run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.number_input(key="train_epochs").value == 7


# ---------------------------------------------------------------- issue 12: model, full batch, from scratch

def test_full_batch_disables_the_batch_size_and_says_how_big_a_step_is():
    at = train_page()
    at.number_input(key="train_batch_size").set_value(100_000).run()
    assert any("must be at most the training set size" in e for e in errors(at)), errors(at)
    at.toggle(key="train_full_batch").set_value(True).run()
    assert not at.exception, at.exception
    assert at.number_input(key="train_batch_size").disabled
    captions = " | ".join(c.value for c in at.caption)
    assert "Batch size = the training split (6,400 images): one step per epoch." in captions
    assert "· 1 batch per epoch" in captions
    assert not errors(at) and not button(at, "Start").disabled  # the batch size is ignored with a full batch


def test_the_model_choice_sits_by_the_optimizer_and_binary_on_ten_classes_is_refused():
    at = train_page()
    boxes = [box for box in at.selectbox if box.key == "train_model"]
    assert len(boxes) == 1 and boxes[0].value == "auto"  # placed once, not again among the later settings
    boxes[0].set_value("binary").run()
    assert any("binary logistic regression needs exactly two classes" in e for e in errors(at)), errors(at)
    assert button(at, "Start").disabled


def test_the_from_scratch_panel_shows_the_equations_and_one_steps_numbers():
    pytest.importorskip("lrcore.from_scratch")
    at = train_page()
    assert "From scratch" in at.expander[-1].label
    assert not at.get("latex")  # closed: nothing computed or drawn inside
    at.session_state["train_scratch_open"] = True  # what a click on the expander does
    at.run()
    assert at.get("latex")  # softmax regression's equations before a run
    assert "Start a run" in " | ".join(c.value for c in at.caption)
    start(at, epochs=2)
    finish(at)
    tables = at.get("table")
    assert tables, "one step's numbers"
    assert "mean |dw|" in str(tables[-1].proto)


def test_a_folder_with_val_says_its_validation_set_instead_of_the_slider(fresh_data_dir):
    from lrcore.image_folder import example_dataset  # train/ and val/ folders

    name = example_dataset(fresh_data_dir)
    at = open_page(PAGE, session={"dataset": name})
    assert not [s for s in at.slider if s.key == "train_validation_fraction"]
    validation = [c.value for c in at.caption if c.value.startswith("Validation: the folder's val/")]
    assert len(validation) == 1 and re.fullmatch(r"Validation: the folder's val/ \(\d+ images\)\.", validation[0])
    assert [box for box in at.selectbox if box.key == "train_model"][0].value == "auto"



def test_a_folder_dataset_starts_from_its_picture_defaults_and_says_so(fresh_data_dir):
    from lrcore import datasets
    from lrcore.image_folder import example_dataset

    name = example_dataset(fresh_data_dir)
    at = open_page(PAGE, session={"dataset": name})
    assert at.number_input(key="train_learning_rate").value == pytest.approx(0.005)  # 16 / (3 x 32 x 32) pixels
    assert at.radio(key="train_normalization").value == "standardize"
    title = md_escape(datasets.get(name).short_title)
    assert f"Default for {title}: 0.005" in at.select_slider(key="train_lr_grid").help
    assert f"Default for {title}: standardised" in at.radio(key="train_normalization").help

# ---------------------------------------------------------------- a tiny image folder: full batch in one click

@pytest.fixture
def tiny_folder(fresh_data_dir):
    """An imported two-class folder: train/ 20 + 20 (32 to train on, a fifth is the test set), val/ 5 + 5."""
    import io

    import numpy as np
    from PIL import Image

    from lrcore import datasets
    from lrcore.image_folder import import_folder

    rng = np.random.default_rng(0)
    root = fresh_data_dir / "tiny"
    for split, count in (("train", 20), ("val", 5)):
        for label, name in enumerate(("top", "bottom")):
            for i in range(count):
                array = rng.integers(0, 90, (36, 36, 3)).astype(np.uint8)
                array[slice(0, 18) if label == 0 else slice(18, 36)] += 150
                buffer = io.BytesIO()
                Image.fromarray(array).save(buffer, "PNG")
                (root / split / name).mkdir(parents=True, exist_ok=True)
                (root / split / name / f"{i}.png").write_bytes(buffer.getvalue())
    saved = dict(datasets.REGISTRY)
    yield import_folder(root, 32, data_dir=fresh_data_dir).name
    datasets.REGISTRY.clear()
    datasets.REGISTRY.update(saved)


def test_a_batch_size_over_a_tiny_folder_offers_full_batch_in_one_click(tiny_folder):
    at = open_page(PAGE, session={"dataset": tiny_folder})
    assert any("at most the training set size (32 images" in e and "use Full batch" in e for e in errors(at)), errors(at)
    assert button(at, "Start").disabled
    button(at, "Use Full batch").click()
    at.run()
    assert not at.exception, at.exception
    assert at.toggle(key="train_full_batch").value is True
    assert not errors(at) and not button(at, "Start").disabled
    assert not [b for b in at.button if b.label.startswith("Use Full batch")]
    captions = " | ".join(c.value for c in at.caption)
    assert "32 training and 10 validation images · 1 batch per epoch" in captions

    start(at, epochs=2)
    finish(at)
    record = worker_of(at).snapshot()
    assert record.status == "done" and record.batches_per_epoch == 1 and record.config.full_batch
    captions = " | ".join(c.value for c in at.caption)
    assert "32 training and 10 validation images · 1 batch per epoch · device" in captions
    assert at.get("progress")[0].proto.text.startswith("Done: 2 of 2 epochs")
    # One step per epoch: each step's loss is the whole split's, drawn solid; no lagging moving average
    steps = figures(at)["Loss per step (full batch)"]
    assert [series["name"] for series in steps["series"]] == ["loss of the step"]
    assert steps["series"][0]["showSymbol"] is True and steps["series"][0]["lineStyle"]["opacity"] == 1.0
