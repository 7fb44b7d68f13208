"""The Weights page in Streamlit's AppTest: ten heatmaps on one symmetric scale (or one each),
biases, the epoch slider, live runs and loaded checkpoints."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from lrcore import TrainConfig
from lrcore import events as ev
from lrcore.checkpoint import checkpoint_bytes, load_checkpoint
from lrcore.data import Normalizer
from lrcore.model import LogisticRegression
from tests.apptest_helpers import start_run, wait_for_run
from tests.store_helpers import record_run
from ui import common
from ui.maps import WeightMaps, weights_figure

APP = "../dashboard.py"  # relative to this file
PAGE = "pages/weights.py"


@pytest.fixture(scope="module", autouse=True)
def fresh_data_dir(tmp_path_factory):
    """Runs recorded by the run store go to a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LRCORE_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        patch.delenv("LRCORE_RUNS_DIR", raising=False)
        yield


def started_from_train_page(epochs: int, batch_size: int | None = None):
    """Start a run by pressing Start on the Train page; returns its worker."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("pages/train.py").run()
    at.number_input(key="train_epochs").set_value(epochs).run()
    if batch_size is not None:
        at.number_input(key="train_batch_size").set_value(batch_size).run()
    next(b for b in at.button if b.label == "Start").click().run()
    assert not at.exception, at.exception
    return common.get_jobs().live_run(at.session_state["run_id"])


@pytest.fixture(scope="module")
def finished_run():
    worker = started_from_train_page(epochs=2)
    worker.join(60)
    assert worker.snapshot().status == "done"
    return worker


def weights_page(run_id: str | None = None, checkpoint=None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if run_id:
        at.session_state["run_id"] = run_id
    if checkpoint is not None:
        at.session_state["checkpoint"] = checkpoint
        at.session_state["checkpoint_label"] = "uploaded digits.pt"
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, at.exception
    return at


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def array(value) -> np.ndarray:
    """A plotly array: a list, or a base64 typed array ({"dtype", "bdata", "shape"})."""
    if isinstance(value, dict):
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
        return data.reshape([int(size) for size in str(value.get("shape", len(data))).split(",")])
    return np.asarray(value, dtype=float)


def heatmaps(at: AppTest) -> list[dict]:
    maps = next(spec for spec in figures(at) if spec["data"][0]["type"] == "heatmap")
    return maps["data"], maps["layout"]


def test_without_a_model_it_points_to_the_train_page():
    at = weights_page()
    assert any("train one on the Train page" in info.value for info in at.info)
    assert not at.get("plotly_chart")
    assert at.get("page_link")


def test_ten_heatmaps_on_one_symmetric_scale_with_biases(finished_run):
    at = weights_page(finished_run.run_id)
    record = finished_run.snapshot()
    epoch, weight, bias = record.snapshots[-1]
    traces, layout = heatmaps(at)
    assert [trace["name"] for trace in traces] == [f"digit {digit}" for digit in range(10)]
    for trace, class_weight in zip(traces, weight):
        assert array(trace["z"]).shape == (28, 28)
        np.testing.assert_allclose(array(trace["z"]), class_weight.reshape(28, 28).numpy(), rtol=1e-6)
        assert trace["coloraxis"] == "coloraxis"
        assert "row %{y}, column %{x}" in trace["hovertemplate"] and "weight %{z" in trace["hovertemplate"]
    scale = layout["coloraxis"]
    assert scale["cmin"] == -scale["cmax"] == pytest.approx(-float(weight.abs().max()))
    # RdBu: red for negative weights, blue for positive
    assert scale["colorscale"][0][1] == "rgb(103,0,31)" and scale["colorscale"][-1][1] == "rgb(5,48,97)"
    bars = next(spec for spec in figures(at) if spec["data"][0]["type"] == "bar")["data"][0]
    assert bars["x"] == pytest.approx(bias.tolist())
    assert at.select_slider(key="weights_index").value == len(record.snapshots) - 1
    assert any(f"Epoch {epoch}" in markdown.value for markdown in at.markdown)


def test_each_class_on_its_own_scale(finished_run):
    at = weights_page(finished_run.run_id)
    at.toggle(key="weights_separate_scales").set_value(True).run()
    weight = finished_run.snapshot().snapshots[-1][1]
    traces, layout = heatmaps(at)
    assert "coloraxis" not in layout
    for trace, class_weight in zip(traces, weight):
        assert trace["zmax"] == -trace["zmin"] == pytest.approx(float(class_weight.abs().max()))
    assert any("each class scaled to its own" in caption.value for caption in at.caption)


def test_the_slider_scrubs_back_to_the_untrained_weights(finished_run):
    at = weights_page(finished_run.run_id)
    slider = at.select_slider(key="weights_index")
    assert slider.options == ["epoch 0 (untrained)", "epoch 1", "epoch 2"]
    slider.set_value(0).run()
    initial = finished_run.snapshot().snapshots[0][1]
    traces, _layout = heatmaps(at)
    np.testing.assert_allclose(array(traces[3]["z"]), initial[3].reshape(28, 28).numpy(), rtol=1e-6)
    assert any("Epoch 0 (untrained)" in markdown.value for markdown in at.markdown)


def test_after_a_restart_the_slider_scrubs_the_stored_epochs_of_the_same_run(finished_run):
    """The record read back from the store is the one the live page showed: same epochs, same weights."""
    live = finished_run.snapshot()
    common.get_store().flush()
    common.get_jobs().remove(finished_run.job.job_id)  # a server restart: the process's jobs are gone
    try:
        at = weights_page(finished_run.run_id)
        slider = at.select_slider(key="weights_index")
        assert slider.options == ["epoch 0 (untrained)", "epoch 1", "epoch 2"]
        for index, (epoch, weight, _bias) in enumerate(live.snapshots):
            slider.set_value(index).run()
            traces, _layout = heatmaps(at)
            np.testing.assert_allclose(array(traces[7]["z"]), weight[7].reshape(28, 28).numpy(), rtol=1e-6)
        assert any("(done)" in markdown.value for markdown in at.markdown)
        at.switch_page("pages/train.py").run()  # the Train page shows the same run's outcome and curves
        assert not at.exception
        assert any(s.value == f"Done: test accuracy {live.final['test_accuracy']:.1%}. Look at the weights on the "
                   "Weights page." for s in at.success), [s.value for s in at.success]
        assert len(at.get("echarts_chart")) == 3
    finally:
        common.get_jobs().add(finished_run.job)


def pause_inside_an_epoch(worker, timeout: float = 30) -> None:
    """Pause after some batches of an epoch have run, so the weights differ from the last epoch's.

    Decided from the Paused events' steps, not from timing: epochs here are shorter than the
    worker's 0.1 s progress interval, so the record's progress only ever shows epoch ends."""
    paused_steps: list[int] = []
    worker.job.add_listener(lambda _job, _record, event: paused_steps.append(event.step)
                             if isinstance(event, ev.Paused) else None)
    while True:
        seen = len(paused_steps)
        worker.control.pause()
        record = wait_for_run(worker, lambda record: len(paused_steps) > seen and record.status == "paused",
                              "the run to pause", timeout)
        if paused_steps[-1] % record.batches_per_epoch:
            return  # paused inside an epoch
        # Paused at an epoch boundary: the next pause lands after at least one more batch.
        worker.control.resume()
        wait_for_run(worker, lambda record: record.status == "training", "the run to resume", timeout)


def test_live_while_training_follow_or_scrub_then_stopped_weights_are_kept():
    # Long enough (minutes on an idle machine) that the test, not the end of training, stops it.
    worker = started_from_train_page(epochs=1000, batch_size=16)
    wait_for_run(worker, lambda record: len(record.snapshots) >= 2, "two epochs of weights")
    at = weights_page(worker.run_id)
    assert at.toggle(key="weights_follow").value is True
    assert not [slider for slider in at.select_slider if slider.key == "weights_index"]  # display-only while following
    live = next(markdown.value for markdown in at.markdown if "live, training epoch" in markdown.value)
    shown = int(live.split("**Epoch ")[1].split("**")[0])
    assert shown >= 1  # the newest epoch at the time of drawing, not the untrained weights

    at.toggle(key="weights_follow").set_value(False).run()
    slider = at.select_slider(key="weights_index")
    assert slider.value == len(slider.options) - 1  # scrubbing starts from the newest epoch
    slider.set_value(0).run()
    assert any(markdown.value.startswith("**Epoch 0 (untrained)**") for markdown in at.markdown)

    pause_inside_an_epoch(worker)
    worker.control.stop()
    worker.join(30)
    at.run()
    assert not at.exception
    record = worker.snapshot()
    slider = at.select_slider(key="weights_index")
    # The weights reached mid-epoch, named by the epoch and batch they are from.
    assert slider.options[-1] == (f"epoch {record.final['kept_epoch']}, batch {record.final['kept_batch']} of "
                                  f"{record.batches_per_epoch} (stopped)")
    assert record.final["kept_epoch"] == record.snapshots[-2][0] + 1
    assert slider.value == 0  # the epoch the user picked stays picked


def test_a_loaded_checkpoint_is_shown_without_the_slider():
    weight, bias = torch.randn(10, 784), torch.randn(10)
    checkpoint = load_checkpoint(checkpoint_bytes(LogisticRegression.from_tensors(weight, bias), TrainConfig(),
                                                  tuple("0123456789"), Normalizer()))
    at = weights_page(checkpoint=checkpoint)
    assert any("uploaded digits\\.pt" in markdown.value for markdown in at.markdown)  # shown literally (md_escape)
    assert not at.select_slider
    traces, layout = heatmaps(at)
    np.testing.assert_allclose(array(traces[9]["z"]), weight[9].reshape(28, 28).numpy(), rtol=1e-6)
    assert layout["coloraxis"]["cmax"] == pytest.approx(float(weight.abs().max()))


@pytest.mark.parametrize("shared_scale", [True, False])
def test_refilled_weight_maps_equal_a_freshly_built_figure(shared_scale):
    """The Weights page refills its figure in place on each new epoch; it must match a rebuilt one."""
    names = tuple("0123456789")
    first, second = torch.randn(10, 784), 3 * torch.randn(10, 784)
    maps = WeightMaps()
    figure = maps.figure("epoch 1", first, names, shared_scale)
    assert maps.figure("epoch 2", second, names, shared_scale) is figure  # refilled, not rebuilt
    assert json.loads(figure.to_json()) == json.loads(weights_figure(second, names, shared_scale).to_json())


# ---------------------------------------------------------------- comparing two runs

def stored_run(config: TrainConfig, name: str | None = None) -> str:
    """Train `config` into the store the pages read (as `python -m lrcore train` does); its run id."""
    return record_run(common.get_store(), config, name)


@pytest.fixture(scope="module")
def current_run():
    """A finished run that is this session's current run, recorded in the store as the pages do."""
    worker = start_run(TrainConfig(epochs=2), name="the current one")
    worker.join(60)
    assert worker.snapshot().status == "done"
    return worker


