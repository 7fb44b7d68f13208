"""Datasets from a folder of the user's own pictures (or a .zip of one), in torchvision's ImageFolder layout.

    root/<class>/*.jpg                      class folders: a fixed 20% of each class is the test set
    root/train/<class>/*, root/val/<class>/*    as tutorial 002 ("valid"/"validation" too): val/ IS the
    root/test/<class>/* (optional)              validation set; test/ the test set, else 20% of train/

Every picture is decoded once (lrcore.photo: EXIF rotation, transparency on white, shorter side to
`side`, centre crop) into uint8 tensors, cached under <data dir>/image-folders/<name>/ and registered
as an ordinary dataset. A picture that cannot be used is skipped and reported by name; a folder or zip
that cannot be used raises FolderError saying what was wrong and what is allowed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import torch

from . import datasets
from .datasets import DatasetInfo, DatasetUnavailable
from .photo import DEFAULT_SIDE, IMAGE_SIDES, decode_photo  # noqa: F401 (IMAGE_SIDES: for callers)
from .preprocess import ImageError
from .zip_safety import (MAX_UNCOMPRESSED_BYTES, MAX_ZIP_BYTES, FolderError, Source,  # noqa: F401
                         open_source, size_text)
from .zip_safety import stem as zip_stem

MAX_IMAGES = 20_000  # decoding takes ~1-3 ms a small picture; 20,000 at 64x64 colour is 245 MB of tensors
MIN_IMAGES_PER_CLASS = 2  # one to train on, one to test on
MAX_CLASSES = 100  # as lrcore.checkpoint
MAX_CLASS_NAME = 64  # as lrcore.checkpoint: class names are shown everywhere
MAX_IMAGE_BYTES = 15 * 2**20  # one picture; a phone's JPEG is 3-8 MB
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
TEST_FRACTION = 0.2  # of each class, when there is no test/ folder
SPLIT_SEED = 0  # never changes: a folder's test set is the same everywhere, like mnist-sample's
CACHE_FOLDER = "image-folders"
CACHE_VERSION = 1  # bump when decoding changes: older caches are decoded again
TENSORS_FILE, META_FILE = "images.pt", "meta.json"
LAYOUTS = ("train/val/test folders", "train/val folders", "class folders")
# Why a file was skipped, for the ones a page counts (FolderImport.misplaced)
NOT_AN_IMAGE = "not a PNG or JPEG image"
NOT_IN_A_CLASS = "not in a class folder (each class needs its own sub-folder)"
NOT_IN_A_SPLIT = "not in a train/, val/ or test/ folder"
OUTSIDE = "outside "  # "outside pics/, the folder that holds the class folders"
EXAMPLE_FOLDER: Path = Path(__file__).parent / "bundled" / "threes-and-sevens"
EXAMPLE_TITLE = "threes vs sevens"


@dataclass(frozen=True)
class FolderImport:
    """What `import_folder` made of a folder or zip."""

    name: str  # the registered dataset name (lrcore.datasets.REGISTRY key)
    title: str  # "bees vs ants (your images, 32x32 colour)"
    class_names: tuple[str, ...]
    counts: dict[str, dict[str, int]]  # split ("train"/"val"/"test") -> class name -> images
    layout: str  # "train/val/test folders" | "train/val folders" | "class folders"
    skipped: tuple[tuple[str, str], ...]  # (file name inside the folder, why) for every file not used
    from_cache: bool
    source_note: str = ""  # where the images and the splits come from, in one line
    source: str = ""  # the folder's or zip's file name as its owner knows it ("my-bees.zip")

    @property
    def misplaced(self) -> tuple[str, ...]:
        """The pictures skipped for where they lie (beside the class folders, outside train/ val/ test/)."""
        return tuple(path for path, why in self.skipped
                     if why in (NOT_IN_A_CLASS, NOT_IN_A_SPLIT) or why.startswith(OUTSIDE))


@dataclass
class _Plan:
    layout: str
    classes: tuple[str, ...]
    items: dict[str, list[tuple[str, int]]]  # split -> (path, class index), in ImageFolder's order
    skipped: list[tuple[str, str]]


def import_folder(source: str | Path, side: int = DEFAULT_SIDE, colour: bool = True, title: str | None = None,
                  data_dir: Path | None = None, progress: Callable[[int, int], None] | None = None,
                  display_name: str | None = None) -> FolderImport:
    """A folder or a .zip in ImageFolder layout -> decoded once, cached under
    <data_dir>/image-folders/<name>/, registered in lrcore.datasets; returns what was imported.

    `display_name`: the file's name as its owner knows it, when `source` is a copy under another name
    (an upload kept by its digest): the dataset's name and its source line are made from it."""
    if side not in IMAGE_SIDES:
        raise FolderError(f"image size {side} px is not offered; choose one of {', '.join(map(str, IMAGE_SIDES))}")
    found = open_source(source)
    shown = clean_file_name(display_name or "")
    if shown:
        found.name, found.label = zip_stem(shown), shown
    try:
        plan = _plan(found)
        name = dataset_name(found.name, side, colour, found.content_digest())
        root = _cache_root(data_dir)
        meta = _read_meta(root / name)
        if meta is not None:
            if title is not None and _full_title(title, side, colour) != meta["title"]:
                meta["title"] = _full_title(title, side, colour)
                _write_json(root / name / META_FILE, meta)
            _register(root / name, meta)
            return _result(meta, from_cache=True)
        tensors, meta = _decode(found, plan, side, colour, progress)
    finally:
        found.close()
    meta.update(name=name, title=_full_title(title or _default_title(found.name, plan.classes), side, colour))
    _save(root / name, tensors, meta)
    _register(root / name, meta)
    return _result(meta, from_cache=False)


