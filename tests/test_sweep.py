"""Sweeps: K runs trained by one job must equal K separate runs; every run of a sweep is a full run."""
from __future__ import annotations

import math
import threading
import time

import pytest
import torch

from lrcore import TrainConfig, load_dataset, train
from lrcore import events as ev
from lrcore.config import ConfigError
from lrcore.jobs import TrainingJob, batch_groups, new_id
from lrcore.record import MAX_BATCH_VALUES, RunRecord, add_batch_losses
from lrcore.status import Status
from lrcore.sweep import (MAX_CONFIGS, best, check_sweep, config_label, fraction_done, log_grid, parse_numbers,
                          ranked, sweep_configs, training_groups, wall_seconds)

METRICS = ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy")


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("mnist-sample")


def run_sweep(configs, dataset, **options):
    job = TrainingJob(configs, dataset, group_id=new_id("sweep-"), source="sweep", **options)
    job.work()  # synchronously, in this thread
    return job.records()


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
    records = run_sweep(configs, dataset)
    assert batch_groups(configs) == [list(range(6))]  # one batch size: one pass
    for member in records:
        label = config_label(member.config)
        epochs, finished = separate_run(member.config, dataset)
        assert member.status == "done" and member.group_id and member.source == "sweep"
        assert [row["epoch"] for row in member.epochs] == [e.epoch for e in epochs] == [0, 1, 2]
        for row, event in zip(member.epochs, epochs):
            for name in METRICS:
                assert row[name] == pytest.approx(getattr(event, name), abs=1e-5), (label, name, row["epoch"])
        model = member.latest_model()
        assert torch.allclose(model.linear.weight, finished.model.linear.weight, atol=5e-5), label
        assert torch.allclose(model.linear.bias, finished.model.linear.bias, atol=5e-5), label
        assert member.final["validation_accuracy"] == pytest.approx(finished.validation_accuracy, abs=1e-5)
        assert member.final["test_accuracy"] == pytest.approx(finished.test_accuracy, abs=1e-5)
        assert member.normalizer is not None and member.class_names  # a full run: a checkpoint can be made
    # the weights really differ between configurations (not one model copied K times)
    assert not torch.allclose(records[0].snapshots[-1][1], records[2].snapshots[-1][1], atol=1e-3)


def test_diverging_learning_rate_is_marked_and_the_others_finish(dataset):
    configs = sweep_configs(TrainConfig(epochs=3, per_class_limit=150), [0.1, 100.0, 0.5])
    records = run_sweep(configs, dataset)
    good, blown, other = records
    assert blown.status == "diverged" and "lr 100" in blown.message and "smaller learning rate" in blown.message
    assert good.status == other.status == "done"
    assert [row["epoch"] for row in good.epochs] == [0, 1, 2, 3]
    assert [row["epoch"] for row in blown.epochs] == [0]  # no curve past the blow-up
    # ...but its minibatch curve runs up to the blow-up, so the page can show the loss shooting up
    assert blown.batch_steps and blown.batch_steps[-1] == blown.final["kept_step"] + 1
    assert max(blown.batch_losses) > 2 * blown.batch_losses[0]
    assert good.batch_steps[-1] == good.epochs[-1]["step"]
    assert blown.final["kept_step"] < good.epochs[-1]["step"] and blown.latest_model() is not None
    assert math.isfinite(blown.final["validation_loss"])  # the kept (pre-blow-up) weights are finite
    epochs, _ = separate_run(good.config, dataset)  # a frozen member does not disturb the others
    assert good.epochs[-1]["validation_loss"] == pytest.approx(epochs[-1].validation_loss, abs=1e-5)
    assert good.final["validation_accuracy"] > 0.8 and other.final["validation_accuracy"] > 0.8
    assert ranked(records)[-1] is blown  # diverged last
    assert best(records) in (good, other)


def test_batch_sizes_make_separate_groups(dataset):
    configs = sweep_configs(TrainConfig(epochs=1), [0.1, 1.0], batch_sizes=[64, 256], weight_decays=[0.0])
    assert [(c.batch_size, c.learning_rate) for c in configs] == [(64, 0.1), (64, 1.0), (256, 0.1), (256, 1.0)]
    assert batch_groups(configs) == [[0, 1], [2, 3]]
    job = TrainingJob(configs, dataset, group_id="sweep-x")
    assert [r.status for r in job.records()] == ["starting", "starting", "waiting", "waiting"]
    assert fraction_done(job.records()) == 0.0
    records = run_sweep(configs, dataset)
    # each group made its own passes over the 6,400 training images
    assert [(r.status, r.epochs[-1]["step"]) for r in records] == [("done", 100)] * 2 + [("done", 25)] * 2
    assert "batch 64" in config_label(records[0].config)
    for member in (records[1], records[3]):  # each group saw its own batch size
        epochs, _ = separate_run(member.config, dataset)
        assert member.epochs[-1]["validation_loss"] == pytest.approx(epochs[-1].validation_loss, abs=1e-5)
    assert records[1].epochs[-1]["validation_loss"] != pytest.approx(records[3].epochs[-1]["validation_loss"], abs=1e-4)
    assert fraction_done(records) == 1.0
    assert [r.run_id for r in records] == [f"{records[0].group_id}-0{i}" for i in range(1, 5)]


