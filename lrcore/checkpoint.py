"""Checkpoints: weights + config + class names + normalisation + metrics in one file.

Written atomically (temp file, then rename) and read with `torch.load(weights_only=True)`,
which refuses pickles that would run code. Every bad file becomes a `CheckpointError`
with a message a page can show. A bare `state_dict` of the tutorials' model (keys
`linear.weight`, `linear.bias`) also loads, with default settings.
"""
from __future__ import annotations

import io
import os
import pickle
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from .config import ConfigError, TrainConfig
from .data import DIGIT_NAMES, Normalizer
from .model import NUM_PIXELS, LogisticRegression

FORMAT = "lrcore-checkpoint"
VERSION = 1
MAX_CHECKPOINT_BYTES = 20 * 1024 * 1024  # a 10-class model is ~35 KB; anything huge is not ours


class CheckpointError(ValueError):
    """The file is not a usable checkpoint; the message says why."""


@dataclass(frozen=True)
class Checkpoint:
    model: LogisticRegression = field(repr=False)
    config: TrainConfig
    class_names: tuple[str, ...]
    normalizer: Normalizer = field(repr=False)
    metrics: dict[str, float]
    created: float


def save_checkpoint(path: str | Path, model: LogisticRegression, config: TrainConfig,
                    class_names: tuple[str, ...], normalizer: Normalizer,
                    metrics: dict[str, float] | None = None) -> Path:
    """Write a checkpoint atomically: a crash mid-write never leaves a half file at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = checkpoint_payload(model, config, class_names, normalizer, metrics)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            torch.save(payload, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def checkpoint_payload(model: LogisticRegression, config: TrainConfig, class_names: tuple[str, ...],
                       normalizer: Normalizer, metrics: dict[str, float] | None = None) -> dict:
    """The dict that is saved: only tensors and plain values, so weights_only loading accepts it."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "weight": model.linear.weight.detach().cpu().clone(),
        "bias": model.linear.bias.detach().cpu().clone(),
        "config": config.to_dict(),
        "class_names": list(class_names),
        "normalizer": normalizer.to_dict(),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "created": time.time(),
    }


def checkpoint_bytes(model: LogisticRegression, config: TrainConfig, class_names: tuple[str, ...],
                     normalizer: Normalizer, metrics: dict[str, float] | None = None) -> bytes:
    """The checkpoint as bytes, for download buttons."""
    buffer = io.BytesIO()
    torch.save(checkpoint_payload(model, config, class_names, normalizer, metrics), buffer)
    return buffer.getvalue()


def load_checkpoint(source: str | Path | bytes | BinaryIO) -> Checkpoint:
    """Load and validate a checkpoint from a path, bytes or a binary file object."""
    data = _read_bytes(source)
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"file is {len(data) / 1e6:.1f} MB; a checkpoint is at most "
                              f"{MAX_CHECKPOINT_BYTES // (1024 * 1024)} MB")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CheckpointError("not a checkpoint: the file is not a PyTorch file (.pt) saved by torch.save")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError("refused: the file contains Python objects other than tensors and plain "
                              "values, which could run code when loaded; nothing in it was executed") from None
    except Exception as error:  # torch raises RuntimeError/EOFError/... for damaged archives
        raise CheckpointError(f"the file is damaged or truncated ({_first_line(error)})") from None
    if isinstance(payload, dict) and "linear.weight" in payload and "format" not in payload:
        payload = _from_state_dict(payload)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError("not an lrcore checkpoint: expected a file saved by this dashboard or "
                              "`python -m lrcore train --save`, or a state_dict with linear.weight/linear.bias")
    return _validate(payload)


def _read_bytes(source: str | Path | bytes | BinaryIO) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"no checkpoint file at {path}")
        if path.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{path} is {path.stat().st_size / 1e6:.1f} MB; a checkpoint is at most "
                                  f"{MAX_CHECKPOINT_BYTES // (1024 * 1024)} MB")
        return path.read_bytes()
    return source.read(MAX_CHECKPOINT_BYTES + 1)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _from_state_dict(state: dict) -> dict:
    """A tutorial-style `model.state_dict()` becomes a checkpoint with default settings."""
    weight = state.get("linear.weight")
    return {"format": FORMAT, "version": VERSION, "weight": weight, "bias": state.get("linear.bias"),
            "config": TrainConfig().to_dict(),
            "class_names": list(DIGIT_NAMES) if getattr(weight, "ndim", 0) == 2 and weight.shape[0] == 10
            else [str(i) for i in range(getattr(weight, "shape", [0])[0])],
            "normalizer": {"kind": "raw"}, "metrics": {}, "created": 0.0}


def _validate(payload: dict) -> Checkpoint:
    weight, bias = payload.get("weight"), payload.get("bias")
    names = payload.get("class_names")
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise CheckpointError("checkpoint has no valid class_names list")
    classes = len(names)
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (classes, NUM_PIXELS):
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise CheckpointError(f"weights have the wrong shape: expected {classes} x {NUM_PIXELS} "
                              f"(classes x 28*28 pixels), found {shape}")
    if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (classes,):
        shape = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
        raise CheckpointError(f"bias has the wrong shape: expected ({classes},), found {shape}")
    if not torch.isfinite(weight).all() or not torch.isfinite(bias).all():
        raise CheckpointError("weights contain NaN or infinite values")
    try:
        config = TrainConfig.from_dict(payload.get("config") or {})
    except (ConfigError, TypeError) as error:
        raise CheckpointError(f"checkpoint settings are invalid: {error}") from None
    normalizer = _normalizer(payload.get("normalizer") or {"kind": "raw"})
    metrics = payload.get("metrics") or {}
    model = LogisticRegression.from_tensors(weight.float(), bias.float())
    return Checkpoint(model, config, tuple(names), normalizer,
                      {str(k): float(v) for k, v in metrics.items()}, float(payload.get("created") or 0.0))


def _normalizer(values: dict) -> Normalizer:
    kind = values.get("kind")
    if kind == "raw":
        return Normalizer("raw")
    mean, std = values.get("mean"), values.get("std")
    if (kind != "standardize" or not isinstance(mean, torch.Tensor) or not isinstance(std, torch.Tensor)
            or mean.shape != (NUM_PIXELS,) or std.shape != (NUM_PIXELS,) or not bool((std > 0).all())):
        raise CheckpointError("checkpoint normalisation is invalid: expected raw, or standardize with "
                              f"784 means and 784 positive standard deviations")
    return Normalizer("standardize", mean.float(), std.float())
