"""Binary logistic regression (tutorial 002): the engine against autograd + torch.optim, training,
checkpoints of folder models, and the from-scratch numbers."""
import math

import pytest
import torch
import torch.nn.functional as F

from lrcore import datasets, events as ev
from lrcore.checkpoint import CheckpointError, checkpoint_bytes, check_image_shape, load_checkpoint
from lrcore.config import ConfigError, TrainConfig
from lrcore.data import Dataset, Normalizer
from lrcore.engine import StackedBinaryRegression
from lrcore.evaluate import contributions, evaluate_model, predict
from lrcore.from_scratch import equations, gradients, step_numbers
from lrcore.model import LogisticRegression, initial_parameters, uses_sigmoid
from lrcore.training import train


def batches(count=6, size=32, seed=0, pixels=784):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        yield torch.rand(size, pixels, generator=generator), torch.randint(0, 2, (size,), generator=generator)


CASES = [
    ("sgd", [0.5, 0.1, 0.01], [0.0, 0.0, 0.0]),
    ("sgd", [0.5, 0.1, 0.01], [0.0, 0.01, 0.1]),
    ("momentum", [0.1, 0.05, 0.01], [0.0, 0.001, 0.1]),
    ("adamw", [0.01, 0.001, 0.1], [0.0, 0.01, 0.5]),
]


@pytest.mark.parametrize("optimizer, lrs, decays", CASES)
def test_k_binary_models_match_k_torch_optim_runs_with_bce(optimizer, lrs, decays):
    weight, bias = initial_parameters(1, seed=2, count=len(lrs))
    assert weight.shape == (len(lrs), 784)
    engine = StackedBinaryRegression(weight, bias, optimizer, lrs, decays, momentum=0.9)
    references = []
    for k, (lr, decay) in enumerate(zip(lrs, decays)):
        linear = torch.nn.Linear(784, 1)
        with torch.no_grad():
            linear.weight.copy_(weight[k:k + 1])
            linear.bias.copy_(bias[k:k + 1])
        opt = {"sgd": lambda p: torch.optim.SGD(p, lr=lr, weight_decay=decay),
               "momentum": lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=decay),
               "adamw": lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=decay)}[optimizer](linear.parameters())
        references.append((linear, opt))
    for inputs, labels in batches():
        losses = engine.step(inputs, labels)
        for k, (linear, opt) in enumerate(references):
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(linear(inputs).squeeze(1), labels.float())
            loss.backward()
            opt.step()
            assert losses[k].item() == pytest.approx(loss.item(), abs=1e-5)
    for k, (linear, _) in enumerate(references):
        w, b = engine.parameters_of(k)
        assert w.shape == (1, 784) and b.shape == (1,)
        assert torch.allclose(w, linear.weight, atol=1e-5) and torch.allclose(b, linear.bias, atol=1e-5)


def test_the_binary_model_gives_sigmoid_probabilities_and_bce_through_every_consumer():
    model = LogisticRegression.from_tensors(torch.randn(1, 12) * 0.5, torch.tensor([0.3]))
    assert model.binary and model.num_classes == 2
    images = torch.randint(0, 256, (5, 3, 2, 2), dtype=torch.uint8)
    z = (model.linear(Normalizer()(images))).squeeze(1)
    probabilities = predict(model, Normalizer(), images)
    assert torch.allclose(probabilities[:, 1], torch.sigmoid(z), atol=1e-6)
    labels = torch.tensor([0, 1, 1, 0, 1])
    evaluation = evaluate_model(model, Normalizer(), images, labels)
    assert evaluation.confusion.shape == (2, 2)
    assert evaluation.loss == pytest.approx(F.binary_cross_entropy_with_logits(z, labels.float()).item(), abs=1e-6)
    assert contributions(model, Normalizer(), images[0]).shape == (1, 3, 2, 2)


def test_model_choice_and_the_binary_refusal_on_ten_classes():
    assert uses_sigmoid(TrainConfig(), 2) and not uses_sigmoid(TrainConfig(), 10)
    assert not uses_sigmoid(TrainConfig(model="softmax"), 2) and uses_sigmoid(TrainConfig(model="binary"), 2)
    with pytest.raises(ConfigError, match="binary logistic regression needs exactly two classes; MNIST sample "
                                          "has 10: choose softmax or auto") as caught:
        list(train(TrainConfig(model="binary", epochs=1), max_batches_per_epoch=2))
    assert set(caught.value.problems) == {"model"}