def test_a_group_that_cannot_run_fails_alone(dataset):
    # 6,400 training images: batch size 7,000 is too large for its group, the other group still trains
    configs = sweep_configs(TrainConfig(epochs=1), [0.1], batch_sizes=[128, 7000])
    records = run_sweep(configs, dataset)
    assert records[0].status == "done"
    assert records[1].status == "failed" and "training set size" in records[1].message
    assert best(records) is records[0]


def test_stop_before_start_marks_everything_stopped(dataset):
    job = TrainingJob(sweep_configs(TrainConfig(epochs=1), [0.1, 1.0], batch_sizes=[64, 128]), dataset,
                      group_id="sweep-stop")
    job.stop()
    job.work()
    records = job.records()
    assert not job.active and {r.status for r in records} == {"stopped"}
    assert all("before its turn" in r.message and not r.snapshots for r in records)


def test_stop_while_training_keeps_finished_members(dataset):
    job = TrainingJob(sweep_configs(TrainConfig(epochs=50), [0.1, 1.0]), dataset, group_id="sweep-s",
                      batch_event_seconds=0.0)
    first_epoch = threading.Event()
    job.add_listener(lambda job, record, event: isinstance(event, ev.EpochEnd) and event.epoch == 1
                          and first_epoch.set())
    job.start()
    assert first_epoch.wait(60), "no epoch finished in 60 s"
    job.stop()
    job.join(30)
    records = job.records()
    assert not job.alive and not job.active
    assert all(r.status == "stopped" and 1 <= r.epochs_done < 50 for r in records)
    assert all(r.latest_model() is not None and r.final for r in records)


def test_pause_resume_and_scaled_learning_rates_reach_every_run_of_a_sweep(dataset):
    job = TrainingJob(sweep_configs(TrainConfig(epochs=200), [0.01, 0.1]), dataset, group_id="sweep-p",
                      batch_event_seconds=0.0)
    seen = {"paused": threading.Event(), "changed": threading.Event()}
    job.add_listener(lambda job, record, event: (
        isinstance(event, ev.Paused) and event.index == 1 and seen["paused"].set(),
        isinstance(event, ev.LearningRateChanged) and event.index == 1 and seen["changed"].set()))
    job.control.pause()
    job.start()
    assert seen["paused"].wait(60), "the sweep never paused"
    assert {r.status for r in job.records()} == {"paused"}
    with pytest.raises(ConfigError, match="allowed"):
        job.scale_learning_rates(5000.0)  # 0.1 x 5000 = 500: over the range, nothing changes
    job.control.resume()
    _wait_for(lambda: {r.status for r in job.records()} == {"training"})
    job.scale_learning_rates(10.0)
    assert seen["changed"].wait(60), "the learning rates never changed"
    job.stop()
    job.join(30)
    records = job.records()
    assert [r.lr_changes[-1]["new"] for r in records] == pytest.approx([0.1, 1.0])
    assert [r.learning_rate for r in records] == pytest.approx([0.1, 1.0])


def _wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


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


def test_batch_losses_are_thinned_by_averaging_neighbours():
    record = RunRecord("r", "r", TrainConfig())
    add_batch_losses(record, 1, [2.0] * 15_000 + [1.0] * 15_000)
    assert len(record.batch_losses) <= MAX_BATCH_VALUES and record.batch_stride == 4
    assert record.batch_steps == sorted(record.batch_steps) and record.batch_steps[-1] == 30_000
    assert record.batch_losses[0] == pytest.approx(2.0) and record.batch_losses[-1] == pytest.approx(1.0)
    # every value is the mean of `batch_stride` consecutive steps ending at its step
    index = record.batch_steps.index(15_000)
    assert record.batch_losses[index] == pytest.approx(2.0) and record.batch_losses[index + 1] == pytest.approx(1.0)


def test_a_sweep_takes_as_long_as_its_groups_span_whether_in_turn_or_side_by_side():
    def run(batch_size: int, start: float, seconds: float, status=Status.DONE) -> RunRecord:
        record = RunRecord(f"r{batch_size}-{start}", "", TrainConfig(batch_size=batch_size), status=status,
                           elapsed=seconds, progress={"epoch": 1})
        record.updated = 1000.0 + start + seconds
        return record

    in_turn = [run(64, 0, 10), run(64, 0, 10), run(128, 10, 5)]
    side_by_side = [run(64, 0, 10), run(128, 0.5, 5)]
    assert wall_seconds(in_turn) == pytest.approx(15) and wall_seconds(side_by_side) == pytest.approx(10)
    assert wall_seconds([RunRecord("q", "", TrainConfig(), status=Status.STOPPED)]) == 0.0  # never trained
    assert training_groups([run(64, 0, 1, Status.TRAINING), run(64, 0, 1, Status.TRAINING),
                            run(128, 0, 1, Status.PAUSED), run(256, 0, 0, Status.WAITING)]) == 2
