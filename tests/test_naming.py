"""Run names and legends say what differs from the defaults, with one table of short names."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from lrcore import config as config_module
from lrcore import naming
from lrcore.config import TrainConfig
from lrcore.naming import default_run_name, legend_labels
from lrcore.jobs import TrainingJob


@pytest.mark.parametrize("changes, name", [
    ({}, "SGD lr=0.5"),
    ({"weight_decay": 0.01}, "SGD lr=0.5 wd=0.01"),
    ({"optimizer": "adamw", "learning_rate": 0.001, "batch_size": 64}, "AdamW lr=0.001 bs=64"),
    ({"optimizer": "momentum", "learning_rate": 0.1}, "SGD + momentum lr=0.1"),
    ({"optimizer": "momentum", "momentum": 0.5}, "SGD + momentum lr=0.5 momentum=0.5"),
    ({"momentum": 0.5}, "SGD lr=0.5"),  # plain SGD ignores momentum: naming it would mislead
    ({"per_class_limit": 50, "epochs": 30}, "SGD lr=0.5 epochs=30 per class=50"),
    ({"normalization": "standardize", "learning_rate": 0.1}, "SGD lr=0.1 norm=standardised"),
    ({"dataset": "fashion-mnist", "device": "cpu"}, "SGD lr=0.5"),  # where it ran is not in the name
])
def test_the_name_says_what_differs_from_the_defaults(changes, name):
    base = naming.defaults_for(changes.get("dataset", "mnist-sample"))  # the dataset's defaults, if it has own
    config = base.replace(**changes)
    expected = name.replace("lr=0.5", f"lr={config.learning_rate:g}") if "learning_rate" not in changes else name
    assert default_run_name(config) == expected
    assert TrainingJob([config], dataset=None).records()[0].name == expected  # a job names its runs so


def test_a_weight_decay_run_and_a_default_run_have_different_names():
    base = naming.defaults_for("mnist-sample")
    assert default_run_name(base) != default_run_name(base.replace(weight_decay=0.01))
    assert default_run_name(base.replace(weight_decay=0.01)).endswith(" wd=0.01")


def test_the_dataset_defaults_are_the_baseline_when_config_has_them(monkeypatch):
    """With per-dataset defaults, the dataset's own default learning rate is not 'different'."""
    def defaults_for(dataset):
        return TrainConfig(dataset=dataset, optimizer="adamw", learning_rate=0.001) \
            if dataset == "fashion-mnist" else TrainConfig(dataset=dataset)
    monkeypatch.setattr(config_module, "defaults_for", defaults_for, raising=False)
    assert default_run_name(TrainConfig(dataset="fashion-mnist", optimizer="adamw", learning_rate=0.001,
                                        epochs=30)) == "AdamW lr=0.001 epochs=30"
    # a mapping of changes works too, and a failing lookup falls back to TrainConfig's defaults
    monkeypatch.setattr(config_module, "defaults_for", lambda dataset: {"batch_size": 64, "deskew": False}
                        if "deskew" in TrainConfig.__dataclass_fields__ else {"batch_size": 64}, raising=False)
    assert default_run_name(TrainConfig(batch_size=64)) == "SGD lr=0.5"
    monkeypatch.setattr(config_module, "defaults_for", lambda dataset: 1 / 0, raising=False)
    assert default_run_name(TrainConfig(batch_size=64)) == "SGD lr=0.5 bs=64"  # TrainConfig() is the baseline


def test_a_field_without_a_short_name_is_named_after_itself(monkeypatch):
    """A setting added to TrainConfig later (e.g. deskew) is named without changing this module."""
    @dataclasses.dataclass(frozen=True)
    class Extended(TrainConfig):
        deskew: bool = True
        label_smoothing: float = 0.0

    monkeypatch.setattr(naming, "TrainConfig", Extended)
    monkeypatch.setattr(naming, "defaults_for", lambda dataset: Extended(dataset=dataset))
    config = Extended(optimizer="adamw", learning_rate=0.001, batch_size=64, deskew=False, label_smoothing=0.1)
    assert default_run_name(config) == "AdamW lr=0.001 bs=64 deskew off label smoothing=0.1"
    runs = [SimpleNamespace(name="a", config=Extended(deskew=False)), SimpleNamespace(name="b", config=Extended())]
    assert legend_labels(runs) == ["deskew off", "deskew on"]


def test_legends_use_the_same_short_names_as_run_names():
    base = naming.defaults_for("mnist-sample")
    runs = [SimpleNamespace(name="plain", config=base), SimpleNamespace(name="decay", config=base.replace(weight_decay=0.01))]
    assert legend_labels(runs) == ["wd=0", "wd=0.01"]
    assert default_run_name(runs[1].config).endswith(legend_labels(runs)[1])
    twins = [SimpleNamespace(name="first", config=TrainConfig()), SimpleNamespace(name="second", config=TrainConfig())]
    assert legend_labels(twins) == ["first", "second"]


def test_a_run_of_a_dataset_not_registered_here_is_named_as_where_it_was_trained():
    """A folder model's checkpoint opened on a server that never imported the folder: the name
    compares with the defaults its dataset's name implies (32x32 colour: lr 0.005, standardised)."""
    from lrcore import datasets

    name = "bees-32-colour-1a2b3c4d"
    trained = dict(learning_rate=0.005, normalization="standardize", epochs=20, weight_decay=0.01)
    datasets.register(datasets.DatasetInfo(name, "bees vs ants", ("ants", "bees"), (3, 32, 32), False, None))
    try:
        where_trained = default_run_name(TrainConfig(dataset=name, **trained))
    finally:
        del datasets.REGISTRY[name]
    here = TrainConfig.of_unregistered_dataset({"dataset": name, **trained})
    assert default_run_name(here) == where_trained == "SGD lr=0.005 wd=0.01"
    assert naming.defaults_for(name).dataset == name
    # any other name as written (no size in it): TrainConfig's own defaults are the baseline
    other = TrainConfig.of_unregistered_dataset({"dataset": "Ana's photos", "learning_rate": 0.1, "epochs": 5})
    assert default_run_name(other) == "SGD lr=0.1 epochs=5"


def test_a_full_batch_run_is_not_named_or_labelled_by_its_unused_batch_size():
    config = TrainConfig(batch_size=64, full_batch=True)
    assert "bs=" not in default_run_name(config) and "full batch" in default_run_name(config)
    runs = [SimpleNamespace(config=TrainConfig(batch_size=size, full_batch=True, learning_rate=lr), name=f"r{lr}")
            for size, lr in ((64, 0.1), (128, 0.5))]
    assert legend_labels(runs) == ["lr=0.1", "lr=0.5"]
