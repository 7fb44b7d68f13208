"""The Evaluate page in Streamlit's AppTest: no model, a checkpoint, a run, confusion cells, mistakes."""
from __future__ import annotations

import re

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.apptest_helpers import open_page, texts, start_run
from tests.test_page_predict import unregistered_folder_model  # noqa: F401  (a fixture: a folder model's checkpoint)

import lrcore.evaluate
from lrcore import TrainConfig, load_dataset, train
from lrcore.checkpoint import Checkpoint, CheckpointError, checkpoint_bytes, load_checkpoint
from lrcore.data import make_splits
from lrcore.evaluate import evaluate_model
from lrcore.model import LogisticRegression
from ui.text import md_escape

APP = "../dashboard.py"  # relative to this file
PAGE = "pages/evaluate.py"
CONFIG = TrainConfig(epochs=2, validation_fraction=0.25, seed=3)  # not the defaults: the page must use these


@pytest.fixture(scope="module")
def checkpoint():
    for event in train(CONFIG):
        pass
    return load_checkpoint(checkpoint_bytes(event.model, CONFIG, event.class_names, event.normalizer, {}))


@pytest.fixture(scope="module")
def sample():
    return load_dataset("mnist-sample")


def evaluate_page(checkpoint=None, run_id: str | None = None) -> AppTest:
    session = {}
    if checkpoint is not None:  # what common.use_checkpoint stores
        session.update(checkpoint=checkpoint, checkpoint_label="test checkpoint")
    if run_id is not None:
        session["run_id"] = run_id
    return open_page(PAGE, session=session)



def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def cell_heading(at: AppTest) -> str:
    return next(m.value for m in at.markdown if " images of class " in m.value)


def expected(model, normalizer, dataset, config):
    validation = make_splits(dataset, config.validation_fraction, config.seed, config.per_class_limit).validation
    test = evaluate_model(model, normalizer, dataset.test_images, dataset.test_labels)
    held_out = evaluate_model(model, normalizer, dataset.train_images[validation], dataset.train_labels[validation])
    return test, held_out


def test_without_a_model_it_points_to_train_and_offers_an_upload():
    at = evaluate_page()
    assert "No model to evaluate yet" in texts(at.info)
    assert len(at.get("page_link")) == 1
    assert len(at.get("file_uploader")) == 1
    assert not at.metric


def test_metrics_match_evaluate_model_on_the_checkpoints_own_splits(checkpoint, sample):
    at = evaluate_page(checkpoint)
    test, held_out = expected(checkpoint.model, checkpoint.normalizer, sample, checkpoint.config)
    shown = metrics(at)
    assert shown["Test accuracy"] == f"{test.accuracy:.2%}"
    assert shown["Test loss"] == f"{test.loss:.4g}"
    assert shown["Validation accuracy"] == f"{held_out.accuracy:.2%}"
    assert shown["Validation loss"] == f"{held_out.loss:.4g}"
    assert "2,000" in texts(at.caption) and f"{len(held_out.labels):,}" in texts(at.caption)
    assert "test checkpoint" in texts(at.caption)


def test_cell_picked_with_the_selectboxes_shows_its_images(checkpoint, sample):
    at = evaluate_page(checkpoint)
    test, _ = expected(checkpoint.model, checkpoint.normalizer, sample, checkpoint.config)
    # the first pick is the most confused pair
    first = test.most_confused(1)[0]
    assert (at.selectbox(key="eval_true").value, at.selectbox(key="eval_pred").value) == first[:2]
    for true_class, predicted_class in [(8, 3), (1, 1), (0, 6)]:
        at.selectbox(key="eval_true").set_value(true_class)
        at.selectbox(key="eval_pred").set_value(predicted_class)
        at.run()
        assert not at.exception
        count = len(test.cell(true_class, predicted_class))
        assert cell_heading(at).startswith(f"**{count} images of class {true_class} ")
        grids = [len(image.value) for image in at.image]
        if count:
            assert grids[0] == min(count, 40)  # the cell's images come first
            expected_shares = test.probabilities[test.cell(true_class, predicted_class), predicted_class]
            assert at.image[0].captions[0].startswith(f"{expected_shares.max().item():.0%}")