def register_cached_folders(data_dir: Path | None = None) -> list[str]:
    """Register every cached folder dataset (server start, CLI); returns their names. Cheap: reads metadata only."""
    root = _cache_root(data_dir)
    names = []
    if not root.is_dir():
        return names
    for folder in sorted(root.iterdir()):
        meta = _read_meta(folder)
        if meta is not None and meta.get("name") == folder.name:
            _register(folder, meta)
            names.append(folder.name)
    return names


def example_dataset(data_dir: Path | None = None) -> str:
    """Import (or reuse the cache of) the bundled example; returns its dataset name."""
    return import_folder(EXAMPLE_FOLDER, DEFAULT_SIDE, True, title=EXAMPLE_TITLE + " (example folder, "
                         f"{DEFAULT_SIDE}x{DEFAULT_SIDE} colour)", data_dir=data_dir).name


def clean_file_name(name: str, limit: int = 100) -> str:
    """A file name from a browser, as one line: its last path part, control characters and runs of
    spaces made single spaces, at most `limit` characters ("" for none)."""
    last = PurePosixPath(name.replace("\\", "/")).name if name.strip() else ""
    line = " ".join("".join(" " if ord(char) < 32 or ord(char) == 127 else char for char in last).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def dataset_name(stem: str, side: int, colour: bool, digest: str) -> str:
    """"bees-and-ants-32-colour-1a2b3c4d": the same pictures at the same settings always get the same name."""
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40].strip("-") or "images"
    return f"{slug}-{side}-{'colour' if colour else 'grey'}-{digest[:8]}"


# ---------------------------------------------------------------- layout

