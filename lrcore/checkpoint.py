"""Checkpoints: weights + config + class names + normalisation + metrics in one file.

Written atomically (temp file, then rename) and read with `torch.load(weights_only=True)`,
which refuses pickles that would run code. Before that, the zip's own directory is checked:
a file declaring more records or more (uncompressed) bytes than a 100-class model needs is
refused unread, so a compressed bomb costs nothing. After it, every field is checked for
type, shape, dtype and size (class names too: the pages show them). Every bad file becomes
a `CheckpointError` with one message, naming the field, that a page can show. A bare
`state_dict` of the tutorials' model (keys `linear.weight`, `linear.bias`) also loads, with
default settings.

A checkpoint records the image shape (channels, height, width) and the class names, so a model
of an image-folder dataset from another machine loads where that dataset is not registered (its
shape and names come from the file); where it is registered, the two must agree. A binary model
(tutorial 002's sigmoid) has ONE weight row; softmax models one per class. Files written before
`image_shape` existed load as before (the shape of their registered dataset).
"""
from __future__ import annotations

import io
import math
import os
import pickle
import tempfile
import time
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from . import datasets
from .config import ConfigError, TrainConfig
from .data import Normalizer
from .model import LogisticRegression

FORMAT = "lrcore-checkpoint"
VERSION = 1
MAX_CHECKPOINT_BYTES = 20 * 1024 * 1024  # a 10-class model is ~35 KB (3x64x64 colour: ~0.5 MB); anything huge is not ours
MIN_CLASSES, MAX_CLASSES = 2, 100  # an image-folder dataset may bring more than 10; 2,000 is not a classifier we show
MAX_CLASS_NAME_LENGTH = 64  # a 1 MB class name froze viewers' browsers for minutes
MAX_METRICS = 32
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# The largest image a model may take: image folders are decoded to at most 64x64 in colour
# (lrcore/photo.py's IMAGE_SIDES), 12,288 inputs.
MAX_IMAGE_SIDE = 64
MAX_IMAGE_PIXELS = 3 * MAX_IMAGE_SIDE * MAX_IMAGE_SIDE
# What the archive may declare before anything is decompressed (a zip bomb of 1 GB of zeros
# deflates to ~1 MB, so the file size alone says nothing). The tensors of the largest model
# we accept, in float32 (what lrcore saves): weight + bias + normaliser mean and std (`max_tensor_bytes`).
MAX_TENSOR_RECORDS = 4
MAX_PICKLE_BYTES = 256 * 1024  # settings, class names and metrics: a few KB
MAX_OTHER_RECORD_BYTES = 1024  # version, byteorder, serialization id
MAX_ARCHIVE_RECORDS = 16
MAX_DIRECTORY_BYTES = 16 * 1024  # the zip's list of records: ~100 bytes per record


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
    image_shape: tuple[int, int, int] = (1, 28, 28)  # channels, height, width of the images it takes

    @property
    def binary(self) -> bool:
        """Tutorial 002's binary model: one weight row, sigmoid."""
        return self.model.binary

    @property
    def image_shape_text(self) -> str:
        """"28x28" or "3x32x32", for messages."""
        return shape_text(self.image_shape)


def shape_text(shape: tuple[int, ...]) -> str:
    """(1, 28, 28) -> "28x28", (3, 32, 32) -> "3x32x32" (one channel is left out, as DatasetInfo.shape_text)."""
    shape = tuple(shape)
    return "x".join(map(str, shape[1:] if len(shape) == 3 and shape[0] == 1 else shape))


def check_image_shape(checkpoint_or_shape: "Checkpoint | tuple[int, int, int]", images: torch.Tensor) -> None:
    """Raise CheckpointError unless `images` (one image or N of them; H x W for one channel,
    C x H x W else) are what the model takes: "this model takes 3x32x32 images; these are 28x28"."""
    shape = tuple(getattr(checkpoint_or_shape, "image_shape", checkpoint_or_shape))
    channels, height, width = shape
    dims = tuple(images.shape)
    if channels == 1:  # H x W, N x H x W, or N x 1 x H x W
        ok = len(dims) in (2, 3, 4) and dims[-2:] == (height, width) and (len(dims) < 4 or dims[1] == 1)
    else:  # C x H x W or N x C x H x W
        ok = len(dims) in (3, 4) and dims[-3:] == (channels, height, width)
    if not ok:
        # N x H x W (greyscale images) unless a colour model was given one C x H x W picture
        seen = dims[-3:] if len(dims) == 4 or (len(dims) == 3 and channels != 1 and dims[0] in (1, 3)) else dims[-2:]
        kind = " colour" if len(seen) == 3 and seen[0] != 1 else " greyscale" if channels != 1 else ""
        raise CheckpointError(f"this model takes {shape_text(shape)} images; these are {shape_text(seen)}{kind}: "
                              "use images of the model's dataset (or retrain on these)")


