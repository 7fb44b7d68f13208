"""ui.format: one wording for numbers, durations and kept weights on every page."""
import math
from types import SimpleNamespace

import pytest

from lrcore import TrainConfig
from ui.format import LOSS_CHARS, batch_size, batch_text, duration, epoch_text, kept_weights, loss, percent


def test_percent_and_loss_say_dash_for_what_is_not_a_number():
    assert percent(0.94531) == "94.5%" and percent(0.94531, 2) == "94.53%"
    assert loss(0.22481) == "0.2248" and loss(239.94) == "239.9"
    for missing in (None, math.nan, math.inf, "0.5", True):
        assert percent(missing) == loss(missing) == "–"


def test_tiny_and_huge_losses_stay_short_enough_for_a_metric():
    """A tiny dataset's loss was '9.158e-05', cut to '9.158…' by st.metric at 1024 px (8+ characters)."""
    assert loss(9.158e-05) == "9.16e-5" and loss(0.0009158) == "9.16e-4" and loss(0.001234) == "1.23e-3"
    assert loss(0.01234) == "0.01234" and loss(1e-4) == "0.0001" and loss(0.0) == "0" and loss(1.0) == "1"
    assert loss(1234.4) == "1234" and loss(12345.6) == "1.23e4" and loss(2e-7) == "2e-7"
    for value in (9.158e-05, 3.3e-9, 0.00123456, 0.0567891, 0.98765, 9.99949, 99.9951, 5432.1, 987654.0, 1e30):
        text = loss(value)
        assert len(text) <= LOSS_CHARS and float(text) == pytest.approx(value, rel=5e-3), (value, text)


def test_a_full_batch_runs_batch_size_is_its_training_split_not_the_setting():
    assert batch_size(TrainConfig(batch_size=128)) == "128" and batch_text(TrainConfig(batch_size=64)) == "batch size 64"
    full = TrainConfig(batch_size=128, full_batch=True)
    assert batch_size(full, 6400) == "full (6,400)" and batch_text(full, 6400) == "full batch (6,400 images)"
    assert batch_size(full) == "full" and batch_text(full) == "full batch"  # an uploaded checkpoint: size unknown


def test_durations_from_a_fraction_of_a_second_to_hours():
    assert [duration(s) for s in (0, 0.24, 9.94, 9.96, 59.4, 59.6, 65, 3599, 3600 + 7 * 60 + 20)] == \
        ["0.0 s", "0.2 s", "9.9 s", "10 s", "59 s", "1 min 00 s", "1 min 05 s", "59 min 59 s", "1 h 07 min"]
    assert duration(None) == duration(-1) == duration(math.nan) == "–"


def record(status: str, kept_epoch: int, kept_batch: int, batches: int = 63):
    return SimpleNamespace(status=status, batches_per_epoch=batches,
                           final={"kept_epoch": kept_epoch, "kept_batch": kept_batch})


def test_kept_weights_name_the_epoch_and_batch_only_for_a_run_ended_inside_an_epoch():
    assert kept_weights(record("stopped", 3, 40)) == "epoch 3, batch 40 of 63"
    assert kept_weights(record("diverged", 3, 63)) == "epoch 3"  # the end of the epoch
    assert kept_weights(record("diverged", 0, 0)) == epoch_text(0) == "epoch 0 (untrained)"
    assert kept_weights(record("done", 3, 40)) is None
    assert kept_weights(SimpleNamespace(status="stopped", batches_per_epoch=63, final={})) is None
