"""The Predict page (pages/draw.py for datasets that are not digits) in Streamlit's AppTest: a photo or a
random test image in, the picture as the model sees it, the probabilities and the weight x input maps."""
from __future__ import annotations

import io
from dataclasses import fields

import pytest
import torch
from PIL import Image

from lrcore import TrainConfig, datasets
from lrcore.checkpoint import Checkpoint
from lrcore.data import Normalizer
from lrcore.model import LogisticRegression
from tests.apptest_helpers import open_page, texts

PAGE = "pages/draw.py"
COLOURS = ("red", "green", "blue")


def colour_images(count: int, seed: int, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """3x8x8 images whose class is the brightest channel (of the first `classes`)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % classes
    images = torch.randint(0, 100, (count, 3, 8, 8), generator=generator)
    images[torch.arange(count), labels] += 150
    return images.to(torch.uint8), labels


@pytest.fixture
def tiny_rgb(monkeypatch, tmp_path):
    info = datasets.DatasetInfo("tiny-rgb", "Tiny RGB (test)", COLOURS, (3, 8, 8), digits=False,
                                loader=lambda folder: (*colour_images(90, 1), *colour_images(30, 2)), folder=tmp_path)
    monkeypatch.setitem(datasets.REGISTRY, info.name, info)
    return info


def checkpoint_of(dataset: str, names: tuple[str, ...], weight: torch.Tensor, bias: torch.Tensor) -> Checkpoint:
    """A Checkpoint of these weights, made directly (a binary one has a single weight row)."""
    values = dict(model=LogisticRegression.from_tensors(weight, bias), config=TrainConfig(dataset=dataset),
                  class_names=names, normalizer=Normalizer("raw"), metrics={}, created=0.0,
                  image_shape=datasets.get(dataset).shape)
    return Checkpoint(**{f.name: values[f.name] for f in fields(Checkpoint) if f.name in values})


def brightest_channel_model() -> torch.Tensor:
    return torch.eye(3).repeat_interleave(64, 1)  # class c: +1 on every pixel of channel c


def predict_page(checkpoint: Checkpoint, dataset: str | None = None):
    session = {"checkpoint": checkpoint, "checkpoint_label": "test.pt"}
    if dataset:
        session["dataset"] = dataset
    return open_page(PAGE, session=session)


def png(colour: tuple[int, int, int], size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def halves_picture(label: int, rng) -> bytes:
    """Class 0 ("bottom" sorts first): bright bottom half; class 1 ("top"): bright top half; noise everywhere."""
    import numpy as np

    array = rng.integers(0, 90, (36, 40, 3)).astype(np.uint8)
    array[slice(18, 36) if label == 0 else slice(0, 18)] += 150
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def folder_model_checkpoint(root) -> tuple[bytes, str]:
    """A checkpoint (bytes) of a binary model trained a few full-batch epochs on an imported two-class colour
    folder, and that dataset's name, then taken out of the registry: as on a server that never imported it."""
    import numpy as np

    from lrcore import events as ev
    from lrcore.checkpoint import checkpoint_bytes
    from lrcore.data import load_dataset
    from lrcore.image_folder import import_folder
    from lrcore.training import train

    rng = np.random.default_rng(0)
    for label, name in enumerate(("bottom", "top")):
        (root / "halves" / name).mkdir(parents=True, exist_ok=True)
        for i in range(12):
            (root / "halves" / name / f"{i}.png").write_bytes(halves_picture(label, rng))
    name = import_folder(root / "halves", 32, data_dir=root / "data").name
    config = TrainConfig(dataset=name, full_batch=True, epochs=20, learning_rate=0.5)
    finished = [e for e in train(config, load_dataset(name, data_dir=root / "data")) if isinstance(e, ev.Finished)][0]
    assert finished.model.linear.weight.shape == (1, 3 * 32 * 32)  # binary: one weight row
    data = checkpoint_bytes(finished.model, config, finished.class_names, finished.normalizer,
                            {"test_accuracy": finished.test_accuracy})
    del datasets.REGISTRY[name]
    return data, name


@pytest.fixture
def unregistered_folder_model(tmp_path):
    """folder_model_checkpoint's (bytes, name); the registry is left as it was."""
    saved = dict(datasets.REGISTRY)
    yield folder_model_checkpoint(tmp_path)
    datasets.REGISTRY.clear()
    datasets.REGISTRY.update(saved)


def test_a_colour_model_gets_the_predict_page_with_a_photo_upload(tiny_rgb):
    at = predict_page(checkpoint_of("tiny-rgb", COLOURS, brightest_channel_model(), torch.zeros(3)), "tiny-rgb")
    assert at.title[0].value == "Predict"
    assert at.radio(key="predict_source").options[:2] == [":material/upload: Upload a photo",
                                                          ":material/photo_camera: Take a photo"]
    assert "Upload a photo, take one" in texts(at.info)
    assert not at.get("plotly_chart")

    at.file_uploader(key="predict_upload").set_value(("sky.png", png((20, 40, 230)), "image/png")).run()
    assert not at.exception, at.exception
    assert at.metric[0].value == ":red[blue]"
    keys = {chart.key for chart in at.get("plotly_chart")}
    assert {"predict_probabilities", "predict_map_0", "predict_map_1", "predict_map_2"} <= keys
    assert "What the model sees" in texts(at.markdown)


def test_a_photo_that_does_not_decode_says_so(tiny_rgb):
    at = predict_page(checkpoint_of("tiny-rgb", COLOURS, brightest_channel_model(), torch.zeros(3)), "tiny-rgb")
    at.file_uploader(key="predict_upload").set_value(("notes.png", b"%PDF-1.4 not a picture", "image/png")).run()
    assert not at.exception, at.exception
    assert "Can't use “notes\\.png”: not a PNG or JPEG image" in at.error[0].value and "PNG or JPEG" in at.error[0].value
    assert not at.metric


def test_a_random_test_image_with_its_true_label(tiny_rgb):
    at = predict_page(checkpoint_of("tiny-rgb", COLOURS, brightest_channel_model(), torch.zeros(3)), "tiny-rgb")
    at.radio(key="predict_source").set_value(":material/casino: Random test image").run()
    assert not at.exception, at.exception
    assert "**True label:**" in texts(at.markdown) and ":material/check: correct" in texts(at.markdown)
    assert "Test image #" in texts(at.caption)


def test_a_binary_model_shows_one_map_of_evidence(tiny_rgb, monkeypatch):
    names = ("ants", "bees")
    info = datasets.DatasetInfo("two-rgb", "Two RGB (test)", names, (3, 8, 8), digits=False,
                                loader=lambda folder: (*colour_images(90, 1, 2), *colour_images(30, 2, 2)),
                                folder=tiny_rgb.folder)
    monkeypatch.setitem(datasets.REGISTRY, info.name, info)
    weight = torch.zeros(1, 192)
    weight[0, 128:] = 1.0  # blue is evidence for bees
    checkpoint = checkpoint_of("two-rgb", names, weight, torch.tensor([-0.5]))
    if not getattr(checkpoint.model, "binary", False):
        pytest.skip("binary models (one weight row) are not in lrcore yet")
    at = predict_page(checkpoint, "two-rgb")
    at.radio(key="predict_source").set_value(":material/casino: Random test image").run()
    assert not at.exception, at.exception
    maps = [chart.key for chart in at.get("plotly_chart") if chart.key.startswith("predict_map_")]
    assert maps == ["predict_map_0"]
    assert any("Evidence for “bees”" in m.value and "z =" in m.value for m in at.markdown)


def test_a_digits_model_with_another_dataset_chosen_says_which_it_uses(tiny_rgb):
    model = LogisticRegression.from_tensors(torch.zeros(10, 784), torch.zeros(10))
    at = predict_page(checkpoint_of("mnist-sample", datasets.DIGIT_NAMES, model.linear.weight, model.linear.bias),
                      "tiny-rgb")
    assert at.title[0].value == "Draw"
    assert "the model in use was trained on MNIST" in texts(at.info)


def test_an_uploaded_checkpoint_of_a_folder_this_server_never_imported_predicts_a_photo(unregistered_folder_model):
    data, name = unregistered_folder_model
    assert name not in datasets.REGISTRY
    at = open_page(PAGE)  # no model yet: the page offers to train one or load a checkpoint
    at.file_uploader(key="draw_checkpoint_empty").set_value(("halves.pt", data, "application/octet-stream")).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Predict" and not at.error
    # Its dataset is not here: no random test images to offer, the photo is made 3x32x32 from the checkpoint
    assert at.radio(key="predict_source").options == [":material/upload: Upload a photo",
                                                      ":material/photo_camera: Take a photo"]
    assert "not on this server" in texts(at.caption)
    assert "The dataset chosen on the Data page" not in texts(at.info)  # it can't be chosen here: no advice to
    for label, expected in ((1, "top"), (0, "bottom")):
        picture = halves_picture(label, __import__("numpy").random.default_rng(label + 5))
        at.file_uploader(key="predict_upload").set_value((f"{expected}.png", picture, "image/png")).run()
        assert not at.exception, at.exception
        assert at.metric[0].value == f":red[{expected}]", texts(at.metric)
    assert [c.key for c in at.get("plotly_chart") if c.key.startswith("predict_map_")] == ["predict_map_0"]
    assert any("Evidence for “top”" in m.value for m in at.markdown)


def test_a_camera_photo_takes_the_upload_path(tiny_rgb, monkeypatch):
    """st.camera_input cannot be driven in AppTest: stand in for it with a photo file, as the browser sends one."""
    import streamlit as st

    class CameraPhoto(io.BytesIO):
        name, file_id = "camera.jpg", "camera-1"

    taken = []
    monkeypatch.setattr(st, "camera_input", lambda label, key=None, **_: taken.append(key) or CameraPhoto(
        png((30, 220, 40), (64, 48))))
    at = predict_page(checkpoint_of("tiny-rgb", COLOURS, brightest_channel_model(), torch.zeros(3)), "tiny-rgb")
    at.radio(key="predict_source").set_value(":material/photo_camera: Take a photo").run()
    assert not at.exception, at.exception
    assert taken and taken[-1] == "predict_camera"
    assert at.metric[0].value == ":red[green]"
    assert {"predict_probabilities", "predict_map_1"} <= {chart.key for chart in at.get("plotly_chart")}


def test_the_quick_model_of_a_tiny_folder_trains_on_full_batches(tmp_path):
    """24 pictures: the default batch of 128 is more than the training split, so the quick model uses it all."""
    import numpy as np

    from lrcore.image_folder import import_folder
    from ui import common

    rng = np.random.default_rng(1)
    for label, name in enumerate(("bottom", "top")):
        (tmp_path / "halves" / name).mkdir(parents=True)
        for i in range(12):
            (tmp_path / "halves" / name / f"{i}.png").write_bytes(halves_picture(label, rng))
    saved = dict(datasets.REGISTRY)
    try:
        name = import_folder(tmp_path / "halves", 32, data_dir=tmp_path / "data").name
        at = open_page(PAGE, session={"dataset": name})
        assert at.title[0].value == "Predict"
        assert "full batch" in texts(at.markdown), texts(at.markdown)
        next(b for b in at.button if b.label == "Train a quick model").click().run()
        assert not at.exception, at.exception
        worker = common.get_jobs().live_run(at.session_state["draw_quick_run"])
        worker.join(60)
        record = worker.snapshot()
        assert record.status == "done", record.message
        assert record.config.full_batch and record.batches_per_epoch == 1
        at.run()
        assert not at.exception, at.exception
        assert at.radio(key="predict_source").value.endswith("Upload a photo")
    finally:
        datasets.REGISTRY.clear()
        datasets.REGISTRY.update(saved)