def test_most_confused_buttons_pick_their_cell(checkpoint, sample):
    at = evaluate_page(checkpoint)
    test, _ = expected(checkpoint.model, checkpoint.normalizer, sample, checkpoint.config)
    true_class, predicted_class, count = test.most_confused(3)[2]
    button = next(b for b in at.button if b.key == f"eval_pair_{true_class}_{predicted_class}")
    assert button.label.endswith(f"{count} images")
    button.click().run()
    assert (at.selectbox(key="eval_true").value, at.selectbox(key="eval_pred").value) == (true_class, predicted_class)
    assert cell_heading(at).startswith(f"**{count} images of class {true_class} predicted as {predicted_class}")


def test_validation_split_normalised_matrix_per_class_table_and_galleries(checkpoint, sample):
    at = evaluate_page(checkpoint)
    at.radio(key="eval_split").set_value("validation")
    at.toggle(key="eval_normalised").set_value(True)
    at.run()
    assert not at.exception
    _, held_out = expected(checkpoint.model, checkpoint.normalizer, sample, checkpoint.config)
    table = at.dataframe[0].value
    per_class = held_out.per_class()
    assert table["images"].tolist() == [row["support"] for row in per_class]
    assert table["accuracy (recall)"].tolist() == pytest.approx([row["recall"] for row in per_class])
    assert table["precision"].tolist() == pytest.approx([row["precision"] for row in per_class])
    # top losses: the highest-loss image first, captioned predicted / actual / loss / p(actual)
    worst = int(held_out.top_losses(1)[0])
    caption = at.image[1].captions[0]
    assert caption.startswith(f"{int(held_out.predictions[worst])} / {int(held_out.labels[worst])} / "
                              f"{held_out.losses[worst]:.2f}")
    # random grid: wrong ones say the true class
    random_grid = at.image[2].captions
    assert len(random_grid) == 32
    wrong = [c for c in random_grid if c.startswith(":red[")]
    right_text = next(c.value for c in at.caption if "right." in c.value)
    assert right_text.startswith(f"{32 - len(wrong)} of 32 right")


def test_new_sample_changes_the_random_grid_only_when_clicked(checkpoint):
    at = evaluate_page(checkpoint)
    grid = at.image[2].captions
    urls = at.image[2].value
    at.run()
    assert at.image[2].captions == grid
    at.button(key="eval_new_sample").click().run()
    assert at.image[2].value != urls


def test_the_current_runs_latest_weights_are_evaluated(sample):
    config = TrainConfig(epochs=1, seed=5)
    worker = start_run(config, recorded=False)
    worker.join(120)
    record = worker.snapshot()
    assert record.status == "done"
    at = evaluate_page(run_id=worker.run_id)
    test, held_out = expected(record.latest_model(), record.normalizer, sample, config)
    shown = metrics(at)
    assert shown["Test accuracy"] == f"{test.accuracy:.2%}"
    assert shown["Validation loss"] == f"{held_out.loss:.4g}"
    assert f"{record.final['test_accuracy']:.2%}" == shown["Test accuracy"]  # same numbers as training reported


