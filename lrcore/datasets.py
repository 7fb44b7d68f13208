"""Every dataset described once: name, title, classes, image shape, loader and where its files are.

The rest of lrcore and the pages read these descriptions instead of assuming 28x28 digits in
ten classes. Adding a dataset is one `register(DatasetInfo(...))` plus its loader: a function
from the folder that holds its files to (train images, train labels, test images, test labels),
uint8 images of N x height x width (one channel) or N x channels x height x width.
"""
from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

Loader = Callable[[Path], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]

DIGIT_SHAPE = (1, 28, 28)  # MNIST-style digits: the Draw canvas and deskewing produce exactly this
DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IDX_FILES = {  # MNIST's four IDX files (Fashion-MNIST uses the same names)
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SAMPLE_TEST_PER_CLASS = 200  # fixed, stratified hold-out of mnist-sample: 2,000 test images
SAMPLE_SPLIT_SEED = 0  # never changes: the mnist-sample test set is the same everywhere


class DatasetUnavailable(RuntimeError):
    """The dataset's files are missing or unreadable; the message says how to get them."""


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: what it is and where its files come from (tried in this order)."""

    name: str
    title: str
    class_names: tuple[str, ...]
    shape: tuple[int, int, int]  # channels, height, width of one image
    digits: bool  # handwritten digits: deskewing and the Draw canvas make sense
    loader: Loader
    subject: str = ""  # what the images show, for "it recognises ..." ("" = the class names)
    files: tuple[str, ...] = ()  # file stems the loader needs (each may also be gzipped)
    folder: Path | None = None  # a fixed folder holding them (bundled in the package)
    data_folders: tuple[str, ...] = ()  # folders under the data folder; the first is where to put them
    debian_package: str = ""  # a Debian package that installs them...
    debian_folder: Path | None = None  # ...here
    download: str = ""  # torchvision.datasets class whose mirrors and checksums fetch them
    source_note: str = ""  # shown as the source instead of the folder

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def short_title(self) -> str:
        """The title without its parenthesis: "Fashion-MNIST"."""
        return self.title.split(" (")[0]

    @property
    def num_pixels(self) -> int:
        """Inputs of the model: channels x height x width."""
        channels, height, width = self.shape
        return channels * height * width

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One image's tensor shape: height x width for one channel, else channels x height x width."""
        return self.shape[1:] if self.shape[0] == 1 else self.shape

    @property
    def shape_text(self) -> str:
        """"28x28" or "3x32x32", for messages."""
        return "x".join(str(size) for size in self.image_shape)


REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
    """Add (or replace) a dataset; every list of datasets includes it from then on."""
    REGISTRY[info.name] = info
    return info


def get(name: str) -> DatasetInfo:
    """The description of `name`; `DatasetUnavailable` naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise DatasetUnavailable(f"unknown dataset {name!r}; choose one of {', '.join(REGISTRY)}") from None


class _Names(Sequence):
    """The registered names in registration order, read live: a dataset registered later (a
    test's, an image folder's) is a valid choice everywhere at once."""

    def __getitem__(self, index):
        return tuple(REGISTRY)[index]

    def __len__(self) -> int:
        return len(REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(REGISTRY))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in REGISTRY

    def __repr__(self) -> str:
        return repr(tuple(REGISTRY))


NAMES: Sequence[str] = _Names()


# ---------------------------------------------------------------- IDX files (MNIST's format)

def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (MNIST's format), gzipped or not, into a uint8 tensor."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DatasetUnavailable(f"cannot read {path}: {error}") from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DatasetUnavailable(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = 1
    for size in shape:
        count *= size
    if len(raw) - offset != count:
        raise DatasetUnavailable(f"{path} is truncated: expected {count:,} values, found {len(raw) - offset:,}")
    return torch.frombuffer(bytearray(raw[offset:]), dtype=torch.uint8).reshape(shape)


def find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_pair(directory: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(find_file(directory, IDX_FILES[f"{split}_images"]))
    labels = read_idx(find_file(directory, IDX_FILES[f"{split}_labels"])).long()
    if images.ndim != 3 or len(images) != len(labels):
        raise DatasetUnavailable(f"{directory}: images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match")
    return images, labels


def load_idx(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST's and Fashion-MNIST's four files: their own train and test splits."""
    return (*_read_pair(folder, "train"), *_read_pair(folder, "test"))


def sample_test_split(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mnist-sample's fixed (test, pool) indices: 200 random images of each digit are the test set."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SAMPLE_SPLIT_SEED))
    test = torch.cat([order[labels[order] == digit][:SAMPLE_TEST_PER_CLASS] for digit in range(10)])
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    is_test[test] = True
    return test.sort().values, order[~is_test[order]]


def load_mnist_sample(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST's official test split, cut into a train+validation pool and a fixed test set."""
    images, labels = _read_pair(folder, "test")
    test, pool = sample_test_split(labels)
    return (images[pool].contiguous(), labels[pool].contiguous(),
            images[test].contiguous(), labels[test].contiguous())


register(DatasetInfo(
    "mnist-sample", "MNIST sample (10,000 real digits, bundled)", DIGIT_NAMES, DIGIT_SHAPE, True,
    load_mnist_sample, subject="handwritten digits", files=(IDX_FILES["test_images"], IDX_FILES["test_labels"]),
    folder=Path(__file__).parent / "bundled",
    source_note="MNIST official test split, bundled (8,000 train+validation / 2,000 test)"))
register(DatasetInfo(
    "mnist", "MNIST (70,000 digits)", DIGIT_NAMES, DIGIT_SHAPE, True, load_idx, subject="handwritten digits",
    files=tuple(IDX_FILES.values()), data_folders=("MNIST/raw", "mnist"), download="MNIST"))
register(DatasetInfo(
    "fashion-mnist", "Fashion-MNIST (70,000 clothing images)", FASHION_NAMES, DIGIT_SHAPE, False, load_idx,
    subject="clothing (T-shirts, trousers, shoes, bags…)",
    files=tuple(IDX_FILES.values()), data_folders=("FashionMNIST/raw", "fashion-mnist"),
    debian_package="dataset-fashion-mnist", debian_folder=Path("/usr/share/datasets/fashion-mnist"),
    download="FashionMNIST"))
