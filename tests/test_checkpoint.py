import io

import pytest
import torch

from lrcore import checkpoint as ck
from lrcore.checkpoint import CheckpointError, checkpoint_bytes, load_checkpoint, save_checkpoint
from lrcore.config import TrainConfig
from lrcore.data import Normalizer
from lrcore.model import LogisticRegression


@pytest.fixture
def model():
    torch.manual_seed(0)
    return LogisticRegression()


def standardize():
    return Normalizer("standardize", torch.rand(784), torch.rand(784) + 0.1)


def test_round_trip_keeps_everything(tmp_path, model):
    config = TrainConfig(learning_rate=0.1, optimizer="adamw", normalization="standardize", per_class_limit=500)
    normalizer = standardize()
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, config, tuple("0123456789"), normalizer,
                           {"test_accuracy": 0.9})
    loaded = load_checkpoint(path)
    assert torch.equal(loaded.model.linear.weight, model.linear.weight)
    assert torch.equal(loaded.model.linear.bias, model.linear.bias)
    assert loaded.config == config and loaded.class_names == tuple("0123456789")
    assert torch.equal(loaded.normalizer.mean, normalizer.mean) and torch.equal(loaded.normalizer.std, normalizer.std)
    assert loaded.metrics == {"test_accuracy": 0.9}
    assert load_checkpoint(checkpoint_bytes(model, config, tuple("0123456789"), normalizer)).config == config
    assert load_checkpoint(io.BytesIO(path.read_bytes())).config == config


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, model, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", model, TrainConfig(), tuple("0123456789"), Normalizer())
    before = path.read_bytes()

    def broken_save(payload, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(ck.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, TrainConfig(epochs=3), tuple("0123456789"), Normalizer())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


class RunsCode:
    """Unpickling this would create a file: the safe loader must refuse before that."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"format": "lrcore-checkpoint", "weight": RunsCode(str(marker))}, buffer)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(buffer.getvalue())
    assert not marker.exists()


def saved(payload) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def valid_payload():
    return ck.checkpoint_payload(LogisticRegression(), TrainConfig(), tuple("0123456789"), Normalizer())


@pytest.mark.parametrize("data, message", [
    (b"", "not a PyTorch file"),
    (b"this is a text file\n", "not a PyTorch file"),
    (saved([1, 2, 3]), "not an lrcore checkpoint"),
    (saved({"hello": torch.zeros(3)}), "not an lrcore checkpoint"),
    (saved({**valid_payload(), "weight": torch.zeros(10, 100)}), "expected 10 x 784"),
    (saved({**valid_payload(), "bias": torch.zeros(3)}), "bias has the wrong shape"),
    (saved({**valid_payload(), "weight": torch.full((10, 784), float("nan"))}), "NaN"),
    (saved({**valid_payload(), "class_names": []}), "class_names"),
    (saved({**valid_payload(), "config": {"learning_rate": -5}}), "config: the training settings are invalid"),
    (saved({**valid_payload(), "normalizer": {"kind": "standardize", "mean": torch.zeros(3)}}), "normalizer mean"),
])
def test_each_bad_checkpoint_gets_a_clear_error(data, message):
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(data)


def test_truncated_checkpoint_is_reported_as_damaged():
    data = saved(valid_payload())
    with pytest.raises(CheckpointError, match="damaged|not a PyTorch file"):
        load_checkpoint(data[: len(data) // 2])


def test_missing_and_oversized_files(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")
    monkeypatch.setattr(ck, "MAX_CHECKPOINT_BYTES", 10)
    with pytest.raises(CheckpointError, match="at most"):
        load_checkpoint(saved(valid_payload()))


def test_a_tutorial_state_dict_loads_with_default_settings():
    class MnistModel(torch.nn.Module):  # tutorial 000's model
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(784, 10)
    model = MnistModel()
    loaded = load_checkpoint(saved(model.state_dict()))
    assert torch.equal(loaded.model.linear.weight, model.linear.weight)
    assert loaded.class_names == tuple("0123456789") and loaded.normalizer.kind == "raw"
