"""Write lrcore/bundled/threes-and-sevens/: a small image-folder dataset made of real MNIST digits.

Threes and sevens from the bundled MNIST sample, written as the pictures a student might collect:
PNG and JPEG files of varied sizes, dark ink on tinted paper in colour, some greyscale, a few palette
and transparent PNGs and a JPEG stored sideways with an EXIF rotation. train/ and val/ folders, as
tutorial 002. Deterministic: run it again and the same files come out.

    .venv/bin/python tools/make_example_folder.py
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lrcore.datasets import IDX_FILES, read_idx  # noqa: E402
from lrcore.image_folder import EXAMPLE_FOLDER  # noqa: E402

CLASSES = {"three": 3, "seven": 7}
PER_SPLIT = {"train": 120, "val": 40}
PAPERS = [(255, 255, 255), (250, 244, 225), (226, 238, 250), (232, 248, 232), (252, 232, 236)]
INKS = [(20, 20, 20), (25, 45, 140), (140, 25, 30), (20, 100, 45), (70, 30, 110)]


def picture(digit: np.ndarray, number: int, rng: np.random.Generator) -> tuple[Image.Image, str, dict]:
    """One digit as a file: (image, extension, save options)."""
    side = int(rng.integers(28, 73))
    ink = digit.astype(np.float32)[..., None] / 255.0
    kind = number % 10
    if kind == 9:  # greyscale: black on white
        grey = (255 - digit).astype(np.uint8)
        return Image.fromarray(grey, "L").resize((side, side), Image.Resampling.BILINEAR), ".png", {}
    paper = np.array(PAPERS[int(rng.integers(len(PAPERS)))], dtype=np.float32)
    colour = np.array(INKS[int(rng.integers(len(INKS)))], dtype=np.float32)
    rgb = Image.fromarray((paper * (1 - ink) + colour * ink).round().astype(np.uint8), "RGB")
    rgb = rgb.resize((side, side), Image.Resampling.BILINEAR)
    if kind == 8 and number % 20 == 8:  # palette PNG
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), ".png", {}
    if kind == 8:  # transparent paper (RGBA): shown on white
        rgba = Image.fromarray(np.dstack([np.full((28, 28, 3), colour, dtype=np.uint8), digit]), "RGBA")
        return rgba.resize((side, side), Image.Resampling.BILINEAR), ".png", {}
    if kind == 7 and number % 40 == 7:  # a phone's sideways JPEG: stored rotated, EXIF says turn it back
        exif = Image.Exif()
        exif[0x0112] = 6
        return rgb.transpose(Image.Transpose.ROTATE_90), ".jpg", {"quality": 85, "exif": exif}
    if kind in (5, 6, 7):
        return rgb, ".jpg", {"quality": 85}
    return rgb, ".png", {"optimize": True}


def main() -> None:
    images = read_idx(ROOT / "lrcore" / "bundled" / f"{IDX_FILES['test_images']}.gz").numpy()
    labels = read_idx(ROOT / "lrcore" / "bundled" / f"{IDX_FILES['test_labels']}.gz").numpy()
    rng = np.random.default_rng(0)
    shutil.rmtree(EXAMPLE_FOLDER, ignore_errors=True)
    for name, digit in CLASSES.items():
        members = np.flatnonzero(labels == digit)
        start = 0
        for split, count in PER_SPLIT.items():
            folder = EXAMPLE_FOLDER / split / name
            folder.mkdir(parents=True)
            for number, index in enumerate(members[start:start + count]):
                image, extension, options = picture(images[index], number, rng)
                image.save(folder / f"{name}-{index:05d}{extension}", **options)
            start += count
    total = sum(path.stat().st_size for path in EXAMPLE_FOLDER.rglob("*") if path.is_file())
    print(f"wrote {EXAMPLE_FOLDER} ({total / 2**20:.2f} MB)")


if __name__ == "__main__":
    main()
