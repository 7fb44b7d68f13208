"""Datasets as uint8 tensors, deterministic splits and normalisation.

Every dataset is read once into `uint8` tensors (N x height x width, or N x channels x height x
width) plus labels; training slices those tensors directly, so nothing in the training path
touches PIL or `ToTensor`. What each dataset is and where its files come from is described in
`lrcore.datasets`; `mnist-sample` (MNIST's official 10,000-image test split) ships inside the
package and always works offline.
"""
from __future__ import annotations

import functools
import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator, Mapping
from typing import Callable

import torch

from . import datasets
from .config import ConfigError
from .datasets import DatasetInfo, DatasetUnavailable, find_file
from .preprocess import deskew

# Names other modules import from here, derived from the registry.
FILES = datasets.IDX_FILES
FASHION_NAMES = datasets.FASHION_NAMES


class _Titles(Mapping):
    """name -> title of every registered dataset, read live (a dataset registered later has its title)."""

    def __getitem__(self, name: str) -> str:
        return datasets.REGISTRY[name].title

    def __iter__(self) -> Iterator[str]:
        return iter(datasets.REGISTRY)

    def __len__(self) -> int:
        return len(datasets.REGISTRY)


DATASET_TITLES: Mapping[str, str] = _Titles()
sample_test_split = datasets.sample_test_split
# Debian's dataset-fashion-mnist folder; a module attribute so that tests can point it elsewhere.
DEBIAN_FASHION_DIR = datasets.get("fashion-mnist").debian_folder


@dataclass(frozen=True, eq=False)
class Dataset:
    """Read-only images and labels. `train_*` is the pool that train/validation come from."""

    name: str
    train_images: torch.Tensor  # uint8, N x height x width (one channel) or N x channels x height x width
    train_labels: torch.Tensor  # int64, N
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    source: str
    # Indices into the train pool that ARE the validation set (an image folder's val/): make_splits
    # then uses them whatever validation_fraction says. None: a seeded random split.
    validation_index: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def fixed_validation(self) -> bool:
        """The validation set is fixed by the dataset (a val/ folder); the validation fraction does not apply."""
        return self.validation_index is not None

    @property
    def info(self) -> DatasetInfo:
        return datasets.get(self.name)

    def images(self, split: str, deskew: bool = False) -> torch.Tensor:
        """uint8 images of `split` ("test", else the train pool); `deskew`: the deskewed copy
        (digits only), computed on first use and kept for the process (see preprocess.deskew)."""
        if deskew:
            return _deskewed_images(self, "test" if split == "test" else "train")
        return self.test_images if split == "test" else self.train_images

    def labels(self, split: str) -> torch.Tensor:
        return self.test_labels if split == "test" else self.train_labels

    def flat_images(self, split: str, device: str | torch.device = "cpu", deskew: bool = False) -> torch.Tensor:
        """uint8 images flattened to N x pixels on `device`; one copy per device for the whole process.

        Batches gather uint8 rows and convert them: on CPU that is ~2.5x faster than
        gathering rows of a float copy, and it keeps no float copy of the dataset.
        """
        return _device_images(self, "test" if split == "test" else "train", str(device), bool(deskew))

    def class_counts(self, split: str = "train") -> torch.Tensor:
        return torch.bincount(self.labels(split), minlength=self.num_classes)


@functools.lru_cache(maxsize=16)
def _device_images(dataset: Dataset, split: str, device: str, deskew: bool = False) -> torch.Tensor:
    images = dataset.images(split, deskew)
    return images.reshape(len(images), -1).to(device)


@functools.lru_cache(maxsize=16)
def _deskewed_images(dataset: Dataset, split: str) -> torch.Tensor:
    # Once per dataset and split per process (~2 s for all of MNIST on one thread), never per batch.
    return deskew(dataset.test_images if split == "test" else dataset.train_images)


def default_data_dir() -> Path:
    """`$LRCORE_DATA_DIR`, else `data/` in the current directory."""
    return Path(os.environ.get("LRCORE_DATA_DIR", "data"))


# ---------------------------------------------------------------- finding and loading

def _candidate_dirs(info: DatasetInfo, data_dir: Path) -> list[Path]:
    debian = DEBIAN_FASHION_DIR if info.name == "fashion-mnist" else info.debian_folder
    return ([info.folder] if info.folder else []) + [data_dir / folder for folder in info.data_folders] \
        + ([debian] if debian else [])