def _plan(found: Source) -> _Plan:
    """Which file is which class in which split; FolderError for a layout that cannot be used.

    Only pictures decide the layout: a README, notes.txt or a stray file beside the class folders is skipped
    and listed, never taken for a class (system files such as .DS_Store and __MACOSX/ never get here)."""
    paths = sorted(found.files)
    pictures = [path for path in paths if path.lower().endswith(IMAGE_EXTENSIONS)]
    prefix = _top_folder(pictures)
    skipped: list[tuple[str, str]] = []
    items: dict[str, list[tuple[str, str]]] = {}
    tops = {PurePosixPath(path[len(prefix):]).parts[0].lower() for path in pictures
            if path.startswith(prefix) and len(PurePosixPath(path[len(prefix):]).parts) > 1}
    split_layout = "train" in {SPLIT_FOLDERS.get(top) for top in tops}
    if not split_layout and tops & {"val", "valid", "validation"}:
        raise FolderError("the folder has a val/ folder but no train/ folder; put the training pictures in "
                          "train/<class>/, or use class folders only (root/<class>/...)")
    for path in paths:
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            skipped.append((path, NOT_AN_IMAGE))
            continue
        if not path.startswith(prefix):
            skipped.append((path, f"{OUTSIDE}{prefix}, the folder that holds the class folders"))
            continue
        parts = PurePosixPath(path[len(prefix):]).parts
        if split_layout:
            split = SPLIT_FOLDERS.get(parts[0].lower())
            if split is None:
                skipped.append((path, NOT_IN_A_SPLIT))
                continue
            parts = parts[1:]
        else:
            split = "train"
        if len(parts) < 2:
            skipped.append((path, NOT_IN_A_CLASS))
        elif found.files[path] > MAX_IMAGE_BYTES:
            skipped.append((path, f"file is {size_text(found.files[path])}; a picture may be at most "
                                  f"{size_text(MAX_IMAGE_BYTES)}"))
        else:
            items.setdefault(split, []).append((path, parts[0]))
    classes = tuple(sorted({cls for _, cls in items.get("train", [])}))  # as ImageFolder: sorted names
    _check_classes(classes, items, split_layout, len(paths))
    layout = LAYOUTS[2] if not split_layout else LAYOUTS[0] if "test" in items else LAYOUTS[1]
    if split_layout and "val" not in items:
        layout = "train/test folders"
    index = {cls: i for i, cls in enumerate(classes)}
    return _Plan(layout, classes, {split: [(path, index[cls]) for path, cls in members]
                                   for split, members in items.items()}, skipped)


def _top_folder(pictures: list[str]) -> str:
    """The prefix of the one folder that holds the class (or train/val) folders: a zip of a folder, or a
    folder with a README beside its folder of pictures. Descended into while the pictures lie in a single
    folder that has picture folders of its own; loose pictures beside it are left out (and listed as
    skipped). A folder holding only pictures is a class, so one lone class folder stays a class."""
    prefix = ""
    for _ in range(8):
        parts = [PurePosixPath(path[len(prefix):]).parts for path in pictures if path.startswith(prefix)]
        folders = {p[0] for p in parts if len(p) > 1}
        if len(folders) != 1:
            return prefix
        folder = next(iter(folders))
        if folder.lower() in SPLIT_FOLDERS or not any(len(p) > 2 and p[0] == folder for p in parts):
            return prefix
        prefix += folder + "/"
    return prefix


def _check_classes(classes: tuple[str, ...], items: dict, split_layout: bool, files: int) -> None:
    example = "root/ants/1.jpg, root/bees/1.jpg" + (" (under train/ and val/)" if split_layout else "")
    if not classes:
        raise FolderError(f"no class folders with pictures found ({files:,} files); put the pictures of each "
                          f"class in their own sub-folder, e.g. {example}")
    if len(classes) == 1:
        raise FolderError(f"only one class folder ({classes[0]!r}); a classifier needs at least two, e.g. {example}")
    if len(classes) > MAX_CLASSES:
        raise FolderError(f"{len(classes):,} class folders; at most {MAX_CLASSES} classes are allowed")
    long = [cls for cls in classes if len(cls) > MAX_CLASS_NAME]
    if long:
        raise FolderError(f"a class folder's name is {len(long[0]):,} characters long; at most {MAX_CLASS_NAME} "
                          f"are allowed (it starts {long[0][:20]!r})")
    for split in ("val", "test"):
        if split not in items:
            continue
        theirs = {cls for _, cls in items[split]}
        if theirs != set(classes):
            differences = [f"{split}/ lacks {', '.join(sorted(set(classes) - theirs))}" if set(classes) - theirs else "",
                           f"train/ lacks {', '.join(sorted(theirs - set(classes)))}" if theirs - set(classes) else ""]
            raise FolderError(f"{split}/ and train/ must have the same class folders: "
                              f"{'; '.join(d for d in differences if d)}")
    total = sum(len(members) for members in items.values())
    if total > MAX_IMAGES:
        raise FolderError(f"found {total:,} pictures; at most {MAX_IMAGES:,} are allowed (a few hundred per class "
                          "are plenty at these sizes)")


