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
    """Multinomial logistic regression: `num_pixels` inputs (flattened image) -> `num_classes` logits."""

    def __init__(self, num_classes: int = NUM_CLASSES, num_pixels: int = NUM_PIXELS):
        super().__init__()
        self.linear = nn.Linear(num_pixels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.reshape(images.shape[0], -1))

    @classmethod
    def from_tensors(cls, weight: torch.Tensor, bias: torch.Tensor) -> "LogisticRegression":
        model = cls(weight.shape[0], weight.shape[1])
        with torch.no_grad():
            model.linear.weight.copy_(weight)
            model.linear.bias.copy_(bias)
        return model.eval()


def initial_parameters(num_classes: int, seed: int, count: int = 1,
                       num_pixels: int = NUM_PIXELS) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` copies of nn.Linear's default init, drawn from one seeded generator.

    Every copy is identical, so K configurations in a sweep start where K separate runs
    with the same seed would start.
    """
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(num_pixels)  # nn.Linear: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), ...)
    weight = torch.empty(num_classes, num_pixels).uniform_(-bound, bound, generator=generator)
    bias = torch.empty(num_classes).uniform_(-bound, bound, generator=generator)
    return weight.repeat(count, 1), bias.repeat(count)
