import gzip
import urllib.request

import pytest
import torch

from lrcore.config import ConfigError
from lrcore.data import (DatasetUnavailable, Normalizer, download_dataset, fit_normalizer, load_dataset,
                         locate, make_splits, pixel_statistics)
from lrcore.datasets import read_idx


@pytest.fixture(scope="module")
def sample():
    return load_dataset("mnist-sample")


def test_mnist_sample_is_bundled_real_digits_with_a_fixed_stratified_test_set(sample):
    assert sample.train_images.shape == (8000, 28, 28) and sample.train_images.dtype == torch.uint8
    assert sample.test_images.shape == (2000, 28, 28)
    assert sample.class_counts("test").tolist() == [200] * 10
    assert sample.class_counts("train").sum() == 8000
    assert sample.class_names == tuple("0123456789")
    # MNIST digits: dark background, bright ink, ~19% of pixels inked
    stats = pixel_statistics(sample.test_images)
    assert stats["min"] == 0.0 and stats["max"] == 1.0
    assert 0.10 < stats["mean"] < 0.16 and 0.28 < stats["std"] < 0.34


def test_bundled_pool_and_test_set_do_not_share_images(sample):
    pool = {bytes(image.numpy()) for image in sample.train_images}
    assert not any(bytes(image.numpy()) in pool for image in sample.test_images[:500])


def test_loading_twice_returns_the_same_tensors(sample):
    assert load_dataset("mnist-sample") is sample


def test_splits_sizes_determinism_and_no_overlap(sample):
    splits = make_splits(sample, 0.2, seed=3)
    assert len(splits.validation) == 1600 and len(splits.train) == 6400
    assert not set(splits.train.tolist()) & set(splits.validation.tolist())
    again = make_splits(sample, 0.2, seed=3)
    assert torch.equal(splits.train, again.train) and torch.equal(splits.validation, again.validation)
    other = make_splits(sample, 0.2, seed=4)
    assert not torch.equal(splits.validation, other.validation)


@pytest.mark.parametrize("fraction", [1e-5, 0.99999])
def test_fractions_that_empty_a_split_are_rejected(sample, fraction):
    with pytest.raises(ConfigError, match="empty split"):
        make_splits(sample, fraction, seed=0)


def test_extreme_but_valid_fractions_leave_one_example(sample):
    assert len(make_splits(sample, 1 / 8000, seed=0).validation) == 1
    assert len(make_splits(sample, 7999 / 8000, seed=0).train) == 1


def test_per_class_limit_caps_training_images_only(sample):
    splits = make_splits(sample, 0.2, seed=0, per_class_limit=50)
    counts = torch.bincount(sample.train_labels[splits.train], minlength=10)
    assert counts.tolist() == [50] * 10
    assert len(splits.validation) == 1600


def test_flat_images_on_cpu_share_memory_with_the_dataset(sample):
    flat = sample.flat_images("train", "cpu")
    assert flat.shape == (8000, 784)
    assert flat.data_ptr() == sample.train_images.data_ptr()  # a view, not a per-run copy


def test_standardize_normalizer_uses_training_statistics(sample):
    splits = make_splits(sample, 0.2, seed=0)
    flat = sample.flat_images("train")
    normalizer = fit_normalizer("standardize", flat, splits.train)
    inputs = normalizer(flat[splits.train])
    busy = normalizer.std > 0.2  # pixels that are not (almost) always blank
    assert inputs.mean(0)[busy].abs().max() < 1e-4
    assert torch.allclose(inputs.std(0, unbiased=False)[busy], torch.ones(int(busy.sum())), atol=1e-3)
    assert torch.allclose(Normalizer("raw")(flat[:2]), flat[:2].float() / 255)


def test_missing_full_mnist_names_the_four_files(tmp_path):
    with pytest.raises(DatasetUnavailable) as caught:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(caught.value)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        assert stem in message
    assert str(tmp_path / "MNIST" / "raw") in message


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetUnavailable, match="Download of .* failed.*t10k-labels-idx1-ubyte"):
        download_dataset("mnist", tmp_path)
    with pytest.raises(DatasetUnavailable, match="network is unreachable"):
        load_dataset("mnist", data_dir=tmp_path, download=True)


