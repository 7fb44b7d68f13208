"""The live charts are rebuilt or refilled in place; either way they must show the same thing."""
import json
import math

import plotly.graph_objects as go
import pytest
import torch

from ui import charts, maps


def as_json(figure) -> dict:
    return json.loads(figure.to_json())


def test_sent_figure_reuses_its_dict_until_told_it_changed():
    figure = charts.SentFigure(dict(data=[dict(type="scatter", x=[0, 1], y=[1, 2])]))
    first = figure.to_dict()
    assert figure.to_dict() is first  # st.plotly_chart's to_dict() on each rerun costs nothing
    figure.data[0].y = [5, 6]
    figure.changed()
    assert list(figure.to_dict()["data"][0]["y"]) == [5, 6]
    assert go.Figure(figure.to_dict()).data[0].type == "scatter"  # still a valid plotly figure


def test_refilled_batch_loss_figure_equals_a_freshly_built_one():
    steps = list(range(1, 5001))
    losses = [2.3 / math.sqrt(step) for step in steps]
    losses[4000] = math.nan  # a non-finite loss is a gap, both ways
    changes = [{"step": 3000, "epoch": 2, "old": 0.5, "new": 0.1}]
    figure = charts.batch_loss_figure(steps[:100], losses[:100], (), total_steps=None)
    figure.to_dict()  # cached, as after a page draw
    charts.refill_batch_loss_figure(figure, steps, losses, changes, total_steps=6000)
    assert as_json(figure) == as_json(charts.batch_loss_figure(steps, losses, changes, total_steps=6000))
    # thinned for drawing: no more than MAX_BATCH_POINTS points, first and last steps kept in range
    x = charts.batch_loss_figure(steps, losses).data[0].x
    assert len(x) <= charts.MAX_BATCH_POINTS and x[0] == 1 and x[-1] >= 5000 - 5000 // charts.MAX_BATCH_POINTS


