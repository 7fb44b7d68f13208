"""Hostile checkpoints: compressed memory bombs and crafted fields each get one clear CheckpointError.

Every case here crashed a page or the CLI with a traceback, or was accepted, before the
checks in lrcore.checkpoint (security review: memory bombs, crafted checkpoints).
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from lrcore import checkpoint as ck
from lrcore.checkpoint import CheckpointError, load_checkpoint
from lrcore.config import TrainConfig
from lrcore.data import Normalizer
from lrcore.model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent


def saved(payload) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def deflated(data: bytes, extra: dict[str, int] | None = None) -> bytes:
    """`data` (a torch.save zip) re-zipped with deflate; `extra` adds records of that many zero bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
        for name, size in (extra or {}).items():
            with target.open(name, "w", force_zip64=True) as record:  # streamed: the test holds no big buffer
                chunk = bytes(1 << 20)
                for _ in range(size >> 20):
                    record.write(chunk)
    return out.getvalue()


def payload(classes: int = 10, **changes) -> dict:
    names = tuple("0123456789") if classes == 10 else tuple(f"class {i}" for i in range(classes))
    model = LogisticRegression.from_tensors(torch.zeros(classes, 784), torch.zeros(classes))
    return {**ck.checkpoint_payload(model, TrainConfig(), names, Normalizer()), **changes}


# ---------------------------------------------------------------- memory bombs

@pytest.fixture(scope="module")
def tensor_bomb() -> bytes:
    """The review's bomb, smaller: torch.save of a 256 MB zero tensor, re-zipped with deflate (~0.26 MB)."""
    return deflated(saved(payload(extra=torch.zeros(64 * 1024 * 1024))))


def test_a_deflated_zero_tensor_is_refused_before_it_is_decompressed(tensor_bomb):
    assert len(tensor_bomb) < 1_000_000  # well under the 20 MB upload limit
    with pytest.raises(CheckpointError, match=r"refused: the file declares 3 tensors of 268\.\d+ MB"):
        load_checkpoint(tensor_bomb)


def test_an_oversized_record_behind_small_tensors_is_refused():
    # the pickle asks for a 10 x 784 weight, but the weight's record in the zip declares 200 MB
    data = saved(payload())
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        weight_record = next(name for name in source.namelist() if name.endswith("/data/0"))
        kept = {name: source.read(name) for name in source.namelist() if name != weight_record}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name, content in kept.items():
            target.writestr(name, content)
    bomb = deflated(out.getvalue(), {weight_record: 200 << 20})
    with pytest.raises(CheckpointError, match="refused: the file declares 2 tensors of 209.72 MB"):
        load_checkpoint(bomb)


@pytest.mark.parametrize("extra, message", [
    ({"archive/unexpected": 50 << 20}, "unexpected record of 52.43 MB"),
    ({f"archive/x{i}": 0 for i in range(20)}, "lists 28 records"),
    ({"archive/more.pkl": 1 << 20}, "settings record"),
])
def test_other_records_are_bounded_too(extra, message):
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(deflated(saved(payload()), extra))


def test_a_zip_listing_many_records_is_refused_from_its_end_record():
    # 20 MB can list ~400,000 empty records: parsing them all took 5 s and 110 MB
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i in range(5000):
            archive.writestr(f"{i:x}", b"")
    with pytest.raises(CheckpointError, match="refused: the archive lists 5,000 records"):
        load_checkpoint(out.getvalue())


def patched(data: bytes, at: int, value: int, length: int) -> bytes:
    return data[:at] + value.to_bytes(length, "little") + data[at + length:]


def test_zip_end_records_that_disagree_are_refused():
    data = saved(payload())  # torch writes a zip64 end record and a plain one
    end = data.rfind(b"PK\x05\x06")
    assert data[end - 20:end - 16] == b"PK\x06\x07"
    with pytest.raises(CheckpointError, match="two zip end records list different records"):
        load_checkpoint(patched(data, end + 10, 3, 2))  # the plain record says 3 records
    with pytest.raises(CheckpointError, match="zip64 end record is not where it says"):
        load_checkpoint(patched(data, end - 20 + 8, 0, 8))  # the locator points elsewhere
    assert load_checkpoint(patched(patched(data, end + 10, 0xFFFF, 2), end + 8, 0xFFFF, 2)).class_names


