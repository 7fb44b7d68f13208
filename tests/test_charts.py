"""The plotly figures the pages share, the moving average, weight maps (the Train page's live charts: test_live_charts.py)."""
import math

import plotly.graph_objects as go
import pytest
import torch

from ui import charts, maps


def test_sent_figure_reuses_its_dict_until_told_it_changed():
    figure = charts.SentFigure(dict(data=[dict(type="scatter", x=[0, 1], y=[1, 2])]))
    first = figure.to_dict()
    assert figure.to_dict() is first  # st.plotly_chart's to_dict() on each rerun costs nothing
    figure.data[0].y = [5, 6]
    figure.changed()
    assert list(figure.to_dict()["data"][0]["y"]) == [5, 6]
    assert go.Figure(figure.to_dict()).data[0].type == "scatter"  # still a valid plotly figure


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
