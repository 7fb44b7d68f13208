"""FolderJob: an image-folder import in a thread, with progress, a result or a message."""
import pytest

from lrcore import datasets, image_folder
from lrcore.folder_job import FolderJob
from tests.zip_helpers import make_zip


@pytest.fixture(autouse=True)
def registry():
    saved = dict(datasets.REGISTRY)
    yield
    datasets.REGISTRY.clear()
    datasets.REGISTRY.update(saved)


def test_import_reports_progress_and_result(tmp_path):
    job = FolderJob("f1", image_folder.EXAMPLE_FOLDER, side=28, colour=True, title="threes vs sevens",
                    data_dir=tmp_path)
    seen = []
    job._progress = (lambda original: lambda done, total: (seen.append((done, total)), original(done, total)))(
        job._progress)
    job.start().join(120)
    state = job.snapshot()
    assert state.status == "done", state.message
    assert state.result.name in datasets.NAMES and state.result.class_names
    assert seen and seen[-1][0] == seen[-1][1] == state.total and state.fraction == 1.0
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_an_upload_is_shown_and_named_by_its_own_file_name(tmp_path):
    from tests.zip_helpers import class_files
    kept = make_zip(tmp_path / ("ab" * 32 + ".zip"), class_files("pics/"))
    job = FolderJob("f4", kept, data_dir=tmp_path, display_name="My Bees.zip")
    assert job.snapshot().source == "My Bees.zip"
    job.start().join(60)
    state = job.snapshot()
    assert state.status == "done", state.message
    assert state.result.source == "My Bees.zip" and state.result.name.startswith("my-bees-32-colour-")


def test_a_bad_zip_fails_with_its_message(tmp_path):
    bad = make_zip(tmp_path / "one.zip", {"notes.txt": "no pictures here"})
    job = FolderJob("f2", bad, data_dir=tmp_path)
    job.start().join(60)
    state = job.snapshot()
    assert state.status == "failed" and state.result is None
    assert state.message and "Traceback" not in state.message


def test_an_internal_error_is_a_message(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(image_folder, "import_folder", broken)
    job = FolderJob("f3", tmp_path, data_dir=tmp_path)
    job.start().join(60)
    assert job.snapshot().status == "failed" and "disk on fire" in job.snapshot().message
