"""The model "from scratch", as tutorial 002 writes it: the equations, and one step's numbers.

Tutorial 002 keeps the images as columns: X is D x m (D pixels, m images), w is D x 1, the
score z = w^T X + b is 1 x m, yhat = sigmoid(z), and the hand-written gradients are
dw = X (yhat - y)^T / m and db = mean(yhat - y). Softmax regression is the same with one row
of weights per class: W is C x D, Z = W X + b is C x m, Yhat = softmax(Z), dW = (Yhat - Y) X^T / m.
`step_numbers` computes one plain gradient step's numbers with exactly these formulas (no
autograd; `tests/test_from_scratch.py` checks them against it), for the Train page's panel.
No streamlit here: the page renders `equations` with st.latex and `StepNumbers` as a table.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import Normalizer


@dataclass(frozen=True)
class StepNumbers:
    """One gradient step of the current model on one batch, as tutorial 002 writes it.

    Shapes follow the tutorial: X is D x m, w is D x 1 (binary) or W is C x D (softmax),
    yhat is 1 x m or C x m. The gradient sizes are of the plain step (no momentum, no decay).
    """

    binary: bool
    batch: int  # m
    inputs: int  # D, the pixels (channels x height x width)
    outputs: int  # 1 (binary) or C
    x_shape: tuple[int, int]
    w_shape: tuple[int, int]
    yhat_shape: tuple[int, int]
    loss: float  # mean binary cross-entropy or cross-entropy of the batch, before the step
    mean_abs_dw: float  # mean |dw| over every weight
    abs_db: float  # |db| (binary) or the mean |db| over the classes
    learning_rate: float
    dw_norm: float  # ||dw||, the size of the whole weight gradient
    w_norm: float  # ||w|| before the step (the step moves w by learning_rate x dw_norm)


def _with_shapes(equation: str, shapes: str) -> str:
    """The equation with its shapes on a line of their own (one long line is cut off on a phone)."""
    return rf"\begin{{gathered}} {equation} \\ ({shapes}) \end{{gathered}}"


def equations(binary: bool) -> list[tuple[str, str]]:
    """(what, LaTeX) for the score, sigmoid or softmax, the loss, dw, db and the update."""
    if binary:
        return [
            ("score", _with_shapes(r"z = w^\top X + b", r"X: D \times m,\ w: D \times 1,\ z: 1 \times m")),
            ("sigmoid", r"\hat{y} = \sigma(z) = \frac{1}{1 + e^{-z}}"),
            ("loss (binary cross-entropy)",
             # on two lines: one is wider than a phone
             r"\begin{aligned} L = -\frac{1}{m} \sum_{i=1}^{m} \Big[ & y_i \log \hat{y}_i \\"
             r" & + (1 - y_i) \log (1 - \hat{y}_i) \Big] \end{aligned}"),
            ("weight gradient", r"dw = \frac{\partial L}{\partial w} = \frac{1}{m} X (\hat{y} - y)^\top"),
            ("bias gradient", r"db = \frac{\partial L}{\partial b} = \frac{1}{m} \sum_{i=1}^{m} (\hat{y}_i - y_i)"),
            ("update", r"w \leftarrow w - \alpha\, dw, \qquad b \leftarrow b - \alpha\, db"),
        ]
    return [
        ("score", _with_shapes(r"Z = W X + b", r"X: D \times m,\ W: C \times D,\ Z: C \times m")),
        ("softmax", r"\hat{Y}_{ci} = \frac{e^{Z_{ci}}}{\sum_{k=1}^{C} e^{Z_{ki}}}"),
        ("loss (cross-entropy)", _with_shapes(r"L = -\frac{1}{m} \sum_{i=1}^{m} \sum_{c=1}^{C} Y_{ci} \log \hat{Y}_{ci}",
                                              r"Y: \text{one-hot labels}, C \times m")),
        ("weight gradient", r"dW = \frac{\partial L}{\partial W} = \frac{1}{m} (\hat{Y} - Y) X^\top"),
        ("bias gradient", r"db = \frac{\partial L}{\partial b} = \frac{1}{m} \sum_{i=1}^{m} (\hat{Y} - Y)_{:, i}"),
        ("update", r"W \leftarrow W - \alpha\, dW, \qquad b \leftarrow b - \alpha\, db"),
    ]


def gradients(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor,
              labels: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(loss, dW, db) by the hand-written formulas; x is D x m (tutorial 002's columns).

    weight is 1 x D (binary: dW comes back 1 x D, the tutorial's dw transposed) or C x D.
    """
    m = x.shape[1]
    z = weight @ x + bias.unsqueeze(1)  # rows x m
    if weight.shape[0] == 1:
        y = labels.to(z.dtype).unsqueeze(0)  # 1 x m, 1 for the second class
        yhat = torch.sigmoid(z)
        # -[y log s(z) + (1-y) log(1-s(z))] = softplus(z) - y z: the same number, no log(0)
        loss = (torch.nn.functional.softplus(z) - y * z).sum() / m
    else:
        y = torch.nn.functional.one_hot(labels, weight.shape[0]).to(z.dtype).t()  # C x m
        yhat = torch.softmax(z, dim=0)
        loss = -(y * torch.log_softmax(z, dim=0)).sum() / m
    delta = yhat - y
    return float(loss), delta @ x.t() / m, delta.sum(1) / m


@torch.no_grad()
def step_numbers(weight: torch.Tensor, bias: torch.Tensor, normalizer: Normalizer, images_uint8: torch.Tensor,
                 labels: torch.Tensor, learning_rate: float) -> StepNumbers:
    """One step's numbers for the model (weight 1 x D or C x D, bias) on a batch of uint8 images
    (any image shape) with their labels, computed in float64 with the hand-written formulas."""
    weight, bias = weight.detach().cpu().double(), bias.detach().cpu().double()
    x = normalizer(images_uint8.cpu()).double().t()  # D x m, as the model sees it
    labels = labels.cpu().long()
    loss, dw, db = gradients(weight, bias, x, labels)
    binary = weight.shape[0] == 1
    inputs, batch = x.shape
    outputs = weight.shape[0]
    return StepNumbers(binary=binary, batch=batch, inputs=inputs, outputs=outputs, x_shape=(inputs, batch),
                       w_shape=(inputs, 1) if binary else (outputs, inputs), yhat_shape=(outputs, batch),
                       loss=loss, mean_abs_dw=float(dw.abs().mean()), abs_db=float(db.abs().mean()),
                       learning_rate=float(learning_rate), dw_norm=float(dw.norm()), w_norm=float(weight.norm()))
