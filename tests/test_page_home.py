"""Home page (AppTest): the start links and the tutorials' experiments, each one click from Train."""
from __future__ import annotations

import pytest

from lrcore.config import TrainConfig
from pages.home import EXPERIMENTS
from tests.apptest_helpers import open_page


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("LRCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LRCORE_RUNS_DIR", str(tmp_path / "runs"))


def test_every_experiment_is_a_valid_configuration():
    for title, _text, settings in EXPERIMENTS:
        TrainConfig(**settings)  # raises ConfigError naming the bad setting


def test_home_lists_the_experiments_and_one_opens_train_with_its_settings():
    at = open_page("pages/home.py")
    markdown = " ".join(m.value for m in at.markdown)
    assert all(f"**{title}**" in markdown for title, _text, _settings in EXPERIMENTS)
    buttons = [b for b in at.button if b.label == "Open in Train"]
    assert len(buttons) == len(EXPERIMENTS)
    # visit Train first: its widgets then exist, and the experiment must still replace them
    at.switch_page("pages/train.py")
    at.run()
    at.switch_page("pages/home.py")
    at.run()
    no_shuffling = [title for title, _t, _s in EXPERIMENTS].index("No shuffling")
    [b for b in at.button if b.label == "Open in Train"][no_shuffling].click()
    at.run()
    assert not at.exception
    assert at.selectbox(key="train_batch_order").value == "by_class"
    assert at.number_input(key="train_epochs").value == 3
    assert at.number_input(key="train_learning_rate").value == TrainConfig().learning_rate
    assert at.query_params["order"] == "by_class"


def card_button(at, label: str, index: int = 0):
    return [b for b in at.button if b.label == label][index]


def test_the_just_right_card_opens_train_with_settings_that_reach_good_accuracy():
    from lrcore import train
    from lrcore.naming import defaults_for
    from pages.home import EXPERIMENTS

    titles = [title for title, _t, _s in EXPERIMENTS]
    assert titles[:3] == ["Learning rate too low", "Learning rate just right", "Learning rate too high"]
    settings = EXPERIMENTS[1][2]
    config = defaults_for("mnist-sample").replace(**settings)
    finished = [event for event in train(config) if type(event).__name__ == "Finished"][0]
    assert finished.status == "done" and finished.test_accuracy >= 0.9  # measured 0.945 (0.918 undeskewed)

    at = open_page("pages/home.py")
    card_button(at, "Open in Train", 1).click()
    at.run()
    assert not at.exception
    assert at.number_input(key="train_learning_rate").value == config.learning_rate
    assert at.number_input(key="train_epochs").value == config.epochs
    assert at.query_params["lr"] == str(config.learning_rate)


def test_the_sweep_card_opens_the_sweep_with_the_three_learning_rates():
    from pages.home import SWEEP_SETTINGS, SWEEP_TITLE

    at = open_page("pages/home.py")
    assert any(f"**{SWEEP_TITLE}**" in m.value for m in at.markdown)
    # visit the Sweep first and change its range: the card must still put its own values in
    at.switch_page("pages/sweep.py")
    at.run()
    at.text_input(key="sweep_low").set_value("0.01").run()
    at.slider(key="sweep_count").set_value(8).run()
    at.switch_page("pages/home.py")
    at.run()
    card_button(at, "Open in Sweep").click()
    at.run()
    assert not at.exception
    assert at.text_input(key="sweep_low").value == SWEEP_SETTINGS["sweep_low"] == "0.005"
    assert at.text_input(key="sweep_high").value == "50"
    assert at.slider(key="sweep_count").value == 3
    captions = " ".join(c.value for c in at.caption)
    assert "3 configurations" in captions and "learning rates 0.005, 0.5, 50" in captions
    assert not card_button(at, "Start sweep").disabled


def test_the_own_pictures_card_opens_data_with_the_example_folder():
    at = open_page("pages/home.py")
    assert "**Your own pictures**" in " ".join(m.value for m in at.markdown)
    at.button(key="home_own_images").click().run()
    assert not at.exception, at.exception
    example = at.session_state["dataset"]
    assert example.startswith("threes-and-sevens") or "threes" in example
    assert at.radio(key="data_choice").value == example
    assert "its own validation set" in " ".join(str(i.value) for i in at.info)
