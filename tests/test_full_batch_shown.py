"""A full-batch run or range test is shown with the batch it really took, never its unused batch_size setting."""
from __future__ import annotations

import re

from lrcore import TrainConfig
from lrcore.record import RunRecord
from ui import compare_charts
from tests.test_page_sweep import app, button, wait_for  # noqa: F401  (app: the Sweep page fixture)


def suggestion_text(at) -> str:
    return next(s.value for s in at.success if "Suggested learning rate" in s.value)


def test_a_full_batch_range_test_says_full_batch_not_the_batch_size_setting(app):  # noqa: F811
    """Issue 12: with Full batch on, every step took the whole training split; the suggestion said 'batch size 128'."""
    from ui.sweep_settings import train_size

    app.toggle(key="sweep_full_batch").set_value(True)
    app.run()
    assert not app.exception, app.exception
    button(app, "Find a learning rate").click()
    app.run()
    wait_for(app, lambda at: any("Suggested learning rate" in s.value for s in at.success))
    setting = app.session_state.sweep_batch_sizes  # the batch size setting ("128"), left as it was
    size = train_size("mnist-sample", app.slider(key="sweep_validation_fraction").value,
                      int(app.number_input(key="sweep_seed").value))
    text = suggestion_text(app)
    assert f"at full batch ({size:,} images)" in text, text
    assert not re.search(rf"batch size {setting}\b", text), text


def test_a_full_batch_sweeps_batch_sizes_are_one_batch_in_its_charts():
    """A full-batch sweep over batch sizes 64 and 128 trains the same full batches: no 'batch 64' / 'batch 128'."""
    base = TrainConfig(full_batch=True)
    members = [RunRecord(f"r{i}", "", base.replace(learning_rate=lr, batch_size=size))
               for i, (lr, size) in enumerate([(0.1, 64), (0.1, 128), (1.0, 64)])]
    assert compare_charts.labels(members) == ["lr 0.1", "lr 0.1", "lr 1"]
    assert len(compare_charts.styles(members)) == 1  # one line style: no legend of batch sizes
    minibatches = [RunRecord("a", "", TrainConfig(batch_size=64)), RunRecord("b", "", TrainConfig(batch_size=128))]
    assert compare_charts.labels(minibatches) == ["lr 0.5 · batch 64", "lr 0.5 · batch 128"]
