"""The bias-corrected exponential moving average that smooths per-batch losses (as fastai's).

    avg = beta * avg + (1 - beta) * x        shown = avg / (1 - beta ** n)

A plain EMA starts at 0 and needs ~1 / (1 - beta) values to forget it, so early on it sits
far below the loss (50 batches for beta 0.98). Dividing by 1 - beta**n, the total weight
given to the n values so far, removes that start: a constant series is shown as itself
from the first value. This equals pandas' `ewm(alpha=1 - beta, adjust=True).mean()`.

`thin_indices` picks the few hundred values of a long per-batch series that a chart draws.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


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


def thin_indices(values: Sequence[float], points: int) -> np.ndarray:
    """Sorted indices of at most about `points` of `values` that still show every spike.

    The series is cut into buckets and each bucket keeps its lowest and its highest value (and
    its first non-finite one, so a blow-up still shows as a gap), as well as the first and last
    value: a one-batch spike survives, which taking every n-th value would mostly drop. Bucket
    widths are powers of two aligned on the start, so while a series grows only its last
    bucket changes between polls and the drawn shape stays still. All indices when few enough.
    """
    count = len(values)
    if count <= max(points, 2):
        return np.arange(count)
    buckets = max(points // 2, 1)
    width = 1 << math.ceil(math.log2(count / buckets))
    rows = -(-count // width)
    padded = np.full(rows * width, np.nan)
    padded[:count] = np.asarray(values, dtype=np.float64)
    padded = padded.reshape(rows, width)
    finite = np.isfinite(padded)
    starts = np.arange(rows) * width
    low = np.where(finite, padded, np.inf).argmin(axis=1)  # a row with no finite value: its first index
    high = np.where(finite, padded, -np.inf).argmax(axis=1)
    real = (starts[:, None] + np.arange(width)) < count
    bad = ~finite & real
    has_bad = bad.any(axis=1)
    first_bad = bad.argmax(axis=1)
    chosen = np.concatenate([starts + low, starts + high, (starts + first_bad)[has_bad], [0, count - 1]])
    return np.unique(chosen[chosen < count])
