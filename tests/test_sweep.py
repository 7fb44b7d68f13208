"""Sweeps: the batched training of K configurations must equal K separate runs."""
from __future__ import annotations

import math

import pytest
import torch

from lrcore import TrainConfig, load_dataset, train
from lrcore import events as ev
from lrcore.config import ConfigError
from lrcore.sweep import (MAX_CONFIGS, PLOT_POINTS, MemberRecord, SweepWorker, check_sweep, group_by_batch_size,
                          log_grid, parse_numbers, sweep_configs)

METRICS = ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy")


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("mnist-sample")


def run_sweep(configs, dataset, **options):
    worker = SweepWorker(configs, dataset, **options)
    worker.run()  # synchronously, in this thread
    return worker.snapshot()


def separate_run(config, dataset, **options):
    epochs, finished = [], None
    for event in train(config, dataset, **options):
        if isinstance(event, ev.EpochEnd):
            epochs.append(event)
        elif isinstance(event, ev.Finished):
            finished = event
    return epochs, finished


# Learning rates where training is stable: at the edge of stability (SGD lr >= 3 here) the
# float rounding of a K-row vs a 1-row matrix product (~1e-7 after one step) is amplified
# chaotically, so only there a sweep and a separate run drift apart.
@pytest.mark.parametrize("optimizer, learning_rates", [
    ("sgd", [0.01, 0.1, 1.0]),
    ("momentum", [0.003, 0.03, 0.3]),
    ("adamw", [0.001, 0.01, 0.1]),
])
def test_sweep_matches_separate_runs(dataset, optimizer, learning_rates):
    # 150 images per class (1,500 training images, 12 batches per epoch) keeps this quick
    base = TrainConfig(optimizer=optimizer, epochs=2, per_class_limit=150)
    configs = sweep_configs(base, learning_rates, weight_decays=[0.0, 0.01])
    assert len(configs) == 6
    record = run_sweep(configs, dataset)
    assert record.status == "done" and len(record.groups) == 1  # one batch size: one pass
    for member in record.members:
        epochs, finished = separate_run(member.config, dataset)
        assert member.status == "done"
        assert [row["epoch"] for row in member.epochs] == [e.epoch for e in epochs] == [0, 1, 2]
        for row, event in zip(member.epochs, epochs):
            for name in METRICS:
                assert row[name] == pytest.approx(getattr(event, name), abs=1e-5), (member.label, name, row["epoch"])
        assert torch.allclose(member.weight, finished.model.linear.weight, atol=5e-5), member.label
        assert torch.allclose(member.bias, finished.model.linear.bias, atol=5e-5), member.label
        assert member.final["validation_accuracy"] == pytest.approx(finished.validation_accuracy, abs=1e-5)
        assert member.final["test_accuracy"] == pytest.approx(finished.test_accuracy, abs=1e-5)
    # the weights really differ between configurations (not one model copied K times)
    assert not torch.allclose(record.members[0].weight, record.members[2].weight, atol=1e-3)


def test_diverging_learning_rate_is_marked_and_the_others_finish(dataset):
    configs = sweep_configs(TrainConfig(epochs=3, per_class_limit=150), [0.1, 100.0, 0.5])
    record = run_sweep(configs, dataset)
    good, blown, other = record.members
    assert record.status == "done"
    assert blown.status == "diverged" and "lr 100" in blown.message and "smaller learning rate" in blown.message
    assert good.status == other.status == "done"
    assert [row["epoch"] for row in good.epochs] == [0, 1, 2, 3]
    assert [row["epoch"] for row in blown.epochs] == [0]  # no curve past the blow-up
    # ...but its minibatch curve runs up to the blow-up, so the page can show the loss shooting up
    assert blown.batch_steps and blown.batch_steps[-1] <= blown.last_step
    assert max(blown.batch_smoothed) > 2 * blown.batch_smoothed[0]
    assert good.batch_steps[-1] == good.epochs[-1]["step"]
    assert math.isfinite(blown.final["validation_loss"])  # the kept (pre-blow-up) weights are finite
    epochs, _ = separate_run(good.config, dataset)  # a frozen member does not disturb the others
    assert good.epochs[-1]["validation_loss"] == pytest.approx(epochs[-1].validation_loss, abs=1e-5)
    assert good.final["validation_accuracy"] > 0.8 and other.final["validation_accuracy"] > 0.8
    ranked = record.ranked()
    assert ranked[-1] is not None and ranked[-1].index == 1  # diverged last
    assert record.best().index in (0, 2)


def test_batch_sizes_make_separate_groups(dataset):
    configs = sweep_configs(TrainConfig(epochs=1), [0.1, 1.0], batch_sizes=[64, 256], weight_decays=[0.0])
    assert [(c.batch_size, c.learning_rate) for c in configs] == [(64, 0.1), (64, 1.0), (256, 0.1), (256, 1.0)]
    assert group_by_batch_size(configs) == [[0, 1], [2, 3]]
    record = run_sweep(configs, dataset, max_batches_per_epoch=5)
    assert record.groups == [[0, 1], [2, 3]]
    assert [m.group for m in record.members] == [0, 0, 1, 1]
    assert all(m.status == "done" and m.epochs[-1]["step"] == 5 for m in record.members)
    assert "batch 64" in record.members[0].label and "wd" not in record.members[0].label
    for member in (record.members[1], record.members[3]):  # each group saw its own batch size
        epochs, _ = separate_run(member.config, dataset, max_batches_per_epoch=5)
        assert member.epochs[-1]["validation_loss"] == pytest.approx(epochs[-1].validation_loss, abs=1e-5)
    assert record.members[1].epochs[-1]["validation_loss"] != pytest.approx(
        record.members[3].epochs[-1]["validation_loss"], abs=1e-4)
    assert record.fraction_done() == 1.0