def test_a_huge_pickle_is_refused():
    data = saved(payload(class_names=["x" * 300_000] + list("123456789")))  # a 300 KB settings record
    with pytest.raises(CheckpointError, match="settings record declares 0.30 MB; a checkpoint's is at most"):
        load_checkpoint(data)


def test_a_valid_deflated_checkpoint_still_loads():
    loaded = load_checkpoint(deflated(saved(payload())))
    assert loaded.class_names == tuple("0123456789")


BOMB_MEMORY = """
import resource, sys
from lrcore.checkpoint import CheckpointError, load_checkpoint
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_checkpoint(data)
    outcome = "accepted"
except CheckpointError as error:
    outcome = str(error)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "peak_kb_before": before, "peak_kb_after": after}))
"""


def test_loading_the_bomb_takes_no_memory(tensor_bomb, tmp_path):
    """Peak RSS in a fresh process: the 256 MB bomb took +256 MB before the archive check, now ~0."""
    path = tmp_path / "bomb.pt"
    path.write_bytes(tensor_bomb)
    result = subprocess.run([sys.executable, "-c", "import json\n" + BOMB_MEMORY, str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["outcome"].startswith("refused")
    assert figures["peak_kb_after"] - figures["peak_kb_before"] < 32 * 1024  # KB: far below the 256 MB tensor


# ---------------------------------------------------------------- crafted fields

def class_names(classes: int, **changes) -> bytes:
    return saved(payload(classes, **changes))


def state_dict(weight, bias=None) -> bytes:
    return saved({"linear.weight": weight, "linear.bias": torch.zeros(10) if bias is None else bias})


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


CRAFTED = {
    # wrong types of whole fields
    "config is a string": (saved(payload(config="lr=0.5")), "config"),
    "config is a list": (saved(payload(config=[0.5, 128])), "config"),
    "config value of the wrong type": (saved(payload(config={"learning_rate": "fast"})), "config"),
    "config dataset is a list": (saved(payload(config={"dataset": ["mnist"]})), "config"),
    "config number too large for a float": (saved(payload(config={"learning_rate": 10 ** 400})), "config"),
    "config nested 200 deep": (saved(payload(config=nested(200))), "config"),
    "metrics is a list": (saved(payload(metrics=[0.9, 0.1])), "metrics"),
    "metrics value is text": (saved(payload(metrics={"test_accuracy": "high"})), "metrics"),
    "metrics value is NaN": (saved(payload(metrics={"test_accuracy": float("nan")})), "metrics"),
    "metrics value is a bool": (saved(payload(metrics={"test_accuracy": True})), "metrics"),
    "metrics name is a number": (saved(payload(metrics={1: 0.5})), "metrics"),
    "metrics has 1,000 entries": (saved(payload(metrics={f"m{i}": 0.5 for i in range(1000)})), "metrics"),
    "created is a string": (saved(payload(created="yesterday")), "created"),
    "created is a list": (saved(payload(created=[1.0])), "created"),
    "created is infinite": (saved(payload(created=float("inf"))), "created"),
    "normalizer is a string": (saved(payload(normalizer="standardize")), "normalizer"),
    "normalizer kind unknown": (saved(payload(normalizer={"kind": "magic"})), "normalizer"),
    "normalizer mean is text": (saved(payload(normalizer={"kind": "standardize", "mean": "0.1",
                                                          "std": torch.ones(784)})), "normalizer mean"),
    "normalizer std is zero": (saved(payload(normalizer={"kind": "standardize", "mean": torch.zeros(784),
                                                         "std": torch.zeros(784)})), "normalizer std"),
    "normalizer mean is complex": (saved(payload(normalizer={"kind": "standardize", "mean": torch.zeros(
        784, dtype=torch.complex64), "std": torch.ones(784)})), "normalizer mean"),
    "version is text": (saved(payload(version="1")), "version"),
    "version from the future": (saved(payload(version=99)), "version"),
    # class names: count, length, content
    "class_names is a string": (saved(payload(class_names="0123456789")), "class_names"),
    "class_names is empty": (saved(payload(class_names=[])), "class_names"),
    "1 class": (class_names(1), "class_names"),
    "3 classes for mnist-sample": (class_names(3), "class_names: the file has 3 classes, but a model for "
                                                   "mnist-sample needs 10"),
    "3 classes for fashion-mnist": (class_names(3, config=TrainConfig(dataset="fashion-mnist").to_dict()),
                                    "a model for fashion-mnist needs 10"),
    "2,000 class names": (saved(payload(class_names=[str(i) for i in range(2000)])),
                          "class_names: a model has 2 to 100 classes, this one 2,000"),
    "2,000 classes": (class_names(2000), "weights, bias"),  # 6 MB of tensors: refused before unpacking
    "a 100 KB class name": (saved(payload(class_names=["x" * 100_000] + list("123456789"))),
                            "class_names: name 0 has 100,000 characters"),
    "a class name is a number": (saved(payload(class_names=[0] + list("123456789"))), "class_names: name 0"),
    "a class name with a newline": (saved(payload(class_names=["0\n# big"] + list("123456789"))),
                                    "class_names: name 0 contains control"),
    "a class name with a right-to-left override": (saved(payload(class_names=["0\u202e"] + list("123456789"))),
                                                   "class_names: name 0 contains control"),
    "a blank class name": (saved(payload(class_names=["  "] + list("123456789"))), "class_names: name 0"),
    "duplicate class names": (saved(payload(class_names=list("0123456780"))), "class_names: two classes"),
    # weights and bias: type, dtype, values, shape
    "weight is a string": (saved(payload(weight="zeros")), "weight"),
    "weight is complex": (saved(payload(weight=torch.zeros(10, 784, dtype=torch.complex64))), "weight"),
    "weight is int": (saved(payload(weight=torch.zeros(10, 784, dtype=torch.int64))), "weight"),
    "weight is bool": (saved(payload(weight=torch.zeros(10, 784, dtype=torch.bool))), "weight"),
    "weight is infinite": (saved(payload(weight=torch.full((10, 784), float("inf")))), "weight"),
    "weight is sparse": (saved(payload(weight=torch.zeros(10, 784).to_sparse())), "weight"),
    "weight is 0-d": (saved(payload(weight=torch.tensor(1.0))), "weight"),
    "bias is int": (saved(payload(bias=torch.zeros(10, dtype=torch.int32))), "bias"),
    "bias is complex": (saved(payload(bias=torch.zeros(10, dtype=torch.complex128))), "bias"),
    "bias is a list": (saved(payload(bias=[0.0] * 10)), "bias"),
    # tutorial-style state dicts
    "state_dict weight is 0-d": (state_dict(torch.tensor(1.0)), "linear.weight"),
    "state_dict weight of 10**9 empty rows": (state_dict(torch.zeros(10 ** 9, 0)), "linear.weight"),
    "state_dict weight of 1 class": (state_dict(torch.zeros(1, 784), torch.zeros(1)), "linear.weight"),
}


@pytest.mark.parametrize("data, field", CRAFTED.values(), ids=CRAFTED.keys())
def test_each_crafted_checkpoint_gets_one_clear_message_naming_the_field(data, field):
    with pytest.raises(CheckpointError) as caught:  # any other exception fails the test
        load_checkpoint(data)
    message = str(caught.value)
    assert field in message and "\n" not in message and len(message) < 400


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_real_floating_point_dtype_loads(dtype):
    data = saved(payload(weight=torch.zeros(10, 784, dtype=dtype), bias=torch.zeros(10, dtype=dtype)))
    assert load_checkpoint(data).model.linear.weight.dtype == torch.float32


def test_missing_optional_fields_get_defaults():
    data = saved({key: value for key, value in payload().items()
                  if key not in ("config", "metrics", "created", "normalizer", "version")})
    loaded = load_checkpoint(data)
    assert loaded.config == TrainConfig() and loaded.metrics == {} and loaded.normalizer.kind == "raw"


def test_nan_metrics_are_left_out_when_saving():
    data = ck.checkpoint_bytes(LogisticRegression(), TrainConfig(), tuple("0123456789"), Normalizer(),
                               {"test_loss": float("nan"), "test_accuracy": 0.5})
    assert load_checkpoint(data).metrics == {"test_accuracy": 0.5}
