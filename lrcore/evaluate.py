"""Evaluation of a trained model: loss, accuracy, confusion matrix, per-class metrics, mistakes."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .data import Dataset, Normalizer, make_splits


@dataclass(frozen=True)
class Evaluation:
    """Everything the Evaluate page shows about one split. Index i refers to the i-th image given."""

    loss: float
    accuracy: float
    labels: torch.Tensor  # N
    predictions: torch.Tensor  # N
    probabilities: torch.Tensor  # N x C
    losses: torch.Tensor  # N, cross-entropy of each image
    confusion: torch.Tensor  # C x C, rows = true class, columns = predicted

    @property
    def num_classes(self) -> int:
        return self.confusion.shape[0]

    def per_class(self) -> list[dict[str, float]]:
        """Precision, recall (= per-class accuracy) and support for each class."""
        confusion = self.confusion.double()
        true_positive = confusion.diag()
        predicted = confusion.sum(0)
        actual = confusion.sum(1)
        rows = []
        for cls in range(self.num_classes):
            rows.append({
                "precision": (true_positive[cls] / predicted[cls]).item() if predicted[cls] else float("nan"),
                "recall": (true_positive[cls] / actual[cls]).item() if actual[cls] else float("nan"),
                "support": int(actual[cls].item()),
            })
        return rows

    def normalized_confusion(self) -> torch.Tensor:
        """Confusion matrix with each row divided by its total (fraction of the true class)."""
        totals = self.confusion.sum(1, keepdim=True).clamp_min(1)
        return self.confusion.double() / totals

    def most_confused(self, count: int = 5) -> list[tuple[int, int, int]]:
        """(true class, predicted class, images) for the largest off-diagonal cells."""
        off = self.confusion.clone()
        off.fill_diagonal_(0)
        values, flat = off.flatten().topk(min(count, off.numel()))
        return [(int(i) // self.num_classes, int(i) % self.num_classes, int(v))
                for v, i in zip(values, flat) if v > 0]

    def top_losses(self, count: int = 16) -> torch.Tensor:
        """Indices of the images with the highest loss, highest first."""
        return self.losses.topk(min(count, len(self.losses))).indices

    def cell(self, true_class: int, predicted_class: int) -> torch.Tensor:
        """Indices of images of `true_class` predicted as `predicted_class`."""
        return torch.nonzero((self.labels == true_class) & (self.predictions == predicted_class)).flatten()


def split_data(dataset: Dataset, config: TrainConfig, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and labels of a model's test or validation split, as the model saw them in
    training (deskewed when `config.deskew`; the validation split from the run's seed and fraction)."""
    images = dataset.images(split, deskew=config.deskew)
    if split == "test":
        return images, dataset.test_labels
    index = make_splits(dataset, config.validation_fraction, config.seed, config.per_class_limit).validation
    return images[index], dataset.train_labels[index]


@torch.no_grad()
def predict(model: torch.nn.Module, normalizer: Normalizer, images: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Class probabilities (N x C) for N images of 0..255 pixels (any image shape, or flattened)."""
    model.eval()
    device = next(model.parameters()).device
    outputs = [F.softmax(model(normalizer(images[start:start + chunk].to(device))), dim=1).cpu()
               for start in range(0, len(images), chunk)]
    return torch.cat(outputs) if outputs else torch.empty(0, getattr(model, "num_classes", model.linear.out_features))


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, normalizer: Normalizer, images: torch.Tensor,
                   labels: torch.Tensor, chunk: int = 8192) -> Evaluation:
    """Loss, accuracy and confusion matrix of `model` on uint8 `images` with `labels`."""
    model.eval()
    device = next(model.parameters()).device
    logits = torch.cat([model(normalizer(images[start:start + chunk].to(device))).cpu()
                        for start in range(0, len(images), chunk)])
    num_classes = logits.shape[1]
    losses = F.cross_entropy(logits, labels, reduction="none")
    predictions = logits.argmax(1)
    confusion = torch.bincount(labels * num_classes + predictions, minlength=num_classes ** 2)
    return Evaluation(loss=losses.mean().item(), accuracy=(predictions == labels).double().mean().item(),
                      labels=labels, predictions=predictions, probabilities=F.softmax(logits, dim=1),
                      losses=losses, confusion=confusion.view(num_classes, num_classes))


def contributions(model: torch.nn.Module, normalizer: Normalizer, image: torch.Tensor) -> torch.Tensor:
    """Per-pixel contribution to each class's logit: weight x input, C x the image's shape
    (a binary model: ONE map, of the score z; positive = towards the second class).

    Summing a class's map and adding its bias gives that class's logit, so the map shows
    which pixels pushed the model towards (positive) or away from (negative) the class.
    """
    inputs = normalizer(image.reshape(1, -1)).squeeze(0).cpu()
    weight = model.linear.weight.detach().cpu()
    return (weight * inputs).view(weight.shape[0], *image.shape)