def test_a_group_that_cannot_run_fails_alone(dataset):
    # 6,400 training images: batch size 7,000 is too large for its group, the other group still trains
    configs = sweep_configs(TrainConfig(epochs=1), [0.1], batch_sizes=[128, 7000])
    record = run_sweep(configs, dataset, max_batches_per_epoch=2)
    assert record.status == "done"
    assert record.members[0].status == "done"
    assert record.members[1].status == "failed" and "training set size" in record.members[1].message
    assert record.best().index == 0


def test_stop_before_start_marks_everything_stopped(dataset):
    worker = SweepWorker(sweep_configs(TrainConfig(epochs=1), [0.1, 1.0], batch_sizes=[64, 128]), dataset)
    worker.stop()
    worker.run()
    record = worker.snapshot()
    assert record.status == "stopped" and not record.active
    assert {m.status for m in record.members} == {"stopped"}


def test_stop_while_training_keeps_finished_members(dataset):
    worker = SweepWorker(sweep_configs(TrainConfig(epochs=50), [0.1, 1.0]), dataset, batch_event_seconds=0.0)
    worker.start()
    for _ in range(400):  # wait for the first epoch, then stop
        if any(len(m.epochs) > 1 for m in worker.snapshot().members):
            break
        worker.join(0.05)
    worker.stop()
    worker.join(30)
    record = worker.snapshot()
    assert not worker.alive and record.status == "stopped"
    assert all(m.status == "stopped" and 1 <= m.epochs_done < 50 for m in record.members)
    assert all(m.weight is not None and m.final for m in record.members)


def test_limits_give_clear_messages():
    with pytest.raises(ConfigError, match="at most 64"):
        sweep_configs(TrainConfig(), log_grid(1e-3, 1.0, 33), batch_sizes=[64, 128])
    assert len(sweep_configs(TrainConfig(), log_grid(1e-3, 1.0, 32), batch_sizes=[64, 128])) == MAX_CONFIGS
    with pytest.raises(ConfigError, match="at most 64"):
        check_sweep([TrainConfig()] * 65)
    with pytest.raises(ConfigError, match="at least one"):
        sweep_configs(TrainConfig(), [])
    with pytest.raises(ConfigError) as error:
        sweep_configs(TrainConfig(), [0.1, 500.0])
    assert "learning_rate" in error.value.problems and "100" in error.value.problems["learning_rate"]
    with pytest.raises(ConfigError) as error:
        sweep_configs(TrainConfig(), [0.1], batch_sizes=[0])
    assert "batch_size" in error.value.problems
    with pytest.raises(ConfigError, match="optimizer"):
        check_sweep([TrainConfig(), TrainConfig(optimizer="adamw")])
    with pytest.raises(ConfigError) as error:
        log_grid(1e-3, 1.0, 65)
    assert "count" in error.value.problems and "64" in error.value.problems["count"]
    with pytest.raises(ConfigError) as error:
        log_grid(1.0, 0.1, 4)
    assert "larger" in error.value.problems["high"]
    with pytest.raises(ConfigError) as error:
        log_grid(0.0, 1.0, 4)
    assert "low" in error.value.problems


def test_log_grid_is_even_on_a_log_scale():
    grid = log_grid(1e-3, 100.0, 11)
    assert grid == [0.001, 0.00316, 0.01, 0.0316, 0.1, 0.316, 1.0, 3.16, 10.0, 31.6, 100.0]
    grid = log_grid(1e-4, 3.0, 64)
    steps = [math.log10(b) - math.log10(a) for a, b in zip(grid, grid[1:])]
    assert len(grid) == 64 and grid[0] == 1e-4 and grid[-1] == 3.0
    assert max(steps) - min(steps) < 0.01  # 3-digit rounding only
    assert grid == sorted(set(grid))


def test_parse_numbers():
    assert parse_numbers("64, 128 256;512", int, "batch_sizes", "") == [64, 128, 256, 512]
    assert parse_numbers(" ", float, "weight_decays", "") == []
    with pytest.raises(ConfigError, match="“12.5” is not a whole number"):
        parse_numbers("64, 12.5", int, "batch_sizes", "e.g. 64")
    with pytest.raises(ConfigError, match="not a finite number"):
        parse_numbers("nan", float, "weight_decays", "")


def test_batch_curve_is_thinned_but_keeps_the_moving_average():
    member = MemberRecord(0, TrainConfig(), "lr 0.5", 0)
    for step in range(1, 5001):
        member.add_batch_loss(step, 2.0 if step <= 2500 else 1.0)
    assert len(member.batch_steps) <= PLOT_POINTS
    assert member.batch_steps == sorted(member.batch_steps) and member.batch_steps[-1] > 4000
    assert member.batch_smoothed[0] == pytest.approx(2.0)  # bias-corrected from the first point
    assert member.batch_smoothed[-1] == pytest.approx(1.0, abs=1e-3)
    member.add_batch_loss(5001, math.nan)  # a non-finite loss is skipped, not plotted
    assert all(math.isfinite(v) for v in member.batch_smoothed)
