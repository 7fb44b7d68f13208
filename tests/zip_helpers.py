"""Building test zips (and folders) of small pictures in ImageFolder layout, for every test that needs one."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Callable, Mapping

from PIL import Image

Picture = Callable[[int, int], bytes]  # (class index, picture number) -> the picture's file content


def png(colour: tuple[int, int, int] = (200, 50, 50), size: tuple[int, int] = (40, 30), fmt: str = "PNG",
        mode: str = "RGB") -> bytes:
    """One plain picture of `colour` (its first value for a one-channel `mode`), encoded as `fmt`."""
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else colour[0]).save(buffer, fmt)
    return buffer.getvalue()


def class_files(prefix: str = "", classes: tuple[str, ...] = ("ants", "bees"), count: int = 5,
                picture: Picture | None = None) -> dict[str, bytes]:
    """`{prefix}{class}/{i}.png` for `count` pictures of each class, in class order; by default a plain
    colour per class (red, blue, green, ...) at a slightly different size each."""
    colours = [(220, 40, 40), (40, 40, 220), (40, 220, 40)]
    picture = picture or (lambda label, i: png(colours[label % len(colours)], (30 + i, 40)))
    return {f"{prefix}{cls}/{i}.png": picture(label, i) for label, cls in enumerate(classes) for i in range(count)}


def make_zip(path: Path, files: Mapping[str, bytes | str]) -> Path:
    """A zip at `path` holding `files` (member name -> content, in the given order); returns `path`."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def write(root: Path, files: Mapping[str, bytes]) -> Path:
    """The same files as a folder on disk under `root` (made as needed); returns `root`."""
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root
