"""The Data page in Streamlit's AppTest: dataset choice, missing datasets, downloads, charts and images."""
from __future__ import annotations

import gzip
import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.apptest_helpers import open_page, start_run, texts, wait_for_run

import lrcore.data
from lrcore import TrainConfig
from lrcore.data import FILES, load_dataset, pixel_statistics
from lrcore.download import DownloadJob
from ui import common
from ui.text import md_escape

APP = "../dashboard.py"  # relative to this file
PAGE = "pages/data.py"


def write_idx(path: Path, array: torch.Tensor) -> None:
    """An IDX file of unsigned bytes, as MNIST ships them (gzipped)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(size.to_bytes(4, "big") for size in array.shape)
    with gzip.open(path, "wb") as out:
        out.write(header + array.to(torch.uint8).contiguous().numpy().tobytes())


def write_fake_mnist(data_dir: Path, train: int = 300, test: int = 100) -> Path:
    """Tiny random 'MNIST' in the folder torchvision would use, so the page can switch to it offline."""
    folder = data_dir / "MNIST" / "raw"
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", train), ("test", test)):
        write_idx(folder / f"{FILES[split + '_images']}.gz",
                  torch.randint(0, 256, (count, 28, 28), generator=generator, dtype=torch.uint8))
        write_idx(folder / f"{FILES[split + '_labels']}.gz", torch.arange(count) % 10)
    return folder


@pytest.fixture(autouse=True)
def fresh_data_dir(tmp_path, monkeypatch):
    """Every test gets an empty data folder; process-wide caches it may fill are emptied afterwards."""
    monkeypatch.setenv("LRCORE_DATA_DIR", str(tmp_path))
    yield tmp_path
    for name in ("mnist", "fashion-mnist"):
        common.get_jobs().remove(f"download-{name}")
    common.get_dataset.clear()


def data_page(query: dict | None = None) -> AppTest:
    return open_page(PAGE, query)



def image_counts(at: AppTest) -> list[int]:
    return [len(element.value) for element in at.image]


def test_default_dataset_shows_counts_examples_means_and_pixel_statistics():
    at = data_page()
    sample = load_dataset("mnist-sample")
    assert at.session_state["dataset"] == "mnist-sample"
    assert at.radio(key="data_choice").value == "mnist-sample"
    assert [m.value for m in at.metric] == [f"{len(sample.train_labels):,}", f"{len(sample.test_labels):,}", "10"]
    assert len(at.get("plotly_chart")) == 1  # class counts
    assert image_counts(at) == [44, 10]  # example grid, one mean image per class
    table = at.dataframe[0].value
    expected = pixel_statistics(sample.train_images)
    assert table.loc["train + validation pool", "mean"] == pytest.approx(expected["mean"])
    assert table.loc["test split", "std"] == pytest.approx(pixel_statistics(sample.test_images)["std"])


def test_examples_stay_put_on_reruns_and_change_on_new_sample():
    at = data_page()
    grid = at.image[0].captions
    at.run()
    assert at.image[0].captions == grid
    next(b for b in at.button if b.label == "New sample").click().run()
    assert not at.exception
    assert at.image[0].captions != grid


def test_class_filter_shows_only_that_class():
    at = data_page()
    at.selectbox(key="data_sample_class").set_value(7).run()
    assert set(at.image[0].captions) == {"7"}


def test_a_missing_dataset_shows_how_to_get_it_and_keeps_the_current_one():
    at = data_page()
    at.radio(key="data_choice").set_value("mnist").run()
    assert not at.exception
    assert at.session_state["dataset"] == "mnist-sample"
    warning = texts(at.warning)
    assert "not on this machine" in warning
    for stem in FILES.values():
        assert f"{stem}.gz" in warning
    assert "MNIST" in warning and "raw" in warning  # where to put them
    assert any(b.label.startswith("Download MNIST") for b in at.button)


def test_missing_fashion_mnist_mentions_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(lrcore.data, "DEBIAN_FASHION_DIR", tmp_path / "no-debian-package")
    at = data_page()
    at.radio(key="data_choice").set_value("fashion-mnist").run()
    assert not at.exception
    assert "apt-get install dataset-fashion-mnist" in texts(at.warning)
    assert at.session_state["dataset"] == "mnist-sample"


def test_choosing_an_available_dataset_switches_session_state_and_url(fresh_data_dir):
    write_fake_mnist(fresh_data_dir)
    at = data_page()
    at.radio(key="data_choice").set_value("mnist").run()
    assert not at.exception
    assert at.session_state["dataset"] == "mnist"
    assert at.query_params["dataset"] in ("mnist", ["mnist"])
    assert [m.value for m in at.metric] == ["300", "100", "10"]


def test_the_url_picks_the_dataset_on_a_fresh_session(fresh_data_dir):
    write_fake_mnist(fresh_data_dir)
    at = data_page({"dataset": "mnist"})
    assert at.session_state["dataset"] == "mnist"
    assert at.radio(key="data_choice").value == "mnist"


def test_switching_dataset_leaves_a_training_run_alone(fresh_data_dir):
    write_fake_mnist(fresh_data_dir)
    worker = start_run(TrainConfig(epochs=200, batch_size=8), recorded=False)
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.session_state["run_id"] = worker.run_id
        at.switch_page(PAGE)
        at.run()
        at.radio(key="data_choice").set_value("mnist").run()
        assert not at.exception
        assert at.session_state["dataset"] == "mnist"
        assert "keeps training on MNIST sample" in texts(at.caption)
        record = worker.snapshot()
        assert record.status in ("starting", "training") and record.config.dataset == "mnist-sample"
        assert not worker.control.stop_requested
        step = record.progress.get("step", 0)
        wait_for_run(worker, lambda r: r.progress.get("step", 0) > step, "more batches after the switch")
    finally:
        worker.control.stop()
        worker.join(30)


def test_download_failure_shows_the_files_and_where_to_put_them(monkeypatch, fresh_data_dir):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    at = data_page()
    next(b for b in at.button if b.label.startswith("Download MNIST")).click().run()
    assert not at.exception
    job = common.get_jobs().get("download-mnist")
    job.join(60)
    at.run()
    assert not at.exception
    error = texts(at.error)
    assert "Download of train-images-idx3-ubyte.gz failed" in error and "no network (test)" in error
    for stem in FILES.values():
        assert f"{stem}.gz" in error
    assert str(fresh_data_dir / "MNIST" / "raw") in error
    assert "Traceback" not in error
    assert any(b.label.startswith("Try downloading MNIST") for b in at.button)
    assert at.session_state["dataset"] == "mnist-sample"


def test_download_job_reports_progress_and_completion(monkeypatch, tmp_path):
    seen = []

    def fake_download(name, data_dir, progress=None):
        for done in (10, 20):
            progress("train-images-idx3-ubyte.gz", done, 20)
            seen.append(done)
        return Path(data_dir) / "MNIST" / "raw"

    monkeypatch.setattr(lrcore.data, "download_dataset", fake_download)
    job = DownloadJob("mnist", tmp_path).start()
    job.join(10)
    state = job.snapshot()
    assert seen == [10, 20] and state.status == "done" and not state.active
    assert state.files["train-images-idx3-ubyte.gz"] == (20, 20)
    assert set(state.files) == {f"{stem}.gz" for stem in FILES.values()}
    assert str(tmp_path) in state.message


def test_download_job_turns_unexpected_errors_into_messages(monkeypatch, tmp_path):
    def broken(name, data_dir, progress=None):
        raise PermissionError("read-only folder")

    monkeypatch.setattr(lrcore.data, "download_dataset", broken)
    job = DownloadJob("fashion-mnist", tmp_path).start()
    job.join(10)
    state = job.snapshot()
    assert state.status == "failed"
    assert "PermissionError: read-only folder" in state.message and "t10k-labels-idx1-ubyte.gz" in state.message


# ---------------------------------------------------------------- your own images (issue 12)

def own_zip(path: Path, classes=("ants", "bees"), per_class: int = 4) -> bytes:
    """A zip of class folders of small colour PNGs (one colour per class); returns its bytes."""
    from tests.zip_helpers import class_files, make_zip, png

    def plain(index: int, _: int) -> bytes:
        return png((200 * (index == 0), 90, 200 * (index == 1)), (40, 30))
    return make_zip(path, class_files("pics/", classes, per_class, plain)).read_bytes()


def test_an_uploaded_zip_is_kept_by_its_digest_and_a_too_big_one_is_refused(tmp_path, monkeypatch):
    from lrcore import image_folder
    from ui import folder_upload
    content = own_zip(tmp_path / "in.zip")
    path = folder_upload.save_upload(content, tmp_path)
    assert path.parent == tmp_path / "uploads" and path.read_bytes() == content and len(path.stem) == 64
    assert folder_upload.save_upload(content, tmp_path) == path
    monkeypatch.setattr(image_folder, "MAX_ZIP_BYTES", 10)
    with pytest.raises(image_folder.FolderError, match="at most"):
        folder_upload.save_upload(content, tmp_path)


def finish_import(at: AppTest) -> AppTest:
    job = common.get_jobs().get(at.session_state["own_job"])
    job.join(120)
    at.run()
    at.run()
    assert not at.exception, at.exception
    return at


def test_load_imports_a_kept_zip_selects_it_and_shows_counts(fresh_data_dir):
    from ui import folder_upload
    path = folder_upload.save_upload(own_zip(fresh_data_dir / "in.zip"), fresh_data_dir)
    at = open_page(PAGE, session={"own_zip_path": str(path)})
    at.button(key="own_load").click().run()
    at = finish_import(at)
    name = at.session_state["dataset"]
    assert name in at.session_state["own_datasets"]
    assert at.radio(key="data_choice").value == name
    assert md_escape("ants vs bees (your images, 32x32 colour)") in at.radio(key="data_choice").options
    assert "ants vs bees" in texts(at.success) and "class folders" in texts(at.success)
    assert not at.error


def test_the_source_line_names_the_uploaded_file_also_after_a_restart(fresh_data_dir):
    from lrcore import datasets, image_folder
    from ui.text import md_escape
    content, file_name = own_zip(fresh_data_dir / "in.zip"), "[my bees](javascript:x) _v2_.zip"
    at = open_page(PAGE)
    at.file_uploader(key="own_zip").set_value((file_name, content, "application/zip"))
    at.button(key="own_load").click().run()
    at = finish_import(at)
    name, digest = at.session_state["dataset"], hashlib.sha256(content).hexdigest()
    assert sorted(path.name for path in (fresh_data_dir / "uploads").iterdir()) == [f"{digest}.zip"]  # kept once
    assert name.startswith("my-bees-javascript-x-v2-32-colour-")
    source = "Source: " + md_escape(f"your images from {file_name}: class folders; test set: a fixed 20% of each "
                                    "class (no test/ folder)", 400)
    assert source in texts(at.caption)
    assert f"from {md_escape(file_name)}: class folders" in texts(at.success)
    assert digest[:12] not in texts(at.caption) + texts(at.success)
    # A restart: the registry is rebuilt from the cache's metadata alone.
    del datasets.REGISTRY[name]
    common.get_dataset.clear()
    assert name in image_folder.register_cached_folders(fresh_data_dir)
    assert source in texts(open_page(PAGE, query={"dataset": name}).caption)


def test_a_bad_zip_shows_its_message_and_keeps_the_choices(fresh_data_dir):
    from tests.zip_helpers import make_zip
    from ui import folder_upload
    bad = make_zip(fresh_data_dir / "bad.zip", {"readme.txt": "no pictures"})
    path = folder_upload.save_upload(bad.read_bytes(), fresh_data_dir)
    at = open_page(PAGE, session={"own_zip_path": str(path)})
    at.selectbox(key="own_side").select(28).run()
    at.button(key="own_load").click().run()
    at = finish_import(at)
    assert at.error and "Traceback" not in texts(at.error)
    assert at.selectbox(key="own_side").value == 28
    assert at.session_state["dataset"] == "mnist-sample"


def test_load_without_a_zip_says_so(fresh_data_dir):
    at = open_page(PAGE)
    at.button(key="own_load").click().run()
    assert "Choose a" in texts(at.error) and "zip of your pictures" in texts(at.error)


def test_the_example_folder_is_offered_and_says_its_validation_set_is_fixed(fresh_data_dir):
    example = common.folder_datasets()
    at = open_page(PAGE, query={"dataset": example})
    assert at.radio(key="data_choice").value == example
    assert md_escape("threes vs sevens (example folder, 32x32 colour)") in at.radio(key="data_choice").options
    assert "its own validation set" in texts(at.info)


def test_a_title_with_markdown_is_shown_literally_in_the_dataset_choice_and_sidebar(fresh_data_dir):
    from ui import folder_upload
    path = folder_upload.save_upload(own_zip(fresh_data_dir / "in.zip"), fresh_data_dir)
    title = "**loud** [click](javascript:x)"
    at = open_page(PAGE, session={"own_zip_path": str(path)})
    at.text_input(key="own_title").set_value(title)
    at.button(key="own_load").click().run()
    at = finish_import(at)
    assert any(option.startswith(md_escape(title)) for option in at.radio(key="data_choice").options)
    assert not any(option.startswith(title) for option in at.radio(key="data_choice").options)
    sidebar = texts(at.sidebar.markdown)
    assert md_escape(title) in sidebar and "**loud**" not in sidebar.replace(md_escape(title), "")
