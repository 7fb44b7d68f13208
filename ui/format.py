"""How every page writes numbers and times: one wording for percentages, losses, durations and kept weights."""
from __future__ import annotations

import math

DASH = "–"  # a number that does not exist (yet), or is not finite


def _real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def percent(value: object, decimals: int = 1) -> str:
    """0.9453 -> '94.5%' (decimals=2: '94.53%'); None, NaN or inf -> '–'."""
    return f"{value:.{decimals}%}" if _real(value) else DASH


LOSS_CHARS = 7  # what a metric shows whole in a fifth of the page at 1024 px ("0.001234" was cut to "0.00…")


def loss(value: object) -> str:
    """Four significant digits (0.2248, 0.01234, a blown-up 239.9), in at most 7 characters: a tiny
    dataset's 9.158e-05 reads 9.16e-5 and 0.001234 reads 1.23e-3, so a metric's column never cuts them."""
    if not _real(value):
        return DASH
    text = f"{value:.4g}"
    if "e" not in text and len(text) <= LOSS_CHARS:
        return text
    mantissa, exponent = f"{value:.2e}".split("e")  # '9.16', '-05'
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def batch_size(config, train_size: int = 0) -> str:
    """A run's images per step, for a table cell: '128'; a full-batch run's 'full (6,400)', its whole
    training split ('full' where that size is not known: an uploaded checkpoint). Its batch_size
    setting is not what it trained with, so it is never shown for such a run."""
    if not config.full_batch:
        return f"{config.batch_size:,}"
    return f"full ({train_size:,})" if train_size else "full"


def batch_text(config, train_size: int = 0) -> str:
    """The same in a sentence: 'batch size 128', 'full batch (6,400 images)' or 'full batch'."""
    if not config.full_batch:
        return f"batch size {config.batch_size:,}"
    return f"full batch ({train_size:,} images)" if train_size else "full batch"


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
