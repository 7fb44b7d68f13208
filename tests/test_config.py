import math

import pytest

from lrcore.config import ConfigError, TrainConfig, config_problems


def test_defaults_are_valid():
    config = TrainConfig()
    assert config_problems(config.to_dict()) == {}
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("field, value, fragment", [
    ("learning_rate", 0.0, "> 0"),
    ("learning_rate", -1.0, "> 0"),
    ("learning_rate", math.nan, "finite"),
    ("learning_rate", math.inf, "finite"),
    ("learning_rate", 1000.0, "between"),
    ("learning_rate", "0.1", "finite number"),
    ("batch_size", 0, ">= 1"),
    ("batch_size", 2.5, "whole number"),
    ("batch_size", True, "whole number"),
    ("validation_fraction", 0.0, "strictly between 0 and 1"),
    ("validation_fraction", 1.0, "strictly between 0 and 1"),
    ("epochs", 0, "1 to 1000"),
    ("optimizer", "adam", "sgd, momentum, adamw"),
    ("momentum", 1.0, "< 1"),
    ("weight_decay", -0.1, "0 to 10"),
    ("seed", -1, "0 to"),
    ("device", "tpu", "auto, cpu, cuda"),
    ("dataset", "cifar10", "mnist-sample"),
    ("normalization", "zscore", "raw, standardize"),
    ("per_class_limit", 0, ">= 1"),
    ("batch_order", "random", "shuffled, fixed, by_class"),
    ("deskew", "yes", "true or false"),
    ("deskew", 1, "true or false"),
])
def test_each_bad_value_names_the_field_and_what_is_allowed(field, value, fragment):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**{field: value})
    assert set(caught.value.problems) == {field}
    assert fragment in caught.value.problems[field]
    assert field in str(caught.value)


def test_all_problems_are_reported_at_once():
    problems = config_problems({**TrainConfig().to_dict(), "learning_rate": -1, "epochs": 0})
    assert set(problems) == {"learning_rate", "epochs"}


def test_batch_size_is_checked_against_the_training_split():
    config = TrainConfig(batch_size=500)
    config.check_sizes(500)
    with pytest.raises(ConfigError, match="at most the training set size"):
        config.check_sizes(499)


def test_from_dict_ignores_unknown_keys_and_replace_validates():
    config = TrainConfig.from_dict({"learning_rate": 0.1, "not_a_field": 3})
    assert config.learning_rate == 0.1
    with pytest.raises(ConfigError):
        config.replace(batch_size=0)


def test_deskew_is_off_unless_asked_for_so_old_settings_load_as_trained():
    assert TrainConfig().deskew is False
    old = TrainConfig().to_dict()
    del old["deskew"]  # a run or checkpoint saved before the setting existed
    assert TrainConfig.from_dict(old).deskew is False
    assert TrainConfig(deskew=True).replace(learning_rate=0.1).deskew is True


def test_replace_keeps_a_dataset_that_is_not_registered_here():
    """A checkpoint of another machine's image folder: its config changes like any other."""
    config = TrainConfig.of_unregistered_dataset({"dataset": "bees-32-colour-1a2b3c4d", "learning_rate": 0.005})
    changed = config.replace(epochs=3, normalization="standardize")
    assert (changed.dataset, changed.epochs, changed.learning_rate) == ("bees-32-colour-1a2b3c4d", 3, 0.005)
    assert config.replace().dataset == "bees-32-colour-1a2b3c4d"
    assert config.replace(dataset="mnist-sample").dataset == "mnist-sample"
    with pytest.raises(ConfigError, match="epochs"):
        config.replace(epochs=0)  # every other field is still checked
    with pytest.raises(ConfigError, match="dataset"):
        config.replace(dataset="ants-32-colour-1a2b3c4d")  # naming another unknown one is still refused
    with pytest.raises(ConfigError, match="dataset"):
        TrainConfig().replace(dataset="bees-32-colour-1a2b3c4d")
