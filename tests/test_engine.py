"""The hand-written engine against PyTorch as the reference (autograd + torch.optim)."""
import pytest
import torch
import torch.nn.functional as F

from lrcore.engine import StackedSoftmaxRegression, onehot_columns
from lrcore.model import LogisticRegression, initial_parameters


def batches(count=6, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        yield torch.rand(size, 784, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def test_initial_parameters_match_nn_linear_bounds_and_repeat():
    weight, bias = initial_parameters(10, seed=1, count=3)
    assert weight.shape == (30, 784) and bias.shape == (30,)
    bound = 1 / 784 ** 0.5
    assert weight.abs().max() <= bound and bias.abs().max() <= bound
    assert torch.equal(weight[:10], weight[20:]) and torch.equal(bias[:10], bias[10:20])


def test_loss_and_gradients_match_autograd():
    weight, bias = initial_parameters(10, seed=0, count=1)
    engine = StackedSoftmaxRegression(weight, bias, 10, "sgd", [1.0], [0.0])
    inputs, labels = next(batches())
    loss = engine.step(inputs, labels)  # plain SGD with lr 1: the change is minus the gradient
    grad_weight, grad_bias = weight - engine.weight, bias - engine.bias
    model = LogisticRegression.from_tensors(weight, bias)
    reference = F.cross_entropy(model(inputs), labels)
    reference.backward()
    assert torch.allclose(loss[0], reference, atol=1e-6)
    assert torch.allclose(grad_weight, model.linear.weight.grad, atol=1e-6)
    assert torch.allclose(grad_bias, model.linear.bias.grad, atol=1e-6)


def test_input_scale_is_the_same_as_scaled_inputs():
    weight, bias = initial_parameters(10, seed=0)
    inputs, labels = next(batches())
    scaled = StackedSoftmaxRegression(weight, bias, 10, "sgd", [0.5], [0.0], input_scale=1 / 255)
    plain = StackedSoftmaxRegression(weight, bias, 10, "sgd", [0.5], [0.0])
    scaled.step(inputs * 255, labels)
    plain.step(inputs, labels)
    assert torch.allclose(scaled.weight, plain.weight, atol=1e-6)


CASES = [
    ("sgd", dict(), [0.5, 0.1, 0.01], [0.0, 0.0, 0.0]),
    ("sgd", dict(), [0.5, 0.1, 0.01], [0.0, 0.01, 0.1]),
    ("momentum", dict(momentum=0.9), [0.1, 0.05, 0.01], [0.0, 0.001, 0.1]),
    ("adamw", dict(), [0.01, 0.001, 0.1], [0.0, 0.01, 0.5]),
]


@pytest.mark.parametrize("optimizer, options, lrs, decays", CASES)
def test_k_stacked_models_match_k_torch_optim_runs(optimizer, options, lrs, decays):
    weight, bias = initial_parameters(10, seed=2, count=len(lrs))
    engine = StackedSoftmaxRegression(weight, bias, 10, optimizer, lrs, decays,
                                      momentum=options.get("momentum", 0.9))
    models, optims = [], []
    for lr, decay in zip(lrs, decays):
        model = LogisticRegression.from_tensors(weight[:10], bias[:10]).train()
        if optimizer == "adamw":
            optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=decay)
        else:
            optim = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=decay,
                                    momentum=options.get("momentum", 0.0))
        models.append(model)
        optims.append(optim)
    for inputs, labels in batches():
        losses = engine.step(inputs, labels)
        for index, (model, optim) in enumerate(zip(models, optims)):
            optim.zero_grad()
            loss = F.cross_entropy(model(inputs), labels)
            loss.backward()
            optim.step()
            assert torch.allclose(losses[index], loss, atol=1e-5)
    for index, model in enumerate(models):
        ours_weight, ours_bias = engine.parameters_of(index)
        assert torch.allclose(ours_weight, model.linear.weight, atol=1e-5), f"model {index}"
        assert torch.allclose(ours_bias, model.linear.bias, atol=1e-5), f"model {index}"


def test_frozen_model_keeps_its_weights_while_others_train():
    weight, bias = initial_parameters(10, seed=0, count=2)
    engine = StackedSoftmaxRegression(weight, bias, 10, "momentum", [0.1, 0.1], [0.0, 0.0])
    engine.freeze(0)
    kept = engine.parameters_of(0)
    for inputs, labels in batches(3):
        engine.step(inputs, labels)
    assert torch.equal(engine.parameters_of(0)[0], kept[0])
    assert not torch.equal(engine.parameters_of(1)[0], kept[0])


def test_evaluate_matches_cross_entropy():
    weight, bias = initial_parameters(10, seed=0, count=2)
    engine = StackedSoftmaxRegression(weight, bias, 10, "sgd", [0.1, 1.0], [0.0, 0.0])
    inputs, labels = next(batches(size=64))
    engine.step(inputs, labels)
    images = (inputs * 255).round().to(torch.uint8)
    prepare = lambda batch: batch.float() / 255  # noqa: E731
    losses, accuracies = engine.evaluate(images, torch.arange(64), labels, prepare, chunk=10)
    for index in range(2):
        model = LogisticRegression.from_tensors(*engine.parameters_of(index))
        logits = model(prepare(images))
        assert losses[index] == pytest.approx(F.cross_entropy(logits, labels).item(), abs=1e-5)
        assert accuracies[index] == pytest.approx((logits.argmax(1) == labels).float().mean().item())


def test_onehot_columns():
    columns = onehot_columns(torch.tensor([2, 0, 1]), 3)
    assert columns.tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]


K1_CASES = [
    ("sgd", 0.5, 0.0),
    ("sgd", 0.5, 0.01),
    ("momentum", 0.1, 0.0),
    ("momentum", 0.1, 0.001),
    ("adamw", 0.01, 0.0),
    ("adamw", 0.01, 0.05),
]


@pytest.mark.parametrize("optimizer, lr, decay", K1_CASES)
def test_single_model_step_matches_torch_optim_on_nn_linear(optimizer, lr, decay):
    """K = 1 is what `lrcore.training` runs; plain SGD takes its own fused path (no gradient materialised)."""
    torch.manual_seed(3)
    reference = torch.nn.Linear(784, 10)
    engine = StackedSoftmaxRegression(reference.weight.detach(), reference.bias.detach(), 10, optimizer,
                                      [lr], [decay], momentum=0.9, input_scale=1 / 255)
    if optimizer == "adamw":
        optim = torch.optim.AdamW(reference.parameters(), lr=lr, weight_decay=decay)
    else:
        optim = torch.optim.SGD(reference.parameters(), lr=lr, weight_decay=decay,
                                momentum=0.9 if optimizer == "momentum" else 0.0)
    for inputs, labels in batches(count=8, size=64, seed=5):
        pixels = (inputs * 255).round()  # raw 0..255 pixels, scaled inside the engine as in training
        losses = engine.step(pixels, labels)
        optim.zero_grad()
        loss = F.cross_entropy(reference(pixels / 255), labels)
        loss.backward()
        optim.step()
        assert losses.shape == (1,)
        assert losses[0].item() == pytest.approx(loss.item(), rel=1e-5, abs=1e-5)
    ours_weight, ours_bias = engine.parameters_of(0)
    assert torch.allclose(ours_weight, reference.weight, atol=1e-5)
    assert torch.allclose(ours_bias, reference.bias, atol=1e-5)
    assert engine.steps == 8
