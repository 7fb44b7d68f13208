"""The Draw page in Streamlit's AppTest: no model, a checkpoint, the canvas, uploads, random test images."""
from __future__ import annotations

import io
import json
import re
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Selectbox

from tests.apptest_helpers import open_page, texts

from lrcore import TrainConfig, load_dataset, train
from lrcore.checkpoint import checkpoint_bytes, load_checkpoint
from lrcore.data import FASHION_NAMES, Normalizer, available_datasets
from lrcore.evaluate import predict
from lrcore.model import LogisticRegression
from lrcore.predict_drawing import predict_canvas, predict_drawing
from lrcore.preprocess import load_image_bytes
from ui.text import md_escape

APP = "../dashboard.py"  # relative to this file
PAGE = "pages/draw.py"
HTML_NAME = "<a href=x style=position:fixed>X</a>"
MARKDOWN_NAME = "[link](http://x) ![i](http://x/i.png)"


@pytest.fixture(scope="module")
def trained_checkpoint() -> bytes:
    for event in train(TrainConfig()):
        pass
    return checkpoint_bytes(event.model, TrainConfig(), event.class_names, event.normalizer,
                            {"test_accuracy": event.test_accuracy})


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist-sample")


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


def canvas_picture(digit: torch.Tensor) -> np.ndarray:
    """A 28x28 digit drawn big on the 280x280 canvas: white ink on black, RGBA like the browser's."""
    grey = np.kron(digit.numpy(), np.ones((10, 10), dtype=np.uint8))
    return np.dstack([grey, grey, grey, np.full_like(grey, 255)])


@dataclass
class FakeCanvasResult:
    json_data: dict
    image_data: np.ndarray | None


class FakeCanvas:
    """Stands in for st_canvas and sends what the browser would: the strokes and the picture.

    `calls` holds every st_canvas call's arguments (the key, initial_drawing...).
    """

    def __init__(self) -> None:
        self.sent: dict[str, tuple[list[dict], np.ndarray]] = {}
        self.calls: list[dict] = []

    def __call__(self, **kwargs) -> FakeCanvasResult:
        self.calls.append(kwargs)
        if kwargs["key"] in self.sent:
            objects, picture = self.sent[kwargs["key"]]
            return FakeCanvasResult({"objects": objects}, picture)
        # A canvas mounted with strokes sends nothing until the next stroke.
        return FakeCanvasResult(dict(kwargs["initial_drawing"] or {"objects": []}), None)

    @property
    def objects(self) -> list[dict]:
        key = self.calls[-1]["key"]
        return self.sent[key][0] if key in self.sent else list((self.calls[-1]["initial_drawing"] or {}).get("objects", []))

    def stroke(self, at: AppTest, picture: np.ndarray) -> AppTest:
        """One more stroke whose result is `picture` (the whole canvas after it)."""
        stroke = {"type": "path", "path": [["M", 0, 0], ["L", 1, 1]], "n": len(self.calls)}
        self.sent[self.calls[-1]["key"]] = (self.objects + [stroke], picture)
        return at.run()


@pytest.fixture
def canvas(monkeypatch) -> FakeCanvas:
    """The page imports st_canvas on every run: from this stand-in module while the test runs."""
    fake = FakeCanvas()
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", types.SimpleNamespace(st_canvas=fake))
    return fake


class _SendsHeldLabel(Selectbox):
    label_sent: str

    @property
    def _widget_state(self) -> WidgetState:
        return WidgetState(id=self.id, string_value=self.label_sent)


class BrowserSelectbox:
    """The "Compare with" selectbox as a browser drives it.

    The browser keeps the label it shows and sends that label back on every rerun, even
    after the options changed (AppTest would re-derive it from the new options): it only
    takes a new label when the user picks one or the server sets it.
    """

    def __init__(self) -> None:
        self.held: str | None = None

    def box(self, at: AppTest) -> Selectbox | None:
        return next((s for s in at.selectbox if s.key == "draw_compare"), None)

    def before_rerun(self, at: AppTest) -> None:
        box = self.box(at)
        if box is None:
            return
        if box.proto.set_value:
            self.held = box.proto.raw_value
        if self.held is None:
            self.held = box.options[box.proto.default]
        box.__class__ = _SendsHeldLabel
        box.label_sent = self.held

    def pick(self, at: AppTest, choice: int) -> AppTest:
        box = self.box(at)
        self.held = box.format_func(choice)
        box.set_value(choice)
        if isinstance(box, _SendsHeldLabel):
            box.label_sent = self.held
        return at.run()


