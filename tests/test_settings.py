"""The settings table (lrcore/settings.py) describes every TrainConfig field once, and links round-trip."""
from __future__ import annotations

import dataclasses

import pytest

from lrcore.cli import build_parser
from lrcore.config import TrainConfig, config_problems
from lrcore.settings import BY_NAME, BY_PARAM, SETTINGS, from_params, to_params


def test_one_entry_per_trainconfig_field_with_the_same_default():
    assert {s.name for s in SETTINGS} == {f.name for f in dataclasses.fields(TrainConfig)}
    for field in dataclasses.fields(TrainConfig):
        assert BY_NAME[field.name].default == field.default, field.name
        assert BY_NAME[field.name].problem(field.default) is None, field.name


def test_every_setting_but_where_it_runs_has_a_link_key_and_a_label():
    assert {s.name for s in SETTINGS if not s.param} == {"dataset", "device"}  # the dataset has its own key
    assert all(s.label for s in SETTINGS if s.param)
    assert len(BY_PARAM) == len({s.param for s in SETTINGS if s.param})


def test_a_non_default_config_round_trips_through_a_link():
    config = TrainConfig(learning_rate=0.0123, batch_size=64, validation_fraction=0.3, epochs=4, optimizer="momentum",
                         momentum=0.8, weight_decay=0.001, seed=7, normalization="standardize", per_class_limit=100,
                         batch_order="by_class", deskew=True)
    params = to_params(config.to_dict())
    assert params["lr"] == "0.0123" and params["deskew"] == "on" and params["order"] == "by_class"
    settings, warnings = from_params(params, TrainConfig().to_dict())
    assert not warnings and TrainConfig(**settings) == config
    assert "per_class" not in to_params(TrainConfig().to_dict())  # no limit: left out of the link


@pytest.mark.parametrize("param, text, allowed", [
    ("lr", "abc", "a number from 1e-06 to 100"),
    ("val_fraction", "0.333", "a number from 0.01 to 0.9 with at most two decimals"),
    ("per_class", "0", "a whole number from 1 to 1e+06, or all"),
    ("deskew", "yes", "one of on, off"),
    ("optimizer", "adam", "one of sgd, momentum, adamw"),
])
def test_a_bad_link_value_is_named_with_what_is_allowed_and_the_default_kept(param, text, allowed):
    defaults = TrainConfig().to_dict()
    settings, warnings = from_params({param: text}, defaults)
    assert settings == defaults and len(warnings) == 1
    assert f"{param}={text}" in warnings[0] and allowed in warnings[0] and "Using the default" in warnings[0]


def test_config_checks_come_from_the_table():
    assert config_problems({**TrainConfig().to_dict(), "momentum": 1.0}) == {"momentum": "must be >= 0 and < 1, got 1.0"}
    assert BY_NAME["learning_rate"].problem(1000.0) == "must be between 1e-06 and 100, got 1000"


def test_the_cli_has_a_flag_for_every_setting_with_one():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dests = {action.dest for action in train._actions}
    assert {s.name for s in SETTINGS if s.flags} <= dests
    assert all(s.flags for s in SETTINGS)  # today every setting has a flag
