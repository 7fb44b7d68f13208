"""The bias-corrected exponential moving average that smooths per-batch losses (as fastai's).

    avg = beta * avg + (1 - beta) * x        shown = avg / (1 - beta ** n)

A plain EMA starts at 0 and needs ~1 / (1 - beta) values to forget it, so early on it sits
far below the loss (50 batches for beta 0.98). Dividing by 1 - beta**n, the total weight
given to the n values so far, removes that start: a constant series is shown as itself
from the first value. This equals pandas' `ewm(alpha=1 - beta, adjust=True).mean()`.
"""
from __future__ import annotations

import math


class BiasCorrectedEma:
    """The average of the values added so far; non-finite values are skipped (None before any)."""

    def __init__(self, beta: float) -> None:
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be from 0 to below 1, got {beta!r}")
        self.beta = beta
        self.average = 0.0
        self.count = 0  # finite values added

    def add(self, value: float) -> float | None:
        """Add one value; return the bias-corrected average."""
        if math.isfinite(value):
            self.average = self.beta * self.average + (1 - self.beta) * value
            self.count += 1
        return self.value

    @property
    def value(self) -> float | None:
        return self.average / (1 - self.beta ** self.count) if self.count else None