class Record:
    """The fields of lrcore.record.RunRecord that LiveCharts reads."""

    def __init__(self, run_id, epochs, batches):
        self.run_id, self.batches_per_epoch = run_id, 10
        self.config = type("Config", (), {"epochs": epochs})()
        self.epochs = [{"epoch": e, "train_loss": 1 / (e + 1), "validation_loss": 1 / (e + 1),
                        "train_accuracy": e / 10, "validation_accuracy": e / 10} for e in range(batches // 10 + 1)]
        self.lr_changes = []
        self.batch_steps = list(range(1, batches + 1))
        self.batch_losses = [1 / step for step in self.batch_steps]
        self.status, self.final = "training", {}


def test_live_charts_follow_a_run_and_start_afresh_for_a_new_one():
    live = charts.LiveCharts()
    first = live.figures(Record("a", 5, 20))
    later = live.figures(Record("a", 5, 35))
    assert later["batch_loss"] is first["batch_loss"]  # refilled in place
    assert len(later["batch_loss"].to_dict()["data"][0]["x"]["bdata"]) > 0
    assert as_json(later["batch_loss"]) == as_json(charts.batch_loss_figure(
        list(range(1, 36)), [1 / s for s in range(1, 36)], (), 50))
    assert later["loss"] is first["loss"]  # a new epoch: the per-epoch charts are refilled too
    record = Record("a", 5, 35)
    assert as_json(later["accuracy"]) == as_json(charts.epoch_figure(record.epochs, "accuracy", (), 10, 5))
    same = live.figures(Record("a", 5, 35))
    assert same["loss"] is later["loss"] and same["batch_loss"].to_dict() is later["batch_loss"].to_dict()
    other = live.figures(Record("b", 5, 10))
    assert other["batch_loss"] is not first["batch_loss"]
    assert len(other["batch_loss"].data[0].x) == 10


def test_the_live_charts_are_laid_out_without_measuring_their_labels_before_and_after_a_refill():
    """Each poll's changed chart is drawn anew in the browser: plotly's automargin (measuring every tick label,
    then laying the chart out again) stays off on both axes, with margins that fit the labels."""
    live = charts.LiveCharts()
    live.figures(Record("a", 5, 20))
    figures = live.figures(Record("a", 5, 35))  # refilled: the per-epoch charts in place, the batch chart patched
    waiting = charts.waiting_figures(5, 50, "no run yet: press Start")
    for figure in [*figures.values(), *waiting.values()]:
        layout = figure.to_dict()["layout"]
        assert layout["xaxis"]["automargin"] is False and layout["yaxis"]["automargin"] is False
        assert layout["margin"]["l"] >= 60 and layout["margin"]["b"] >= 50  # the axis titles and tick labels
    assert figures["accuracy"].to_dict()["layout"]["margin"]["l"] > figures["loss"].to_dict()["layout"]["margin"]["l"]


def test_running_average_extended_in_pieces_equals_one_pass():
    values = [2.0, 1.0, math.nan, 4.0, 3.0, math.inf, 0.5]
    running = charts.RunningEma()
    running.extend(values[:2])
    running.extend(values[2:5])
    assert running.extend(values[5:]) == charts.ema(values)
    # pandas' ewm(alpha=.1, adjust=True).mean() of [2, 1]: (1 + 0.9 * 2) / (1 + 0.9)
    assert charts.ema([2.0, 1.0])[1] == pytest.approx((1 + 0.9 * 2) / 1.9, rel=1e-15)
    assert charts.ema([math.nan, 3.0]) == [None, 3.0]


def test_the_moving_average_is_bias_corrected_from_the_first_batch():
    """A plain EMA starting at 0 would show 0.23 for a first loss of 2.3; the corrected one shows 2.3."""
    assert charts.ema([2.3] * 50) == pytest.approx([2.3] * 50, rel=1e-12)
    step = charts.ema([2.0] * 10 + [1.0] * 60)
    assert step[:10] == pytest.approx([2.0] * 10)
    # the first low batch weighs alpha / (total weight so far), not alpha / 1 as a fully warmed-up EMA
    assert step[10] == pytest.approx(2.0 - 0.1 / (1 - 0.9 ** 11))
    assert all(later < earlier for earlier, later in zip(step[10:], step[11:]))  # follows the step down
    assert step[-1] == pytest.approx(1.0, abs=0.01)
    pieces = charts.RunningEma()
    pieces.extend([math.nan, 5.0])
    assert pieces.extend([5.0, math.inf, 5.0]) == [None, 5.0, 5.0, 5.0, 5.0]  # skipped values keep it level


def test_refilled_epoch_figure_equals_a_freshly_built_one():
    rows = [{"epoch": e, "train_loss": 2.3 / (e + 1), "validation_loss": math.nan if e == 3 else 2.4 / (e + 1),
             "train_accuracy": e / 40, "validation_accuracy": e / 41} for e in range(31)]
    changes = [{"step": 250, "epoch": 3, "old": 0.5, "new": 0.1}]
    for kind in ("loss", "accuracy"):
        figure = charts.epoch_figure(rows[:2], kind, (), 100, 30)
        figure.to_dict()
        # past WHOLE_RUN_EPOCHS the axis stops showing every epoch: the refill must drop dtick too
        charts.refill_epoch_figure(figure, rows, kind, changes, 100, 30)
        assert as_json(figure) == as_json(charts.epoch_figure(rows, kind, changes, 100, 30))
        assert "dtick" not in figure.to_dict()["layout"]["xaxis"]


def test_a_run_ended_inside_an_epoch_gets_a_point_for_its_kept_weights():
    record = Record("r", epochs=5, batches=10)  # epochs 0 and 1 evaluated
    kept = {"kept_step": 15, "train_loss": 0.3, "train_accuracy": 0.4, "validation_loss": 0.35,
            "validation_accuracy": 0.38}
    record.status, record.final = "diverged", kept
    figures = charts.LiveCharts().figures(record)
    validation = next(t for t in figures["accuracy"]["data"] if t["name"] == "validation")
    assert list(validation["x"]) == [0, 1, 1.5] and validation["y"][-1] == 0.38  # the final numbers' weights
    record.final = {**kept, "kept_step": 10}  # stopped exactly at the end of epoch 1: nothing to add
    assert len(charts.epoch_rows(record)) == 2


def test_weight_maps_take_the_datasets_image_shape():
    names = ("red", "green", "blue")
    weight = torch.arange(3 * 192, dtype=torch.float32).reshape(3, 192)  # 3 classes of 3x8x8 colour images
    figure = maps.weights_figure(weight, names, shape=(3, 8, 8), mode=maps.CHANNELS)
    first = figure.data[0].z
    assert first.shape == (8, 24)  # one row of the image, its three channels side by side
    assert first[0, :8].tolist() == list(range(0, 8)) and first[0, 8:16].tolist() == list(range(64, 72))
    assert first[1, 16:].tolist() == list(range(136, 144))  # blue channel, second row
    assert maps.weights_figure(weight[:, :64], names, shape=(1, 8, 8)).data[0].z.shape == (8, 8)
    weight_maps = maps.WeightMaps()
    digits = weight_maps.figure("digits", torch.zeros(3, 784), names)  # default: the 28x28 digits
    assert digits.data[0].z.shape == (28, 28)
    assert weight_maps.figure("colour", weight, names, shape=(3, 8, 8), mode=maps.CHANNELS).data[0].z.shape == (8, 24)  # rebuilt, new shape


class SweepMember:
    """The fields of a RunRecord that compare_charts.smoothed_losses reads."""

    def __init__(self, run_id, losses):
        self.run_id, self.batch_losses = run_id, list(losses)
        self.batch_steps = list(range(1, len(losses) + 1))


def test_sweep_moving_average_is_extended_as_losses_arrive_and_restarted_when_they_are_thinned():
    from ui import compare_charts

    losses = [2.3 / math.sqrt(step) + (step % 7) / 50 for step in range(1, 3001)]
    member = SweepMember("sweep-run-a", losses[:1000])
    compare_charts.smoothed_losses(member)
    member.batch_losses, member.batch_steps = losses, list(range(1, 3001))  # two more polls' worth
    steps, smoothed = compare_charts.smoothed_losses(member)
    exact = charts.ema(losses)
    assert smoothed == [exact[step - 1] for step in steps] and steps[-1] == 3000
    # the record averaged its older losses in pairs (RunRecord's 10,000 cap): averaged afresh
    member.batch_losses = [(a + b) / 2 for a, b in zip(losses[::2], losses[1::2])]
    member.batch_steps = list(range(2, 3001, 2))
    steps, smoothed = compare_charts.smoothed_losses(member)
    exact = charts.ema(member.batch_losses)
    assert smoothed == [exact[step // 2 - 1] for step in steps]
