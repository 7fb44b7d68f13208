import math
import threading
import time

import pytest
import torch

import importlib
from lrcore import events as ev
from lrcore.config import ConfigError, TrainConfig
from lrcore.data import load_dataset
from lrcore.training import TrainingControl, train, train_group

train_module = importlib.import_module("lrcore.training")  # the package re-exports a function named train


@pytest.fixture(scope="module")
def sample():
    return load_dataset("mnist-sample")


def run(config, dataset, **kwargs):
    return list(train(config, dataset, **kwargs))


def of(events, kind):
    return [event for event in events if isinstance(event, kind)]


@pytest.fixture(scope="module")
def default_run(sample):
    return run(TrainConfig(), sample)


def test_first_evaluation_is_before_any_step(default_run):
    first = of(default_run, ev.EpochEnd)[0]
    assert first.epoch == 0 and first.step == 0
    assert abs(first.train_loss - math.log(10)) < 0.15  # an untrained model says "I don't know"
    assert 0.02 < first.validation_accuracy < 0.2


def test_default_settings_train_to_over_91_percent_test_accuracy(default_run):
    epochs = of(default_run, ev.EpochEnd)
    finished = of(default_run, ev.Finished)[0]
    assert [e.epoch for e in epochs] == list(range(11))
    assert finished.status == "done" and finished.epochs_completed == 10
    assert finished.test_accuracy >= 0.91
    assert epochs[-1].validation_accuracy > epochs[1].validation_accuracy > epochs[0].validation_accuracy
    assert epochs[-1].train_loss < epochs[0].train_loss / 5


def test_batch_events_cover_every_step(default_run):
    started = of(default_run, ev.RunStarted)[0]
    batches = of(default_run, ev.BatchProgress)
    assert sum(len(b.losses) for b in batches) == started.batches_per_epoch * 10
    assert batches[-1].step == started.batches_per_epoch * 10
    assert all(math.isfinite(loss) for b in batches for loss in b.losses)


def test_same_seed_same_numbers_other_seed_other_numbers(sample):
    config = TrainConfig(epochs=2)
    first = of(run(config, sample), ev.EpochEnd)
    second = of(run(config, sample), ev.EpochEnd)
    assert [e.validation_loss for e in first] == [e.validation_loss for e in second]
    assert torch.equal(first[-1].weight, second[-1].weight)
    third = of(run(config.replace(seed=1), sample), ev.EpochEnd)
    assert third[-1].validation_loss != first[-1].validation_loss


def test_huge_learning_rate_is_reported_as_diverged_with_the_lr(sample):
    events = run(TrainConfig(learning_rate=100.0, epochs=3), sample)
    diverged = of(events, ev.Diverged)
    finished = of(events, ev.Finished)[0]
    assert len(diverged) == 1 and finished.status == "diverged"
    assert "lr 100" in diverged[0].message and "try a smaller learning rate" in diverged[0].message
    assert finished.epochs_completed == 0
    assert torch.isfinite(finished.model.linear.weight).all()


def test_nan_loss_ends_the_run_and_keeps_the_last_finite_weights(sample, monkeypatch):
    original = train_module.initial_parameters

    def overflowing(num_classes, seed, count=1, **kwargs):
        weight, bias = original(num_classes, seed, count, **kwargs)
        return weight.fill_(3e38), bias  # logits overflow to inf, the loss to NaN
    monkeypatch.setattr(train_module, "initial_parameters", overflowing)
    events = run(TrainConfig(epochs=2), sample)
    diverged = of(events, ev.Diverged)[0]
    finished = of(events, ev.Finished)[0]
    assert "loss became NaN at epoch 1 with lr 0.5" in diverged.message
    assert finished.status == "diverged"
    assert torch.isfinite(finished.model.linear.weight).all()
    assert (finished.model.linear.weight == 3e38).all()  # untouched by the NaN update