# ---------------------------------------------------------------- decoding and splits

def _decode(found: Source, plan: _Plan, side: int, colour: bool,
            progress: Callable[[int, int], None] | None) -> tuple[dict[str, torch.Tensor], dict]:
    total = sum(len(members) for members in plan.items.values())
    skipped = list(plan.skipped)
    decoded: dict[str, tuple[list[torch.Tensor], list[int]]] = {}
    done = 0
    for split in ("train", "val", "test"):
        images, labels = decoded.setdefault(split, ([], []))
        for path, label in plan.items.get(split, []):
            try:
                images.append(decode_photo(found.read(path), side, colour))
                labels.append(label)
            except ImageError as error:
                skipped.append((path, str(error)))
            except Exception as error:  # noqa: BLE001 -- a broken or encrypted zip member: skip that one
                skipped.append((path, f"cannot be read ({type(error).__name__}: {error})"))
            done += 1
            if progress is not None:
                progress(done, total)
    shape = (3, side, side) if colour else (side, side)
    stacked = {split: (torch.stack(images) if images else torch.empty((0, *shape), dtype=torch.uint8),
                       torch.tensor(labels, dtype=torch.int64))
               for split, (images, labels) in decoded.items()}
    _check_usable(stacked, plan, skipped, total)
    tensors, counts, note = _splits(stacked, plan)
    note = f"your images from {found.label or found.name}: {plan.layout}; {note}"
    meta = {"version": CACHE_VERSION, "class_names": list(plan.classes), "shape": [3 if colour else 1, side, side],
            "counts": counts, "layout": plan.layout, "skipped": [list(entry) for entry in skipped],
            "source": found.label or found.name, "side": side, "colour": colour, "source_note": note}
    return tensors, meta


def _check_usable(stacked: dict, plan: _Plan, skipped: list, total: int) -> None:
    if not sum(len(labels) for _, labels in stacked.values()):
        reasons = "; ".join(f"{path}: {why}" for path, why in skipped[:3])
        raise FolderError(f"none of the {total:,} pictures could be used ({reasons}); pictures must be PNG or JPEG")
    for split in ("val", "test"):
        if split in plan.items and not len(stacked[split][1]):
            raise FolderError(f"none of the pictures in {split}/ could be used; it needs PNG or JPEG pictures "
                              "in the same class folders as train/ (or leave it out)")
    counts = torch.bincount(stacked["train"][1], minlength=len(plan.classes))
    for cls, count in zip(plan.classes, counts.tolist()):
        if count < MIN_IMAGES_PER_CLASS:
            where = "train/" if plan.layout != LAYOUTS[2] else "its folder"
            raise FolderError(f"class {cls!r} has {count} usable picture{'s' if count != 1 else ''} in {where}; "
                              f"each class needs at least {MIN_IMAGES_PER_CLASS}")


def _splits(stacked: dict, plan: _Plan) -> tuple[dict[str, torch.Tensor], dict, str]:
    """The cached tensors: the pool (train, then val/), its validation index, and the test set
    (test/, else a fixed stratified TEST_FRACTION of train/)."""
    train_images, train_labels = stacked["train"]
    if "test" in plan.items:
        test_images, test_labels = stacked["test"]
        note = "test set: the test/ folder"
    else:
        generator = torch.Generator().manual_seed(SPLIT_SEED)
        is_test = torch.zeros(len(train_labels), dtype=torch.bool)
        for cls in range(len(plan.classes)):
            members = torch.nonzero(train_labels == cls).flatten()
            members = members[torch.randperm(len(members), generator=generator)]
            is_test[members[:max(1, round(TEST_FRACTION * len(members)))]] = True
        test_images, test_labels = train_images[is_test], train_labels[is_test]
        train_images, train_labels = train_images[~is_test], train_labels[~is_test]
        note = f"test set: a fixed {TEST_FRACTION:.0%} of each class (no test/ folder)"
    val_images, val_labels = stacked["val"]
    has_val = "val" in plan.items
    validation = torch.arange(len(train_labels), len(train_labels) + len(val_labels)) if has_val else None
    note += "; validation set: the val/ folder" if has_val else ""
    tensors = {"train_images": torch.cat([train_images, val_images]).contiguous(),
               "train_labels": torch.cat([train_labels, val_labels]).contiguous(),
               "test_images": test_images.contiguous(), "test_labels": test_labels.contiguous(),
               "validation_index": validation if validation is not None else torch.empty(0, dtype=torch.int64),
               "has_validation": torch.tensor(has_val)}
    counts = {}
    for split, labels in (("train", train_labels), ("val", val_labels if has_val else None), ("test", test_labels)):
        if labels is not None:
            tally = Counter(labels.tolist())
            counts[split] = {cls: tally.get(i, 0) for i, cls in enumerate(plan.classes)}
    return tensors, counts, note


