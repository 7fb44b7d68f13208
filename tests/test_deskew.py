"""Deskewing (lrcore.preprocess.deskew) and its use in training, checkpoints and drawings."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import lrcore.data
from lrcore import TrainConfig, load_dataset, train
from lrcore import preprocess
from lrcore.checkpoint import CheckpointError, checkpoint_payload, load_checkpoint, save_checkpoint
from lrcore.data import Dataset
from lrcore.evaluate import evaluate_model, predict, split_data
from lrcore.predict_drawing import predict_canvas, predict_drawing
from lrcore.preprocess import deskew


def stroke(start, end, width=3, side=28) -> torch.Tensor:
    """A uint8 side x side image with one straight white stroke from `start` to `end` (x, y)."""
    image = Image.new("L", (side, side), 0)
    ImageDraw.Draw(image).line([start, end], fill=255, width=width)
    return torch.from_numpy(np.asarray(image).copy())


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    a = image.double()
    r = torch.arange(28, dtype=torch.float64)
    return float(a.sum(1) @ r / a.sum()), float(a.sum(0) @ r / a.sum())


def slant(images: torch.Tensor) -> torch.Tensor:
    """Shear cov(x, y) / var(y) of each image's ink (0 = upright; 0 for no ink or no height).

    Written here, apart from lrcore's own moments, so deskew is measured by an independent yardstick."""
    pixels = images.reshape(-1, 28, 28).double()
    coords = torch.arange(28, dtype=torch.float64)
    mass = pixels.sum((1, 2)).clamp_min(1e-12)
    cy = pixels.sum(2) @ coords / mass
    cx = pixels.sum(1) @ coords / mass
    dy, dx = coords.view(1, 28) - cy[:, None], coords.view(1, 28) - cx[:, None]
    var_y = torch.einsum("nij,ni,ni->n", pixels, dy, dy) / mass
    cov = torch.einsum("nij,ni,nj->n", pixels, dy, dx) / mass
    return torch.where(var_y > 1e-3, cov / var_y.clamp_min(1e-3), torch.zeros_like(var_y))


@pytest.fixture(scope="module")
def sample():
    return load_dataset("mnist-sample")


def test_a_sheared_stroke_becomes_upright_and_centred():
    for start, end in (((9, 24), (19, 4)), ((18, 25), (8, 3))):  # "/" and "\"
        image = stroke(start, end)
        assert abs(float(slant(image))) > 0.3
        upright = deskew(image)
        assert upright.dtype == torch.uint8 and upright.shape == (28, 28)
        assert abs(float(slant(upright))) < 0.05, float(slant(upright))
        cy, cx = centre_of_mass(upright)
        assert abs(cy - 14) < 0.3 and abs(cx - 14) < 0.3
        # Ink is kept: the stroke is moved, not erased or smeared away.
        assert abs(int(upright.int().sum()) - int(image.int().sum())) < 0.1 * int(image.int().sum())
        columns = torch.nonzero(upright.sum(0) > 0).flatten()
        assert int(columns[-1] - columns[0]) <= 5  # a vertical bar a few pixels wide


def test_an_upright_digit_barely_changes(sample):
    bar = torch.zeros(28, 28, dtype=torch.uint8)
    bar[4:25, 13:16] = 255  # centre of mass exactly (14, 14), no slant
    assert torch.equal(deskew(bar), bar)
    slants = slant(sample.test_images)
    upright = torch.nonzero(slants.abs() < 0.03).flatten()
    assert len(upright) >= 50
    scores = []
    for index in upright.tolist():
        before, after = sample.test_images[index].double(), deskew(sample.test_images[index]).double()
        a, b = before - before.mean(), after - after.mean()
        scores.append(float(a.flatten() @ b.flatten() / (a.norm() * b.norm())))
    # Only the sub-pixel move of the centre of mass onto the centre blurs them a little (measured:
    # mean 0.964, lowest 0.87).
    assert min(scores) > 0.8 and np.mean(scores) > 0.94


def test_empty_images_stay_empty():
    empty = torch.zeros(3, 28, 28, dtype=torch.uint8)
    assert torch.equal(deskew(empty), empty)
    assert slant(empty).tolist() == [0.0, 0.0, 0.0]
    line = torch.zeros(28, 28, dtype=torch.uint8)
    line[14, 5:24] = 255  # a flat dash (centred): no height to shear along, so left alone
    assert float(slant(line)) == 0.0 and torch.equal(deskew(line), line)