def heading_name(at: AppTest) -> str:
    """The predicted class as the prediction shows it (":red[7]")."""
    value = at.metric[0].value
    assert value.startswith(":red[") and value.endswith("]"), value
    return value[len(":red["):-1]


def check_consistent(at: AppTest, probabilities: torch.Tensor, names: tuple[str, ...], compare_with: int | None,
                     browser: BrowserSelectbox) -> None:
    """No traceback; the prediction, heading, selectbox and maps all name the current input's classes."""
    assert not at.exception, at.exception
    ranking = probabilities.argsort(descending=True).tolist()
    predicted, runner_up = ranking[0], ranking[1]
    compared = runner_up if compare_with in (None, predicted) else compare_with
    assert heading_name(at) == md_escape(names[predicted], 40)
    assert f"Runner-up: {md_escape(names[runner_up], 40)} " in texts(at.caption)
    assert at.subheader[0].value == (f"Why “{md_escape(names[predicted], 40)}” and not "
                                     f"“{md_escape(names[compared], 40)}”?")
    box = browser.box(at)
    assert box.value == (-1 if compare_with is None else compare_with)
    showing = box.proto.raw_value if box.proto.set_value else browser.held or box.options[box.proto.default]
    assert showing == ("the runner-up" if compare_with is None else names[compare_with])
    map_titles = [m.value for m in at.markdown if "logit" in m.value or "minus" in m.value]
    assert len(map_titles) == 3, map_titles
    assert f"“{md_escape(names[predicted], 40)}”" in map_titles[0]
    assert f"“{md_escape(names[compared], 40)}”" in map_titles[1]
    assert {c.key for c in at.get("plotly_chart")} >= {"draw_probabilities", "draw_map_predicted",
                                                         "draw_map_compared", "draw_map_difference"}


# --- no model ----------------------------------------------------------------------------------------
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
    assert len(at.error) == 1 and "weights.pt" in at.error[0].value.replace("\\", "")
    assert "no trained model" in texts(at.info)  # still no model


