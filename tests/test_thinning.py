"""The per-batch loss chart draws a few hundred points of thousands: spikes stay, the average stays exact."""
import json
import math
import random

import numpy as np
import pytest

from lrcore.smoothing import thin_indices
from ui import charts, live_charts


def noisy_losses(count: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [2.3 / math.sqrt(step) + 0.2 * rng.random() for step in range(1, count + 1)]


def as_sent(option: dict) -> str:
    """What st.echarts_chart sends for an option: JSON, which has no NaN (a gap is null)."""
    return json.dumps(option, allow_nan=False)


def sent_traces(option: dict) -> list[tuple[list, list]]:
    """(x, y) of each series as sent."""
    return [([x for x, _y in series["data"]], [y for _x, y in series["data"]])
            for series in json.loads(as_sent(option))["series"]]


def test_short_series_are_kept_whole():
    assert thin_indices([], 600).tolist() == []
    assert thin_indices([1.0], 600).tolist() == [0]
    assert thin_indices(noisy_losses(600), 600).tolist() == list(range(600))


@pytest.mark.parametrize("count", [601, 2_500, 10_000, 100_000])
def test_a_long_series_keeps_a_few_hundred_points_with_its_ends(count):
    keep = thin_indices(noisy_losses(count), 600)
    assert 150 <= len(keep) <= 600 + 2
    assert keep[0] == 0 and keep[-1] == count - 1
    assert np.all(np.diff(keep) > 0)  # sorted, no repeats: x stays increasing


def test_one_batch_spikes_and_dips_survive():
    losses = noisy_losses(10_000)
    losses[5001], losses[7333] = 9.0, 0.001  # one bad batch, one lucky one
    keep = thin_indices(losses, 600)
    assert 5001 in keep and 7333 in keep
    # the chart as sent: its raw trace reaches the spike (taking every 5th batch, as before, missed it)
    _x, raw = sent_traces(live_charts.batch_loss_option(list(range(1, 10_001)), losses))[0]
    assert max(raw) == pytest.approx(9.0) and min(raw) == pytest.approx(0.001)


def test_non_finite_losses_stay_as_gaps():
    losses = noisy_losses(5_000)
    losses[1234] = math.nan
    losses[4321] = math.inf
    keep = thin_indices(losses, 600)
    assert 1234 in keep and 4321 in keep
    raw = dict(zip(*sent_traces(live_charts.batch_loss_option(list(range(1, 5001)), losses))[0]))
    assert raw[1235] is None and raw[4322] is None  # steps are 1-based; null is a gap in ECharts


def test_the_moving_average_is_computed_on_every_loss():
    losses = noisy_losses(10_000)
    (raw_x, _raw), (x, average) = sent_traces(live_charts.batch_loss_option(list(range(1, 10_001)), losses))
    exact = charts.ema(losses)
    assert x == raw_x  # shown at the raw trace's steps
    assert average == pytest.approx([exact[step - 1] for step in x], rel=1e-4)  # 5 significant digits on the wire


def test_a_growing_series_changes_only_its_last_bucket():
    losses = noisy_losses(9_000)
    before = thin_indices(losses[:8_000], 600)
    after = thin_indices(losses, 600)  # same bucket width (16): earlier buckets pick the same batches
    settled = before[before < 7_984].tolist()
    assert after[after < 7_984].tolist() == settled


def test_a_watching_tab_gets_a_bounded_chart_whatever_the_run_length():
    live = live_charts.LiveCharts()
    record = LongRecord(10_000)
    options = live.options(record)
    assert len(as_sent(options["batch_loss"])) < 30_000  # was 51 kB at 10,000 batches (2,000 points), growing with the run
    record.grow(50)
    grown = live.options(record)["batch_loss"]
    assert len(grown["series"][0]["data"]) <= 2 * live_charts.MAX_BATCH_POINTS
    # the moving average extended with the new losses equals one computed afresh
    assert json.loads(as_sent(grown)) == json.loads(as_sent(
        live_charts.batch_loss_option(record.batch_steps, record.batch_losses, (), None)))


def test_the_train_curve_says_it_is_a_running_average_over_the_epoch():
    rows = [{"epoch": e, "train_loss": 1.0, "validation_loss": 1.0, "train_accuracy": 0.5,
             "validation_accuracy": 0.5} for e in range(3)]
    names = [series["name"] for series in live_charts.epoch_option(rows, "accuracy")["series"]]
    assert names == [charts.TRAIN_LABEL, "validation"]
    assert charts.TRAIN_LABEL == "train (running average over the epoch)"


class LongRecord:
    """The fields of a RunRecord that LiveCharts reads, for a long run (1000 epochs planned)."""

    def __init__(self, batches: int) -> None:
        self.run_id, self.batches_per_epoch, self.status, self.final = "long", 390, "training", {}
        self.config = type("Config", (), {"epochs": 1000})()
        self.lr_changes = []
        self.batch_steps, self.batch_losses = [], []
        self.epochs = []
        self.grow(batches)

    def grow(self, batches: int) -> None:
        start = len(self.batch_steps)
        self.batch_steps += range(start + 1, start + batches + 1)
        self.batch_losses += noisy_losses(start + batches, seed=1)[start:]
        self.epochs = [{"epoch": e, "train_loss": 1 / (e + 1), "validation_loss": 1 / (e + 1), "train_accuracy": 0.5,
                        "validation_accuracy": 0.5} for e in range(len(self.batch_steps) // 390 + 1)]
