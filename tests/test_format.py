"""ui.format: one wording for numbers, durations and kept weights on every page."""
import math
from types import SimpleNamespace

from ui.format import duration, epoch_text, kept_weights, loss, percent


def test_percent_and_loss_say_dash_for_what_is_not_a_number():
    assert percent(0.94531) == "94.5%" and percent(0.94531, 2) == "94.53%"
    assert loss(0.22481) == "0.2248" and loss(239.94) == "239.9"
    for missing in (None, math.nan, math.inf, "0.5", True):
        assert percent(missing) == loss(missing) == "–"


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