@pytest.fixture
def two_digits():
    """0s and 1s of mnist-sample: an easy two-class dataset (registered for the test only)."""
    from lrcore.data import load_dataset
    full = load_dataset("mnist-sample")
    keep, test_keep = full.train_labels < 2, full.test_labels < 2
    datasets.register(datasets.DatasetInfo("zeros-ones-test", "zeros vs ones (test)", ("zero", "one"), (1, 28, 28),
                                           False, lambda folder: None))
    yield Dataset("zeros-ones-test", full.train_images[keep], full.train_labels[keep], full.test_images[test_keep],
                  full.test_labels[test_keep], ("zero", "one"), "test")
    del datasets.REGISTRY["zeros-ones-test"]


@pytest.mark.parametrize("full_batch", [False, True])
def test_two_classes_train_a_binary_model_to_high_accuracy(full_batch, two_digits):
    dataset = two_digits
    config = TrainConfig(dataset="zeros-ones-test", epochs=30 if full_batch else 3, learning_rate=0.5, full_batch=full_batch,
                         batch_size=10 ** 6 if full_batch else 32)  # full batch: batch_size is ignored
    events = list(train(config, dataset))
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.batches_per_epoch == (1 if full_batch else math.ceil(started.train_size / 32))
    epoch = next(e for e in events if isinstance(e, ev.EpochEnd))
    assert epoch.weight.shape == (1, 784) and epoch.train_loss == pytest.approx(math.log(2), abs=0.1)
    finished = next(e for e in events if isinstance(e, ev.Finished))
    assert finished.model.binary and finished.test_accuracy > 0.98


def test_a_full_batch_range_test_runs(two_digits):
    from lrcore.lr_finder import lr_range_test
    result = lr_range_test(TrainConfig(dataset="zeros-ones-test", full_batch=True), two_digits, num_batches=10)
    assert len(result.losses) >= 1


def test_folder_checkpoints_load_without_their_dataset_and_refuse_other_shapes():
    for rows, names in ((1, ("bees", "ants")), (10, tuple(f"c{i}" for i in range(10)))):
        model = LogisticRegression.from_tensors(torch.randn(rows, 3 * 64 * 64), torch.randn(rows))
        config = TrainConfig.of_unregistered_dataset({"dataset": "folder-from-elsewhere", "model": "auto"})
        data = checkpoint_bytes(model, config, names, Normalizer(), image_shape=(3, 64, 64))
        loaded = load_checkpoint(data)
        assert loaded.image_shape == (3, 64, 64) and loaded.class_names == names
        assert loaded.config.dataset == "folder-from-elsewhere" and loaded.model.binary == (rows == 1)
        assert torch.equal(loaded.model.linear.weight, model.linear.weight)
        check_image_shape(loaded, torch.zeros(4, 3, 64, 64, dtype=torch.uint8))
        with pytest.raises(CheckpointError, match="this model takes 3x64x64 images; these are 28x28"):
            check_image_shape(loaded, torch.zeros(4, 28, 28, dtype=torch.uint8))
    with pytest.raises(CheckpointError, match="image_shape: the model takes 3x32x32 images, but mnist-sample"):
        load_checkpoint(checkpoint_bytes(LogisticRegression(10, 3072), TrainConfig(), tuple("0123456789"),
                                         Normalizer(), image_shape=(3, 32, 32)))


def test_from_scratch_gradients_match_autograd():
    for rows in (1, 4):
        weight = torch.randn(rows, 20, dtype=torch.float64, requires_grad=True)
        bias = torch.randn(rows, dtype=torch.float64, requires_grad=True)
        x = torch.rand(20, 7, dtype=torch.float64)  # D x m
        labels = torch.randint(0, 2 if rows == 1 else rows, (7,))
        loss, dw, db = gradients(weight.detach(), bias.detach(), x, labels)
        scores = weight @ x + bias.unsqueeze(1)
        reference = F.binary_cross_entropy_with_logits(scores[0], labels.double()) if rows == 1 else \
            F.cross_entropy(scores.t(), labels)
        reference.backward()
        assert loss == pytest.approx(reference.item())
        assert torch.allclose(dw, weight.grad) and torch.allclose(db, bias.grad)
    numbers = step_numbers(torch.zeros(1, 12), torch.zeros(1), Normalizer(), torch.zeros(5, 3, 2, 2, dtype=torch.uint8),
                           torch.tensor([0, 1, 1, 0, 1]), 0.1)
    assert numbers.binary and numbers.x_shape == (12, 5) and numbers.w_shape == (12, 1)
    assert numbers.yhat_shape == (1, 5) and numbers.loss == pytest.approx(math.log(2))
    assert numbers.abs_db == pytest.approx(abs(0.5 - 0.6))
    assert [what for what, _ in equations(True)][1] == "sigmoid" and "softmax" in dict(equations(False))


