"""The dataset registry: the built-in datasets' descriptions, and a new dataset added as one entry.

The fake dataset here is what the next issue brings (colour images, another class count):
3 classes of 3x8x8 colour images built in memory, registered with one `register` call.
"""
import json

import pytest
import torch

from lrcore import datasets
from lrcore import events as ev
from lrcore.checkpoint import CheckpointError, checkpoint_bytes, load_checkpoint, save_checkpoint
from lrcore.config import DATASETS, TrainConfig
from lrcore.data import DATASET_TITLES, Normalizer, available_datasets, fit_normalizer, load_dataset, locate
from lrcore.evaluate import contributions, evaluate_model, predict
from lrcore.model import LogisticRegression
from lrcore.training import train

COLOUR_SHAPE = (3, 8, 8)
COLOURS = ("red", "green", "blue")


def colour_images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 3x8x8 images whose class is the brightest channel: linearly separable."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % len(COLOURS)
    images = torch.randint(0, 120, (count, *COLOUR_SHAPE), generator=generator)
    images[torch.arange(count), labels] += 120
    return images.to(torch.uint8), labels


def load_colours(folder):
    return (*colour_images(600, seed=1), *colour_images(150, seed=2))


@pytest.fixture
def colours(monkeypatch, tmp_path):
    """The fake dataset, registered for one test (monkeypatch removes it again)."""
    info = datasets.DatasetInfo("tiny-colours", "Tiny colours (750 images, in memory)", COLOURS, COLOUR_SHAPE,
                                digits=False, loader=load_colours, folder=tmp_path)
    monkeypatch.setitem(datasets.REGISTRY, info.name, info)
    return info


def test_the_built_in_datasets_are_ten_classes_of_28x28_digit_shaped_images():
    built_in = tuple(DATASETS)[:3]  # folder datasets (the example, imports) register after them
    assert built_in == ("mnist-sample", "mnist", "fashion-mnist")
    for name in built_in:
        info = datasets.get(name)
        assert info.shape == datasets.DIGIT_SHAPE == (1, 28, 28) and info.num_pixels == 784
        assert info.num_classes == 10 and info.image_shape == (28, 28)
        assert DATASET_TITLES[name] == info.title
    assert [datasets.get(name).digits for name in built_in] == [True, True, False]
    assert datasets.get("fashion-mnist").short_title == "Fashion-MNIST"
    assert locate("mnist-sample") == datasets.get("mnist-sample").folder


def test_an_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(datasets.DatasetUnavailable, match="unknown dataset 'cifar'; choose one of mnist-sample, mnist"):
        load_dataset("cifar")


def test_a_registered_dataset_is_a_valid_choice_everywhere(colours):
    assert "tiny-colours" in DATASETS and DATASETS[-1] == "tiny-colours"
    assert TrainConfig(dataset="tiny-colours").dataset == "tiny-colours"
    assert available_datasets()["tiny-colours"]
    dataset = load_dataset("tiny-colours")
    assert dataset.train_images.shape == (600, 3, 8, 8) and dataset.test_images.shape == (150, 3, 8, 8)
    assert dataset.class_names == COLOURS and dataset.info is colours
    assert dataset.flat_images("train").shape == (600, 192)


def test_a_loader_whose_images_do_not_match_the_description_is_refused(monkeypatch, tmp_path):
    info = datasets.DatasetInfo("wrong-shape", "Wrong shape", COLOURS, (3, 9, 9), digits=False,
                                loader=load_colours, folder=tmp_path)
    monkeypatch.setitem(datasets.REGISTRY, info.name, info)
    with pytest.raises(datasets.DatasetUnavailable, match="wrong-shape has 3x9x9 images"):
        load_dataset("wrong-shape")


def test_a_model_of_the_registered_dataset_evaluates_and_checkpoints(colours, tmp_path):
    dataset = load_dataset("tiny-colours")
    model = LogisticRegression(colours.num_classes, colours.num_pixels)
    with torch.no_grad():  # the brightest channel wins: a perfect linear classifier
        model.linear.weight.copy_(torch.eye(3).repeat_interleave(64, 1))
        model.linear.bias.zero_()
    normalizer = fit_normalizer("standardize", dataset.flat_images("train"), torch.arange(600))
    evaluation = evaluate_model(model, normalizer, dataset.test_images, dataset.test_labels)
    assert evaluation.confusion.shape == (3, 3)
    assert contributions(model, normalizer, dataset.test_images[0]).shape == (3, *COLOUR_SHAPE)

    config = TrainConfig(dataset="tiny-colours", normalization="standardize")
    path = save_checkpoint(tmp_path / "colours.pt", model, config, COLOURS, normalizer, {"test_accuracy": 1.0})
    loaded = load_checkpoint(path)
    assert loaded.class_names == COLOURS and loaded.config.dataset == "tiny-colours"
    assert loaded.model.linear.weight.shape == (3, 192) and loaded.normalizer.mean.shape == (192,)
    assert torch.equal(predict(loaded.model, loaded.normalizer, dataset.test_images),
                       predict(model, normalizer, dataset.test_images))