@pytest.fixture(scope="module")
def decay_run() -> str:
    return stored_run(TrainConfig(weight_decay=0.01, epochs=3), name="decay *[link](http://example.com)*")


def compare_figures(at: AppTest) -> tuple[list[dict], list[dict]]:
    specs = figures(at)
    maps = [spec for spec in specs if spec["data"][0]["type"] == "heatmap"]
    bars = [spec for spec in specs if spec["data"][0]["type"] == "bar"]
    return maps, bars


def test_a_stored_run_compares_beside_the_current_one_on_one_scale_with_its_norms(current_run, decay_run):
    finished_run = current_run
    at = weights_page(finished_run.run_id)
    picker = at.selectbox(key="weights_compare")
    assert picker.value is None
    assert any(option.startswith("decay *[link]") for option in picker.options)  # plain text in a select
    assert not any(option.startswith("the current one") for option in picker.options)  # not itself
    picker.set_value(decay_run).run()
    assert not at.exception, at.exception
    maps, bars = compare_figures(at)
    assert len(maps) == 2  # this run and the compared one
    ours = finished_run.snapshot().snapshots[-1][1]
    theirs = common.get_store().checkpoint(decay_run).model.linear.weight.detach()
    limit = max(float(ours.abs().max()), float(theirs.abs().max()))
    for spec in maps:  # one symmetric scale for both
        assert spec["layout"]["coloraxis"]["cmax"] == -spec["layout"]["coloraxis"]["cmin"] == pytest.approx(limit)
    np.testing.assert_allclose(array(maps[1]["data"][4]["z"]), theirs[4].reshape(28, 28).numpy(), rtol=1e-6)
    norms = next(spec for spec in bars if "norm" in spec["layout"]["title"]["text"])
    assert [trace["name"] for trace in norms["data"]] == ["A: this run", "B: compared"]
    np.testing.assert_allclose(array(norms["data"][0]["y"]), ours.norm(dim=1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(array(norms["data"][1]["y"]), theirs.norm(dim=1).numpy(), rtol=1e-5)
    assert all(b < a for a, b in zip(array(norms["data"][0]["y"]), array(norms["data"][1]["y"])))  # decay shrinks
    markdown = " ".join(m.value for m in at.markdown)
    assert "decay \\*\\[link\\]\\(http" in markdown  # the user's run name is shown literally
    assert at.toggle(key="weights_separate_scales").disabled
    # back to one run: the page is as before
    at.selectbox(key="weights_compare").set_value(None).run()
    maps, bars = compare_figures(at)
    assert len(maps) == 1 and not at.toggle(key="weights_separate_scales").disabled


def test_the_compared_figure_is_kept_while_the_current_weights_change():
    """Polling a live run refills only the current grid; the compared one just follows the shared scale."""
    names = tuple("0123456789")
    other = torch.randn(10, 784)
    maps = WeightMaps()
    figure = maps.figure(("other", 1), other, names, True, limit=5.0, compact=True)
    assert maps.figure(("other", 1), other, names, True, limit=7.0, compact=True) is figure
    assert figure.layout.coloraxis.cmax == 7.0 and figure.to_dict()["layout"]["coloraxis"]["cmin"] == -7.0
    assert json.loads(figure.to_json()) == json.loads(
        weights_figure(other, names, True, limit=7.0, compact=True).to_json())


def test_without_other_runs_the_page_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LRCORE_RUNS_DIR", str(tmp_path / "empty-runs"))
    weight, bias = torch.randn(10, 784), torch.randn(10)
    checkpoint = load_checkpoint(checkpoint_bytes(LogisticRegression.from_tensors(weight, bias), TrainConfig(),
                                                  tuple("0123456789"), Normalizer()))
    at = weights_page(checkpoint=checkpoint)
    assert not [box for box in at.selectbox if box.key == "weights_compare"]
    assert any("Train a second run" in caption.value for caption in at.caption)


def test_comparing_while_the_current_run_trains_keeps_the_compared_figure(decay_run):
    worker = start_run(TrainConfig(epochs=1000, batch_size=16), name="live one")
    try:
        wait_for_run(worker, lambda record: len(record.snapshots) >= 2, "two epochs of weights")
        at = weights_page(worker.run_id)
        at.selectbox(key="weights_compare").set_value(decay_run).run()
        assert not at.exception, at.exception
        loaded, figure = at.session_state["weights_compare_loaded"], at.session_state["weights_compare_figures"]._figure
        # New epochs: the current grid changes, the compared one not.
        wait_for_run(worker, lambda record: len(record.snapshots) >= 4, "two more epochs of weights")
        at.run()
        assert not at.exception, at.exception
        assert at.session_state["weights_compare_loaded"] is loaded  # not read from disk again
        assert at.session_state["weights_compare_figures"]._figure is figure  # refilled scale, not rebuilt
        maps, _bars = compare_figures(at)
        assert len(maps) == 2 and maps[0]["layout"]["coloraxis"]["cmax"] == maps[1]["layout"]["coloraxis"]["cmax"]
        assert any("live, training epoch" in m.value for m in at.markdown)
    finally:
        worker.control.stop()
        worker.join(30)


# ---------------------------------------------------------------- colour images and binary models (issue 12)

def tiny_loader(shape, classes):
    def load(folder):
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (60, *shape), generator=generator, dtype=torch.uint8)
        return images, torch.arange(60) % classes, images[:30], torch.arange(30) % classes
    return load


@pytest.fixture
def small_datasets(monkeypatch, tmp_path):
    """A 3-class colour dataset (3x8x8) and two 2-class ones, grey (1x8x8) and colour, registered for one test."""
    from lrcore import datasets
    made = {}
    for name, names, shape in (("tiny-rgb", ("red", "green", "blue"), (3, 8, 8)),
                               ("two-grey", ("ants", "bees"), (1, 8, 8)), ("two-rgb", ("ants", "bees"), (3, 8, 8))):
        info = datasets.DatasetInfo(name, f"{name} (test)", names, shape, digits=False,
                                    loader=tiny_loader(shape, len(names)), folder=tmp_path)
        monkeypatch.setitem(datasets.REGISTRY, name, info)
        made[name] = info
    return made


def model_checkpoint(dataset: str, names: tuple[str, ...], weight: torch.Tensor, bias: torch.Tensor):
    """A Checkpoint of these weights, made directly (a binary one has a single weight row)."""
    from dataclasses import fields
    from lrcore.checkpoint import Checkpoint
    model = LogisticRegression.from_tensors(weight, bias)
    values = dict(model=model, config=TrainConfig(dataset=dataset), class_names=names, normalizer=Normalizer(),
                  metrics={}, created=0.0)
    if "image_shape" in {f.name for f in fields(Checkpoint)}:
        from lrcore import datasets
        values["image_shape"] = datasets.get(dataset).shape
    return Checkpoint(**{f.name: values[f.name] for f in fields(Checkpoint) if f.name in values})


def all_figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_colour_weights_are_one_colour_picture_per_class_or_the_channels_side_by_side(small_datasets):
    weight, bias = torch.randn(3, 192), torch.randn(3)
    at = weights_page(checkpoint=model_checkpoint("tiny-rgb", ("red", "green", "blue"), weight, bias))
    spec = next(spec for spec in all_figures(at) if spec["data"][0]["type"] == "image")
    bound = float(weight.abs().max())
    assert [trace["name"] for trace in spec["data"]] == ["red", "green", "blue"]
    for trace, row in zip(spec["data"], weight):
        # z holds the weights, H x W x (R, G, B); zmin/zmax map ±bound to 0..255: 0 is mid-grey
        np.testing.assert_allclose(array(trace["z"]), row.reshape(3, 8, 8).permute(1, 2, 0).numpy(), rtol=1e-6)
        assert trace["zmin"][:3] == pytest.approx([-bound] * 3) and trace["zmax"][:3] == pytest.approx([bound] * 3)
        assert trace["colormodel"] == "rgb"
    assert any("Mid-grey" in caption.value and "evidence **for** the class" in caption.value for caption in at.caption)

    at.toggle(key="weights_channels").set_value(True).run()
    assert not at.exception, at.exception
    traces, layout = heatmaps(at)
    assert [array(trace["z"]).shape for trace in traces] == [(8, 24)] * 3  # R, G, B side by side
    np.testing.assert_allclose(array(traces[0]["z"])[:, 8:16], weight[0].reshape(3, 8, 8)[1].numpy(), rtol=1e-6)
    assert layout["coloraxis"]["cmax"] == pytest.approx(bound)
    assert any("R, G and B weights side by side, left to right" in caption.value for caption in at.caption)


@pytest.mark.parametrize("dataset, kind", [("two-grey", "heatmap"), ("two-rgb", "image")])
def test_a_binary_model_has_one_map_of_evidence_for_the_second_class(small_datasets, dataset, kind):
    pixels = small_datasets[dataset].num_pixels
    weight, bias = torch.randn(1, pixels), torch.tensor([0.25])
    at = weights_page(checkpoint=model_checkpoint(dataset, ("ants", "bees"), weight, bias))
    specs = all_figures(at)
    maps_spec = next(spec for spec in specs if spec["data"][0]["type"] == kind)
    assert len(maps_spec["data"]) == 1
    title = maps_spec["data"][0]["name"]
    assert title.startswith("evidence for bees") and "vs ants" in title
    assert ("(blue)" in title) == (kind == "heatmap")
    bars = next(spec for spec in specs if spec["data"][0]["type"] == "bar")["data"][0]
    assert bars["x"] == pytest.approx([0.25]) and bars["y"] == ["for bees"]
    assert any("binary model has one 8×8 weight image" in caption.value for caption in at.caption)
    assert any("“bees” (and against “ants”)" in caption.value for caption in at.caption)
    # One map: "scale each class separately" would change nothing, so it is not offered
    assert not [toggle for toggle in at.toggle if toggle.key == "weights_separate_scales"]
    assert not any("for all classes" in caption.value for caption in at.caption)


def test_an_uploaded_checkpoint_of_a_folder_this_server_never_imported_shows_its_colour_map(tmp_path):
    from lrcore import datasets
    from tests.test_page_predict import folder_model_checkpoint

    saved = dict(datasets.REGISTRY)
    try:
        data, name = folder_model_checkpoint(tmp_path)
        assert name not in datasets.REGISTRY
        at = weights_page()  # no model: the page offers to load a checkpoint
        at.file_uploader(key="weights_checkpoint_empty").set_value(("halves.pt", data, "application/octet-stream"))
        at.run()
        assert not at.exception, at.exception
        assert not at.error
        spec = next(spec for spec in all_figures(at) if spec["data"][0]["type"] == "image")
        assert len(spec["data"]) == 1 and spec["data"][0]["name"].startswith("evidence for top")
        assert array(spec["data"][0]["z"]).shape == (32, 32, 3)  # the checkpoint's 3x32x32, as one colour picture
        assert any("binary model has one 32×32 weight image" in caption.value for caption in at.caption)
        assert "**checkpoint “halves\\.pt”**" in [m.value for m in at.markdown]
        at.toggle(key="weights_channels").set_value(True).run()  # R, G and B side by side
        assert not at.exception, at.exception
        traces, _layout = heatmaps(at)
        assert [array(trace["z"]).shape for trace in traces] == [(32, 96)]
    finally:
        datasets.REGISTRY.clear()
        datasets.REGISTRY.update(saved)


def test_a_stored_run_of_a_folder_this_server_no_longer_has_keeps_its_picture_shape():
    from ui.maps import image_shape

    assert image_shape("gone-32-colour-1234", pixels=3 * 32 * 32) == (3, 32, 32)  # was the digits' 28x28
    assert image_shape("gone-48-grey-1234", pixels=48 * 48) == (1, 48, 48)
    assert image_shape("mnist-sample", pixels=784) == (1, 28, 28)