def wait_for(condition, what: str, timeout: float = 30) -> None:
    """Poll `condition` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.01)


def test_pause_resume_stop_and_learning_rate_change_from_another_thread(sample):
    control = TrainingControl()
    seen = []
    config = TrainConfig(epochs=50, batch_size=32)

    def consume():
        for event in train(config, sample, control, batch_event_seconds=0.0):
            seen.append(event)
            if isinstance(event, ev.BatchProgress) and event.step == 20 and not control.paused:
                control.pause()
    thread = threading.Thread(target=consume)
    thread.start()
    wait_for(lambda: of(seen, ev.Paused), "a Paused event")
    paused_at = of(seen, ev.Paused)[0].step
    control.set_learning_rate(0.05)  # taken on the first batch after resuming, not while paused
    control.resume()
    wait_for(lambda: [e for e in of(seen, ev.BatchProgress) if e.step > paused_at], "a batch after resuming")
    control.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    # Nothing ran while paused: the loop went straight from Paused to Resumed, then took the new rate.
    paused_index = seen.index(of(seen, ev.Paused)[0])
    assert [type(e) for e in seen[paused_index:paused_index + 3]] == [ev.Paused, ev.Resumed, ev.LearningRateChanged]
    change = of(seen, ev.LearningRateChanged)[0]
    assert change.old == 0.5 and change.new == 0.05 and change.step == paused_at
    assert of(seen, ev.Resumed)[0].step == paused_at
    later = [e for e in of(seen, ev.BatchProgress) if e.step > paused_at]
    assert later and all(e.learning_rate == 0.05 for e in later)
    finished = of(seen, ev.Finished)[0]
    assert finished.status == "stopped" and finished.epochs_completed < 50


def test_invalid_learning_rate_change_is_refused():
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainingControl().set_learning_rate(-1)


def test_max_batches_per_epoch_is_a_dry_run(sample):
    events = run(TrainConfig(epochs=1), sample, max_batches_per_epoch=3)
    assert of(events, ev.RunStarted)[0].batches_per_epoch == 3
    assert of(events, ev.EpochEnd)[-1].step == 3


def test_batch_size_larger_than_training_split_is_a_config_error(sample):
    with pytest.raises(ConfigError, match="batch_size"):
        run(TrainConfig(batch_size=7000), sample)


def test_group_must_share_everything_but_lr_and_weight_decay(sample):
    with pytest.raises(ConfigError, match="batch_size"):
        list(train_group([TrainConfig(), TrainConfig(batch_size=64)], sample))


def test_group_member_diverges_alone(sample):
    configs = [TrainConfig(learning_rate=lr, epochs=2) for lr in (0.1, 100.0)]
    events = list(train_group(configs, sample))
    diverged = of(events, ev.Diverged)
    finished = of(events, ev.Finished)
    assert [d.index for d in diverged] == [1]
    assert [(f.index, f.status) for f in finished] == [(0, "done"), (1, "diverged")]
    assert finished[0].test_accuracy > 0.85
    # each kind of event comes once per model, index 0 first; a diverged model's epochs stop
    assert [e.index for e in of(events, ev.RunStarted)] == [0, 1]
    assert [(e.index, e.epoch) for e in of(events, ev.EpochEnd)] == [(0, 0), (1, 0), (0, 1), (0, 2)]
    last_loss_step = max(e.step for e in of(events, ev.BatchProgress) if e.index == 1)
    assert last_loss_step == finished[1].kept_step + 1 == diverged[0].step + 1


def test_minibatch_orders_shuffled_fixed_and_sorted_by_class(sample):
    index = torch.arange(0, 8000, 7)
    labels = sample.train_labels
    for order_name in ("shuffled", "fixed", "by_class"):
        orders = train_module.minibatch_orders(order_name, index, labels, torch.Generator().manual_seed(0))
        first, second = next(orders), next(orders)
        for order in (first, second):  # every image once per epoch
            assert torch.equal(order.sort().values, index)
        assert torch.equal(first, second) == (order_name != "shuffled")
        sorted_labels = labels[first]
        assert bool((sorted_labels[1:] >= sorted_labels[:-1]).all()) == (order_name == "by_class")


def test_sorted_by_class_batches_show_forgetting_in_the_loss(sample):
    """Unshuffled, class-sorted minibatches: each class is learned then forgotten (tutorial 002's exercise)."""
    config = TrainConfig(epochs=2, learning_rate=0.5, per_class_limit=100)
    shuffled = run(config, sample, batch_event_seconds=0.0)
    by_class = run(config.replace(batch_order="by_class"), sample, batch_event_seconds=0.0)
    assert of(shuffled, ev.RunStarted)[0].config.batch_order == "shuffled"
    final = {name: of(events, ev.Finished)[0] for name, events in (("shuffled", shuffled), ("by_class", by_class))}
    # the last batches are all 9s: the sorted model says "9" to almost everything and does far worse
    assert final["by_class"].validation_accuracy < final["shuffled"].validation_accuracy - 0.2


def by_hand_epochs(config, dataset, epochs):
    """(loss, accuracy) of each epoch as the mean over its batches before each step: nn.Linear + optim.SGD."""
    from lrcore.data import make_splits
    from lrcore.model import initial_parameters

    splits = make_splits(dataset, config.validation_fraction, config.seed, config.per_class_limit)
    images = dataset.train_images.view(len(dataset.train_labels), -1)
    weight, bias = initial_parameters(10, config.seed)
    model = torch.nn.Linear(784, 10)
    with torch.no_grad():
        model.weight.copy_(weight)
        model.bias.copy_(bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate)
    orders = train_module.minibatch_orders(config.batch_order, splits.train, dataset.train_labels,
                                           torch.Generator().manual_seed(config.seed))
    results = []
    for _ in range(epochs):
        order, loss_sum, correct = next(orders), 0.0, 0
        for start in range(0, len(order), config.batch_size):
            rows = order[start:start + config.batch_size]
            logits = model(images[rows].float() / 255)
            loss = torch.nn.functional.cross_entropy(logits, dataset.train_labels[rows])
            loss_sum += loss.item() * len(rows)
            correct += int((logits.argmax(1) == dataset.train_labels[rows]).sum())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        results.append((loss_sum / len(order), correct / len(order)))
    return results


def test_epoch_train_numbers_are_the_running_average_over_its_batches(sample):
    # No second pass over the training set after each epoch: the mean loss and accuracy of the
    # epoch's own batches, each measured before its step (Keras, fastai). 1,000 images at batch
    # 128: the last batch is short (104), so the mean is weighted by batch size.
    config = TrainConfig(epochs=2, per_class_limit=100, batch_size=128)
    epochs = of(run(config, sample), ev.EpochEnd)[1:]
    expected = by_hand_epochs(config, sample, 2)
    for event, (loss, accuracy) in zip(epochs, expected):
        assert event.train_loss == pytest.approx(loss, rel=1e-5)
        assert event.train_accuracy == pytest.approx(accuracy, abs=1.5e-3)  # one borderline image at most


@pytest.fixture
def deferred_reads(monkeypatch):
    """Train on the CPU as on a GPU: losses read at events only, divergence caught on the device."""
    monkeypatch.setattr(train_module, "DEFERRED_READ_DEVICES", ("cpu",))


def comparable(events):
    """Every event's fields, tensors as lists and times left out."""
    rows = []
    for event in events:
        if isinstance(event, ev.Finished):
            values = (event.index, event.status, event.kept_step, event.train_loss, event.validation_accuracy,
                      event.test_loss, event.model.linear.weight.tolist())
        elif isinstance(event, ev.EpochEnd):
            values = (event.index, event.epoch, event.step, event.train_loss, event.validation_loss,
                      event.weight.tolist())
        elif isinstance(event, ev.Diverged):
            values = (event.index, event.epoch, event.step, event.loss, event.message)
        else:
            continue
        rows.append((type(event).__name__, values))
    return rows


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_reading_losses_only_at_events_changes_nothing(sample, monkeypatch, optimizer):
    # A GPU reads the losses back once per event (every batch_event_seconds): a member that
    # diverges in between is frozen on the device, so it keeps the same last finite weights.
    configs = [TrainConfig(learning_rate=lr, epochs=2, optimizer=optimizer, weight_decay=0.01, per_class_limit=200)
               for lr in ((0.1, 100.0) if optimizer == "sgd" else (0.001, 100.0))]
    every_batch = list(train_group(configs, sample, batch_event_seconds=1e9))
    monkeypatch.setattr(train_module, "DEFERRED_READ_DEVICES", ("cpu",))
    deferred = list(train_group(configs, sample, batch_event_seconds=1e9))
    assert of(deferred, ev.Diverged) and of(deferred, ev.Finished)[1].kept_step > 0
    assert comparable(deferred) == comparable(every_batch)
    losses = [[loss for e in of(events, ev.BatchProgress) if e.index == 1 for loss in e.losses]
              for events in (every_batch, deferred)]
    assert losses[0] == losses[1]


def test_nan_loss_is_caught_on_the_device_before_it_reaches_the_weights(sample, monkeypatch, deferred_reads):
    original = train_module.initial_parameters

    def overflowing(num_classes, seed, count=1, **kwargs):
        weight, bias = original(num_classes, seed, count, **kwargs)
        return weight.fill_(3e38), bias
    monkeypatch.setattr(train_module, "initial_parameters", overflowing)
    events = run(TrainConfig(epochs=2), sample, batch_event_seconds=1e9)
    finished = of(events, ev.Finished)[0]
    assert "loss became NaN at epoch 1" in of(events, ev.Diverged)[0].message
    assert finished.kept_step == 0 and (finished.model.linear.weight == 3e38).all()


def test_deferred_reads_read_the_device_once_per_event_not_per_step(sample, monkeypatch, deferred_reads):
    reads = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(1) or original(self))
    events = run(TrainConfig(epochs=2, batch_size=32), sample, batch_event_seconds=1e9)
    steps = of(events, ev.Finished)[0].kept_step
    assert steps == 400 and len(reads) < 40  # 3 per epoch's read and 2 per evaluation, not 3 per step


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_losses_are_read_at_events_and_a_diverged_member_keeps_finite_weights(sample, monkeypatch):
    configs = [TrainConfig(learning_rate=lr, epochs=2, per_class_limit=200, device="cuda") for lr in (0.1, 100.0)]
    reads = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(1) or original(self))
    events = list(train_group(configs, sample, batch_event_seconds=1e9))
    finished = of(events, ev.Finished)
    assert [f.status for f in finished] == ["done", "diverged"] and finished[1].kept_step > 0
    assert torch.isfinite(finished[1].model.linear.weight).all()
    assert len(reads) < of(events, ev.RunStarted)[0].batches_per_epoch  # not one read per step
    cpu = list(train_group([c.replace(device="cpu") for c in configs], sample, batch_event_seconds=1e9))
    assert finished[1].kept_step == of(cpu, ev.Finished)[1].kept_step
    assert finished[0].validation_accuracy == pytest.approx(of(cpu, ev.Finished)[0].validation_accuracy, abs=0.01)