def test_a_checkpoint_is_checked_against_its_own_datasets_shape(colours):
    digits = LogisticRegression(3)  # 3 x 784: a digit-sized model claiming to be for tiny-colours
    data = checkpoint_bytes(digits, TrainConfig(dataset="tiny-colours"), COLOURS, Normalizer("raw"))
    with pytest.raises(CheckpointError, match=r"weight has the wrong shape: expected 3 x 192 \(classes x 3\*8\*8"):
        load_checkpoint(data)
    colour = LogisticRegression(10, 192)  # and a colour-sized model claiming to be for MNIST
    with pytest.raises(CheckpointError, match=r"expected 10 x 784 \(classes x 28\*28 pixels\)"):
        load_checkpoint(checkpoint_bytes(colour, TrainConfig(), datasets.DIGIT_NAMES, Normalizer("raw")))


def test_the_registered_dataset_trains_end_to_end(colours, tmp_path):
    dataset = load_dataset("tiny-colours")
    config = TrainConfig(dataset="tiny-colours", learning_rate=0.5, batch_size=32, epochs=5)
    events = list(train(config, dataset))
    finished = [event for event in events if isinstance(event, ev.Finished)][0]
    assert finished.status.value == "done" and finished.class_names == COLOURS
    assert finished.model.linear.weight.shape == (3, 192)
    assert finished.test_accuracy > 0.95  # the classes are linearly separable
    evaluation = evaluate_model(finished.model, finished.normalizer, dataset.test_images, dataset.test_labels)
    assert evaluation.accuracy == pytest.approx(finished.test_accuracy)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "trained.pt", finished.model, config, COLOURS,
                                             finished.normalizer))
    assert torch.equal(loaded.model.linear.weight, finished.model.linear.weight)


# ---------------------------------------------------------------- the pages with a colour dataset

def colour_checkpoint() -> bytes:
    model = LogisticRegression.from_tensors(torch.eye(3).repeat_interleave(64, 1), torch.zeros(3))
    return checkpoint_bytes(model, TrainConfig(dataset="tiny-colours"), COLOURS, Normalizer("raw"))


def with_checkpoint(page: str) -> "AppTest":
    from tests.apptest_helpers import open_page

    return open_page(page, session={"checkpoint": load_checkpoint(colour_checkpoint()), "checkpoint_label": "colours"})


def test_the_data_page_shows_a_registered_colour_dataset(colours):
    from tests.apptest_helpers import open_page, texts

    at = open_page("pages/data.py", query={"dataset": "tiny-colours"})
    assert at.session_state["dataset"] == "tiny-colours"
    from ui.text import md_escape
    assert md_escape(colours.title) in at.radio(key="data_choice").options  # a dataset named in the link is offered
    assert "Tiny colours" in texts(at.sidebar.markdown)
    assert not at.toggle  # deskewing is for 28x28 one-channel images only
    assert [m.value for m in at.metric] == ["600", "150", "3"]


def test_the_weights_page_draws_colour_weight_maps(colours):
    at = with_checkpoint("pages/weights.py")
    z = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["z"]
    # colour weights: one RGB picture per class by default (the channels side by side are a toggle)
    assert (z["shape"] if isinstance(z, dict) else f"{len(z)}, {len(z[0])}, {len(z[0][0])}") == "8, 8, 3"


def test_the_draw_page_predicts_photos_for_a_colour_model(colours):
    from tests.apptest_helpers import texts

    at = with_checkpoint("pages/draw.py")  # a 3x8x8 model: no drawing canvas, the Predict page's photo input
    assert "Upload a photo, take one, or pick a random test image" in texts(at.info)


def test_titles_follow_the_registry(colours):
    from lrcore.data import DATASET_TITLES

    assert DATASET_TITLES["tiny-colours"] == datasets.get("tiny-colours").title  # registered after import
    assert DATASET_TITLES["mnist-sample"].startswith("MNIST sample")