def save_checkpoint(path: str | Path, model: LogisticRegression, config: TrainConfig,
                    class_names: tuple[str, ...], normalizer: Normalizer,
                    metrics: dict[str, float] | None = None, image_shape: tuple[int, int, int] | None = None) -> Path:
    """Write a checkpoint atomically: a crash mid-write never leaves a half file at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = checkpoint_payload(model, config, class_names, normalizer, metrics, image_shape)
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
                       normalizer: Normalizer, metrics: dict[str, float] | None = None,
                       image_shape: tuple[int, int, int] | None = None) -> dict:
    """The dict that is saved: only tensors and plain values, so weights_only loading accepts it.

    `image_shape` (channels, height, width): default the registered dataset's, else guessed from
    the number of inputs (a square greyscale or colour image)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "weight": model.linear.weight.detach().cpu().clone(),
        "bias": model.linear.bias.detach().cpu().clone(),
        "config": config.to_dict(),
        "class_names": list(class_names),
        "image_shape": list(image_shape or _image_shape_of(config.dataset, model.linear.in_features)),
        "normalizer": normalizer.to_dict(),
        # a NaN metric would make the file refused on loading: leave it out instead
        "metrics": {k: float(v) for k, v in (metrics or {}).items() if math.isfinite(float(v))},
        "created": time.time(),
    }


def checkpoint_bytes(model: LogisticRegression, config: TrainConfig, class_names: tuple[str, ...],
                     normalizer: Normalizer, metrics: dict[str, float] | None = None,
                     image_shape: tuple[int, int, int] | None = None) -> bytes:
    """The checkpoint as bytes, for download buttons."""
    buffer = io.BytesIO()
    torch.save(checkpoint_payload(model, config, class_names, normalizer, metrics, image_shape), buffer)
    return buffer.getvalue()


def _image_shape_of(dataset: str, pixels: int) -> tuple[int, int, int]:
    info = datasets.REGISTRY.get(dataset)
    if info is not None:  # the registered dataset's, even for a model of the wrong size: loading says so
        return tuple(info.shape)
    for channels in (1, 3):
        side = math.isqrt(pixels // channels)
        if channels * side * side == pixels:
            return (channels, side, side)
    raise ValueError(f"cannot tell the image shape of a model with {pixels} inputs: pass image_shape")


def load_checkpoint(source: str | Path | bytes | BinaryIO) -> Checkpoint:
    """Load and validate a checkpoint from a path, bytes or a binary file object."""
    data = _read_bytes(source)
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"file is {len(data) / 1e6:.1f} MB; a checkpoint is at most "
                              f"{MAX_CHECKPOINT_BYTES // (1024 * 1024)} MB")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CheckpointError("not a checkpoint: the file is not a PyTorch file (.pt) saved by torch.save")
    _check_archive(data)  # before torch.load decompresses (and allocates) anything
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


