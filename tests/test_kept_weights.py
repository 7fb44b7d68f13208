"""After a stop or a divergence inside an epoch, every number of the final model is for the kept weights.

The "learning rate too high" preset used to show "validation accuracy 5.4%" (epoch 0) beside
"final model: validation accuracy 32.4%, epochs completed 0": two sets of weights on one page.
"""
from __future__ import annotations

import pytest
import torch

from lrcore import events as ev
from lrcore.config import TrainConfig
from lrcore.data import load_dataset, make_splits
from lrcore.evaluate import evaluate_model
from lrcore.training import TrainingControl, train
from lrcore.record import MAX_SNAPSHOTS, RunRecord, fold


@pytest.fixture(scope="module")
def sample():
    return load_dataset("mnist-sample")


def check_final_is_the_kept_model(events, dataset, config):
    finished = [event for event in events if isinstance(event, ev.Finished)][0]
    splits = make_splits(dataset, config.validation_fraction, config.seed, config.per_class_limit)
    images = dataset.train_images.view(len(dataset.train_labels), -1)
    for index, loss, accuracy in ((splits.train, finished.train_loss, finished.train_accuracy),
                                  (splits.validation, finished.validation_loss, finished.validation_accuracy)):
        evaluation = evaluate_model(finished.model, finished.normalizer, images[index], dataset.train_labels[index])
        assert evaluation.accuracy == pytest.approx(accuracy, abs=1e-6)
        assert evaluation.loss == pytest.approx(loss, rel=1e-4)
    return finished


def test_a_diverged_run_reports_the_kept_weights_and_where_they_are_from(sample):
    config = TrainConfig(learning_rate=50.0, epochs=5, deskew=False)
    events = list(train(config, sample))
    diverged = [event for event in events if isinstance(event, ev.Diverged)][0]
    finished = check_final_is_the_kept_model(events, sample, config)
    assert finished.status == "diverged" and finished.epochs_completed == 0
    # The kept weights are those from just before the step that blew up.
    assert finished.kept_step == diverged.step > 0
    epoch, batch = finished.kept_at
    assert epoch == diverged.epoch == 1 and batch == diverged.step
    # They differ from epoch 0's (untrained) numbers: the old page mixed the two.
    first = [event for event in events if isinstance(event, ev.EpochEnd)][0]
    assert finished.validation_accuracy != pytest.approx(first.validation_accuracy, abs=1e-3)


def test_a_run_stopped_mid_epoch_reports_the_kept_weights(sample):
    control = TrainingControl()
    config = TrainConfig(epochs=3, batch_size=32, deskew=False)
    events = []
    for event in train(config, sample, control=control, batch_event_seconds=0):
        events.append(event)
        if isinstance(event, ev.BatchProgress) and event.epoch == 2 and event.batch >= 10 and not control.stop_requested:
            control.stop()
    finished = check_final_is_the_kept_model(events, sample, config)
    last_progress = [event for event in events if isinstance(event, ev.BatchProgress)][-1]
    assert finished.status == "stopped" and finished.epochs_completed == 1
    assert finished.kept_step == last_progress.step
    assert finished.kept_at == (2, last_progress.batch)


def test_a_finished_run_keeps_the_last_epochs_numbers(sample):
    config = TrainConfig(epochs=2, deskew=False)
    events = list(train(config, sample))
    last_epoch = [event for event in events if isinstance(event, ev.EpochEnd)][-1]
    finished = check_final_is_the_kept_model(events, sample, config)
    # Validation: the last epoch's evaluation, reused (the weights did not change since).
    assert (finished.validation_loss, finished.validation_accuracy) == (last_epoch.validation_loss,
                                                                         last_epoch.validation_accuracy)
    # Train: an epoch's numbers are a running average over its batches (weights changing under
    # it), so the final model's are its own exact ones (checked above), not the epoch's.
    assert finished.train_accuracy != last_epoch.train_accuracy
    assert finished.kept_at == (2, finished.batches_per_epoch)


def test_the_record_says_which_weights_were_kept(sample):
    record = RunRecord("r", "r", TrainConfig(learning_rate=50.0, epochs=5, deskew=False))
    for event in train(record.config, sample):
        fold(record, event)
    assert record.final["kept_epoch"] == 1 and record.final["kept_batch"] > 0
    assert record.final["train_accuracy"] == pytest.approx(
        check_final_is_the_kept_model(list(train(record.config, sample)), sample, record.config).train_accuracy)
    assert torch.equal(record.latest_model().linear.weight, record.snapshots[-1][1])


def test_a_long_run_keeps_a_bounded_number_of_weight_snapshots_in_memory():

    record = RunRecord("r", "r", TrainConfig(epochs=1000))
    weight, bias = torch.zeros(10, 784), torch.zeros(10)
    for epoch in range(1001):
        fold(record, ev.EpochEnd(0, epoch, 1000, epoch, 1.0, 0.5, 1.0, 0.5, 0.1, 0.0, float(epoch), weight, bias))
        assert len(record.snapshots) <= MAX_SNAPSHOTS
    epochs = [snapshot[0] for snapshot in record.snapshots]
    assert epochs[0] == 0 and epochs[-1] == 1000 and len(epochs) >= MAX_SNAPSHOTS // 2
    steps = {b - a for a, b in zip(epochs, epochs[1:-1])}
    assert len(steps) == 1  # spread evenly over the run
    assert len(record.epochs) == 1001  # every epoch's metrics stay