def test_batched_equals_one_by_one_in_any_shape(sample, monkeypatch):
    images = sample.test_images[:40]
    one_by_one = torch.stack([deskew(image) for image in images])
    monkeypatch.setattr(preprocess, "DESKEW_CHUNK", 7)  # chunk boundaries change nothing
    assert torch.equal(deskew(images), one_by_one)
    assert torch.equal(deskew(images.reshape(40, 784)), one_by_one.reshape(40, 784))
    with pytest.raises(ValueError, match="uint8 28x28"):
        deskew(images.float())


def test_deskewing_straightens_mnist(sample):
    before = slant(sample.test_images).abs().mean()
    after = slant(deskew(sample.test_images)).abs().mean()
    assert float(before) > 0.15 and float(after) < 0.3 * float(before)


def small_dataset(sample) -> Dataset:
    """A new Dataset object (so nothing is cached for it yet) with 2,000 + 500 real digits."""
    return Dataset("mnist-sample", sample.train_images[:2000].clone(), sample.train_labels[:2000].clone(),
                   sample.test_images[:500].clone(), sample.test_labels[:500].clone(), sample.class_names, "test")


def test_training_deskews_once_per_dataset_and_uses_it_everywhere(sample, monkeypatch):
    calls = []

    def counting(images):
        calls.append(len(images))
        return deskew(images)

    monkeypatch.setattr(lrcore.data, "deskew", counting)
    dataset = small_dataset(sample)
    config = TrainConfig(deskew=True, epochs=2, batch_size=64)
    for _ in range(2):
        events = list(train(config, dataset))
    assert sorted(calls) == [500, 2000]  # train pool and test split, once each, for both runs
    finished = events[-1]
    assert finished.status == "done"
    # The final test accuracy is the model's accuracy on the deskewed test images...
    images, labels = split_data(dataset, config, "test")
    assert torch.equal(images, deskew(dataset.test_images))
    result = evaluate_model(finished.model, finished.normalizer, images, labels)
    assert result.accuracy == pytest.approx(finished.test_accuracy)
    # ... and the model learned on deskewed images: it does better on them than on the originals.
    plain = evaluate_model(finished.model, finished.normalizer, dataset.test_images, labels)
    assert result.accuracy > plain.accuracy
    assert dataset.images("train", deskew=True) is dataset.images("train", deskew=True)
    assert torch.equal(dataset.images("train"), sample.train_images[:2000])  # the originals are untouched


@pytest.fixture(scope="module")
def deskew_model(sample):
    config = TrainConfig(deskew=True, epochs=3)
    events = list(train(config, sample))
    return config, events[-1]


def test_checkpoint_keeps_deskew_and_old_checkpoints_load_without_it(deskew_model, tmp_path):
    config, finished = deskew_model
    path = save_checkpoint(tmp_path / "model.pt", finished.model, config, finished.class_names, finished.normalizer)
    assert load_checkpoint(path).config.deskew is True
    old = checkpoint_payload(finished.model, config, finished.class_names, finished.normalizer)
    del old["config"]["deskew"]  # saved before the setting existed
    buffer = io.BytesIO()
    torch.save(old, buffer)
    assert load_checkpoint(buffer.getvalue()).config.deskew is False
    old["config"]["deskew"] = "yes"
    buffer = io.BytesIO()
    torch.save(old, buffer)
    with pytest.raises(CheckpointError, match="deskew"):
        load_checkpoint(buffer.getvalue())


def test_a_deskew_model_sees_and_shows_the_deskewed_drawing(deskew_model):
    _config, finished = deskew_model
    board = np.zeros((280, 280, 4), dtype=np.uint8)
    board[..., 3] = 255
    slanted = np.asarray(stroke((90, 240), (190, 40), width=22, side=280))
    board[..., :3] = slanted[..., None]
    result = predict_canvas(finished.model, finished.normalizer, board, deskew=True)
    assert not result.empty
    assert torch.equal(result.image, deskew(result.preprocessed.image))  # the preview shows what the model sees
    assert abs(float(slant(result.preprocessed.image))) > 0.3 and abs(float(slant(result.image))) < 0.05
    expected = predict(finished.model, finished.normalizer, result.image.unsqueeze(0))[0]
    assert torch.allclose(result.probabilities, expected)
    plain = predict_drawing(finished.model, finished.normalizer, board, invert=False)
    assert plain.image is plain.preprocessed.image and plain.deskewed is None
    assert predict_canvas(finished.model, finished.normalizer, np.zeros((280, 280, 4), np.uint8), True).empty
