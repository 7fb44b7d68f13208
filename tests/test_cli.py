import pytest

from lrcore.cli import build_parser, main


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as caught:  # the parser itself: no second Python process to start
        build_parser().parse_args(["train", "--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 0.5)", "(default: 128)", "(default: 0.2)", "(default: 10)", "(default: sgd)",
                    "(default: mnist-sample)", "(default: raw)", "--dry-run", "--save"):
        assert default in text


@pytest.mark.parametrize("args, fragment", [
    (["train", "--lr", "abc"], "invalid float value: 'abc'"),
    (["train", "--lr", "-1"], "learning_rate: must be a finite number > 0"),
    (["train", "--batch-size", "0"], "batch_size: must be a whole number >= 1"),
    (["train", "--optimizer", "adam"], "invalid choice: 'adam'"),
    (["train", "--validation-fraction", "1.5"], "strictly between 0 and 1"),
    (["train", "--batch-size", "9000", "--no-record"], "at most the training set size"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_bad_arguments_print_one_line_and_exit_2(args, fragment, capsys):
    with pytest.raises(SystemExit) as caught:
        code = main(args)
        raise SystemExit(code)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_missing_dataset_exits_1_with_instructions(tmp_path, capsys):
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--no-record"]) == 1
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_dry_run_trains_a_few_batches(capsys):
    assert main(["train", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "done: test accuracy" in out


def test_diverged_run_exits_3(capsys):
    assert main(["train", "--lr", "100", "--epochs", "2", "--no-record"]) == 3
    assert "try a smaller learning rate" in capsys.readouterr().err


def test_train_save_evaluate_predict(tmp_path, capsys):
    path = tmp_path / "model.pt"
    assert main(["train", "--epochs", "3", "--save", str(path), "--no-record", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("epoch ") == 3 and f"saved checkpoint to {path}" in out
    accuracy = float(out.split("test accuracy ")[1].split(",")[0])
    assert main(["evaluate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"accuracy {accuracy:.4f}" in out and "most confused" in out
    assert main(["predict", str(path), "--random", "4", "--seed", "0"]) == 0
    assert capsys.readouterr().out.count("test image") == 4


def test_predict_an_image_file(tmp_path, capsys):
    from PIL import Image, ImageDraw
    path = tmp_path / "model.pt"
    assert main(["train", "--epochs", "3", "--save", str(path), "--no-record", "--quiet"]) == 0
    image = Image.new("L", (200, 200), 255)  # dark ink on white paper, as a phone photo would be
    ImageDraw.Draw(image).line([(100, 30), (100, 170)], fill=0, width=14)
    image.save(tmp_path / "one.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    capsys.readouterr()
    assert main(["predict", str(path), str(tmp_path / "one.png"), str(tmp_path / "bad.png")]) == 1
    captured = capsys.readouterr()
    assert f"{tmp_path / 'one.png'}: 1 " in captured.out
    assert "not a PNG or JPEG image" in captured.err


def test_evaluate_rejects_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "x.pt").write_text("hello")
    assert main(["evaluate", str(tmp_path / "x.pt")]) == 1
    assert "not a checkpoint" in capsys.readouterr().err


def test_cli_runs_are_recorded_in_the_run_store(tmp_path, capsys):
    from lrcore.store import Store
    runs = tmp_path / "runs"
    assert main(["train", "--epochs", "2", "--name", "from the cli", "--runs-dir", str(runs), "--quiet"]) == 0
    assert "recorded as run" in capsys.readouterr().out
    stored = Store(runs).list_runs()
    assert [(run.name, run.status, run.source) for run in stored] == [("from the cli", "done", "cli")]
    assert [epoch["epoch"] for epoch in Store(runs).load(stored[0].run_id).epochs] == [0, 1, 2]
    # --store takes a database URL: the same run goes to the file it names
    url = f"sqlite:///{tmp_path / 'other.db'}"
    assert main(["train", "--epochs", "1", "--name", "by url", "--store", url, "--quiet"]) == 0
    assert url in capsys.readouterr().out
    assert [run.name for run in Store(url).list_runs()] == ["by url"]


def test_dry_run_records_nothing(tmp_path):
    runs = tmp_path / "runs"
    assert main(["train", "--dry-run", "--runs-dir", str(runs)]) == 0
    assert stored_runs(runs) == []


def stored_runs(path):
    from lrcore.store import Store
    return Store(path).list_runs()


def test_a_failing_run_is_recorded_as_crashed_with_its_reason(tmp_path, monkeypatch):
    import lrcore.cli as cli
    from lrcore.store import Store

    def broken_train(*args, **kwargs):
        yield from ()
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(cli, "train", broken_train)
    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError):
        main(["train", "--runs-dir", str(runs), "--quiet"])
    [run] = Store(runs).list_runs()
    assert run.status == "crashed" and "disk on fire" in run.message


def test_a_bad_batch_size_leaves_no_run_behind(tmp_path):
    runs = tmp_path / "runs"
    assert main(["train", "--batch-size", "9000", "--runs-dir", str(runs)]) == 2
    assert stored_runs(runs) == []


@pytest.fixture
def places(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path


@pytest.mark.parametrize("args, fragment", [
    (["--name", "x" * 101], "--name: a run name is at most 100 characters, got 101"),
    (["--name", " \n "], "--name: a run name cannot be blank"),
    (["--runs-dir", "{tmp}/missing/runs"], "--runs-dir: the run store folder {tmp}/missing/runs does not exist, nor "
                                           "does {tmp}/missing; create it first"),
    (["--runs-dir", "{tmp}/a-file"], "--runs-dir: the run store folder {tmp}/a-file is a file, not a folder"),
    (["--runs-dir", "{tmp}/a-file/runs"], "cannot be created: {tmp}/a-file is a file"),
    (["--save", "{tmp}/missing/model.pt", "--no-record"],
     "--save: the folder for the checkpoint {tmp}/missing does not exist; create it first"),
    (["--save", "{tmp}", "--no-record"], "--save: {tmp} is a folder; give a file name, e.g. {tmp}/model.pt"),
    (["--save", "{tmp}/a-file/model.pt", "--no-record"],
     "--save: the folder for the checkpoint {tmp}/a-file is a file"),
    (["--save", "{tmp}/" + "m" * 300 + ".pt", "--no-record"], "--save: the file name is 303 bytes long; at most 200"),
    (["--save", "{tmp}/new\nline/model.pt", "--no-record"], "'{tmp}/new\\nline' does not exist"),
])
def test_unusable_names_and_paths_exit_2_with_one_line_before_training(args, fragment, places, capsys, monkeypatch):
    import lrcore.cli as cli
    monkeypatch.setattr(cli, "train", lambda *a, **k: pytest.fail("training started despite a bad argument"))
    monkeypatch.setattr(cli, "load_dataset", lambda *a, **k: pytest.fail("dataset loaded despite a bad argument"))
    args = [arg.replace("{tmp}", str(places)) for arg in args]
    assert main(["train", "--runs-dir", str(places / "runs"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m lrcore train: error: ") and len(err.strip().splitlines()) == 1
    assert fragment.replace("{tmp}", str(places)) in err
    assert sorted(p.name for p in places.iterdir()) == ["a-file"]  # no run folder, no checkpoint, no store


def test_a_run_store_from_the_environment_that_is_a_file_is_reported(places, capsys, monkeypatch):
    monkeypatch.setenv("LRCORE_RUNS_DIR", str(places / "a-file"))
    assert main(["train", "--epochs", "1"]) == 2
    assert "run store: the run store folder" in capsys.readouterr().err
    assert main(["train", "--epochs", "1", "--no-record", "--quiet"]) == 0  # not recording: not needed


def test_a_save_that_fails_after_training_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    import lrcore.cli as cli

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(cli, "save_checkpoint", disk_full)
    assert main(["train", "--epochs", "1", "--save", str(tmp_path / "m.pt"), "--no-record", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"python -m lrcore train: could not save the checkpoint to {tmp_path / 'm.pt'}: " \
                          "No space left on device"


def test_a_new_runs_folder_inside_an_existing_one_is_created(tmp_path, capsys):
    assert main(["train", "--dry-run", "--runs-dir", str(tmp_path / "runs"), "--save", str(tmp_path / "m.pt")]) == 0
    assert (tmp_path / "m.pt").is_file()


@pytest.mark.parametrize("command", [["evaluate"], ["predict", "--random", "3"]])
def test_a_checkpoint_with_the_wrong_class_count_is_refused_by_evaluate_and_predict(command, tmp_path, capsys):
    import torch
    from lrcore.checkpoint import checkpoint_payload
    from lrcore.config import TrainConfig
    from lrcore.data import Normalizer
    from lrcore.model import LogisticRegression
    payload = checkpoint_payload(LogisticRegression.from_tensors(torch.zeros(3, 784), torch.zeros(3)),
                                 TrainConfig(), ("a", "b", "c"), Normalizer())
    torch.save(payload, tmp_path / "three.pt")
    assert main([command[0], str(tmp_path / "three.pt"), *command[1:]]) == 1
    err = capsys.readouterr().err
    assert "a model for mnist-sample needs 10" in err and len(err.strip().splitlines()) == 1


def test_a_store_url_that_cannot_be_used_gets_one_clear_line(tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--store", "nosuchdb://x/y", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "python -m lrcore train:" in err and "postgresql://" in err and "Traceback" not in err


# ---------------------------------------------------------------- folders and zips of pictures (issue 12)


@pytest.fixture(autouse=True)
def _registry_restored():
    """Folder datasets registered by a test leave the registry as it was (other tests list its names)."""
    from lrcore import datasets as registry

    saved = dict(registry.REGISTRY)
    yield
    registry.REGISTRY.clear()
    registry.REGISTRY.update(saved)

def _picture_zip(path):
    """24 noisy PNGs, dark and light, in shades/<class>/ (a fixed seed: the same zip every time)."""
    import io

    import numpy as np
    from PIL import Image

    from tests.zip_helpers import class_files, make_zip

    rng = np.random.default_rng(0)

    def noisy(label: int, _: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 60, (30, 40, 3)).astype(np.uint8) + (180 if label else 0)).save(buffer, "PNG")
        return buffer.getvalue()
    return make_zip(path, class_files("shades/", ("dark", "light"), 12, noisy))


def test_train_on_a_zip_then_evaluate_and_predict_a_photo(tmp_path, capsys):
    from PIL import Image

    archive, model, data = _picture_zip(tmp_path / "shades.zip"), tmp_path / "model.pt", tmp_path / "data"
    assert main(["train", "--dataset", str(archive), "--image-size", "28", "--epochs", "2", "--lr", "0.1",
                 "--normalization", "standardize", "--batch-size", "8", "--save", str(model), "--no-record", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "imported" in out and "dark vs light (your images, 28x28 colour)" in out and "class folders" in out
    assert out.count("epoch ") == 2 and f"saved checkpoint to {model}" in out
    name = out.split(" as ")[1].split(":")[0]
    # A second run names the cached dataset: found again after the CLI starts (register_cached_folders).
    assert main(["evaluate", str(model), "--data-dir", str(data)]) == 0
    assert f"{name} test split" in capsys.readouterr().out
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (300, 200), (240, 240, 240)).save(photo)
    assert main(["predict", str(model), str(photo), "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out.startswith(f"{photo}: light ")
    assert main(["train", "--dataset", name, "--epochs", "1", "--batch-size", "8", "--no-record", "--data-dir", str(data)]) == 0
    assert "imported" not in capsys.readouterr().out


def test_an_unusable_zip_or_unknown_dataset_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    assert main(["train", "--dataset", str(tmp_path / "fake.zip"), "--no-record", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "fake.zip is not a zip file" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--dataset", "bees", "--no-record", "--data-dir", str(tmp_path)]) == 2
    assert "'bees' is neither a dataset" in capsys.readouterr().err