def test_full_mnist_files_in_torchvision_layout_are_found(tmp_path, sample):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    source = locate("mnist-sample")
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        data = (source / f"{stem}.gz").read_bytes()
        (raw / f"{stem}.gz").write_bytes(data)
        (raw / f"{stem.replace('t10k', 'train')}.gz").write_bytes(data)
    dataset = load_dataset("mnist", data_dir=tmp_path)
    assert dataset.train_images.shape == (10000, 28, 28) and dataset.test_images.shape == (10000, 28, 28)


def test_truncated_or_foreign_idx_files_are_rejected(tmp_path):
    good = gzip.decompress((locate("mnist-sample") / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "short").write_bytes(good[:100])
    with pytest.raises(DatasetUnavailable, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "text").write_bytes(b"hello world, not idx")
    with pytest.raises(DatasetUnavailable, match="not an IDX file"):
        read_idx(tmp_path / "text")


def test_fashion_mnist_from_debian_package_is_the_real_70000():
    assert locate("fashion-mnist") is not None, "install Debian's dataset-fashion-mnist (the README's test command does)"
    dataset = load_dataset("fashion-mnist")
    assert dataset.train_images.shape == (60000, 28, 28) and dataset.test_images.shape == (10000, 28, 28)
    assert dataset.class_counts("train").tolist() == [6000] * 10
    assert dataset.class_names[0] == "T-shirt/top" and dataset.class_names[9] == "Ankle boot"


@pytest.mark.parametrize("kind", ["raw", "standardize"])
def test_normalizer_never_changes_its_input(kind):
    normalizer = Normalizer(kind, torch.full((784,), 0.5), torch.full((784,), 0.25)) if kind != "raw" else Normalizer()
    images = torch.full((2, 28, 28), 255.0)
    inputs = normalizer(images)
    assert (images == 255.0).all()
    expected = 1.0 if kind == "raw" else (1.0 - 0.5) / 0.25
    assert torch.allclose(inputs, torch.full((2, 784), expected))
    assert torch.equal(normalizer(images.to(torch.uint8)), inputs)


def test_deskewed_images_are_computed_once_and_keep_the_originals(sample):
    from lrcore.preprocess import deskew

    deskewed = sample.images("train", deskew=True)
    assert deskewed is sample.images("train", deskew=True)  # cached for the process
    assert deskewed.shape == sample.train_images.shape and deskewed.dtype == torch.uint8
    assert torch.equal(deskewed[:100], deskew(sample.train_images[:100]))
    assert sample.images("train") is sample.train_images and sample.images("test") is sample.test_images
    assert torch.equal(sample.images("test", deskew=True), deskew(sample.test_images))
    flat = sample.flat_images("test", deskew=True)
    assert flat.shape == (2000, 784) and torch.equal(flat, sample.images("test", deskew=True).reshape(2000, 784))
    assert flat is sample.flat_images("test", deskew=True)
    assert not torch.equal(flat, sample.flat_images("test"))


def test_a_fixed_validation_set_is_used_whatever_the_fraction(sample):
    from lrcore.data import Dataset

    fixed = torch.arange(7000, 8000)
    dataset = Dataset("mnist-sample", sample.train_images, sample.train_labels, sample.test_images,
                      sample.test_labels, sample.class_names, "test", validation_index=fixed)
    assert dataset.fixed_validation and not sample.fixed_validation
    for fraction, seed in ((0.1, 0), (0.5, 1), (0.99, 2)):
        splits = make_splits(dataset, fraction, seed)
        assert splits.validation.tolist() == fixed.tolist()
        assert sorted(splits.train.tolist()) == list(range(7000))  # the rest, shuffled by the seed
    assert make_splits(dataset, 0.2, 1).train.tolist() != make_splits(dataset, 0.2, 2).train.tolist()
    limited = make_splits(dataset, 0.2, 0, per_class_limit=5)
    assert len(limited.train) == 50 and limited.validation.tolist() == fixed.tolist()


def test_a_loader_with_bad_validation_indices_is_refused(tmp_path):
    from lrcore import datasets

    images, labels = torch.zeros(4, 28, 28, dtype=torch.uint8), torch.tensor([0, 1, 0, 1])
    datasets.register(datasets.DatasetInfo(
        "bad-validation", "bad (test)", ("a", "b"), (1, 28, 28), False,
        lambda folder: (images, labels, images, labels, torch.tensor([0, 0])), folder=tmp_path))
    try:
        with pytest.raises(DatasetUnavailable, match="validation indices"):
            load_dataset("bad-validation")
    finally:
        del datasets.REGISTRY["bad-validation"]