def _check_archive(data: bytes) -> None:
    """Refuse an archive whose declared (uncompressed) records exceed what a checkpoint needs.

    The zip's central directory lists each record's uncompressed size, and torch's reader
    allocates exactly that much: checking it first means a compressed bomb costs nothing.
    """
    _check_directory(data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise CheckpointError(f"the file is damaged or truncated ({_first_line(error)})") from None
    if len(records) > MAX_ARCHIVE_RECORDS:
        raise CheckpointError(f"refused: the archive holds {len(records)} records; a checkpoint has at most "
                              f"{MAX_ARCHIVE_RECORDS}")
    tensors = [r for r in records if r.filename.rsplit("/", 2)[-2:-1] == ["data"]]
    pickles = [r for r in records if r.filename.endswith(".pkl")]
    others = [r for r in records if r not in tensors and r not in pickles]
    tensor_bytes, max_bytes = sum(r.file_size for r in tensors), max_tensor_bytes()
    if len(tensors) > MAX_TENSOR_RECORDS or tensor_bytes > max_bytes:
        raise CheckpointError(
            f"refused: the file declares {len(tensors)} tensors of {_megabytes(tensor_bytes)} in all once "
            f"decompressed; a checkpoint holds at most {MAX_TENSOR_RECORDS} (weights, bias, normalisation) "
            f"of {_megabytes(max_bytes)} for {MAX_CLASSES} classes")
    if len(pickles) != 1 or pickles[0].file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"refused: the file's settings record declares "
                              f"{_megabytes(sum(r.file_size for r in pickles))}; a checkpoint's is at most "
                              f"{_megabytes(MAX_PICKLE_BYTES)}")
    if any(r.file_size > MAX_OTHER_RECORD_BYTES for r in others):
        big = max(others, key=lambda r: r.file_size)
        raise CheckpointError(f"refused: the file holds an unexpected record of {_megabytes(big.file_size)} "
                              "once decompressed")


def max_tensor_bytes() -> int:
    """The tensors' bytes of the largest model we accept: MAX_CLASSES classes of 3x64x64 images
    (or of the registered dataset with the most pixels, if larger), in float32: ~5 MB. (A 10-class
    28x28 model saved in float64 is 63 KB: far below.)"""
    pixels = max(MAX_IMAGE_PIXELS, *(info.num_pixels for info in datasets.REGISTRY.values()))
    return (MAX_CLASSES * (pixels + 1) + 2 * pixels) * 4


def _check_directory(data: bytes) -> None:
    """Refuse a zip whose list of records is too long to parse, from its end record alone.

    A 20 MB file can list ~400,000 empty records: parsing them took 5 s and 110 MB. Where a
    zip64 end record is present it must agree with the plain one, so that Python's zipfile
    (checked here) and torch's reader (used to load) see the same records.
    """
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 65535))
    if end < 0 or end + 22 > len(data):
        raise CheckpointError("the file is damaged or truncated (no zip end record)")
    records, size = _number(data, end + 10, 2), _number(data, end + 12, 4)
    locator = end - 20
    if locator >= 0 and data[locator:locator + 4] == b"PK\x06\x07":
        record64 = locator - 56
        if record64 < 0 or data[record64:record64 + 4] != b"PK\x06\x06" or \
                _number(data, locator + 8, 8) != record64:
            raise CheckpointError("refused: the file's zip64 end record is not where it says it is")
        records64, size64 = _number(data, record64 + 32, 8), _number(data, record64 + 40, 8)
        if records not in (records64, 0xFFFF) or size not in (size64, 0xFFFFFFFF):
            raise CheckpointError("refused: the file's two zip end records list different records")
        records, size = records64, size64
    if records > MAX_ARCHIVE_RECORDS or size > MAX_DIRECTORY_BYTES:
        raise CheckpointError(f"refused: the archive lists {records:,} records in {_megabytes(size)}; a checkpoint "
                              f"has at most {MAX_ARCHIVE_RECORDS}")


def _number(data: bytes, start: int, length: int) -> int:
    return int.from_bytes(data[start:start + length], "little")


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 10_000 else f"{size:,} bytes"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _from_state_dict(state: dict) -> dict:
    """A tutorial-style `model.state_dict()` becomes a checkpoint with default settings."""
    weight = state.get("linear.weight")
    rows = weight.shape[0] if isinstance(weight, torch.Tensor) and weight.ndim == 2 else 0
    config = TrainConfig()
    info = datasets.get(config.dataset)
    # Checked before naming the classes: a (10**9, 0) tensor costs no bytes but would ask for 10**9 names.
    if not MIN_CLASSES <= rows <= MAX_CLASSES:
        raise CheckpointError(f"linear.weight: expected a tensor of classes x {info.num_pixels} with {MIN_CLASSES} "
                              f"to {MAX_CLASSES} classes, found {_describe(weight)}")
    return {"format": FORMAT, "version": VERSION, "weight": weight, "bias": state.get("linear.bias"),
            "config": config.to_dict(),
            "class_names": list(info.class_names) if rows == info.num_classes else [str(i) for i in range(rows)],
            "normalizer": {"kind": "raw"}, "metrics": {}, "created": 0.0}


