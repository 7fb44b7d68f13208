"""lrcore.image_folder: layouts, zips refused before anything is read, per-picture failures, splits, cache."""
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrcore import datasets, image_folder, zip_safety
from lrcore.config import TrainConfig
from lrcore.data import load_dataset, make_splits
from lrcore.image_folder import (FolderError, example_dataset, import_folder, register_cached_folders)
from lrcore.training import train
from lrcore import events as ev
from tests.zip_helpers import class_files, make_zip, png, write

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _registry_restored():
    """Folder datasets registered by a test leave the registry as it was (other tests list its names)."""
    from lrcore import datasets as registry

    saved = dict(registry.REGISTRY)
    yield
    registry.REGISTRY.clear()
    registry.REGISTRY.update(saved)


def easy_picture(label: int, rng: np.random.Generator, side: int = 36) -> bytes:
    """Class 0: bright top half; class 1: bright bottom half; colour noise everywhere."""
    array = rng.integers(0, 90, (side, side + int(rng.integers(0, 20)), 3)).astype(np.uint8)
    half = slice(0, side // 2) if label == 0 else slice(side // 2, side)
    array[half] = np.clip(array[half].astype(int) + 150, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG" if rng.random() < 0.5 else "JPEG")
    return buffer.getvalue()


@pytest.fixture()
def data_dir(tmp_path):
    return tmp_path / "data"


def test_flat_class_folders(tmp_path, data_dir):
    root = write(tmp_path / "pets", {**class_files("", ("dogs", "cats", "Birds"), 10), "readme.txt": b"hi",
                                     ".DS_Store": b"x", "cats/Thumbs.db": b"x", "cats/notes.gif": b"GIF89a"})
    calls = []
    result = import_folder(root, 28, colour=False, data_dir=data_dir, progress=lambda d, t: calls.append((d, t)))
    assert result.class_names == ("Birds", "cats", "dogs")  # sorted like ImageFolder (case-sensitive)
    assert result.layout == "class folders" and not result.from_cache
    assert result.counts["test"] == {"Birds": 2, "cats": 2, "dogs": 2}  # a fixed 20% of each class
    assert result.counts["train"] == {"Birds": 8, "cats": 8, "dogs": 8} and "val" not in result.counts
    assert dict(result.skipped) == {"readme.txt": "not a PNG or JPEG image",
                                    "cats/notes.gif": "not a PNG or JPEG image"}  # .DS_Store, Thumbs.db: silent
    assert calls[-1] == (30, 30) and len(calls) == 30
    info = datasets.get(result.name)
    assert info.shape == (1, 28, 28) and not info.digits and info.title == "Birds vs cats vs dogs (your images, 28x28 greyscale)"
    dataset = load_dataset(result.name, data_dir=data_dir)
    assert dataset.train_images.shape == (24, 28, 28) and not dataset.fixed_validation
    assert dataset.test_images.shape == (6, 28, 28)
    splits = make_splits(dataset, 0.25, seed=0)
    assert len(splits.validation) == 6  # the usual random split of the pool


def test_train_val_folders_and_fixed_validation(tmp_path, data_dir):
    root = write(tmp_path / "hymenoptera_data", {**class_files("train/"), **class_files("val/", count=3)})
    result = import_folder(root, 32, data_dir=data_dir)
    assert result.layout == "train/val folders"
    assert result.counts == {"train": {"ants": 4, "bees": 4}, "val": {"ants": 3, "bees": 3},
                             "test": {"ants": 1, "bees": 1}}
    dataset = load_dataset(result.name, data_dir=data_dir)
    assert dataset.fixed_validation and dataset.train_images.shape == (14, 3, 32, 32)
    val_images = dataset.train_images[dataset.validation_index]
    assert (val_images[:, 0, 5, 5] == 220).sum() == 3 and (val_images[:, 2, 5, 5] == 220).sum() == 3
    for fraction in (0.1, 0.5, 0.9):  # the val/ folder IS the validation set, whatever the fraction
        splits = make_splits(dataset, fraction, seed=3)
        assert splits.validation.tolist() == dataset.validation_index.tolist()
        assert sorted(splits.train.tolist()) == list(range(8))


def test_train_val_test_in_a_zip_of_a_folder(tmp_path, data_dir):
    files = {**class_files("bees/train/"), **class_files("bees/valid/", count=2), **class_files("bees/test/", count=3),
             "__MACOSX/bees/train/ants/._0.png": b"junk", "bees/train/ants/.hidden.png": b"junk"}
    result = import_folder(make_zip(tmp_path / "bees.zip", files), 32, data_dir=data_dir)
    assert result.layout == "train/val/test folders" and result.skipped == ()
    assert result.counts == {"train": {"ants": 5, "bees": 5}, "val": {"ants": 2, "bees": 2},
                             "test": {"ants": 3, "bees": 3}}
    assert result.name.startswith("bees-32-colour-")


def test_cache_reused_and_registered_after_restart(tmp_path, data_dir, monkeypatch):
    archive = make_zip(tmp_path / "my pics.zip", class_files("my pics/"))
    first = import_folder(archive, 32, data_dir=data_dir)
    monkeypatch.setattr(image_folder, "decode_photo", lambda *a: pytest.fail("decoded again"))
    second = import_folder(archive, 32, data_dir=data_dir)
    assert second.from_cache and second.name == first.name and second.counts == first.counts
    # A new process: only the cache's metadata is read, and the dataset loads from the cache.
    code = ("import sys; from pathlib import Path; from lrcore import datasets; "
            "from lrcore.image_folder import register_cached_folders; from lrcore.data import load_dataset, locate; "
            f"names = register_cached_folders(Path({str(data_dir)!r})); print(names); "
            "d = load_dataset(names[0], Path(sys.argv[1])); print(tuple(d.train_images.shape), datasets.get(names[0]).title)")
    out = subprocess.run([sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True, cwd=ROOT, check=True)
    assert first.name in out.stdout and "(8, 3, 32, 32) ants vs bees (your images, 32x32 colour)" in out.stdout
    del datasets.REGISTRY[first.name]
    assert register_cached_folders(data_dir) == [first.name] and first.name in datasets.REGISTRY


def test_other_settings_get_another_dataset(tmp_path, data_dir):
    root = write(tmp_path / "pics", class_files(""))
    names = {import_folder(root, side, colour, data_dir=data_dir).name for side, colour in ((32, True), (28, True), (32, False))}
    assert len(names) == 3


NOT_AN_IMAGE = "not a PNG or JPEG image"


def test_a_zip_of_a_folder_with_a_stray_file_beside_the_class_folders(tmp_path, data_dir):
    files = {**class_files("bees-and-ants/"), "bees-and-ants/notes.txt": b"taken in May", "bees-and-ants/bees/x.txt": b"."}
    result = import_folder(make_zip(tmp_path / "bees-and-ants.zip", files), 32, data_dir=data_dir)
    assert result.class_names == ("ants", "bees") and result.layout == "class folders"
    assert dict(result.skipped) == {"bees-and-ants/notes.txt": NOT_AN_IMAGE, "bees-and-ants/bees/x.txt": NOT_AN_IMAGE}


def test_a_zip_made_by_macos_finder(tmp_path, data_dir):
    """Finder's 'Compress': __MACOSX/ resource forks beside the folder, .DS_Store in it, Windows' litter too."""
    files = {**class_files("bees-and-ants/"), "__MACOSX/._bees-and-ants": b"\0\5\26\7",
             "__MACOSX/bees-and-ants/ants/._0.png": b"\0\5\26\7", "__MACOSX/bees-and-ants/._notes.txt": b"\0",
             "bees-and-ants/.DS_Store": b"Bud1", "bees-and-ants/ants/.DS_Store": b"Bud1",
             "bees-and-ants/Thumbs.db": b"x", "bees-and-ants/desktop.ini": b"x", "bees-and-ants/notes.txt": b"hi"}
    result = import_folder(make_zip(tmp_path / "bees-and-ants.zip", files), 32, data_dir=data_dir)
    assert result.class_names == ("ants", "bees")
    assert result.skipped == (("bees-and-ants/notes.txt", NOT_AN_IMAGE),)  # system files: silently ignored


def test_a_folder_with_a_readme_beside_its_one_folder_of_classes(tmp_path, data_dir):
    root = write(tmp_path / "project", {"README.md": b"# my pictures", "LICENSE": b"CC-BY",
                                        **class_files("pictures/train/"), **class_files("pictures/val/", count=2)})
    result = import_folder(root, 32, data_dir=data_dir)
    assert result.class_names == ("ants", "bees") and result.layout == "train/val folders"
    assert dict(result.skipped) == {"README.md": NOT_AN_IMAGE, "LICENSE": NOT_AN_IMAGE}


def test_loose_pictures_beside_class_folders_are_skipped_and_named(tmp_path, data_dir):
    files = {**class_files("pics/"), "pics/cover.jpg": png(fmt="JPEG"), "pics/readme.txt": b"hi", "extra.png": png()}
    result = import_folder(make_zip(tmp_path / "pics.zip", files), 32, data_dir=data_dir)
    assert result.class_names == ("ants", "bees")
    assert dict(result.skipped) == {
        "pics/cover.jpg": "not in a class folder (each class needs its own sub-folder)",
        "pics/readme.txt": NOT_AN_IMAGE,
        "extra.png": "outside pics/, the folder that holds the class folders"}


def test_one_class_folder_with_a_stray_file_stays_one_class(tmp_path, data_dir):
    files = {**class_files("", ("cats",)), "cats/notes.txt": b"hi", "notes.txt": b"hi"}
    with pytest.raises(FolderError, match=r"only one class folder \('cats'\)"):
        import_folder(make_zip(tmp_path / "cats.zip", files), 32, data_dir=data_dir)


def test_an_upload_kept_by_its_digest_is_named_by_its_own_file_name(tmp_path, data_dir):
    kept = make_zip(tmp_path / ("0123abcd" * 8 + ".zip"), class_files("pics/"))  # as ui.folder_upload keeps it
    result = import_folder(kept, 32, data_dir=data_dir, display_name="C:\\fakepath\\Bees & Ants\t(2).zip")
    assert result.name.startswith("bees-ants-2-32-colour-") and result.source == "Bees & Ants (2).zip"
    assert result.source_note.startswith("your images from Bees & Ants (2).zip: class folders; ")
    plain = import_folder(make_zip(tmp_path / "bees.zip", class_files("pics/")), 32, data_dir=data_dir)
    assert plain.source == "bees.zip" and plain.source_note.startswith("your images from bees.zip: ")
    assert image_folder.clean_file_name("a" * 150 + ".zip") == "a" * 99 + "…"
    assert image_folder.clean_file_name("  ") == "" and image_folder.clean_file_name("x/\n") == ""


def test_a_broken_picture_is_skipped_and_named(tmp_path, data_dir):
    files = {**class_files(""), "ants/broken.jpg": b"\xff\xd8\xff\xe0 not really", "bees/fake.png": b"hello"}
    result = import_folder(write(tmp_path / "pics", files), 32, data_dir=data_dir)
    reasons = dict(result.skipped)
    assert "corrupt or truncated" in reasons["ants/broken.jpg"] and reasons["bees/fake.png"] == "not a PNG or JPEG image"
    assert result.counts["train"]["ants"] + result.counts["test"]["ants"] == 5


@pytest.mark.parametrize("files, message", [
    ({"a.png": png(), "b.png": png()}, "no class folders"),
    (class_files("", ("cats",)), "only one class folder ('cats')"),
    ({**class_files(""), "cats/0.png": png()}, None),  # three classes, one with a single picture
    ({**class_files("train/"), **class_files("val/", ("ants", "wasps"))}, "val/ lacks bees; train/ lacks wasps"),
    ({**class_files("train/"), **class_files("test/", ("ants",))}, "test/ lacks bees"),
    (class_files("val/"), "val/ folder but no train/"),
    ({"ants/a.png": b"nope", "ants/b.png": b"nope", "bees/c.png": b"nope", "bees/d.png": b"nope"}, "none of the 4"),
])
def test_unusable_folders(tmp_path, data_dir, files, message):
    with pytest.raises(FolderError) as caught:
        import_folder(write(tmp_path / "pics", files), 32, data_dir=data_dir)
    assert (message or "class 'cats' has 1 usable picture in its folder; each class needs at least 2") in str(caught.value)


def test_too_many_pictures(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(image_folder, "MAX_IMAGES", 7)
    with pytest.raises(FolderError, match="found 10 pictures; at most 7 are allowed"):
        import_folder(write(tmp_path / "pics", class_files("")), 32, data_dir=data_dir)


def test_zip_too_big_and_not_a_zip(tmp_path, data_dir, monkeypatch):
    archive = make_zip(tmp_path / "pics.zip", class_files(""))
    monkeypatch.setattr(zip_safety, "MAX_ZIP_BYTES", 1000)
    with pytest.raises(FolderError, match=r"pics.zip is .* KB; a zip may be at most 1,000 bytes"):
        import_folder(archive, 32, data_dir=data_dir)
    (tmp_path / "fake.zip").write_bytes(b"PK not a zip at all")
    monkeypatch.setattr(zip_safety, "MAX_ZIP_BYTES", 10**8)
    with pytest.raises(FolderError, match="fake.zip is not a zip file"):
        import_folder(tmp_path / "fake.zip", 32, data_dir=data_dir)


@pytest.mark.parametrize("bad", ["../evil.png", "/etc/evil.png", "ants/../../evil.png", "C:/evil.png"])
def test_zip_with_escaping_path_refused_whole(tmp_path, data_dir, bad, monkeypatch):
    archive = make_zip(tmp_path / "pics.zip", {**class_files(""), bad: png()})
    monkeypatch.setattr(image_folder, "decode_photo", lambda *a: pytest.fail("read a member of a refused zip"))
    with pytest.raises(FolderError, match="a path outside its folder") as caught:
        import_folder(archive, 32, data_dir=data_dir)
    assert repr(bad) in str(caught.value)
    assert not (data_dir / "image-folders").exists()


def test_zip_bomb_refused(tmp_path, data_dir, monkeypatch):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in class_files("").items():
            archive.writestr(name, data)
        archive.writestr("ants/huge.png", b"\0" * (20 * 2**20))  # 20 MB of zeros: ~20 KB compressed
    monkeypatch.setattr(image_folder, "decode_photo", lambda *a: pytest.fail("read a member of a refused zip"))
    with pytest.raises(FolderError, match=r"zip bomb: 'ants/huge.png' unpacks from .* KB to 20.0 MB"):
        import_folder(bomb, 32, data_dir=data_dir)
    # Many members that each compress modestly but add up: the declared total is checked.
    monkeypatch.setattr(zip_safety, "MAX_UNCOMPRESSED_BYTES", 512)
    with pytest.raises(FolderError, match=r"the zip unpacks to .* at most 512 bytes"):
        import_folder(make_zip(tmp_path / "many.zip", class_files("")), 32, data_dir=data_dir)


def test_side_must_be_offered(tmp_path, data_dir):
    with pytest.raises(FolderError, match="choose one of 28, 32, 48, 64"):
        import_folder(write(tmp_path / "pics", class_files("")), 33, data_dir=data_dir)


def test_bundled_example(data_dir):
    name = example_dataset(data_dir)
    info = datasets.get(name)
    assert info.class_names == ("seven", "three") and info.shape == (3, 32, 32)
    assert info.title == "threes vs sevens (example folder, 32x32 colour)"
    dataset = load_dataset(name, data_dir=data_dir)
    assert dataset.fixed_validation and len(dataset.validation_index) == 80
    size = sum(path.stat().st_size for path in image_folder.EXAMPLE_FOLDER.rglob("*") if path.is_file())
    assert size < 1.5 * 2**20
    assert example_dataset(data_dir) == name


def test_training_on_an_easy_folder_reaches_high_accuracy(tmp_path, data_dir):
    rng = np.random.default_rng(0)
    files = {f"{split}/{cls}/{i}.png": easy_picture(label, rng)
             for split, count in (("train", 60), ("val", 20)) for label, cls in enumerate(("top", "bottom"))
             for i in range(count)}
    result = import_folder(write(tmp_path / "halves", files), 32, data_dir=data_dir)
    dataset = load_dataset(result.name, data_dir=data_dir)
    config = TrainConfig(dataset=result.name, learning_rate=0.1, epochs=10, batch_size=16,
                         normalization="standardize")
    finished = [event for event in train(config, dataset) if isinstance(event, ev.Finished)][0]
    assert finished.validation_accuracy >= 0.95 and finished.test_accuracy >= 0.9