def test_uploading_a_checkpoint_makes_it_the_model(trained_checkpoint):
    at = draw_page()
    at.get("file_uploader")[0].set_value(("good.pt", trained_checkpoint, "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error
    assert "good\\.pt" in texts(at.caption)
    assert at.radio(key="draw_source").value.endswith("Draw")


def test_quick_model_trains_then_the_canvas_appears():
    at = draw_page()
    from ui import common

    at.button[0].click().run()
    assert not at.exception
    worker = common.get_jobs().live_run(at.session_state["draw_quick_run"])
    worker.join(60)  # the quick model's thread; then one rerun, as the page's polling fragment does
    assert not worker.alive, "the quick model was still training after 60 s"
    at.run()
    assert not at.exception, at.exception
    assert at.radio, f"no canvas after the quick model ended ({worker.snapshot().status})"
    assert "quick model" in texts(at.caption) and "done" in texts(at.caption)


# --- drawing ------------------------------------------------------------------------------------------
def test_with_a_model_an_empty_canvas_asks_for_a_digit(trained_checkpoint, canvas):
    at = draw_page(trained_checkpoint)
    assert "test checkpoint" in texts(at.caption)
    assert "Draw a digit" in texts(at.info)
    assert at.slider(key="draw_brush").value == 20
    assert canvas.calls[-1]["key"] == "draw_canvas_0" and canvas.calls[-1]["stroke_width"] == 20
    assert not at.metric  # no guess for an empty canvas
    # the bars, all at 0 (so plotly is loaded before the first stroke), with a note
    [chart] = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    assert chart.key == "draw_probabilities" and spec["layout"]["annotations"][0]["text"] == "no drawing yet"
    assert len(spec["data"][0]["x"]) == 10 and spec["data"][0]["y"] == [0] * 10
    assert [(b.label, b.disabled) for b in at.button] == [("Undo", True), ("Clear", True)]
    at.slider(key="draw_brush").set_value(30).run()
    assert canvas.calls[-1]["stroke_width"] == 30 and canvas.calls[-1]["key"] == "draw_canvas_0"


def test_drawing_several_digits_in_a_row_keeps_heading_and_compare_box_in_step(trained_checkpoint, canvas, digits):
    """Stroke after stroke, on one canvas and after Clear: the heading follows the drawing, never a traceback."""
    checkpoint = load_checkpoint(trained_checkpoint)
    at, browser = draw_page(trained_checkpoint), BrowserSelectbox()
    for round_, index in enumerate([0, 1, 2, 3, 4, 5, 6, 7]):
        picture = canvas_picture(digits.test_images[index])
        browser.before_rerun(at)
        canvas.stroke(at, picture)
        expected = predict_canvas(checkpoint.model, checkpoint.normalizer, picture).probabilities
        check_consistent(at, expected, checkpoint.class_names, None, browser)
        if round_ == 3:  # Clear, then go on drawing on the fresh canvas
            browser.before_rerun(at)
            next(b for b in at.button if b.label == "Clear").click().run()
            assert not at.exception and "Draw a digit" in texts(at.info)
    assert canvas.calls[-1]["key"] == "draw_canvas_1"


def test_a_picked_class_stays_picked_while_the_drawing_changes(trained_checkpoint, canvas, digits):
    checkpoint = load_checkpoint(trained_checkpoint)
    names = checkpoint.class_names
    at, browser = draw_page(trained_checkpoint), BrowserSelectbox()
    canvas.stroke(at, canvas_picture(digits.test_images[0]))
    browser.before_rerun(at)
    browser.pick(at, 4)
    for index in range(1, 7):
        picture = canvas_picture(digits.test_images[index])
        browser.before_rerun(at)
        canvas.stroke(at, picture)
        expected = predict_canvas(checkpoint.model, checkpoint.normalizer, picture).probabilities
        check_consistent(at, expected, names, 4, browser)
        if int(expected.argmax()) == 4:
            assert "comparing with the runner-up" in texts(at.caption)


def test_undo_removes_the_last_stroke_and_shows_the_prediction_before_it(trained_checkpoint, canvas, digits):
    checkpoint = load_checkpoint(trained_checkpoint)
    pictures = [canvas_picture(digits.test_images[i]) for i in (0, 1, 2)]
    at, browser = draw_page(trained_checkpoint), BrowserSelectbox()
    for picture in pictures:
        browser.before_rerun(at)
        canvas.stroke(at, picture)
    strokes = canvas.objects
    assert len(strokes) == 3
    for left in (2, 1):
        browser.before_rerun(at)
        next(b for b in at.button if b.label == "Undo").click().run()
        assert not at.exception, at.exception
        # a fresh canvas that starts with one stroke fewer
        assert canvas.calls[-1]["key"] == f"draw_canvas_{3 - left}"
        assert canvas.calls[-1]["initial_drawing"] == {"objects": strokes[:left]}
        expected = predict_canvas(checkpoint.model, checkpoint.normalizer, pictures[left - 1]).probabilities
        check_consistent(at, expected, checkpoint.class_names, None, browser)
    # a new stroke after Undo starts a new history: undoing it comes back to the one stroke
    browser.before_rerun(at)
    canvas.stroke(at, pictures[2])
    assert len(canvas.objects) == 2
    next(b for b in at.button if b.label == "Undo").click().run()
    expected = predict_canvas(checkpoint.model, checkpoint.normalizer, pictures[0]).probabilities
    check_consistent(at, expected, checkpoint.class_names, None, browser)
    next(b for b in at.button if b.label == "Undo").click().run()
    assert not at.exception and "Draw a digit" in texts(at.info)
    assert [(b.label, b.disabled) for b in at.button] == [("Undo", True), ("Clear", True)]


def test_clear_empties_the_canvas(trained_checkpoint, canvas, digits):
    at = draw_page(trained_checkpoint)
    canvas.stroke(at, canvas_picture(digits.test_images[0]))
    assert at.metric
    next(b for b in at.button if b.label == "Clear").click().run()
    assert not at.exception
    assert canvas.calls[-1]["key"] == "draw_canvas_1" and canvas.calls[-1]["initial_drawing"] is None
    assert "Draw a digit" in texts(at.info) and not at.metric


# --- random test images and uploads ------------------------------------------------------------------------
def test_random_test_images_one_after_another(trained_checkpoint, digits):
    """The reported traceback: 'Another random test image' twice broke the 'Why … and not …?' heading."""
    checkpoint = load_checkpoint(trained_checkpoint)
    at, browser = choose(draw_page(trained_checkpoint), "Random"), BrowserSelectbox()
    seeds = set()
    for _ in range(8):
        seed = at.session_state["draw_random_seed"]
        seeds.add(seed)
        index = seed % len(digits.test_labels)
        expected = predict(checkpoint.model, checkpoint.normalizer, digits.test_images[index].unsqueeze(0))[0]
        check_consistent(at, expected, checkpoint.class_names, None, browser)
        assert f"**True label:** {int(digits.test_labels[index])}" in texts(at.markdown)
        browser.before_rerun(at)
        next(b for b in at.button if b.label == "Another random test image").click().run()
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


def test_a_compare_label_from_another_model_falls_back_to_the_runner_up(trained_checkpoint):
    """A browser still holding a class name of the previous model (here MNIST's "7") after a swap."""
    model = LogisticRegression.from_tensors(torch.zeros(10, 784), torch.linspace(1, 0, 10))
    at, browser = choose(draw_page(trained_checkpoint), "Random"), BrowserSelectbox()
    browser.before_rerun(at)
    browser.pick(at, 7)
    at.session_state["checkpoint"] = load_checkpoint(
        checkpoint_bytes(model, TrainConfig(), FASHION_NAMES, Normalizer("raw")))
    browser.before_rerun(at)
    at.run()
    assert not at.exception, at.exception
    assert at.subheader[0].value == f"Why “{md_escape(FASHION_NAMES[0])}” and not “{md_escape(FASHION_NAMES[1])}”?"
    assert at.selectbox(key="draw_compare").value == -1


def test_uploading_several_pictures_in_a_row(trained_checkpoint, digits):
    checkpoint = load_checkpoint(trained_checkpoint)
    at, browser = choose(draw_page(trained_checkpoint), "Upload"), BrowserSelectbox()
    for index in range(6):
        data = png(Image.fromarray(255 - np.kron(digits.test_images[index].numpy(), np.ones((8, 8), np.uint8))))
        browser.before_rerun(at)
        at.file_uploader(key="draw_upload").set_value((f"digit{index}.png", data, "image/png")).run()
        expected = predict_drawing(checkpoint.model, checkpoint.normalizer, load_image_bytes(data)).probabilities
        check_consistent(at, expected, checkpoint.class_names, None, browser)
        assert f"digit{index}\\.png" in texts(at.caption)


def test_uploading_a_non_image_shows_what_is_allowed(trained_checkpoint):
    at = choose(draw_page(trained_checkpoint), "Upload")
    at.file_uploader(key="draw_upload").set_value(("digit.png", b"%PDF-1.4 not a picture", "image/png")).run()
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "digit\\.png" in message and "not a PNG or JPEG" in message and "up to 5 MB" in message
    assert not at.metric


def test_uploading_an_oversized_file_is_refused(trained_checkpoint):
    at = choose(draw_page(trained_checkpoint), "Upload")
    at.file_uploader(key="draw_upload").set_value(
        ("huge.png", b"\x89PNG\r\n\x1a\n" + bytes(6 * 2**20), "image/png")).run()
    assert not at.exception
    assert "limit is 5 MB" in at.error[0].value


def test_uploading_a_photo_of_a_digit_predicts_it(trained_checkpoint, digits):
    """Dark ink on light paper: detected, inverted and recognised like the original digit."""
    checkpoint = load_checkpoint(trained_checkpoint)
    probabilities = torch.softmax(checkpoint.model(checkpoint.normalizer(digits.test_images[:50])), 1)
    index = int(probabilities.max(1).values.argmax())  # a digit the model is sure about
    digit = digits.test_images[index].numpy()
    paper = Image.fromarray(255 - np.kron(digit, np.ones((12, 12), dtype=np.uint8)))  # 336 px, dark ink
    at = choose(draw_page(trained_checkpoint), "Upload")
    at.file_uploader(key="draw_upload").set_value(("photo.png", png(paper), "image/png")).run()
    assert not at.exception and not at.error
    assert "inverted" in texts(at.caption)
    assert heading_name(at) == checkpoint.class_names[int(probabilities[index].argmax())]


def test_uploading_a_blank_picture_says_no_digit(trained_checkpoint):
    at = choose(draw_page(trained_checkpoint), "Upload")
    blank = Image.new("RGB", (200, 200), "white")
    ImageDraw.Draw(blank).point((3, 3), fill=(250, 250, 250))
    at.file_uploader(key="draw_upload").set_value(("blank.png", png(blank), "image/png")).run()
    assert not at.exception and not at.error
    assert "No digit found" in texts(at.warning)
    assert not at.metric


def test_a_fashion_model_gets_the_predict_page():
    """Not digits: a photo or a test image instead of the canvas (issue 12)."""
    model = LogisticRegression.from_tensors(torch.zeros(10, 784), torch.zeros(10))
    config = TrainConfig(dataset="fashion-mnist")
    data = checkpoint_bytes(model, config, FASHION_NAMES, Normalizer("raw"))
    at = draw_page(data, "fashion")
    assert at.title[0].value == "Predict"
    assert "Upload a photo, take one" in texts(at.info)
    assert "Draw a digit" not in texts(at.info)
    at.radio(key="predict_source").set_value(":material/casino: Random test image").run()
    assert not at.exception, at.exception
    if available_datasets()["fashion-mnist"]:
        assert any(f"**True label:** {md_escape(name)}" in texts(at.markdown) for name in FASHION_NAMES)
    else:  # a message instead of test images, never a traceback
        assert "not available" in at.error[0].value


# --- user text is never HTML or markdown --------------------------------------------------------------------
def test_class_names_and_file_names_are_shown_as_literal_text(canvas, digits):
    """A checkpoint's class names reach every viewer of the Draw page: no link, no image, no HTML."""
    names = (HTML_NAME, MARKDOWN_NAME, *[str(c) for c in range(2, 10)])
    model = LogisticRegression.from_tensors(torch.zeros(10, 784), torch.linspace(2, 0, 10))  # 0, then 1
    data = checkpoint_bytes(model, TrainConfig(), names, Normalizer("raw"))
    at = draw_page(data, f"checkpoint “{MARKDOWN_NAME}.pt”")
    canvas.stroke(at, canvas_picture(digits.test_images[0]))
    assert not at.exception, at.exception
    assert heading_name(at) == md_escape(HTML_NAME, 40)
    assert at.subheader[0].value == f"Why “{md_escape(HTML_NAME, 40)}” and not “{md_escape(MARKDOWN_NAME, 40)}”?"
    shown = [e for kind in ("markdown", "caption", "metric", "header", "subheader", "title", "info", "warning", "error")
             for e in at.get(kind)]
    assert shown
    for element in shown:
        assert not getattr(element.proto, "allow_html", False), element.value  # never unsafe_allow_html
        unescaped = re.sub(r"\\.", "", element.value)  # what markdown would still read as syntax
        assert "<a" not in unescaped and "](http" not in unescaped and "![" not in unescaped, element.value
    assert md_escape(f"checkpoint “{MARKDOWN_NAME}.pt”") in texts(at.caption)
    for chart in at.get("plotly_chart"):
        assert "<a href" not in chart.proto.spec  # plotly reads <a href> in labels too
    assert "&lt;a href=x" in at.get("plotly_chart")[0].proto.spec