def _validate(payload: dict) -> Checkpoint:
    """Check every field's type and value; the first problem becomes one message naming the field."""
    version = payload.get("version", VERSION)
    if not _is_int(version) or version < 1:
        raise CheckpointError(f"version: expected a whole number, found {_describe(version)}")
    if version > VERSION:
        raise CheckpointError(f"version: the file is format version {version}, made by a newer lrcore; "
                              f"this one reads version {VERSION}")
    config = _config(payload.get("config"))
    info = datasets.REGISTRY.get(config.dataset)  # None: a folder dataset of another machine
    shape = _image_shape(payload.get("image_shape"), info, config.dataset)
    names = _class_names(payload.get("class_names"), info)
    classes, pixels = len(names), math.prod(shape)
    pixels_text = "*".join(map(str, shape[1:] if shape[0] == 1 else shape))
    value = payload.get("weight")
    # Two classes: tutorial 002's binary model (one weight row, sigmoid) or softmax's two rows.
    rows = 1 if classes == 2 and isinstance(value, torch.Tensor) and value.ndim == 2 and value.shape[0] == 1 \
        else classes
    weight = _tensor(value, "weight", (rows, pixels), f"{rows} x {pixels} "
                     f"({'one row: binary' if rows == 1 else 'classes'} x {pixels_text} pixels)")
    bias = _tensor(payload.get("bias"), "bias", (rows,), f"({rows},)")
    normalizer = _normalizer(payload.get("normalizer"), pixels)
    metrics = _metrics(payload.get("metrics"))
    created = payload.get("created")
    if created is None:
        created = 0.0
    if not _is_finite(created) or created < 0:
        raise CheckpointError(f"created: expected a time in seconds (a number >= 0), found {_describe(created)}")
    model = LogisticRegression.from_tensors(weight.float(), bias.float())
    return Checkpoint(model, config, names, normalizer, metrics, float(created), shape)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    try:
        return _is_real(value) and math.isfinite(value)
    except OverflowError:  # a whole number too large for a float
        return False


def _describe(value: object) -> str:
    """A short description of a bad value: its type, and the value itself only when it is short.

    Never the repr of a container: a crafted file may nest thousands of levels deep.
    """
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10 ** 30:
        return "a whole number too large to use"
    if value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 40):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, (str, bytes, list, tuple, dict)):
        return f"a {type(value).__name__} of length {len(value):,}"
    return f"a {type(value).__name__}"


def _config(values: object) -> TrainConfig:
    if values is None:
        return TrainConfig()  # an old or bare file: the defaults
    if not isinstance(values, dict):
        raise CheckpointError(f"config: expected a dict of training settings, found {_describe(values)}")
    try:
        values = {k: v for k, v in values.items() if isinstance(k, str)}
        if isinstance(values.get("dataset"), str) and values["dataset"] not in datasets.REGISTRY:
            # an image folder of another machine: the file's own image_shape and class names describe it
            return TrainConfig.of_unregistered_dataset(values)
        return TrainConfig.from_dict(values)
    except (ConfigError, TypeError, ValueError, OverflowError) as error:
        text = _first_line(error)
        raise CheckpointError(f"config: the training settings are invalid: {text}") from None


def _image_shape(value: object, info: datasets.DatasetInfo | None, dataset: str) -> tuple[int, int, int]:
    """The file's image shape (channels, height, width), checked; a file without one (saved before
    it was recorded) takes its registered dataset's."""
    if value is None:
        if info is None:
            raise CheckpointError(f"image_shape: the model's dataset {dataset[:40]!r} is not on this server and the "
                                  "file does not say what images the model takes")
        return tuple(info.shape)
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(_is_int(size) for size in value) or \
            value[0] not in (1, 3) or not all(1 <= size <= MAX_IMAGE_SIDE for size in value[1:]):
        raise CheckpointError(f"image_shape: expected [channels, height, width] with 1 or 3 channels and sides of "
                              f"1 to {MAX_IMAGE_SIDE} pixels, found {_describe(value)}")
    shape = tuple(value)
    if info is not None and shape != tuple(info.shape):
        raise CheckpointError(f"image_shape: the model takes {shape_text(shape)} images, but {info.name} here has "
                              f"{info.shape_text} images: the file is for another dataset of that name")
    return shape