@pytest.fixture
def colour_pairs():
    """A two-class 3x32x32 dataset (bright vs dark colour squares), registered for the test only."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 2
    images = (torch.rand(200, 3, 32, 32, generator=generator) * 100 + labels.view(-1, 1, 1, 1) * 120).to(torch.uint8)
    datasets.register(datasets.DatasetInfo("colour-pairs-test", "dark vs bright (test)", ("dark", "bright"),
                                           (3, 32, 32), False, lambda folder: None))
    yield Dataset("colour-pairs-test", images[:160], labels[:160], images[160:], labels[160:], ("dark", "bright"),
                  "test")
    del datasets.REGISTRY["colour-pairs-test"]


def test_a_binary_colour_run_saves_and_reloads_through_the_store(colour_pairs, tmp_path):
    from lrcore.store import Store
    from tests.store_helpers import record_run
    store = Store(f"sqlite:///{tmp_path / 'lrcore.db'}")
    config = TrainConfig(dataset="colour-pairs-test", epochs=3, batch_size=16, learning_rate=0.1)
    run_id = record_run(store, config, dataset=colour_pairs)
    store.flush()
    run = Store(f"sqlite:///{tmp_path / 'lrcore.db'}").load(run_id)  # as after a restart
    assert run.class_names == ("dark", "bright") and len(run.snapshots) == 4
    assert all(weight.shape == (1, 3072) for _, weight, *_ in run.snapshots)
    checkpoint = store.checkpoint(run_id)
    assert checkpoint.model.binary and checkpoint.image_shape == (3, 32, 32)
    assert checkpoint.model.linear.weight.shape == (1, 3072)


def test_old_checkpoints_without_image_shape_load_and_bad_shapes_are_refused():
    from lrcore.checkpoint import checkpoint_payload
    import io
    payload = checkpoint_payload(LogisticRegression(), TrainConfig(), tuple("0123456789"), Normalizer())
    assert payload["image_shape"] == [1, 28, 28]
    old = {key: value for key, value in payload.items() if key != "image_shape"}
    buffer = io.BytesIO()
    torch.save(old, buffer)
    assert load_checkpoint(buffer.getvalue()).image_shape == (1, 28, 28)
    for bad in ("3x32x32", [3, 32], [2, 32, 32], [3, 32, 10 ** 9], [3.0, 32, 32], [True, 28, 28]):
        buffer = io.BytesIO()
        torch.save({**payload, "image_shape": bad}, buffer)
        with pytest.raises(CheckpointError, match="^image_shape: expected"):
            load_checkpoint(buffer.getvalue())
    unknown = {**old, "config": {**old["config"], "dataset": "somebody-elses-folder"}}
    buffer = io.BytesIO()
    torch.save(unknown, buffer)
    with pytest.raises(CheckpointError, match="image_shape: the model's dataset 'somebody-elses-folder' is not on"):
        load_checkpoint(buffer.getvalue())


def test_a_sweep_of_binary_models_trains_together(two_digits):
    from lrcore.training import train_group
    configs = [TrainConfig(dataset="zeros-ones-test", epochs=1, learning_rate=lr, full_batch=True) for lr in (0.1, 1.0)]
    finished = [e for e in train_group(configs, two_digits) if isinstance(e, ev.Finished)]
    assert [e.index for e in finished] == [0, 1] and all(e.model.binary for e in finished)
    assert finished[0].model.linear.weight.shape == (1, 784)


def test_softmax_on_two_classes_stays_possible_and_full_batch_ignores_the_batch_size(two_digits):
    config = TrainConfig(dataset="zeros-ones-test", model="softmax", epochs=1, full_batch=True, batch_size=10 ** 6)
    config.check_sizes(10)  # full batch: the batch size does not have to fit
    with pytest.raises(ConfigError, match="or turn on Full batch"):
        config.replace(full_batch=False).check_sizes(10)
    finished = [e for e in train(config, two_digits) if isinstance(e, ev.Finished)][0]
    assert not finished.model.binary and finished.model.linear.weight.shape == (2, 784)


def test_a_checkpoint_of_another_machines_folder_imports_into_the_store(tmp_path):
    """Before: the import wrote a row that could never be read back ("its settings are invalid")."""
    from lrcore.store import Store
    store = Store(f"sqlite:///{tmp_path / 'lrcore.db'}")
    config = TrainConfig.of_unregistered_dataset({"dataset": "bees-vs-ants-elsewhere"})
    weight = torch.randn(1, 3072)
    data = checkpoint_bytes(LogisticRegression.from_tensors(weight, torch.zeros(1)), config, ("ants", "bees"),
                            Normalizer(), image_shape=(3, 32, 32))
    run = store.import_checkpoint(data, name="from a friend")
    assert [r.run_id for r in store.list_runs()] == [run.run_id]
    checkpoint = store.checkpoint(run.run_id)
    assert checkpoint.image_shape == (3, 32, 32) and checkpoint.class_names == ("ants", "bees")
    assert torch.equal(checkpoint.model.linear.weight, weight)
