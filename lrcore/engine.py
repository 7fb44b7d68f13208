"""Hand-written gradients and optimizer steps for K logistic regressions at once.

Softmax regression has a closed-form gradient, dL/dlogits = (softmax - onehot) / B, so a
step is two matrix products and a few elementwise ops instead of an autograd graph and a
`torch.optim` call. The K models share each minibatch: their weights are stacked into one
(K*C) x 784 matrix, so one matrix product serves all of them. K = 1 is an ordinary run;
K > 1 is a learning-rate / weight-decay sweep. `tests/test_engine.py` checks every update
against `torch.optim` on `nn.Linear` as the reference.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def onehot_columns(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Labels as a C x N float one-hot matrix; gather a batch's columns with index_select(1, rows)."""
    return F.one_hot(labels, num_classes).to(torch.float32).t().contiguous()


class StackedSoftmaxRegression:
    """K models (weights K*C x D, biases K*C) updated by SGD, SGD + momentum or AdamW."""

    ROWS = 0  # weight rows per model; 0 = one per class

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, num_classes: int, optimizer: str,
                 learning_rates: Sequence[float], weight_decays: Sequence[float], momentum: float = 0.9,
                 device: str | torch.device = "cpu", input_scale: float = 1.0):
        self.device = torch.device(device)
        self.num_classes = num_classes
        self.rows = self.ROWS or num_classes  # weight rows per model: 1 for binary
        self.count = len(learning_rates)
        self.optimizer = optimizer
        self.momentum = momentum
        # Inputs are multiplied by this inside the matrix products: raw 0..255 pixels train
        # with input_scale=1/255 without a separate scaling op on every batch.
        self.input_scale = input_scale
        self.weight = weight.to(self.device, torch.float32).contiguous().clone()
        self.bias = bias.to(self.device, torch.float32).contiguous().clone()
        self._learning_rates = list(map(float, learning_rates))
        self._weight_decays = list(map(float, weight_decays))
        self.alive = [True] * self.count
        # The same on the device, so a model can be frozen there (`guard`) without the host
        # reading its loss first: on a GPU that read is a sync per step.
        self.alive_mask = torch.ones(self.count, dtype=torch.bool, device=self.device)
        self.guarded = False  # True once `guard` is used: every update is then masked on the device
        self._rebuild_rates()
        self.steps = 0
        if optimizer == "momentum":
            self._buffers = (torch.zeros_like(self.weight), torch.zeros_like(self.bias))
        elif optimizer == "adamw":
            self._first = (torch.zeros_like(self.weight), torch.zeros_like(self.bias))
            self._second = (torch.zeros_like(self.weight), torch.zeros_like(self.bias))

    # One learning rate / weight decay per row of the stacked weight, so each model keeps its own.
    def _rebuild_rates(self) -> None:
        lrs = [lr if alive else 0.0 for lr, alive in zip(self._learning_rates, self.alive)]
        rows = torch.tensor(lrs, device=self.device).repeat_interleave(self.rows)
        decays = torch.tensor(self._weight_decays, device=self.device).repeat_interleave(self.rows)
        self._lr_rows = rows.unsqueeze(1)
        self._lr_bias = rows
        self._decay_rows = decays.unsqueeze(1)
        self._decay_bias = decays
        self._any_decay = any(self._weight_decays)

    @property
    def learning_rates(self) -> list[float]:
        return list(self._learning_rates)

    def set_learning_rate(self, index: int, learning_rate: float) -> None:
        self._learning_rates[index] = float(learning_rate)
        self._rebuild_rates()

    def freeze(self, index: int) -> None:
        """Stop updating model `index` (it diverged); its current weights are kept."""
        self.alive[index] = False
        self.alive_mask[index] = False
        self._rebuild_rates()

    def guard(self, ok: torch.Tensor) -> None:
        """Freeze, on the device, every model whose `ok` (K bools) is False; a frozen one stays frozen.

        The next `update` leaves its weights as they are, so a loss the host has not read yet
        cannot let NaN into the kept weights. The host learns of it later and calls `freeze`.
        """
        self.alive_mask.logical_and_(ok)
        self.guarded = True

    @property
    def _masking(self) -> bool:
        return self.guarded or not all(self.alive)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """K x C x B logits for B flattened, normalised inputs.

        Computed as W @ inputs.T: on CPU this skinny product is about twice as fast as
        inputs @ W.T, and it leaves the gradient product (delta @ inputs) untransposed.
        """
        return torch.addmm(self.bias.unsqueeze(1), self.weight, inputs.t(),
                           alpha=self.input_scale).view(self.count, self.rows, -1)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The labels as `forward`'s targets, rows x N: one-hot (C x N) here."""
        return onehot_columns(labels, self.num_classes)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy per model (K) and delta = softmax - onehot, (K*C) x B.

        `targets` is the one-hot labels as a C x B float matrix (see `onehot_columns`). The
        mean loss is sum / B; the gradient of the mean loss is delta @ inputs / B. Six ops:
        on CPU each tiny op costs microseconds, which add up over hundreds of steps.
        """
        loss_sum, _, delta = self.forward_counted(inputs, targets, None)
        return loss_sum, delta

    def forward_counted(self, inputs: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor | None
                        ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """`forward`, plus each model's correct predictions on the batch (K; None without `labels`).

        The count comes from the scores already computed (three more ops), so an epoch's
        training accuracy needs no second pass over the training set.
        """
        batch = len(inputs)
        log_probs = F.log_softmax(self.logits(inputs), dim=1)
        loss_sum = log_probs.view(self.count, -1).mv(targets.reshape(-1)).neg_()
        # max().indices as in `_loss_and_correct`; before exp_ below changes log_probs in place
        correct = None if labels is None else (log_probs.max(1).indices == labels).sum(1)
        delta = log_probs.exp_().sub_(targets).view(self.count * self.rows, batch)
        return loss_sum, correct, delta

    def update(self, inputs: torch.Tensor, delta: torch.Tensor) -> None:
        """One optimizer step from `forward`'s delta, the same arithmetic as torch.optim."""
        batch = len(inputs)
        if self._masking:  # a diverged model's NaN delta must not touch its kept weights
            delta = torch.where(self.alive_mask.view(self.count, 1, 1), delta.view(self.count, self.rows, batch),
                                0.0).view(self.count * self.rows, batch)
        if self.optimizer != "sgd":
            self.apply(delta.mm(inputs).mul_(self.input_scale / batch), delta.sum(1).div_(batch))
            return
        # Plain SGD fused: W <- W(1 - lr*wd) - lr/B * delta @ inputs, the gradient never
        # materialised. (SGD's L2 term folded into a scale: equal up to float rounding.)
        self.steps += 1
        if self._any_decay:
            shrink = 1 - self._lr_rows * self._decay_rows
            if self.guarded:  # a model frozen on the device keeps its weights: no decay either
                shrink = torch.where(self._alive_device_rows().unsqueeze(1), shrink, 1.0)
            self.weight.mul_(shrink)
            self.bias.mul_(shrink.view(-1))
        if self.count == 1:
            scaled, alpha = delta, -self._learning_rates[0] * self.alive[0] / batch
        else:
            scaled, alpha = delta * (self._lr_rows / batch), -1.0
        self.weight.addmm_(scaled, inputs, alpha=alpha * self.input_scale)
        self.bias.add_(scaled.sum(1), alpha=alpha)

    def apply(self, grad_weight: torch.Tensor, grad_bias: torch.Tensor) -> None:
        """One optimizer step from explicit gradients, the same arithmetic as torch.optim.SGD / AdamW."""
        self.steps += 1
        lr_rows, lr_bias = self._lr_rows, self._lr_bias
        if self._masking:
            alive_rows = self._alive_device_rows()
            grad_weight = torch.where(alive_rows.unsqueeze(1), grad_weight, 0.0)
            grad_bias = torch.where(alive_rows, grad_bias, 0.0)
            # momentum and Adam's moments would still move a frozen model: its learning rate is 0
            lr_bias = torch.where(alive_rows, lr_bias, 0.0)
            lr_rows = lr_bias.unsqueeze(1)
        params = ((self.weight, grad_weight, lr_rows, self._decay_rows),
                  (self.bias, grad_bias, lr_bias, self._decay_bias))
        if self.optimizer == "adamw":
            beta1, beta2 = ADAM_BETAS
            correction1 = 1 - beta1 ** self.steps
            correction2_sqrt = math.sqrt(1 - beta2 ** self.steps)
            for (param, grad, lr, decay), first, second in zip(params, self._first, self._second):
                if self._any_decay:
                    param.mul_(1 - lr * decay)
                first.lerp_(grad, 1 - beta1)
                second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (second.sqrt() / correction2_sqrt).add_(ADAM_EPS)
                param.sub_(first / denom * (lr / correction1))
            return
        for index, (param, grad, lr, decay) in enumerate(params):
            if self._any_decay:
                grad = grad.addcmul(param, decay)  # SGD's weight decay is L2 added to the gradient
            if self.optimizer == "momentum":
                buffer = self._buffers[index]
                buffer.mul_(self.momentum).add_(grad)
                grad = buffer
            param.addcmul_(grad, lr, value=-1.0)

    def _alive_device_rows(self) -> torch.Tensor:
        return self.alive_mask.repeat_interleave(self.rows)

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Gradient step on one minibatch; returns the mean loss per model before the step."""
        loss_sum, delta = self.forward(inputs, self.targets(labels))
        self.update(inputs, delta)
        return loss_sum / len(inputs)

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor, indices: torch.Tensor, labels: torch.Tensor,
                 prepare, chunk: int = 8192) -> tuple[list[float], list[float]]:
        """Mean loss and accuracy of each model on images[indices] (uint8 N x 784; labels alike)."""
        loss_sum = torch.zeros(self.count, dtype=torch.float64, device=self.device)
        correct = torch.zeros(self.count, dtype=torch.int64, device=self.device)
        for start in range(0, len(indices), chunk):
            rows = indices[start:start + chunk]
            inputs = prepare(images.index_select(0, rows))  # as in training, so input_scale applies
            chunk_loss, chunk_correct = self._loss_and_correct(inputs, labels.index_select(0, rows))
            loss_sum += chunk_loss
            correct += chunk_correct
        total = max(len(indices), 1)
        return (loss_sum / total).tolist(), (correct.double() / total).tolist()

    def _loss_and_correct(self, inputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy (float64) and correct predictions of each model on one chunk."""
        log_probs = F.log_softmax(self.logits(inputs), dim=1)  # K x C x n
        picked = log_probs.gather(1, target.view(1, 1, -1).expand(self.count, 1, -1)).squeeze(1)
        # max().indices, not argmax: same result, ~5x faster on K x C x n here (argmax reduces slowly on dim 1)
        return -picked.double().sum(1), (log_probs.max(1).indices == target.unsqueeze(0)).sum(1)

    def parameters_of(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """CPU copies of model `index`'s weight (C x D) and bias (C)."""
        rows = slice(index * self.rows, (index + 1) * self.rows)
        return self.weight[rows].detach().cpu().clone(), self.bias[rows].detach().cpu().clone()


class StackedBinaryRegression(StackedSoftmaxRegression):
    """K binary logistic regressions (tutorial 002): ONE weight row each (weights K x D, biases K).

    z = w.x + b, yhat = sigmoid(z), loss = binary cross-entropy = softplus(z) - y z (the same
    number as -[y log yhat + (1-y) log(1-yhat)], without log(0)), delta = yhat - y, and the
    gradient dw = delta X / m, db = mean(delta): the softmax engine's update paths unchanged.
    """

    ROWS = 1

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, optimizer: str, learning_rates: Sequence[float],
                 weight_decays: Sequence[float], momentum: float = 0.9, device: str | torch.device = "cpu",
                 input_scale: float = 1.0):
        super().__init__(weight, bias, 2, optimizer, learning_rates, weight_decays, momentum, device, input_scale)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """y = 1 for the second class: the one-hot matrix's second row, 1 x N."""
        return onehot_columns(labels, 2)[1:].contiguous()

    def forward_counted(self, inputs: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor | None
                        ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Summed binary cross-entropy per model (K), correct predictions (K; None without `labels`)
        and delta = sigmoid(z) - y, K x B."""
        scores = self.logits(inputs).view(self.count, -1)  # K x B
        loss_sum = (F.softplus(scores) - scores * targets).sum(1)
        correct = None if labels is None else ((scores > 0) == (labels == 1)).sum(1)
        return loss_sum, correct, torch.sigmoid(scores).sub_(targets)

    def _loss_and_correct(self, inputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed binary cross-entropy (float64) and correct predictions (class 1 when z > 0) on one chunk."""
        scores = self.logits(inputs).view(self.count, -1)
        loss = (F.softplus(scores) - scores * target.to(scores.dtype)).double().sum(1)
        return loss, ((scores > 0) == (target == 1).unsqueeze(0)).sum(1)


def make_engine(weight: torch.Tensor, bias: torch.Tensor, num_classes: int, binary: bool, optimizer: str,
                learning_rates: Sequence[float], weight_decays: Sequence[float], momentum: float = 0.9,
                device: str | torch.device = "cpu", input_scale: float = 1.0) -> StackedSoftmaxRegression:
    """The binary engine (weights K x D) or the softmax one (K*C x D)."""
    if binary:
        return StackedBinaryRegression(weight, bias, optimizer, learning_rates, weight_decays, momentum, device,
                                       input_scale)
    return StackedSoftmaxRegression(weight, bias, num_classes, optimizer, learning_rates, weight_decays, momentum,
                                    device, input_scale)
