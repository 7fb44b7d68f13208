"""The files of an image folder or a .zip of one, listed and read without trusting the zip.

A zip comes from a stranger's browser, so everything is checked from the zip's own directory
BEFORE any member is read: the file's size, member paths that are absolute or climb out with
`..`, the declared uncompressed total and each member's compression ratio (a zip bomb).
Nothing is ever extracted to disk: members are read into memory one at a time, and
`zipfile` never returns more bytes than a member declares.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MAX_ZIP_BYTES = 100 * 2**20  # what one upload may be (the dashboard's server.maxUploadSize must allow it)
MAX_UNCOMPRESSED_BYTES = 1024 * 2**20  # all members together, as the zip declares them
MAX_RATIO = 100  # uncompressed / compressed; JPEG and PNG barely compress, a bomb's filler by 1000x
RATIO_CHECK_BYTES = 2**20  # smaller members may compress as they like: they cannot hurt
IGNORED_NAMES = {"thumbs.db", "desktop.ini"}  # Windows' and macOS' litter (dot files: .DS_Store, ._x)
IGNORED_FOLDERS = {"__macosx"}


class FolderError(ValueError):
    """The folder or zip can't be used; the message says what was wrong and what is allowed."""


def ignored(path: str) -> bool:
    """Files a computer adds by itself: __MACOSX/, dot files and folders, Thumbs.db, desktop.ini."""
    parts = PurePosixPath(path).parts
    return any(part.startswith(".") or part.lower() in IGNORED_FOLDERS for part in parts) \
        or parts[-1].lower() in IGNORED_NAMES


def size_text(size: int) -> str:
    if size < 2**10:
        return f"{size:,} bytes"
    return f"{size / 2**20:,.1f} MB" if size >= 2**20 else f"{size / 2**10:,.0f} KB"


@dataclass
class Source:
    """The usable files (relative POSIX paths -> size in bytes) of a folder or a zip, and how to read them."""

    name: str  # the folder's or zip's name without .zip: the dataset's name starts from it
    label: str = ""  # the folder's or zip's file name as its owner knows it ("bees.zip"), shown as the source
    files: dict[str, int] = field(default_factory=dict)
    root: Path | None = None  # a folder on disk...
    archive: zipfile.ZipFile | None = None  # ...or an open zip
    members: dict[str, zipfile.ZipInfo] = field(default_factory=dict)
    digest: str = ""  # sha256 of the zip file; a folder's (paths and contents) is computed on demand

    def content_digest(self) -> str:
        """sha256 of the zip file, or of the folder's usable paths and their contents."""
        if not self.digest:
            digest = hashlib.sha256()
            for relative in sorted(self.files):
                digest.update(relative.encode() + b"\0" + self.read(relative))
            self.digest = digest.hexdigest()
        return self.digest

    def read(self, path: str) -> bytes:
        if self.archive is not None:
            return self.archive.read(self.members[path])
        return (self.root / path).read_bytes()

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def open_source(source: str | Path) -> Source:
    """A folder or a .zip as a Source; FolderError when it is missing or a zip that must be refused."""
    path = Path(source)
    if path.is_dir():
        return _open_folder(path)
    if not path.is_file():
        raise FolderError(f"{path} does not exist; give a folder of images or a .zip of one")
    return _open_zip(path)


def _open_folder(root: Path) -> Source:
    found = Source(stem(root.resolve().name), root.resolve().name, root=root)
    for directory, folders, names in os.walk(root):
        folders.sort()
        for name in sorted(names):
            full = Path(directory) / name
            relative = full.relative_to(root).as_posix()
            if ignored(relative) or not full.is_file():
                continue
            found.files[relative] = full.stat().st_size
    return found


def _open_zip(path: Path) -> Source:
    size = path.stat().st_size
    if size > MAX_ZIP_BYTES:
        raise FolderError(f"{path.name} is {size_text(size)}; a zip may be at most {size_text(MAX_ZIP_BYTES)} "
                          "(use fewer or smaller pictures: a few hundred photos of any size are plenty)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise FolderError(f"{path.name} is not a zip file ({error}); upload a .zip of a folder "
                          "with one sub-folder of pictures per class") from None
    try:
        found = Source(stem(path.name), path.name, archive=archive)
        _check_members(archive.infolist())
        for info in archive.infolist():
            name = info.filename.replace("\\", "/")
            if info.is_dir() or ignored(name) or stat.S_ISLNK(info.external_attr >> 16):
                continue
            found.members[name] = info
            found.files[name] = info.file_size
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        found.digest = digest.hexdigest()
        return found
    except BaseException:
        archive.close()
        raise


def _check_members(members: list[zipfile.ZipInfo]) -> None:
    """Refuse the whole zip for one escaping path or a bomb, naming the member: nothing has been read yet."""
    total = 0
    for info in members:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise FolderError(f"the zip holds {name!r}, a path outside its folder (absolute or with '..'); "
                              "every file must be inside the zipped folder. Make the zip again from the folder")
        total += info.file_size
        if info.file_size > RATIO_CHECK_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise FolderError(
                f"the zip looks like a zip bomb: {name!r} unpacks from {size_text(info.compress_size)} to "
                f"{size_text(info.file_size)} ({info.file_size // max(info.compress_size, 1):,}x); pictures "
                f"compress at most {MAX_RATIO}x. Zip the folder of pictures itself")
    if total > MAX_UNCOMPRESSED_BYTES:
        raise FolderError(f"the zip unpacks to {size_text(total)}; at most {size_text(MAX_UNCOMPRESSED_BYTES)} "
                          "of pictures are allowed (a zip bomb, or far more pictures than needed)")


def stem(name: str) -> str:
    """A zip's name without .zip (a folder's as it is)."""
    return name[:-4] if name.lower().endswith(".zip") else name