def _class_names(names: object, info: datasets.DatasetInfo | None) -> tuple[str, ...]:
    if not isinstance(names, (list, tuple)):
        raise CheckpointError(f"class_names: expected a list of {MIN_CLASSES} to {MAX_CLASSES} names, "
                              f"found {_describe(names)}")
    if not MIN_CLASSES <= len(names) <= MAX_CLASSES:
        raise CheckpointError(f"class_names: a model has {MIN_CLASSES} to {MAX_CLASSES} classes, "
                              f"this one {len(names):,}")
    for index, name in enumerate(names):
        if not isinstance(name, str):
            raise CheckpointError(f"class_names: name {index} is not text but {_describe(name)}")
        if not name.strip() or len(name) > MAX_CLASS_NAME_LENGTH:
            raise CheckpointError(f"class_names: name {index} has {len(name):,} characters; each name has 1 to "
                                  f"{MAX_CLASS_NAME_LENGTH} and is not blank")
        if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for c in name):
            raise CheckpointError(f"class_names: name {index} contains control or invisible characters")
    if len(set(names)) != len(names):
        raise CheckpointError("class_names: two classes have the same name; each must be different")
    if info is not None and len(names) != info.num_classes:
        raise CheckpointError(f"class_names: the file has {len(names)} classes, but a model for {info.name} "
                              f"needs {info.num_classes}")
    return tuple(names)


def _tensor(value: object, field_name: str, shape: tuple[int, ...], shape_text: str) -> torch.Tensor:
    """A dense, real floating-point, finite tensor of exactly `shape`."""
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{field_name}: expected a tensor of {shape_text}, found {_describe(value)}")
    if value.layout != torch.strided or value.is_quantized or value.is_nested:
        raise CheckpointError(f"{field_name}: expected a dense tensor, found layout {value.layout}")
    if tuple(value.shape) != shape:
        raise CheckpointError(f"{field_name} has the wrong shape: expected {shape_text}, found {tuple(value.shape)}")
    if value.dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"{field_name}: expected floating-point numbers (float16, bfloat16, float32 or "
                              f"float64), found {value.dtype}")
    if not bool(torch.isfinite(value).all()):
        raise CheckpointError(f"{field_name} contains NaN or infinite values")
    return value


def _normalizer(values: object, pixels: int) -> Normalizer:
    if values is None:
        return Normalizer("raw")
    if not isinstance(values, dict):
        raise CheckpointError(f"normalizer: expected a dict (kind raw, or standardize with mean and std), "
                              f"found {_describe(values)}")
    kind = values.get("kind")
    if kind == "raw":
        return Normalizer("raw")
    if kind != "standardize":
        raise CheckpointError(f"normalizer: kind must be raw or standardize, found {_describe(kind)}")
    mean = _tensor(values.get("mean"), "normalizer mean", (pixels,), f"{pixels} values")
    std = _tensor(values.get("std"), "normalizer std", (pixels,), f"{pixels} values")
    if not bool((std > 0).all()):
        raise CheckpointError(f"normalizer std: expected {pixels} positive standard deviations")
    return Normalizer("standardize", mean.float(), std.float())


def _metrics(values: object) -> dict[str, float]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise CheckpointError(f"metrics: expected a dict of numbers, found {_describe(values)}")
    if len(values) > MAX_METRICS:
        raise CheckpointError(f"metrics: at most {MAX_METRICS} entries, found {len(values):,}")
    for key, value in values.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_CLASS_NAME_LENGTH:
            raise CheckpointError(f"metrics: each name is text of 1 to {MAX_CLASS_NAME_LENGTH} characters, "
                                  f"found {_describe(key)}")
        if not _is_finite(value):
            raise CheckpointError(f"metrics: {key[:MAX_CLASS_NAME_LENGTH]} must be a finite number, "
                                  f"found {_describe(value)}")
    return {key: float(value) for key, value in values.items()}
