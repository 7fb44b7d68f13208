"""The model: flatten + one linear layer; softmax lives in the loss and in `predict`."""
from __future__ import annotations

import math

import torch
from torch import nn

from . import datasets

# Defaults: the default dataset's (mnist-sample: 10 classes of 28x28 digits); a dataset's own
# size comes from its description (`Dataset.info.num_pixels`, `num_classes`).
NUM_CLASSES = datasets.get("mnist-sample").num_classes
NUM_PIXELS = datasets.get("mnist-sample").num_pixels


class LogisticRegression(nn.Module):
    """Logistic regression on the flattened image: `num_pixels` inputs.

    Softmax (multinomial): one weight row per class, `num_classes` logits. Binary (tutorial 002,
    `binary=True`, two classes): ONE weight row w and bias b, score z = w.x + b, P(class 1) =
    sigmoid(z). It still returns two logits, [0, z], because softmax([0, z]) = [1 - sigmoid(z),
    sigmoid(z)]: every consumer (predict, evaluate, confusion, top losses, Draw) works unchanged.
    Positive z = evidence for class 1 (the second class name).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, num_pixels: int = NUM_PIXELS, binary: bool = False):
        super().__init__()
        if binary and num_classes != 2:
            raise ValueError(f"a binary model has two classes, not {num_classes}")
        self.binary = binary
        self.num_classes = num_classes
        self.linear = nn.Linear(num_pixels, 1 if binary else num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scores = self.linear(images.reshape(images.shape[0], -1))
        if self.binary:  # [0, z]: the class-0 logit fixed at 0
            return torch.cat([torch.zeros_like(scores), scores], dim=1)
        return scores

    @classmethod
    def from_tensors(cls, weight: torch.Tensor, bias: torch.Tensor) -> "LogisticRegression":
        """A model with these parameters: a 1 x D weight makes a binary model, C x D a softmax one."""
        binary = weight.shape[0] == 1
        model = cls(2 if binary else weight.shape[0], weight.shape[1], binary=binary)
        with torch.no_grad():
            model.linear.weight.copy_(weight)
            model.linear.bias.copy_(bias)
        return model.eval()


def uses_sigmoid(config, num_classes: int) -> bool:
    """Whether `config` trains a binary (sigmoid) model on a dataset of `num_classes` classes:
    model "binary", or "auto" with exactly two classes. ("binary" on 3+ classes is refused by
    `TrainConfig.check_dataset`.)"""
    model = getattr(config, "model", "auto")
    return model == "binary" or (model == "auto" and num_classes == 2)


def weight_rows(config, num_classes: int) -> int:
    """Weight rows of the model `config` trains: 1 for binary, else one per class."""
    return 1 if uses_sigmoid(config, num_classes) else num_classes


def initial_parameters(num_classes: int, seed: int, count: int = 1,
                       num_pixels: int = NUM_PIXELS) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` copies of nn.Linear's default init, drawn from one seeded generator.

    `num_classes` is the number of weight rows: 1 for a binary model (`weight_rows`).

    Every copy is identical, so K configurations in a sweep start where K separate runs
    with the same seed would start.
    """
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(num_pixels)  # nn.Linear: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), ...)
    weight = torch.empty(num_classes, num_pixels).uniform_(-bound, bound, generator=generator)
    bias = torch.empty(num_classes).uniform_(-bound, bound, generator=generator)
    return weight.repeat(count, 1), bias.repeat(count)
