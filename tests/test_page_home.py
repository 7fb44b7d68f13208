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