# ---------------------------------------------------------------- cache and registry

def _cache_root(data_dir: Path | None) -> Path:
    from .data import default_data_dir  # lrcore.data imports the registry; import it only when needed

    return (Path(data_dir) if data_dir is not None else default_data_dir()) / CACHE_FOLDER


def _save(folder: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Written into a temporary folder that is then renamed: a reader never sees half a cache, and
    two imports of the same zip at once both end with one complete copy."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        torch.save(tensors, temporary / TENSORS_FILE)
        _write_json(temporary / META_FILE, meta)
        try:
            os.rename(temporary, folder)
        except OSError:
            if _read_meta(folder) is None:  # not another import's finished copy: a real failure
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _write_json(path: Path, values: dict) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(values, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(partial, path)


def _read_meta(folder: Path) -> dict | None:
    """The cache's metadata, or None when it is missing, from another version, or not ours."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        ok = (meta.get("version") == CACHE_VERSION and (folder / TENSORS_FILE).is_file()
              and isinstance(meta.get("title"), str) and isinstance(meta.get("class_names"), list)
              and all(isinstance(cls, str) for cls in meta["class_names"])
              and isinstance(meta.get("shape"), list) and len(meta["shape"]) == 3)
        return meta if ok else None
    except (OSError, ValueError, AttributeError):
        return None


def _register(folder: Path, meta: dict) -> None:
    datasets.register(DatasetInfo(
        meta["name"], meta["title"], tuple(meta["class_names"]), tuple(meta["shape"]), False, load_cache,
        files=(TENSORS_FILE,), folder=folder.resolve(), source_note=meta.get("source_note", "")))


def load_cache(folder: Path) -> tuple[torch.Tensor, ...]:
    """A cached folder dataset: train pool images and labels, test images and labels, and the
    validation index (None without a val/ folder). Plain tensors, read with weights_only=True."""
    try:
        tensors = torch.load(Path(folder) / TENSORS_FILE, weights_only=True, map_location="cpu")
        validation = tensors["validation_index"] if bool(tensors["has_validation"]) else None
        return (tensors["train_images"], tensors["train_labels"], tensors["test_images"], tensors["test_labels"],
                validation)
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as error:
        raise DatasetUnavailable(f"the decoded pictures in {folder} cannot be read ({error}); "
                                 "import the folder or zip again") from None


def _result(meta: dict, from_cache: bool) -> FolderImport:
    return FolderImport(meta["name"], meta["title"], tuple(meta["class_names"]),
                        {split: dict(counts) for split, counts in meta["counts"].items()}, meta["layout"],
                        tuple(tuple(entry) for entry in meta["skipped"]), from_cache, meta.get("source_note", ""),
                        str(meta.get("source", "")))


def _default_title(stem: str, classes: tuple[str, ...]) -> str:
    return " vs ".join(classes) if len(classes) <= 3 else f"{stem}: {len(classes)} classes"


def _full_title(title: str, side: int, colour: bool) -> str:
    if title.endswith(")"):
        return title
    return f"{title} (your images, {side}x{side} {'colour' if colour else 'greyscale'})"