def test_a_checkpoint_for_a_missing_dataset_says_how_to_get_it(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("LRCORE_DATA_DIR", str(tmp_path))
    other = load_checkpoint(checkpoint_bytes(checkpoint.model, CONFIG.replace(dataset="mnist"),
                                             checkpoint.class_names, checkpoint.normalizer, {}))
    at = evaluate_page(other)
    error = texts(at.error)
    assert "mnist files were not found" in error and "train-images-idx3-ubyte.gz" in error
    assert not at.metric


def test_a_model_with_the_wrong_number_of_classes_is_refused(checkpoint):
    model = checkpoint.model
    weight, bias = model.linear.weight.detach()[:5].clone(), model.linear.bias.detach()[:5].clone()
    data = checkpoint_bytes(LogisticRegression.from_tensors(weight, bias), CONFIG, tuple("01234"),
                            checkpoint.normalizer, {})
    with pytest.raises(CheckpointError, match="a model for mnist-sample needs 10"):
        load_checkpoint(data)  # a file is refused on loading; the page still checks models from elsewhere
    five = Checkpoint(LogisticRegression.from_tensors(weight, bias), CONFIG, tuple("01234"),
                      checkpoint.normalizer, {}, 0.0)
    at = evaluate_page(five)
    assert "has 5 classes but mnist-sample has 10" in texts(at.error)


def test_evaluations_are_cached_by_weights_not_recomputed(checkpoint, monkeypatch):
    at = evaluate_page(checkpoint)
    calls = []
    original = lrcore.evaluate.evaluate_model
    monkeypatch.setattr(lrcore.evaluate, "evaluate_model", lambda *a, **k: calls.append(1) or original(*a, **k))
    at.run()
    assert not at.exception
    assert calls == []  # same weights: both splits come from the cache
    zero = LogisticRegression.from_tensors(torch.zeros_like(checkpoint.model.linear.weight),
                                           torch.zeros_like(checkpoint.model.linear.bias))
    at.session_state["checkpoint"] = load_checkpoint(
        checkpoint_bytes(zero, CONFIG, checkpoint.class_names, checkpoint.normalizer, {}))
    at.run()
    assert not at.exception
    assert len(calls) == 2  # new weights: test and validation evaluated once each
    assert metrics(at)["Test accuracy"] == "10.00%"  # all-zero weights: every image is called class 0


# ---------------------------------------------------------------- hostile input (security review)

HOSTILE_NAMES = ("[x](http://e)", "![i](http://e/i.png)", "<img src=x onerror=alert(1)>", ":red[3]", "$4$", "`5`",
                 "**6**", "# 7", "<a href='http://e'>8</a>", "9 :material/home:")


def unescaped(text: str) -> str:
    """What markdown shows for backslash-escaped text (zero-width spaces are invisible)."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u200b", "")


def markdown_texts(at: AppTest) -> list[str]:
    """Every string of the page that Streamlit renders as markdown."""
    values = [e.value for kind in (at.markdown, at.caption, at.error, at.warning, at.info, at.subheader)
              for e in kind]
    values += [b.label for b in at.button] + [s.label for s in at.selectbox]
    values += [caption for image in at.image for caption in image.captions]
    return [str(v) for v in values]


def test_class_names_with_markdown_and_html_are_shown_literally(checkpoint):
    hostile = load_checkpoint(checkpoint_bytes(checkpoint.model, CONFIG, HOSTILE_NAMES, checkpoint.normalizer, {}))
    at = evaluate_page(hostile)
    at.selectbox(key="eval_true").set_value(1)  # the image-named class, predicted as the link-named one
    at.selectbox(key="eval_pred").set_value(0)
    at.run()
    assert not at.exception
    shown = markdown_texts(at)
    for text in shown:  # no markup from a class name survives unescaped
        assert not re.search(r"(?<!\\)(<|\]\(|\$|`|:red\[3|:material)", text), text
    heading = cell_heading(at)
    assert md_escape(HOSTILE_NAMES[1]) in heading and md_escape(HOSTILE_NAMES[0]) in heading
    assert unescaped(md_escape(HOSTILE_NAMES[1])) == HOSTILE_NAMES[1]  # escaped, the text reads the same
    pair_labels = [b.label for b in at.button if b.key and b.key.startswith("eval_pair_")]
    assert pair_labels and all(any(md_escape(name) in label for name in HOSTILE_NAMES) for label in pair_labels)
    captions = [c for image in at.image for c in image.captions]
    assert any(md_escape(name) in c for c in captions for name in HOSTILE_NAMES)
    figure = at.get("plotly_chart")[0].proto.spec
    assert "&lt;img src=x onerror=alert(1)&gt;" in figure and "<img" not in figure and "<a " not in figure


def test_a_markdown_file_name_in_an_upload_error_is_literal():
    at = evaluate_page()
    at.file_uploader(key="eval_upload").set_value(("[x](http://e)![i](http://e/i.png).pt", b"junk", "x/y")).run()
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("“" + md_escape("[x](http://e)![i](http://e/i.png).pt") + "” was not loaded: ")
    assert "](http" not in error.value


def test_uploading_each_hostile_checkpoint_shows_an_error_and_no_exception():
    from tests.test_hostile_checkpoints import CRAFTED, deflated, payload, saved
    cases = dict(CRAFTED)
    cases["1 GB of deflated zeros"] = (deflated(saved(payload()), {"archive/data/9": 1 << 30}), "tensors")
    at = evaluate_page()
    for number, (name, (data, field)) in enumerate(cases.items()):
        at.file_uploader(key="eval_upload").set_value((f"crafted{number}.pt", data, "application/octet-stream"))
        at.run()
        assert not at.exception, (name, at.exception)
        [error] = at.error
        assert unescaped(error.value).startswith(f"“crafted{number}.pt” was not loaded: "), name
        assert field in unescaped(error.value), (name, error.value)
        assert "No model to evaluate yet" in texts(at.info)  # nothing was loaded


def test_colour_images_are_shown_in_colour_at_a_readable_size(monkeypatch, tmp_path):
    """Issue 12: a colour dataset's confusion cell, top losses and random images are colour tiles."""
    from dataclasses import fields

    import ui.images
    from lrcore import datasets
    from lrcore.data import Normalizer

    def colour_images(count, seed):
        generator = torch.Generator().manual_seed(seed)
        labels = torch.arange(count) % 3
        images = torch.randint(0, 100, (count, 3, 8, 8), generator=generator)
        images[torch.arange(count), labels] += 150
        return images.to(torch.uint8), labels

    info = datasets.DatasetInfo("tiny-rgb-eval", "Tiny RGB (test)", ("red", "green", "blue"), (3, 8, 8),
                                digits=False, folder=tmp_path,
                                loader=lambda folder: (*colour_images(90, 1), *colour_images(30, 2)))
    monkeypatch.setitem(datasets.REGISTRY, info.name, info)
    values = dict(model=LogisticRegression.from_tensors(torch.randn(3, 192), torch.zeros(3)),
                  config=TrainConfig(dataset=info.name), class_names=info.class_names, normalizer=Normalizer("raw"),
                  metrics={}, created=0.0, image_shape=info.shape)
    checkpoint = Checkpoint(**{f.name: values[f.name] for f in fields(Checkpoint) if f.name in values})
    shown = []
    tiles = ui.images.picture_tiles
    monkeypatch.setattr(ui.images, "picture_tiles", lambda images, *args: shown.append(tiles(images, *args)) or shown[-1])
    evaluate_page(checkpoint)
    assert shown and all(tile.shape[2] == 3 for grid in shown for tile in grid)
    assert any((tile[..., 0] != tile[..., 1]).any() for grid in shown for tile in grid)  # colour, not grey
    assert {tile.shape[:2] for grid in shown for tile in grid} <= {(80, 80), (88, 88), (112, 112)}


def test_a_checkpoint_of_a_folder_this_server_never_imported_says_what_to_do(unregistered_folder_model):  # noqa: F811
    """Issue 12: it said "unknown dataset 'halves-32-colour-…'; choose one of …", which read like a crash."""
    data, name = unregistered_folder_model
    at = evaluate_page()
    at.file_uploader(key="eval_upload").set_value(("halves.pt", data, "application/octet-stream")).run()
    assert not at.exception, at.exception
    assert not at.error and not at.metric
    [warning] = at.warning
    assert warning.value == ("This model was trained on your own pictures (“bottom vs top”, 2 classes, 32×32 colour), "
                             "which are not on this server: import the same folder or zip (under the same name, at "
                             "32×32 colour) on the Data page to evaluate it. Weights and Predict work without it.")
    assert name not in " ".join(texts(kind) for kind in (at.warning, at.caption))  # not its internal name
    assert [link.proto.page for link in at.get("page_link")] == ["data", "weights", "draw"]


def test_an_unknown_dataset_of_any_other_name_is_named_literally(checkpoint):
    values = {**CONFIG.to_dict(), "dataset": "[x](http://e) digits"}
    unknown = Checkpoint(checkpoint.model, TrainConfig.of_unregistered_dataset(values), checkpoint.class_names,
                         checkpoint.normalizer, {}, 0.0)
    at = evaluate_page(unknown)
    assert not at.exception, at.exception
    [warning] = at.warning
    assert warning.value.startswith(f"This model was trained on “{md_escape('[x](http://e) digits')}” (“0, 1, 2, …”, "
                                    "10 classes, 28×28 greyscale), a dataset this server does not have")
    assert not at.metric