def locate(name: str, data_dir: Path | None = None) -> Path | None:
    """The folder holding all files of `name`, or None."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    info = datasets.get(name)
    for directory in _candidate_dirs(info, data_dir):
        if all(find_file(directory, stem) for stem in info.files):
            return directory
    return None


def missing_files_message(name: str, data_dir: Path | None = None) -> str:
    info = datasets.get(name)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    target = data_dir / info.data_folders[0] if info.data_folders else info.folder
    files = ", ".join(f"{stem}.gz" for stem in info.files)
    count = {2: "two", 3: "three", 4: "four"}.get(len(info.files), str(len(info.files)))
    extra = f" or install Debian's {info.debian_package} package" if info.debian_package else ""
    online = (" Online, the Data page's download button or `python -m lrcore train --dataset "
              f"{name} --download` fetches them.") if info.download else ""
    return (f"The {name} files were not found. Put the {count} files ({files}) in {target}"
            f" (or set LRCORE_DATA_DIR / --data-dir to a folder that holds them){extra}.{online}")


def available_datasets(data_dir: Path | None = None) -> dict[str, bool]:
    return {name: locate(name, data_dir) is not None for name in datasets.NAMES}


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, directory: str) -> Dataset:
    info = datasets.get(name)
    # A loader returns four tensors, or five: the last one the fixed validation indices (or None).
    train_images, train_labels, test_images, test_labels, *rest = info.loader(Path(directory))
    validation = rest[0] if rest else None
    for images, labels in ((train_images, train_labels), (test_images, test_labels)):
        if tuple(images.shape[1:]) != info.image_shape or len(images) != len(labels):
            raise DatasetUnavailable(f"{directory}: images {tuple(images.shape)} and labels {tuple(labels.shape)} "
                                     f"do not match; {name} has {info.shape_text} images, one label each")
    if validation is not None and not _valid_index(validation, len(train_labels)):
        raise DatasetUnavailable(f"{directory}: the validation indices are not distinct indices of the "
                                 f"{len(train_labels):,} pool images, leaving at least one to train on")
    return Dataset(name, train_images, train_labels, test_images, test_labels, info.class_names,
                   info.source_note or directory, validation)


def _valid_index(index: torch.Tensor, total: int) -> bool:
    return (index.dtype == torch.int64 and index.ndim == 1 and 1 <= len(index) < total
            and int(index.min()) >= 0 and int(index.max()) < total and len(index.unique()) == len(index))


def load_dataset(name: str = "mnist-sample", data_dir: Path | str | None = None,
                 download: bool = False, progress: Callable[[str, int, int], None] | None = None) -> Dataset:
    """Load a dataset by name once per process; raise `DatasetUnavailable` with a fix when missing."""
    datasets.get(name)  # an unknown name: the message lists the known ones
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = locate(name, data_dir)
    if folder is None and download:
        download_dataset(name, data_dir, progress)
        folder = locate(name, data_dir)
    if folder is None:
        raise DatasetUnavailable(missing_files_message(name, data_dir))
    return _load_cached(name, str(folder.resolve()))


def download_dataset(name: str, data_dir: Path | str | None = None,
                     progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Download a dataset that has a `download` (mnist, fashion-mnist) with torchvision's mirrors and checksums.

    `progress(file_name, bytes_done, bytes_total)` is called as data arrives. Files land
    where `torchvision.datasets.MNIST` / `FashionMNIST` would put them.
    """
    from torchvision import datasets as torchvision_datasets  # imported here: only downloads need it

    info = datasets.get(name)
    if not info.download:
        raise DatasetUnavailable(f"{name} is bundled or has no download; nothing to download")
    source = getattr(torchvision_datasets, info.download)
    target = (Path(data_dir) if data_dir is not None else default_data_dir()) / info.data_folders[0]
    target.mkdir(parents=True, exist_ok=True)
    for file_name, md5 in source.resources:
        destination = target / file_name
        if destination.is_file() and _md5(destination) == md5:
            continue
        errors = []
        for mirror in source.mirrors:
            try:
                _fetch(mirror + file_name, destination, md5, progress)
                break
            except (OSError, urllib.error.URLError, ValueError) as error:
                errors.append(f"{mirror}: {error}")
        else:
            raise DatasetUnavailable(f"Download of {file_name} failed ({'; '.join(errors)}). "
                                     + missing_files_message(name, data_dir))
    return target


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _fetch(url: str, destination: Path, md5: str, progress: Callable[[str, int, int], None] | None) -> None:
    partial = destination.with_suffix(destination.suffix + ".part")
    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=20) as response, open(partial, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        while chunk := response.read(1 << 16):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(destination.name, done, total)
    if digest.hexdigest() != md5:
        partial.unlink(missing_ok=True)
        raise ValueError(f"checksum mismatch for {url}")
    partial.replace(destination)


# ---------------------------------------------------------------- splits

@dataclass(frozen=True)
class Splits:
    """Indices into `Dataset.train_images`; validation never overlaps training."""

    train: torch.Tensor
    validation: torch.Tensor


def make_splits(dataset: Dataset, validation_fraction: float, seed: int,
                per_class_limit: int | None = None) -> Splits:
    """Seeded random train/validation split of the pool, then an optional per-class cap on train.

    A dataset with a fixed validation set (`Dataset.validation_index`: an image folder's val/) uses
    exactly it, whatever `validation_fraction` says; the rest of the pool, shuffled by `seed`, trains.
    """
    total = len(dataset.train_labels)
    if dataset.validation_index is not None:
        validation = dataset.validation_index
        in_validation = torch.zeros(total, dtype=torch.bool)
        in_validation[validation] = True
        order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
        return _cap_per_class(dataset, Splits(order[~in_validation[order]], validation), per_class_limit)
    validation_size = round(total * validation_fraction)
    if not 1 <= validation_size <= total - 1:
        raise ConfigError({"validation_fraction": (
            f"{validation_fraction:g} of {total:,} images leaves an empty split; "
            f"use a value between {1 / total:.2g} and {1 - 1 / total:.4g}")})
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return _cap_per_class(dataset, Splits(train=order[validation_size:], validation=order[:validation_size]),
                          per_class_limit)


def _cap_per_class(dataset: Dataset, splits: Splits, per_class_limit: int | None) -> Splits:
    if per_class_limit is None:
        return splits
    train = splits.train
    labels = dataset.train_labels[train]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    for cls in range(dataset.num_classes):
        members = torch.nonzero(labels == cls).flatten()
        keep[members[:per_class_limit]] = True  # `train` is already shuffled, so the first N are random
    return Splits(train=train[keep], validation=splits.validation)


# ---------------------------------------------------------------- normalisation

# Pixels that are almost always blank have a tiny std; dividing by it would turn a stray
# stroke there (a drawn digit) into a huge input, so std is floored.
STD_FLOOR = 0.05


@dataclass(frozen=True)
class Normalizer:
    """Maps 0..255 pixels (uint8 or float, N images of any shape or N x pixels) to float model inputs.

    "raw" gives 0..1; "standardize" gives (x/255 - mean) / std with per-pixel statistics
    of the training split. Checkpoints store it, so predictions see what training saw.
    """

    kind: str = "raw"
    mean: torch.Tensor | None = None  # one per pixel, in 0..1 units
    std: torch.Tensor | None = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        # Out of place: .float() would return a float32 input itself, and scaling it in place
        # would change the caller's tensor. uint8 * float gives float32 in the same single op.
        inputs = images.reshape(len(images), -1) * (1.0 / 255.0)
        if self.kind == "raw":
            return inputs
        return inputs.sub_(self.mean.to(inputs.device)).div_(self.std.to(inputs.device))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, values: dict) -> "Normalizer":
        return cls(values["kind"], values.get("mean"), values.get("std"))


def fit_normalizer(kind: str, images: torch.Tensor, indices: torch.Tensor, chunk: int = 8192) -> Normalizer:
    """Per-pixel statistics of images[indices] (uint8, N x pixels), in chunks: no copy of the split."""
    if kind == "raw":
        return Normalizer("raw")
    total = torch.zeros(images.shape[1], dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    for start in range(0, len(indices), chunk):
        rows = images.index_select(0, indices[start:start + chunk].to(images.device)).double().div_(255.0)
        total += rows.sum(0)
        squares += (rows * rows).sum(0)
    mean = total / len(indices)
    std = (squares / len(indices) - mean * mean).clamp_min(0).sqrt().clamp_min(STD_FLOOR)
    return Normalizer("standardize", mean.float().cpu(), std.float().cpu())


def pixel_statistics(images: torch.Tensor) -> dict[str, float]:
    """Min, max, mean and std of 0..1 pixels, as tutorial 003 prints them."""
    values = images.float() / 255.0
    return {"min": values.min().item(), "max": values.max().item(),
            "mean": values.mean().item(), "std": values.std().item()}
