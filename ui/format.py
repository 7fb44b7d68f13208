"""How every page writes numbers and times: one wording for percentages, losses, durations and kept weights."""
from __future__ import annotations

import math

DASH = "–"  # a number that does not exist (yet), or is not finite


def _real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def percent(value: object, decimals: int = 1) -> str:
    """0.9453 -> '94.5%' (decimals=2: '94.53%'); None, NaN or inf -> '–'."""
    return f"{value:.{decimals}%}" if _real(value) else DASH


def loss(value: object) -> str:
    """Four significant digits: 0.2248, and a blown-up 239.9 still fits a metric's column."""
    return f"{value:.4g}" if _real(value) else DASH


def duration(seconds: object) -> str:
    """'0.4 s', '12 s', '3 min 05 s', '2 h 07 min'; '–' when unknown (None, negative, not finite)."""
    if not _real(seconds) or seconds < 0:
        return DASH
    if seconds < 9.95:
        return f"{seconds:.1f} s"  # short runs: 0.2 s is not "< 1 s"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def epoch_text(epoch: int) -> str:
    """'epoch 0 (untrained)', 'epoch 3': the weights after that many epochs."""
    return "epoch 0 (untrained)" if epoch == 0 else f"epoch {epoch}"


def kept_weights(record) -> str | None:
    """Which weights a stopped or diverged run kept ('epoch 3, batch 40 of 63'); None for any other run.

    The Train page's numbers and the Weights page's last slider position both say it this way.
    """
    final = record.final
    if record.status not in ("stopped", "diverged") or "kept_epoch" not in final:
        return None
    epoch, batch = final["kept_epoch"], final["kept_batch"]
    if epoch == 0 or batch >= record.batches_per_epoch:
        return epoch_text(epoch)
    return f"epoch {epoch}, batch {batch} of {record.batches_per_epoch}"
