"""The Draw page in Streamlit's AppTest: no model, a checkpoint, uploads, random test images."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from tests.apptest_helpers import open_page, texts

from lrcore import TrainConfig, load_dataset, train
from lrcore.checkpoint import checkpoint_bytes, load_checkpoint
from lrcore.data import FASHION_NAMES, Normalizer, available_datasets
from lrcore.model import LogisticRegression

APP = "../dashboard.py"  # relative to this file
PAGE = "pages/draw.py"


@pytest.fixture(scope="module")
def trained_checkpoint() -> bytes:
    for event in train(TrainConfig()):
        pass
    return checkpoint_bytes(event.model, TrainConfig(), event.class_names, event.normalizer,
                            {"test_accuracy": event.test_accuracy})


def draw_page(checkpoint: bytes | None = None, label: str = "test checkpoint") -> AppTest:
    # What common.use_checkpoint stores.
    session = {} if checkpoint is None else {"checkpoint": load_checkpoint(checkpoint), "checkpoint_label": label}
    return open_page(PAGE, session=session)



def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def choose(at: AppTest, source: str) -> AppTest:
    radio = at.radio(key="draw_source")
    radio.set_value(next(o for o in radio.options if source in o)).run()
    assert not at.exception, at.exception
    return at


def test_without_a_model_the_page_offers_to_train_or_load():
    at = draw_page()
    assert "no trained model" in texts(at.info)
    assert [b.label for b in at.button] == ["Train a quick model"]
    assert at.get("file_uploader")[0].label.startswith("Checkpoint file")
    assert not at.radio  # nothing to draw with yet
    assert not at.get("plotly_chart")


def test_a_bad_checkpoint_upload_shows_a_clear_error():
    at = draw_page()
    at.get("file_uploader")[0].set_value(("weights.pt", b"this is not a checkpoint", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "weights.pt" in at.error[0].value
    assert "no trained model" in texts(at.info)  # still no model


def test_uploading_a_checkpoint_makes_it_the_model(trained_checkpoint):
    at = draw_page()
    at.get("file_uploader")[0].set_value(("good.pt", trained_checkpoint, "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error
    assert "good.pt" in texts(at.caption)
    assert at.radio(key="draw_source").value.endswith("Draw")


def test_quick_model_trains_then_the_canvas_appears():
    at = draw_page()
    at.button[0].click().run()
    assert not at.exception
    deadline = time.time() + 60
    while not at.radio and time.time() < deadline:
        time.sleep(0.3)
        at.run()
        assert not at.exception, at.exception
    assert at.radio, "the quick model never finished"
    assert "quick model" in texts(at.caption) and "done" in texts(at.caption)


def test_with_a_model_an_empty_canvas_asks_for_a_digit(trained_checkpoint):
    at = draw_page(trained_checkpoint)
    assert "test checkpoint" in texts(at.caption)
    assert "Draw a digit" in texts(at.info)
    assert at.slider(key="draw_brush").value == 20
    assert any(getattr(e, "key", None) == "draw_canvas_0" for e in at.main.children[4].children[0].children.values())
    assert "Prediction" not in texts(at.markdown)  # no guess for an empty canvas
    at.button[0].click().run()  # Clear: a fresh canvas
    assert at.session_state["draw_canvas_version"] == 1
    assert not at.exception


def test_random_test_image_shows_label_and_prediction(trained_checkpoint):
    at = choose(draw_page(trained_checkpoint), "Random")
    dataset = load_dataset("mnist-sample")
    seeds = set()
    for _ in range(4):
        seed = at.session_state["draw_random_seed"]
        seeds.add(seed)
        index = seed % len(dataset.test_labels)
        markdown = texts(at.markdown)
        assert f"**True label:** {int(dataset.test_labels[index])}" in markdown
        assert "Prediction:" in markdown
        assert len(at.get("plotly_chart")) == 2  # probabilities and contribution maps
        next(b for b in at.button if b.label == "Another random test image").click().run()
        assert not at.exception
    assert len(seeds) > 1


def test_comparing_with_a_chosen_class(trained_checkpoint):
    at = choose(draw_page(trained_checkpoint), "Random")
    predicted = at.subheader[0].value.split("“")[1].split("”")[0]  # Why “3” and not “5”?
    other = next(c for c in range(10) if str(c) != predicted)
    at.selectbox(key="draw_compare").set_value(other).run()
    assert not at.exception
    assert at.subheader[0].value == f"Why “{predicted}” and not “{other}”?"
    # Picking the predicted class itself falls back to the runner-up, with a note.
    at.selectbox(key="draw_compare").set_value(int(predicted)).run()
    assert "comparing with the runner-up" in texts(at.caption)
    assert f"and not “{predicted}”" not in at.subheader[0].value


def test_uploading_a_non_image_shows_what_is_allowed(trained_checkpoint):
    at = choose(draw_page(trained_checkpoint), "Upload")
    at.file_uploader(key="draw_upload").set_value(("digit.png", b"%PDF-1.4 not a picture", "image/png")).run()
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "digit.png" in message and "not a PNG or JPEG" in message and "up to 5 MB" in message
    assert "Prediction:" not in texts(at.markdown)


def test_uploading_an_oversized_file_is_refused(trained_checkpoint):
    at = choose(draw_page(trained_checkpoint), "Upload")
    at.file_uploader(key="draw_upload").set_value(
        ("huge.png", b"\x89PNG\r\n\x1a\n" + bytes(6 * 2**20), "image/png")).run()
    assert not at.exception
    assert "limit is 5 MB" in at.error[0].value


def test_uploading_a_photo_of_a_digit_predicts_it(trained_checkpoint):
    """Dark ink on light paper: detected, inverted and recognised like the original digit."""
    dataset = load_dataset("mnist-sample")
    checkpoint = load_checkpoint(trained_checkpoint)
    probabilities = torch.softmax(checkpoint.model(checkpoint.normalizer(dataset.test_images[:50])), 1)
    index = int(probabilities.max(1).values.argmax())  # a digit the model is sure about
    digit = dataset.test_images[index].numpy()
    paper = Image.fromarray(255 - np.kron(digit, np.ones((12, 12), dtype=np.uint8)))  # 336 px, dark ink
    at = choose(draw_page(trained_checkpoint), "Upload")
    at.file_uploader(key="draw_upload").set_value(("photo.png", png(paper), "image/png")).run()
    assert not at.exception and not at.error
    assert "inverted" in texts(at.caption)
    expected = checkpoint.class_names[int(probabilities[index].argmax())]
    assert f">{expected}</span>" in texts(at.markdown)


def test_uploading_a_blank_picture_says_no_digit(trained_checkpoint):
    at = choose(draw_page(trained_checkpoint), "Upload")
    blank = Image.new("RGB", (200, 200), "white")
    ImageDraw.Draw(blank).point((3, 3), fill=(250, 250, 250))
    at.file_uploader(key="draw_upload").set_value(("blank.png", png(blank), "image/png")).run()
    assert not at.exception and not at.error
    assert "No digit found" in texts(at.warning)
    assert "Prediction:" not in texts(at.markdown)


def test_a_fashion_model_says_it_recognises_clothing():
    model = LogisticRegression.from_tensors(torch.zeros(10, 784), torch.zeros(10))
    config = TrainConfig(dataset="fashion-mnist")
    data = checkpoint_bytes(model, config, FASHION_NAMES, Normalizer("raw"))
    at = draw_page(data, "fashion")
    assert "recognises clothing" in texts(at.warning)
    assert "Draw a digit" in texts(at.info)
    choose(at, "Random")
    if available_datasets()["fashion-mnist"]:
        assert any(f"**True label:** {name}" in texts(at.markdown) for name in FASHION_NAMES)
    else:  # a message instead of test images, never a traceback
        assert "not available" in at.error[0].value
