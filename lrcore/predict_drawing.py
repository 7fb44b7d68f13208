"""From a drawing (canvas RGBA array, uploaded picture) to class probabilities.

The one path the Draw page, its tests and bench/bench_predict.py share: MNIST-style
preprocessing (`preprocess.preprocess_digit`), then deskewing when the model was trained
on deskewed images, then the model's own normaliser (the normalisation it was trained
with), then softmax. An empty drawing gives no
probabilities at all, so nothing downstream can show a confident guess for it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import Normalizer
from .evaluate import predict
from .preprocess import ImageInput, PreprocessResult, deskew as deskew_images, preprocess_digit


@dataclass(frozen=True, eq=False)
class DrawingPrediction:
    """`probabilities` (C floats summing to 1) is None exactly when nothing was drawn.

    `deskewed` is the MNIST-style digit after deskewing (None when the model does not deskew).
    """

    preprocessed: PreprocessResult
    probabilities: torch.Tensor | None
    deskewed: torch.Tensor | None = None

    @property
    def empty(self) -> bool:
        return self.probabilities is None

    @property
    def image(self) -> torch.Tensor | None:
        """The uint8 28x28 digit the model saw (deskewed for a model trained on deskewed images)."""
        return self.deskewed if self.deskewed is not None else self.preprocessed.image

    @property
    def predicted(self) -> int | None:
        return None if self.probabilities is None else int(self.probabilities.argmax())


def predict_drawing(model: torch.nn.Module, normalizer: Normalizer, image: ImageInput,
                    invert: bool | None = None, deskew: bool = False) -> DrawingPrediction:
    """Preprocess `image` like MNIST and return the model's class probabilities for it.

    `invert`: False for the canvas (white ink on black, known), None for uploads
    (dark ink on light paper is detected from the border and flipped). `deskew`: the
    model's `config.deskew`, so a drawing is deskewed exactly like its training images.
    """
    result = preprocess_digit(image, invert=invert)
    if result.empty or result.image is None:
        return DrawingPrediction(result, None)
    seen = deskew_images(result.image) if deskew else result.image
    return DrawingPrediction(result, predict(model, normalizer, seen.unsqueeze(0))[0],
                             seen if deskew else None)


def predict_canvas(model: torch.nn.Module, normalizer: Normalizer, rgba: ImageInput,
                   deskew: bool = False) -> DrawingPrediction:
    """The Draw page's canvas (H x W x 4 RGBA, white ink on black) -> probabilities.

    The canvas's polarity is known, so it is not guessed: a drawing that covers the
    border is still white-on-black. `deskew`: the model's `config.deskew`.
    """
    return predict_drawing(model, normalizer, rgba, invert=False, deskew=deskew)
